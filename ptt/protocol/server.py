"""The server's protocol core: sessions, groups, floors and relay routing, without I/O.

Driven like aioquic's connection, by three things only::

    core.receive_datagram(data, addr, now)   # control or voice; returns relay targets for voice
    core.receive_multicast(data, addr, now)  # voice heard on a group's multicast address
    core.handle_timer(now)                   # when now >= core.get_timer()
    core.<directory calls>                   # users/groups/members loaded or changed by the adapter

and read with ``core.datagrams_to_send()`` (list of (bytes, addr)) and ``core.events()`` (what
happened, for logs, metrics, recorders and administration). It never touches a socket, a clock or
the database: the asyncio adapter in ``ptt.server`` does, and answers :class:`AdminCommand` events
with :meth:`ServerCore.admin_reply` after changing the store.

Sealed control plane (``docs/security.md``). Only the login is plain: a Hello of at least
``limits.MIN_HELLO_SIZE`` bytes (shorter ones are dropped unanswered), the Challenge, the Login
and the errors answering them. A good Login creates the session with its
:class:`~ptt.crypto.channel.SecureChannel` and is answered with a *sealed* Welcome; from then on
every datagram between that client and the server, both ways, is sealed ('S'), heartbeats
included, and one that does not open (forged, altered, replayed, from another address) is
dropped silently and reported as :class:`Dropped`. Datagrams without a session pass size
ceilings before parsing, a rate limit per source (host, port) and in aggregate
(``ServerCoreConfig.rate_limits``), and are never answered with more bytes than they carry
(``NO_SESSION`` only when it fits). Requests resent by a client are sealed anew and answered
from the response cache, which keeps sealed bytes; reliable pushes are resealed on each resend.
Voice ('V') is unchanged: the relay checks the holder's session and address.

Multicast groups. Each member is a relay member (the server forwards it every frame) until it
proves with a probe that it reaches the group's multicast address and asks, with the member
operation ``Admin(op=VOICE_PATH_OP, args={"group": ..., "multicast": true})``, to be served by
multicast; the server agrees only for groups the adapter listens on (:meth:`set_multicast_ready`).
The server then bridges: a relay talker's frame goes to the relay members and once to the group
address; a frame heard on the group address goes to the relay members only. Hearing the group
also keeps the floor's silence timer (T1) fed when the talker multicasts, at one received frame
per 20 ms whatever the number of listeners. A pure multicast group costs no relay sends at all.

Multicast listeners must tell the holder's frames from anyone else's, so the server sends each
multicast member a *holder notice* with every grant (and when it moves to multicast mid-burst):
a voice header with the PROBE flag, ``seq`` HOLDER_SEQ, the holder's session id as ``sender``
and the burst id, unicast like ``FloorTaken`` and no payload. Probes carry ``seq`` PROBE_SEQ and
the server's echo of a probe, sent to the group, ECHO_SEQ.
"""

from __future__ import annotations

import hmac
import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

from ptt.crypto import limits
from ptt.crypto.channel import REPLAYED, SEALED_MAGIC, Role, SecureChannel, peek_session_id
from ptt.errors import ConflictError, NotFoundError, ProtocolError, PttError
from ptt.protocol import auth
from ptt.protocol import floor as fl
from ptt.protocol import messages as m
from ptt.protocol.session import HEARTBEAT_INTERVAL, SESSION_TIMEOUT, Addr, Session, SessionTable
from ptt.protocol.transactions import ResponseCache, Retransmitter
from ptt.protocol.voice import VoiceFlags, VoiceHeader, encode_voice, peek_route
from ptt.protocol.wire import (VOICE_MAGIC, decode_heartbeat, decode_message,
                              encode_heartbeat_ack, encode_message)

log = logging.getLogger(__name__)

LOGIN_PENDING_TTL = 10.0
LOGIN_PENDING_MAX = 10_000
STALE_NOTICE_INTERVAL = 0.5
PRIVATE_GROUP_BASE = 1 << 31  # wire ids of one-to-one call groups, never stored
EMERGENCY_ROLES = frozenset({m.Role.VOLUNTEER, m.Role.DISPATCHER, m.Role.COORDINATOR})
HIGH_ROLES = frozenset({m.Role.DISPATCHER, m.Role.COORDINATOR})
VOICE_PATH_OP = "member.voice_path"  # a member operation (any role) on the Admin message
PROBE_SEQ = 0  # seq of PROBE-flagged voice headers: a member's multicast probe ...
ECHO_SEQ = 1  # ... the server's echo of it (to the group) ...
HOLDER_SEQ = 2  # ... and the server's holder notice (unicast to a multicast member)
_FLAGS_AT = 2  # byte offsets in the voice header (ptt.protocol.voice)
_SEQ_AT = 16
_PROBE = PROBE_SEQ.to_bytes(2, "big")
_ECHO = ECHO_SEQ.to_bytes(2, "big")
# what a session may send (sealed); anything else inside a sealed datagram is dropped
_SESSION_MESSAGES = (m.Heartbeat, m.Bye, m.Join, m.Leave, m.FloorRequest, m.FloorRelease, m.Call,
                     m.Admin)
_NO_SESSION_TEXT = "no session: log in again"


# --- events out --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SessionStarted:
    user: str
    session_id: int
    addr: Addr


@dataclass(frozen=True, slots=True)
class SessionEnded:
    user: str
    session_id: int
    reason: str  # "bye", "expired", "replaced", "removed"


@dataclass(frozen=True, slots=True)
class MemberJoined:
    group: str
    user: str


@dataclass(frozen=True, slots=True)
class MemberLeft:
    group: str
    user: str


@dataclass(frozen=True, slots=True)
class FloorEvent:
    """A floor event from ``ptt.protocol.floor`` (Granted, Queued, Denied, Revoked, ...)."""

    event: object


@dataclass(frozen=True, slots=True)
class FloorRequested:
    group: str
    user: str
    priority: m.Priority


@dataclass(frozen=True, slots=True)
class AdminCommand:
    """A coordinator's request for the adapter to execute; answer with ``admin_reply``."""

    session_id: int
    user: str
    role: m.Role
    op: str
    args: dict[str, object]
    txn: int
    addr: Addr


@dataclass(frozen=True, slots=True)
class Dropped:
    addr: Addr
    reason: str


@dataclass(frozen=True, slots=True)
class GroupUpdated:
    """A group was created, changed (mode, multicast address) or removed: the adapter decides
    anew which group addresses it listens on."""

    group: str
    removed: bool = False


ServerEvent = (
    SessionStarted | SessionEnded | MemberJoined | MemberLeft | FloorEvent | FloorRequested
    | AdminCommand | Dropped | GroupUpdated
)


# --- directory model ---------------------------------------------------------------------------


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
    joined: dict[str, Session] = field(default_factory=dict)  # online and listening
    # talker sid -> addrs (a relay talker's frame); ~sid -> addrs (the same heard by multicast)
    targets: dict[int, tuple[Addr, ...]] = field(default_factory=dict)
    last_queue: tuple[str, ...] = ()
    grant_key: tuple[int, int] | None = None  # the resent FloorGranted of a queue grant
    grant_burst: int = 0
    mcast_ready: bool = False  # the adapter listens on mcast_addr:mcast_port
    mcast_members: set[str] = field(default_factory=set)  # joined members on the multicast path
    key_epoch: int = 0  # the group key's epoch; 0: no key uploaded yet
    grants: dict[str, bytes] = field(default_factory=dict)  # user -> opaque grant of key_epoch

    def multicast_target(self) -> Addr | None:
        if self.mcast_ready and self.mcast_addr is not None and self.mode != "relay":
            return (self.mcast_addr, self.mcast_port)
        return None


@dataclass(frozen=True, slots=True)
class ServerCoreConfig:
    """Timers, floor rules and the abuse limits on datagrams without a session.

    ``rate_limits`` is charged per source (host, port) and in aggregate for every plain datagram
    and every sealed one naming an unknown session; a load generator with thousands of clients
    on one address raises ``global_rate``/``global_burst``.
    """

    heartbeat: float = HEARTBEAT_INTERVAL
    session_timeout: float = SESSION_TIMEOUT
    floor: fl.FloorConfig = fl.FloorConfig()
    rate_limits: limits.RateLimits = limits.RateLimits()


class ServerCore:
    def __init__(
        self,
        entropy: Callable[[int], bytes],
        config: ServerCoreConfig = ServerCoreConfig(),
    ) -> None:
        """``entropy(n)`` returns n random bytes (``os.urandom``); the core reads no clock."""
        self._entropy = entropy
        self.config = config
        self._secret = entropy(32)
        self.users: dict[str, UserEntry] = {}
        self.groups: dict[str, GroupEntry] = {}
        self._by_id: dict[int, GroupEntry] = {}
        self.sessions = SessionTable(config.session_timeout)
        self.floors = fl.FloorSet()
        self._pending_login: dict[tuple[Addr, bytes], tuple[bytes, float]] = {}
        # answers by (addr, txn) for plain requests, by (session id, txn) for sealed ones (sealed)
        self._cache: ResponseCache[tuple[object, int]] = ResponseCache()
        self._reliable: Retransmitter[tuple[int, int]] = Retransmitter()  # plaintext, to a Session
        self._limiter = limits.RateLimiter(config.rate_limits)
        self._req_len = 0  # size of the plain datagram being answered (no amplification)
        self._txn = 0
        self._out: list[tuple[bytes, Addr]] = []
        self._events: deque[ServerEvent] = deque()
        self._next_private = PRIVATE_GROUP_BASE
        self.voice_refused = 0  # voice for a burst that is not the holder's current one (metrics)

    # --- outputs ------------------------------------------------------------------------------

    def datagrams_to_send(self) -> list[tuple[bytes, Addr]]:
        out, self._out = self._out, []
        return out

    def has_output(self) -> bool:
        """Cheap check for the relay's hot path: anything to send or report?"""
        return bool(self._out or self._events)

    def events(self) -> list[ServerEvent]:
        ev = list(self._events)
        self._events.clear()
        return ev

    def get_timer(self) -> float | None:
        timers = [
            t
            for t in (self.floors.get_timer(), self.sessions.get_timer(), self._reliable.get_timer())
            if t is not None
        ]
        return min(timers) if timers else None

    def handle_timer(self, now: float) -> None:
        for s in self.sessions.expired(now):
            self._end_session(s, "expired", now)
        self._floor_events(self.floors.handle_timer(now), now)
        resend, expired = self._reliable.handle_timer(now)
        for plain, dest in resend:  # sealed anew: the client's window took the first copy
            s = dest  # type: ignore[assignment]
            if isinstance(s, Session) and self.sessions.by_id.get(s.session_id) is s:
                self._out.append((self._seal(s, plain), s.addr))
        for e in expired:
            sid = e.key[0]
            s = self.sessions.by_id.get(sid)
            if s is not None:
                log.info("no ack from %s for an acknowledged message; ending its session", s.user)
                self._end_session(s, "expired", now)
        self._cache.expire(now)

    # --- directory (the adapter keeps these in step with the store) --------------------------

    def upsert_user(
        self, name: str, role: m.Role, salt: bytes, iterations: int, verifier: bytes
    ) -> None:
        self.users[name] = UserEntry(name, role, salt, iterations, verifier)
        s = self.sessions.by_user.get(name)
        if s is not None:
            s.role = role

    def remove_user(self, name: str, now: float) -> None:
        s = self.sessions.by_user.get(name)
        if s is not None:
            self._end_session(s, "removed", now)
        for g in list(self.groups.values()):
            if name in g.members:
                self.remove_member(g.name, name, now)
        self.users.pop(name, None)

    def upsert_group(
        self,
        name: str,
        group_id: int,
        max_talk: float,
        mode: str = "relay",
        private: bool = False,
        mcast_addr: str | None = None,
        mcast_port: int = 0,
    ) -> None:
        g = self.groups.get(name)
        cfg = fl.FloorConfig(
            max_talk=max_talk,
            silence=self.config.floor.silence,
            grace=self.config.floor.grace,
            start_window=self.config.floor.start_window,
            queue_max=self.config.floor.queue_max,
        )
        if g is None:
            g = GroupEntry(name, group_id, max_talk, mode, private, mcast_addr, mcast_port)
            self.groups[name] = g
            self._by_id[group_id] = g
            first_burst = int.from_bytes(self._entropy(4), "big") & 0x7FFFFFFF or 1
            self.floors.add_group(name, cfg, first_burst)
        else:
            g.max_talk, g.mode, g.mcast_addr, g.mcast_port = max_talk, mode, mcast_addr, mcast_port
            g.targets.clear()
            self.floors.configure(name, cfg)  # reschedules the group's timers
        if not private:
            self._events.append(GroupUpdated(name))

    def remove_group(self, name: str, now: float) -> None:
        g = self.groups.pop(name, None)
        if g is None:
            return
        self._by_id.pop(g.group_id, None)
        if not g.private:
            self._events.append(GroupUpdated(name, removed=True))
        self._floor_events(self.floors.remove_group(name, now), now, group=g)
        for s in g.joined.values():
            s.joined.discard(name)

    def set_member(self, group: str, user: str, listen_only: bool = False,
                   now: float = 0.0) -> None:
        """Add a member, or change its listen-only flag (ending a burst or request it had)."""
        g = self.groups[group]
        if g.members.get(user, listen_only) != listen_only:
            self._floor_events(self.floors.remove_member(group, user, now), now)
        g.members[user] = listen_only
        self.floors.floor(group).add_member(user, listen_only)

    def remove_member(self, group: str, user: str, now: float) -> None:
        g = self.groups.get(group)
        if g is None or user not in g.members:
            return
        self._floor_events(self.floors.remove_member(group, user, now), now)
        del g.members[user]
        g.grants.pop(user, None)  # a removed member gets no key; a coordinator rotates
        s = g.joined.pop(user, None)
        g.mcast_members.discard(user)
        if s is not None:
            s.joined.discard(group)
            self._announce(g, m.Presence(group, user, False))
        g.targets.clear()

    def group_state(self, name: str) -> m.GroupState:
        g = self.groups[name]
        f = self.floors.floor(name)
        return m.GroupState(
            group=name,
            group_id=g.group_id,
            members=[
                m.MemberInfo(u, u in g.joined, lo) for u, lo in sorted(g.members.items())
            ],
            talker=f.holder,
            burst_id=f.burst_id if f.holder is not None else 0,
            queue=list(f.queue),
            max_talk_ms=int(g.max_talk * 1000),
            mode=g.mode,
            mcast_addr=g.mcast_addr,
            mcast_port=g.mcast_port,
            key_epoch=g.key_epoch,
        )

    def set_group_key(self, group: str, epoch: int, grants: dict[str, bytes], now: float) -> None:
        """A coordinator uploaded ``group``'s key for ``epoch``: one opaque grant per member.

        Replaces every grant of the group (members not in ``grants`` have none afterwards) and
        pushes a reliable ``KeyGrant`` to each online member that has one. Epochs only go up:
        ConflictError for ``epoch`` <= the current one, except the same epoch with the same
        grants (a repeated upload, a restore), which changes nothing. NotFoundError for an
        unknown group. The server never opens a grant (``ptt.crypto.groupkeys``).
        """
        g = self.groups.get(group)
        if g is None:
            raise NotFoundError(f"unknown group '{group}'")
        if epoch == g.key_epoch and grants == g.grants:
            return
        if epoch <= g.key_epoch:
            raise ConflictError(f"group '{group}' already has key epoch {g.key_epoch}; "
                                f"{epoch} is not newer")
        g.key_epoch = epoch
        g.grants = dict(grants)
        for user, grant in g.grants.items():
            s = self.sessions.by_user.get(user)
            if s is not None:
                self._send_reliable(s, lambda txn, gr=grant: m.KeyGrant(txn, g.name, epoch, gr),
                                    now)

    def group_key(self, group: str) -> tuple[int, dict[str, bytes]]:
        """``(epoch, grants)`` of ``group`` (0 and no grants before the first upload)."""
        g = self.groups.get(group)
        if g is None:
            raise NotFoundError(f"unknown group '{group}'")
        return g.key_epoch, dict(g.grants)

    def online_users(self) -> set[str]:
        return set(self.sessions.by_user)

    # --- input --------------------------------------------------------------------------------

    def receive_datagram(self, data: bytes, addr: Addr, now: float) -> tuple[Addr, ...] | None:
        """Handle one datagram. For an accepted voice frame, returns the relay's destinations
        (possibly none); for anything else, None."""
        if not data or len(data) > limits.max_size(data):
            self._drop(addr, f"datagram size out of bounds: {len(data)} bytes")
            return None
        first = data[0]
        if first == VOICE_MAGIC:
            return self.route_voice(data, addr, now)
        if first == SEALED_MAGIC:
            self._receive_sealed(data, addr, now)
        else:
            self._receive_plain(data, addr, now)
        return None

    def _receive_sealed(self, data: bytes, addr: Addr, now: float) -> None:
        """A session's datagram: open it (or drop it silently), then act on it."""
        try:
            sid = peek_session_id(data)
        except ProtocolError as exc:
            self._drop(addr, f"malformed sealed datagram: {exc}")
            return
        s = self.sessions.by_id.get(sid)
        if s is None or s.channel is None:
            # an expired session, a restarted server, or a forgery: tell the sender to log in
            # again, if it fits (a sealed datagram is at least 30 bytes, the answer 30)
            if self._limiter.allow(addr[:2], now):
                self._req_len = len(data)
                self._reply_plain(addr, 0, m.Error(0, m.ErrorCode.NO_SESSION, _NO_SESSION_TEXT),
                                  now, cache=False)
            self._drop(addr, "sealed datagram for an unknown session")
            return
        if s.addr != addr:
            self._drop(addr, "sealed datagram from another address than its session's")
            return
        try:
            plain = s.channel.open(data)
        except PttError as exc:  # forged, altered, replayed or too old: nothing changed
            what = "replayed" if str(exc).startswith(REPLAYED) else "refused"
            self._drop(addr, f"sealed datagram {what}: {exc}")
            return
        s.last_seen = now
        hb = decode_heartbeat(plain)
        if hb is not None and hb[1] == sid:  # the fast path: most of a big server's traffic
            self._out.append((s.channel.seal(encode_heartbeat_ack(hb[0])), addr))
            return
        try:
            msg = decode_message(plain)
        except ProtocolError as exc:  # it opened: the session's own client sent garbage
            self._drop(addr, f"malformed sealed message: {exc}")
            return
        if getattr(msg, "session_id", sid) != sid:
            self._drop(addr, "sealed message names another session")
        elif isinstance(msg, m.Ack):
            self._reliable.ack((sid, msg.txn))
        elif isinstance(msg, _SESSION_MESSAGES):
            cached = None if isinstance(msg, m.Heartbeat) else self._cache.get((sid, msg.txn), now)
            if cached is not None:
                self._out.append((cached, addr))
                return
            try:
                self._on_session_message(s, msg, now)
            except ProtocolError as exc:
                self._drop(addr, f"refused request: {exc}")
        else:
            self._drop(addr, f"unexpected sealed {type(msg).__name__} from a client")

    def _receive_plain(self, data: bytes, addr: Addr, now: float) -> None:
        """A datagram without a session: rate-limited, and answered only by what fits in it."""
        if not self._limiter.allow(addr[:2], now):
            self._drop(addr, "rate limit for datagrams without a session")
            return
        try:
            msg = decode_message(data)
        except ProtocolError as exc:  # reasons are "kind: detail", the kind from a fixed set
            self._drop(addr, f"malformed datagram: {exc}")
            return
        self._req_len = len(data)
        if isinstance(msg, (m.Hello, m.Login)):
            if isinstance(msg, m.Hello) and len(data) < limits.MIN_HELLO_SIZE:
                self._drop(addr, f"unpadded hello: {len(data)} bytes")
                return
            cached = self._cache.get((addr, msg.txn), now)
            if cached is not None:
                if limits.answer_fits(data, cached):
                    self._out.append((cached, addr))
                return
            try:
                if isinstance(msg, m.Hello):
                    self._on_hello(msg, addr, now)
                else:
                    self._on_login(msg, addr, now)
            except ProtocolError as exc:
                self._drop(addr, f"refused login: {exc}")
        elif isinstance(msg, _SESSION_MESSAGES):
            # session traffic is sealed: a plain one is a forgery or a client from before a
            # restart; it learns to log in again, if the answer fits
            self._reply_plain(addr, msg.txn, m.Error(msg.txn, m.ErrorCode.NO_SESSION,
                                                     _NO_SESSION_TEXT), now, cache=False)
            self._drop(addr, f"plain {type(msg).__name__}: session messages are sealed")
        else:
            self._drop(addr, f"unexpected plain {type(msg).__name__} from a client")

    def route_voice(self, data: bytes, addr: Addr, now: float) -> tuple[Addr, ...] | None:
        """The relay's hot path: forward only the current holder's current burst.

        Returns the destinations of an accepted frame (empty when nobody else listens), or None
        for a frame that is dropped."""
        try:
            group_id, sender, burst_id = peek_route(data)
        except ProtocolError as exc:
            self._drop(addr, f"malformed voice datagram: {exc}")
            return None
        s = self.sessions.by_id.get(sender)
        g = self._by_id.get(group_id)
        if s is None or s.addr != addr or g is None:
            self._drop(addr, "voice from an unknown session or group")
            return None
        s.last_seen = now
        if not self.floors.voice(g.name, s.user, burst_id, now):
            self.voice_refused += 1
            self._stale_talker(s, g, burst_id, now)
            return None
        t = g.targets.get(sender)
        if t is None:
            t = self._relay_targets(g, s)
            mcast = g.multicast_target()
            if mcast is not None and g.mcast_members:
                t += (mcast,)  # bridged: multicast members hear a relay talker
            g.targets[sender] = t
        return t

    def receive_multicast(self, data: bytes, addr: Addr, now: float) -> tuple[Addr, ...] | None:
        """Voice heard on a group's multicast address: feeds the floor's silence timer and returns
        the relay members to bridge an accepted frame to (None: dropped). Answers probes.

        The source address cannot be checked against the session (multicast leaves from another
        socket than the talker's control traffic); the floor check on sender and burst is what
        gates it, as it gates what multicast listeners play."""
        try:
            group_id, sender, burst_id = peek_route(data)
        except ProtocolError as exc:
            self._drop(addr, f"malformed voice datagram: {exc}")
            return None
        s = self.sessions.by_id.get(sender)
        g = self._by_id.get(group_id)
        if s is None or g is None or g.joined.get(s.user) is not s:
            self._drop(addr, "multicast voice from an unknown session or group")
            return None
        if data[_FLAGS_AT] & VoiceFlags.PROBE:
            mcast = g.multicast_target()
            if mcast is not None and data[_SEQ_AT:_SEQ_AT + 2] == _PROBE:
                # echo it to the group: the prober hears that the LAN carries its multicast to
                # the server and the server's back to it
                self._out.append((data[:_SEQ_AT] + _ECHO + data[_SEQ_AT + 2:], mcast))
            return None
        if not self.floors.voice(g.name, s.user, burst_id, now):
            self.voice_refused += 1
            self._stale_talker(s, g, burst_id, now)
            return None
        key = ~sender
        t = g.targets.get(key)
        if t is None:
            t = g.targets[key] = self._relay_targets(g, s)
        return t

    def _relay_targets(self, g: GroupEntry, talker: Session) -> tuple[Addr, ...]:
        return tuple(o.addr for u, o in g.joined.items()
                     if o is not talker and u not in g.mcast_members)

    def set_multicast_ready(self, group: str, ready: bool) -> None:
        """The adapter does (or no longer does) listen on the group's multicast address. When it
        stops, its multicast members go back to the relay (a member still talking by multicast
        loses the floor to T1 and probes again, which then fails)."""
        g = self.groups.get(group)
        if g is None or g.mcast_ready == ready:
            return
        g.mcast_ready = ready
        g.targets.clear()
        if not ready:
            g.mcast_members.clear()

    def _holder_notice(self, g: GroupEntry, user: str | None, burst_id: int,
                       to: list[Session]) -> None:
        """Tell multicast members whose frames to play: the holder's session and burst."""
        holder = self.sessions.by_user.get(user) if user is not None else None
        if holder is not None and to:
            data = encode_voice(VoiceHeader(g.group_id, holder.session_id, burst_id, HOLDER_SEQ,
                                            0, VoiceFlags.PROBE), b"")
            self._out.extend((data, s.addr) for s in to)

    def _stale_talker(self, s: Session, g: GroupEntry, burst_id: int, now: float) -> None:
        """Voice for a burst that is over: the talker missed the news, so tell it (rate-limited)."""
        if now - s.notice_at < STALE_NOTICE_INTERVAL:
            return
        s.notice_at = now
        f = self.floors.floor(g.name)
        if f.holder is not None and f.holder != s.user:
            msg: m.Message = m.FloorTaken(g.name, f.holder, f.burst_id,
                                          f.holder_priority or m.Priority.NORMAL,
                                          int(g.max_talk * 1000))
        else:  # idle, or the sender holds a newer burst than it talks with: its burst is over
            msg = m.FloorIdle(g.name, burst_id)
        self._send(s, msg)

    def admin_reply(
        self,
        cmd: AdminCommand,
        now: float,
        result: dict[str, object] | None = None,
        error: tuple[m.ErrorCode, str] | None = None,
    ) -> None:
        """Answer an AdminCommand once the adapter has executed it."""
        if error is not None:
            reply: m.Message = m.Error(cmd.txn, error[0], error[1])
        else:
            reply = m.AdminResponse(cmd.txn, result or {})  # type: ignore[arg-type]
        s = self.sessions.by_id.get(cmd.session_id)
        if s is None or s.addr != cmd.addr:
            self._drop(cmd.addr, f"answer for a session that ended: {cmd.op}")
            return
        self._answer(s, cmd.txn, reply, now)

    # --- dispatch -----------------------------------------------------------------------------

    def _on_session_message(self, s: Session, msg: m.Message, now: float) -> None:
        if isinstance(msg, m.Heartbeat):  # not the fast path's shape, still a heartbeat
            self._send(s, m.HeartbeatAck(msg.txn))
        elif isinstance(msg, m.Bye):
            self._answer(s, msg.txn, m.Ack(msg.txn), now)
            self._end_session(s, "bye", now)
        elif isinstance(msg, m.Join):
            self._on_join(s, msg, now)
        elif isinstance(msg, m.Leave):
            self._leave(s, msg.group, now)
            self._answer(s, msg.txn, m.Left(msg.txn, msg.group), now)
        elif isinstance(msg, m.FloorRequest):
            self._on_floor_request(s, msg, now)
        elif isinstance(msg, m.FloorRelease):
            f = self.floors.floor(msg.group) if msg.group in self.groups else None
            # a give-back naming an older burst (a resent grant) must not end the current one
            stale = (f is not None and msg.burst_id != 0 and f.holder == s.user
                     and f.burst_id != msg.burst_id)
            if f is not None and not stale:
                self._floor_events(self.floors.release(msg.group, s.user, now), now)
            self._answer(s, msg.txn, m.FloorReleased(msg.txn, msg.group), now)
        elif isinstance(msg, m.Call):
            self._on_call(s, msg, now)
        elif isinstance(msg, m.Admin) and msg.op == VOICE_PATH_OP:
            self._on_voice_path(s, msg, now)
        elif isinstance(msg, m.Admin):
            if s.role != m.Role.COORDINATOR and msg.op not in ("group.list", "group.show"):
                self._answer(s, msg.txn, m.Error(msg.txn, m.ErrorCode.FORBIDDEN,
                                                      "not a coordinator"), now)
                return
            self._events.append(AdminCommand(s.session_id, s.user, s.role, msg.op,
                                             dict(msg.args), msg.txn, s.addr))

    # --- login --------------------------------------------------------------------------------

    def _on_hello(self, msg: m.Hello, addr: Addr, now: float) -> None:
        if len(msg.client_nonce) != auth.NONCE_SIZE:
            self._drop(addr, "hello with a short nonce")
            return
        user = self.users.get(msg.user)
        if user is not None:
            salt, iterations = user.salt, user.iterations
        else:  # answer alike for unknown users, so names cannot be probed
            salt = auth.decoy_salt(self._secret, msg.user)
            iterations = auth.DEFAULT_ITERATIONS
        server_nonce = self._entropy(16)
        if len(self._pending_login) >= LOGIN_PENDING_MAX:
            self._expire_logins(now)
        self._pending_login[(addr, msg.client_nonce)] = (server_nonce, now + LOGIN_PENDING_TTL)
        self._reply_plain(addr, msg.txn, m.Challenge(msg.txn, server_nonce, salt, iterations), now)

    def _expire_logins(self, now: float) -> None:
        for k in [k for k, (_, until) in self._pending_login.items() if until < now]:
            del self._pending_login[k]
        while len(self._pending_login) >= LOGIN_PENDING_MAX:
            del self._pending_login[next(iter(self._pending_login))]

    def _on_login(self, msg: m.Login, addr: Addr, now: float) -> None:
        pending = self._pending_login.pop((addr, msg.client_nonce), None)
        user = self.users.get(msg.user)
        ok = (
            pending is not None
            and pending[1] >= now
            and hmac.compare_digest(pending[0], msg.server_nonce)
            and user is not None
            and auth.verify_proof(
                user.verifier, msg.client_nonce, msg.server_nonce, msg.user, msg.proof
            )
        )
        if not ok or user is None:
            self._reply_plain(addr, msg.txn, m.Error(msg.txn, m.ErrorCode.AUTH_FAILED,
                                                     "login failed: wrong user or token"), now)
            return
        for old in {self.sessions.by_user.get(user.name), self.sessions.by_addr.get(addr)}:
            if old is not None:
                self._end_session(old, "replaced", now)
        sid = self._new_session_id()
        key = auth.session_key(user.verifier, msg.client_nonce, msg.server_nonce)
        s = Session(sid, user.name, user.role, addr, now, key,
                    channel=SecureChannel(Role.SERVER, key, user.name, sid))
        self.sessions.add(s)
        self._limiter.forget(addr[:2])  # its traffic is sealed now and charged to the session
        self._events.append(SessionStarted(user.name, sid, addr))
        groups = sorted(n for n, g in self.groups.items() if user.name in g.members)
        # sealed: a Welcome that opens proves to the client that this server holds its verifier
        self._answer(s, msg.txn, m.Welcome(
            msg.txn, sid, user.role, int(self.config.heartbeat * 1000),
            int(self.config.session_timeout * 1000), groups), now)
        # the Login's resend (the Welcome was lost) is plain: answer it from the cache too, but
        # like any plain datagram only if the Welcome fits in it (else it logs in afresh)
        self._cache.put((addr, msg.txn), self._out[-1][0], now)

    def _new_session_id(self) -> int:
        while True:
            sid = int.from_bytes(self._entropy(4), "big")
            if sid and sid not in self.sessions.by_id:
                return sid

    def _end_session(self, s: Session, reason: str, now: float) -> None:
        for group in list(s.joined):
            self._leave(s, group, now, lost=reason != "bye")
        self.sessions.remove(s)
        self._reliable.cancel_where(s)
        self._events.append(SessionEnded(s.user, s.session_id, reason))

    # --- groups -------------------------------------------------------------------------------

    def _on_join(self, s: Session, msg: m.Join, now: float) -> None:
        g = self.groups.get(msg.group)
        if g is None or s.user not in g.members:
            code = m.ErrorCode.NOT_FOUND if g is None else m.ErrorCode.NOT_MEMBER
            text = (f"unknown group '{msg.group}'" if g is None
                    else f"'{s.user}' is not a member of '{msg.group}'")
            self._answer(s, msg.txn, m.Error(msg.txn, code, text), now)
            return
        if s.user not in g.joined:
            g.joined[s.user] = s
            s.joined.add(g.name)
            g.targets.clear()
            self._announce(g, m.Presence(g.name, s.user, True), skip=s)
            self._events.append(MemberJoined(g.name, s.user))
        self._answer(s, msg.txn, m.Joined(msg.txn, self.group_state(g.name),
                                               g.grants.get(s.user, b"")), now)

    def _leave(self, s: Session, group: str, now: float, lost: bool = False) -> None:
        g = self.groups.get(group)
        s.joined.discard(group)
        if g is None or g.joined.get(s.user) is not s:
            return
        del g.joined[s.user]
        g.mcast_members.discard(s.user)
        g.targets.clear()
        handler = self.floors.participant_lost if lost else self.floors.release
        self._floor_events(handler(group, s.user, now), now)
        self._announce(g, m.Presence(group, s.user, False))
        self._events.append(MemberLeft(group, s.user))
        if g.private and not g.joined:
            self.remove_group(group, now)

    def _on_call(self, s: Session, msg: m.Call, now: float) -> None:
        peer = self.sessions.by_user.get(msg.peer)
        if peer is None or msg.peer == s.user:
            text = "you cannot call yourself" if msg.peer == s.user else (
                f"user '{msg.peer}' is not online")
            self._answer(s, msg.txn, m.Error(msg.txn, m.ErrorCode.NOT_FOUND, text), now)
            return
        a, b = sorted((s.user, msg.peer))
        name = f"call:{a}+{b}"
        if name not in self.groups:
            self._next_private += 1
            self.upsert_group(name, self._next_private, self.config.floor.max_talk, private=True)
            self.set_member(name, a)
            self.set_member(name, b)
        self._answer(s, msg.txn, m.CallResponse(msg.txn, name), now)
        self._send_reliable(peer, lambda txn: m.IncomingCall(txn, name, s.user), now)

    def _on_voice_path(self, s: Session, msg: m.Admin, now: float) -> None:
        """A member asks to be served by multicast (after its probe came back) or by relay. The
        answer says what the server now does: ``{"group", "multicast"}`` (+ ``"error"``)."""
        name = msg.args.get("group")
        g = self.groups.get(name) if isinstance(name, str) else None
        result: dict[str, str | bool] = {"group": str(name), "multicast": False}
        if g is None or g.joined.get(s.user) is not s:
            result["error"] = f"you have not joined '{name}'"
        else:
            multicast = msg.args.get("multicast") is True and g.multicast_target() is not None
            if multicast != (s.user in g.mcast_members):
                (g.mcast_members.add if multicast else g.mcast_members.discard)(s.user)
                g.targets.clear()
            result["multicast"] = multicast
        self._answer(s, msg.txn, m.AdminResponse(msg.txn, result), now)  # type: ignore[arg-type]
        if g is not None and result["multicast"]:  # moved mid-burst: whose frames to play
            f = self.floors.floor(g.name)
            self._holder_notice(g, f.holder, f.burst_id, [s])

    # --- floor --------------------------------------------------------------------------------

    def _on_floor_request(self, s: Session, msg: m.FloorRequest, now: float) -> None:
        g = self.groups.get(msg.group)
        if g is None:
            self._answer(s, msg.txn, m.Error(msg.txn, m.ErrorCode.NOT_FOUND,
                                                  f"unknown group '{msg.group}'"), now)
            return
        prio = msg.priority
        if (prio == m.Priority.HIGH and s.role not in HIGH_ROLES) or (
                prio == m.Priority.EMERGENCY and s.role not in EMERGENCY_ROLES):
            reply = m.FloorResponse(msg.txn, g.name, m.FloorResult.DENIED,
                                    cause=m.DenyCause.NOT_ALLOWED)
            self._answer(s, msg.txn, reply, now)
            # reported like any other denial, so logs, counters and metrics see it
            self._events.append(FloorRequested(g.name, s.user, prio))
            self._events.append(FloorEvent(fl.Denied(g.name, s.user, m.DenyCause.NOT_ALLOWED)))
            return
        if prio == m.Priority.NORMAL and s.role in HIGH_ROLES:
            prio = m.Priority.HIGH
        self._events.append(FloorRequested(g.name, s.user, prio))
        events = self.floors.request(g.name, s.user, prio, now)
        reply = None
        rest = []
        direct: fl.Granted | None = None
        for ev in events:
            if reply is None and getattr(ev, "user", None) == s.user:
                if isinstance(ev, fl.Granted) and not ev.from_queue:
                    reply = m.FloorResponse(msg.txn, g.name, m.FloorResult.GRANTED,
                                            burst_id=ev.burst_id,
                                            max_talk_ms=int(ev.max_talk * 1000))
                elif isinstance(ev, fl.Queued):
                    reply = m.FloorResponse(msg.txn, g.name, m.FloorResult.QUEUED,
                                            position=ev.position)
                elif isinstance(ev, fl.Denied):
                    reply = m.FloorResponse(msg.txn, g.name, m.FloorResult.DENIED,
                                            cause=ev.cause)
            if isinstance(ev, fl.Granted) and ev.user == s.user and not ev.from_queue:
                direct = ev
                continue
            rest.append(ev)
        if reply is None:  # cannot happen with a correct floor; never leave a request unanswered
            reply = m.FloorResponse(msg.txn, g.name, m.FloorResult.DENIED,
                                    cause=m.DenyCause.RETRY_LATER)
        if reply.result == m.FloorResult.QUEUED:
            g.last_queue = self.floors.floor(g.name).queue
        # multicast listeners learn the holder before its first frame can reach them; then the
        # answer, which the requester waits on; then the news for everyone else
        if direct is not None:
            self._notice_holder(g, direct)
        self._answer(s, msg.txn, reply, now)
        if direct is not None:
            self._events.append(FloorEvent(direct))
            self._granted(g, direct, now, requester=s)
        self._floor_events(rest, now)

    def _floor_events(self, events: list[object], now: float, group: GroupEntry | None = None) -> None:
        for ev in events:
            self._events.append(FloorEvent(ev))
            g = self.groups.get(getattr(ev, "group", "")) or group
            if g is None:
                continue
            if isinstance(ev, fl.Granted):
                self._granted(g, ev, now)
            elif isinstance(ev, fl.Revoked):
                self._revoke(ev.user, g.name, ev.burst_id, ev.cause, ev.grace, now)
            elif isinstance(ev, fl.BurstEnded):
                g.targets.clear()
                if g.grant_key is not None and g.grant_burst == ev.burst_id:
                    self._reliable.ack(g.grant_key)  # never resend a grant for a burst that is over
                    g.grant_key = None
                cause = _END_TO_REVOKE.get(ev.reason)
                if cause is not None:
                    self._revoke(ev.user, g.name, ev.burst_id, cause, 0.0, now)
            elif isinstance(ev, fl.Idle):
                self._announce(g, m.FloorIdle(g.name, ev.burst_id))
            elif isinstance(ev, fl.QueueChanged):
                self._queue_changed(g, ev.queue)

    def _granted(self, g: GroupEntry, ev: fl.Granted, now: float,
                 requester: Session | None = None) -> None:
        """Tell the grantee (unless it asked just now and has its answer) and the group."""
        g.targets.clear()
        if requester is None:
            self._notice_holder(g, ev)  # before the grantee can start talking
            s = self.sessions.by_user.get(ev.user)
            if s is not None:
                window = int(self.config.floor.start_window * 1000)
                g.grant_key = self._send_reliable(s, lambda txn: m.FloorGranted(
                    txn, g.name, ev.burst_id, int(ev.max_talk * 1000), window), now)
                g.grant_burst = ev.burst_id
        self._announce(g, m.FloorTaken(g.name, ev.user, ev.burst_id, ev.priority,
                                       int(ev.max_talk * 1000)), skip=requester)

    def _notice_holder(self, g: GroupEntry, ev: fl.Granted) -> None:
        self._holder_notice(g, ev.user, ev.burst_id, [g.joined[u] for u in g.mcast_members])

    def _revoke(self, user: str, group: str, burst_id: int, cause: m.RevokeCause,
                grace: float, now: float) -> None:
        s = self.sessions.by_user.get(user)
        if s is not None:
            self._send_reliable(s, lambda txn: m.FloorRevoked(txn, group, burst_id, cause,
                                                              int(grace * 1000)), now)

    def _queue_changed(self, g: GroupEntry, queue: tuple[str, ...]) -> None:
        before = {u: i for i, u in enumerate(g.last_queue, 1)}
        for i, u in enumerate(queue, 1):
            if before.get(u) != i:
                self._send_to_user(u, m.QueuePosition(g.name, i))
        g.last_queue = queue

    # --- sending ------------------------------------------------------------------------------

    def _seal(self, s: Session, plain: bytes) -> bytes:
        assert s.channel is not None  # every session is made with its channel
        return s.channel.seal(plain)

    def _send(self, s: Session, msg: m.Message) -> None:
        """One sealed datagram to a session, not cached nor retransmitted."""
        self._out.append((self._seal(s, encode_message(msg)), s.addr))

    def _answer(self, s: Session, txn: int, msg: m.Message, now: float) -> None:
        """Answer a session's request; a retransmission of it gets the same sealed bytes, which
        the client's replay window accepts once (it takes them only if the first copy was lost)."""
        data = self._seal(s, encode_message(msg))
        self._cache.put((s.session_id, txn), data, now)
        self._out.append((data, s.addr))

    def _reply_plain(self, addr: Addr, txn: int, msg: m.Message, now: float,
                     cache: bool = True) -> None:
        """Answer a datagram that carries no session: only if no larger than it (no
        amplification: a spoofed source gains nothing by reflecting off the server)."""
        data = encode_message(msg)
        if not limits.answer_fits(self._req_len, data):
            self._drop(addr, f"no answer: {type(msg).__name__} larger than its request")
            return
        if cache:
            self._cache.put((addr, txn), data, now)
        self._out.append((data, addr))

    def _announce(self, g: GroupEntry, msg: m.Message, skip: Session | None = None) -> None:
        data = encode_message(msg)  # encoded once, sealed per member
        self._out.extend((self._seal(s, data), s.addr) for s in g.joined.values() if s is not skip)

    def _send_to_user(self, user: str, msg: m.Message) -> None:
        s = self.sessions.by_user.get(user)
        if s is not None:
            self._send(s, msg)

    def _send_reliable(self, s: Session, make: Callable[[int], m.Message], now: float
                       ) -> tuple[int, int]:
        """Send until acked; the plaintext is kept and sealed anew for every resend."""
        self._txn = (self._txn + 1) & 0x7FFFFFFF or 1
        plain = encode_message(make(self._txn))
        key = (s.session_id, self._txn)
        self._reliable.add(key, plain, s, now)
        self._out.append((self._seal(s, plain), s.addr))
        return key

    def _drop(self, addr: Addr, reason: str) -> None:
        """Report a dropped datagram. ``reason`` is "kind" or "kind: detail": the kind comes from
        a fixed set (counters key on it), only the detail may echo what the peer sent."""
        self._events.append(Dropped(addr, reason))


_END_TO_REVOKE = {
    fl.EndReason.SILENCE: m.RevokeCause.SILENCE,
    fl.EndReason.NO_START: m.RevokeCause.NO_START,
    fl.EndReason.REMOVED: m.RevokeCause.REMOVED,
}
