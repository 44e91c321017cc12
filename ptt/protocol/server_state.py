"""The state every part of the server core reads and changes, and its settings.

:class:`ServerState` holds the directory (users, groups by name and by wire id), the session
table and the floors; each part of :class:`~ptt.protocol.server.ServerCore` is given this one
object, and what it sends leaves through the one :class:`~ptt.protocol.server_outbox.Outbox`.
Only the questions several parts ask of this state are answered here (which session speaks for a
user on a floor, a session's floor digest, who may reach whom); each rule that changes it lives
in its part.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from ptt.protocol import floor as fl
from ptt.protocol import limits
from ptt.protocol import messages as m
from ptt.protocol.feedback import LinkAggregate, LinkCounts
from ptt.protocol.keepalive import (
    HEARTBEAT_INTERVAL,
    IDLE_HEARTBEAT_INTERVAL,
    IDLE_SESSION_TIMEOUT,
    SESSION_TIMEOUT,
    Cadence,
)
from ptt.protocol.session import MAX_DEVICES, Addr, Session, SessionTable

PRIVATE_GROUP_BASE = 1 << 31  # wire ids of one-to-one call groups, never stored
# GroupEntry.requesters' value for a user whose last floor request came from a device on another
# node of a cluster (no session id is negative)
ASKED_ELSEWHERE = -1


# --- directory model ---------------------------------------------------------------------------


@dataclass(slots=True)
class PageEntry:
    page_id: int
    group: str  # "" for a direct page
    sender: str
    to: str  # the recipient of a direct page, else ""
    body: bytes
    epoch: int
    urgent: bool
    sent_ms: int
    recipients: frozenset[str]
    delivered: dict[str, set[str]] = field(default_factory=dict)  # user -> page devices
    read: dict[str, set[str]] = field(default_factory=dict)


@dataclass(slots=True)
class UserEntry:
    name: str
    role: m.Role
    salt: bytes
    iterations: int
    verifier: bytes


@dataclass(slots=True)
class GroupEntry:
    name: str
    group_id: int
    max_talk: float
    mode: str = "relay"
    private: bool = False
    mcast_addr: str | None = None
    mcast_port: int = 0
    members: dict[str, bool] = field(default_factory=dict)  # user -> listen_only
    # the sessions listening, by session id (a user may have several devices), and per user how
    # many: a member is online while it has one
    joined: dict[int, Session] = field(default_factory=dict)
    online: dict[str, int] = field(default_factory=dict)
    # in a cluster: members online on other nodes, with how many nodes each is online on (the
    # group's home tells, ptt.protocol.cluster_routing); a member is online while on any node
    remote: dict[str, int] = field(default_factory=dict)
    # user -> its requesting session (ASKED_ELSEWHERE: a device of it on another node asked)
    requesters: dict[str, int] = field(default_factory=dict)
    # user -> the device id of its request forwarded to this node as the group's home (a node
    # that mirrors the floor learns of requests from the news, which names no device)
    asked_from: dict[str, str] = field(default_factory=dict)
    holder_sid: int = 0  # the session of the floor's holder that was granted (talks for it)
    # talker sid -> addrs (a relay talker's frame); ~sid -> addrs (the same heard by multicast)
    targets: dict[int, tuple[Addr, ...]] = field(default_factory=dict)
    last_queue: tuple[str, ...] = ()
    grant_key: tuple[int, int] | None = None  # the resent FloorGranted of a queue grant
    grant_burst: int = 0
    mcast_ready: bool = False  # the adapter listens on mcast_addr:mcast_port
    mcast_members: set[int] = field(default_factory=set)  # joined sessions on the multicast path
    key_epoch: int = 0  # the group key's epoch; 0: no key uploaded yet
    grants: dict[str, bytes] = field(default_factory=dict)  # user -> opaque grant of key_epoch
    version: int = 0  # floor changes announced (taken, idle, the queue): FloorTaken.version
    floor_news: m.FloorTaken | m.FloorIdle | None = None  # the latest (server_floor repeats it)
    link: LinkAggregate | None = None  # listeners' reports of the current burst (loss feedback)
    burst_frames: int = 0  # voice frames of the current burst the relay accepted
    # since when the floor has had a talker (None: idle): its members are on the busy cadence
    busy_since: float | None = None
    # members whose presence changed since the last PresenceBatch (server_groups), when that
    # batch left, and when the next is due (0.0: none is scheduled)
    presence_pending: dict[str, None] = field(default_factory=dict)
    presence_sent: float = float("-inf")
    presence_due: float = 0.0
    # sessions whose Joined was built after the last pending change: it showed them every
    # change the next batch carries, so the batch skips them (server_groups)
    presence_shown: dict[int, None] = field(default_factory=dict)

    def is_online(self, user: str) -> bool:
        """``user`` has a session joined to the group on this node or, in a cluster, another."""
        return user in self.online or user in self.remote

    def sessions_of(self, user: str) -> list[Session]:
        """The user's sessions that joined this group."""
        return [s for s in self.joined.values() if s.user == user] if user in self.online else []

    def multicast_target(self) -> Addr | None:
        if self.mcast_ready and self.mcast_addr is not None and self.mode != "relay":
            return (self.mcast_addr, self.mcast_port)
        return None


class FloorHome(Protocol):
    """Where the floors of groups homed on another node are decided, in a cluster
    (``ptt.protocol.cluster_routing``). The parts ask :meth:`elsewhere` before they feed a
    floor, and hand the input over instead when it is; the answer comes back through
    ``FloorControl.answer_request`` and ``FloorControl.floor_events``."""

    # text pages are stored where every node reads them, and cross nodes (page_stored,
    # page_receipt); False: each node keeps its own, for its own users
    shared_pages: bool

    def elsewhere(self, group: str, now: float | None = None) -> bool:
        """The group's floor is decided on another node; with ``now``, also while this
        node, its home, may not decide it (its lease unsure): the input waits."""

    def request(self, s: Session, g: GroupEntry, txn: int, priority: m.Priority,
                now: float) -> None: ...

    def release(self, group: str, user: str, device: str, burst_id: int, now: float) -> None:
        """``user``'s device ``device`` (its id, "" if it sent none) gave up the floor."""

    def left(self, group: str, user: str, device: str, lost: bool, now: float) -> None:
        """The session speaking for ``user`` (from ``device``) left the group: given up (a
        release), or ended or expired (``lost``: the participant is lost)."""

    def voice(self, group: str, user: str, burst_id: int, now: float) -> None:
        """The relay forwarded a frame of ``user``'s burst: the home's silence timer hears."""

    def members_changed(self, g: GroupEntry, now: float) -> None:
        """``g`` gained its first joined session here, or lost its last."""

    def presence(self, g: GroupEntry, user: str, online: bool, now: float) -> None:
        """``user`` came online in ``g`` on this node (its first session joined here) or went
        offline here (its last left): the other nodes' members see it."""

    def logged_in(self, user: str, device: str, now: float) -> None:
        """``user`` logged in here from ``device``: a session of that device on another node
        ends, as a second login from one device does on one server."""

    def placement(self, groups: Sequence[str]) -> str:
        """Where a user of ``groups`` is best served (the Welcome's ``home``): a node's access
        address, or "" to stay here."""

    def link_counts(self, g: GroupEntry, burst_id: int, talker: str, counts: LinkCounts,
                    now: float) -> None:
        """A window of this node's listeners' loss reports for ``talker``, who is on another
        node: it goes there."""

    def receipts(self, g: GroupEntry, burst_id: int, talker: str,
                 receipts: Sequence[m.Receipt], now: float) -> None:
        """This node's listeners' receipts of a burst of ``talker``, who is on another node:
        they go there, for its delivery report."""

    def call_made(self, g: GroupEntry, caller: str, callee: str, now: float) -> None:
        """``caller`` called ``callee`` in the call group ``g`` here (made here if new, which
        makes this node its home): ``callee``'s devices on the other nodes ring."""

    def call_over(self, g: GroupEntry) -> bool:
        """May the call ``g``, with no session joined here, end (nobody in it on any node)?"""

    def call_open(self, g: GroupEntry) -> bool:
        """Is the call ``g`` still going on another node (a member logging in here rings)?"""

    def call_removed(self, g: GroupEntry, now: float) -> None:
        """The call ``g`` was removed here; its home tells the other nodes it ended."""

    def page_stored(self, page: PageEntry, now: float) -> None:
        """A text page was stored in the cluster's shared store here and pushed to this
        node's devices: the other nodes deliver it to theirs."""

    def page_receipt(self, page_id: int, user: str, device: str, read: bool,
                     now: float) -> None:
        """A device here had (or, with ``read``, showed) a page: every node must know, so that
        no node gives that device the page again and the reports count it."""


@dataclass(frozen=True, slots=True)
class ServerCoreConfig:
    """Timers, floor rules, who may call an emergency, and the abuse limits on datagrams without
    a session.

    ``emergency_roles``: the roles whose emergency-priority requests the floor takes; anyone else
    asking for EMERGENCY is denied with ``DenyCause.NOT_ALLOWED`` (``ptt server
    --emergency-roles``). ``rate_limits`` is charged per source (host, port) and in aggregate for
    every plain datagram and every sealed one naming an unknown session; a load generator with
    thousands of clients on one address raises ``global_rate``/``global_burst``.
    ``login_limits``: the back-off after failed logins, per user name and per source host.
    """

    heartbeat: float = HEARTBEAT_INTERVAL  # the busy cadence (ptt.protocol.keepalive)
    session_timeout: float = SESSION_TIMEOUT
    idle_heartbeat: float = IDLE_HEARTBEAT_INTERVAL  # the idle cadence
    idle_session_timeout: float = IDLE_SESSION_TIMEOUT
    floor: fl.FloorConfig = fl.FloorConfig()
    rate_limits: limits.RateLimits = limits.RateLimits()
    emergency_roles: frozenset[m.Role] = fl.EMERGENCY_ROLES
    max_devices: int = MAX_DEVICES  # sessions per user at once (ServerConfig.max_devices)
    login_limits: limits.LoginLimits = limits.LoginLimits()

    @property
    def cadence(self) -> Cadence:
        return Cadence(self.heartbeat, self.session_timeout, self.idle_heartbeat,
                       self.idle_session_timeout)


class ServerState:
    """Settings, directory, sessions and floors, shared by every part of the server core."""

    def __init__(self, entropy: Callable[[int], bytes], config: ServerCoreConfig) -> None:
        """``entropy(n)`` returns n random bytes (``os.urandom``); the core reads no clock."""
        self.entropy = entropy
        self.config = config
        self.users: dict[str, UserEntry] = {}
        self.groups: dict[str, GroupEntry] = {}
        self.by_id: dict[int, GroupEntry] = {}  # the same groups by wire id
        # user -> the groups it is a member of (kept by server_groups with GroupEntry.members):
        # a login reads its user's groups here, not by a walk of every group
        self.member_of: dict[str, set[str]] = {}
        self.sessions = SessionTable(config.cadence, self.busy_since)
        self.floors = fl.FloorSet()
        self.home: FloorHome | None = None  # set on a cluster node: floors decided elsewhere
        self.access: list[str] = []  # a cluster's access nodes (HOST:PORT), told at login
        # until then presence batches wait: the end of the window this server's notice asked
        # its clients to log in within (server_gate.announce_restart, server_groups)
        self.presence_after = float("-inf")

    def busy_since(self, s: Session) -> float | None:
        """Since when ``s`` should be on the busy cadence: the earliest of its groups' floors that
        has a talker (its client tightens when it hears the first), None while all are idle."""
        groups = self.groups
        since = [g.busy_since for n in s.joined
                 if (g := groups.get(n)) is not None and g.busy_since is not None]
        return min(since) if since else None

    def _floor_sid(self, g: GroupEntry, user: str) -> int:
        """The session granted ``g``'s floor if ``user`` holds it, else the one that asked
        last (``ASKED_ELSEWHERE``: a device on another node); 0 when neither is known."""
        holds = g.name in self.groups and self.floors.floor(g.name).holder == user
        return (g.holder_sid if holds else 0) or g.requesters.get(user, 0)

    def floor_session(self, g: GroupEntry, user: str) -> Session | None:
        """The session that speaks for ``user`` on ``g``'s floor: the one granted the floor if
        the user holds it, else the one that asked last, else the user's newest; none when the
        device that asked is on another node of a cluster (``ASKED_ELSEWHERE``): a device of
        the user here did not ask, and told of a grant it would give it back."""
        sid = self._floor_sid(g, user)
        if sid == ASKED_ELSEWHERE:
            return None
        s = self.sessions.by_id.get(sid)
        if s is not None and s.user == user:
            return s
        return self.sessions.by_user.get(user)

    def floor_device(self, g: GroupEntry, user: str) -> str:
        """The id of the device that holds ``g``'s floor for ``user`` or asked for it, as this
        node knows it: a session here, or a device whose request another node forwarded (the
        home); "" when unknown or the device sent no id."""
        sid = self._floor_sid(g, user)
        if sid == ASKED_ELSEWHERE:
            return g.asked_from.get(user, "")
        s = self.sessions.by_id.get(sid)
        return s.device if s is not None and s.user == user else ""

    def held_by_another_device(self, g: GroupEntry, user: str, sid: int, device: str) -> bool:
        """Whether ``g``'s floor is ``user``'s, granted to another of its devices than the one
        asking (session ``sid`` from ``device``; ``ASKED_ELSEWHERE`` for a request another node
        of a cluster forwarded to the home) that is still there: a live session here, or a
        device on another node. The asking device itself, come back through another node after
        its own died (its id is the same), is the holder, not another device. A node that
        mirrors the floor does not know which device on another node holds it: it lets the
        home decide (the request goes there). A holder's session that is gone leaves the floor
        to the device asking."""
        if self.floors.floor(g.name).holder != user:
            return False
        held = g.holder_sid
        if held == ASKED_ELSEWHERE:
            there = g.asked_from.get(user, "")
            if device and there:
                return there != device
            if device and self.home is not None and self.home.elsewhere(g.name):
                return False
            # a device without an id, here or there: told apart by the node alone
            return sid != ASKED_ELSEWHERE
        if held == sid:
            return False
        s = self.sessions.by_id.get(held)
        return s is not None and not (device and s.device == device)

    def digest(self, s: Session) -> int:
        """HeartbeatAck.digest: the floor-state versions of the session's groups, summed."""
        groups = self.groups
        return sum(groups[n].version for n in s.joined if n in groups) & 0xFFFFFFFF

    def call_refusal(self, s: Session, peer: str) -> str | None:
        """Why ``s`` may not call (or page) ``peer``, or None. A volunteer reaches only the
        members of its own groups, and is told the same for an unknown user: a call reveals no
        more of the directory than the caller's groups already show. Dispatchers and
        coordinators reach anyone."""
        if peer == s.user:
            return "you cannot call yourself"
        if s.role in (m.Role.DISPATCHER, m.Role.COORDINATOR):
            return None if peer in self.users else f"unknown user '{peer}'"
        shared = any(s.user in g.members and peer in g.members
                     for g in self.groups.values() if not g.private)
        return None if shared else f"you can call only members of your groups ('{peer}' is not)"
