"""The state every part of the server core shares, its settings, and how it sends.

:class:`ServerBase` holds the directory (users, groups), the session table, the floors, the
transaction machinery and the two outputs (datagrams, events); the concept modules
(``server_gate``, ``server_groups``, ``server_floor``, ``server_relay``, ``server_keys``) are
mixins over it, and :class:`~ptt.protocol.server.ServerCore` composes them. Everything a session
is sent leaves through the helpers here, sealed with its channel: one datagram (``_send``), the
answer to a request, cached for its resends (``_answer``), the same news to a whole group
(``_announce``), or a reliable push resealed on every resend (``_send_reliable``).
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ptt.crypto import limits
from ptt.protocol import auth
from ptt.protocol import floor as fl
from ptt.protocol import messages as m
from ptt.protocol.feedback import LinkAggregate
from ptt.protocol.server_events import Dropped, ServerEvent
from ptt.protocol.session import (
    HEARTBEAT_INTERVAL,
    MAX_DEVICES,
    SESSION_TIMEOUT,
    Addr,
    Session,
    SessionTable,
)
from ptt.protocol.transactions import ResponseCache, Retransmitter
from ptt.protocol.wire import encode_message

PRIVATE_GROUP_BASE = 1 << 31  # wire ids of one-to-one call groups, never stored
# who may ask for emergency priority unless configured otherwise: a volunteer in trouble must be
# able to call (ServerCoreConfig.emergency_roles)
EMERGENCY_ROLES = frozenset({m.Role.VOLUNTEER, m.Role.DISPATCHER, m.Role.COORDINATOR})
HIGH_ROLES = frozenset({m.Role.DISPATCHER, m.Role.COORDINATOR})  # their NORMAL counts as HIGH
# floor news (taken, idle) goes to the group again this long after it changed, unless it changed
# again: at 30% random loss all 8 copies are lost one time in 15,000, and the heartbeat digest
# catches that member up. Blind copies beat acknowledged ones here (an ack can be lost too), and
# cost a few control datagrams per member per change, against 50 voice packets a second.
STATE_REPEATS = (0.2, 0.4, 0.6, 0.8, 1.1, 1.4, 1.7)


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
    # the sessions listening, by session id (a user may have several devices), and per user how
    # many: a member is online while it has one
    joined: dict[int, Session] = field(default_factory=dict)
    online: dict[str, int] = field(default_factory=dict)
    requesters: dict[str, int] = field(default_factory=dict)  # user -> its requesting session
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
    floor_news: m.FloorTaken | m.FloorIdle | None = None  # the latest, repeated (STATE_REPEATS)
    link: LinkAggregate | None = None  # listeners' reports of the current burst (loss feedback)
    burst_frames: int = 0  # voice frames of the current burst the relay accepted
    # members whose presence changed since the last PresenceBatch (server_groups), when that
    # batch left, and when the next is due (0.0: none is scheduled)
    presence_pending: dict[str, None] = field(default_factory=dict)
    presence_sent: float = float("-inf")
    presence_due: float = 0.0

    def sessions_of(self, user: str) -> list[Session]:
        """The user's sessions that joined this group."""
        return [s for s in self.joined.values() if s.user == user] if user in self.online else []

    def multicast_target(self) -> Addr | None:
        if self.mcast_ready and self.mcast_addr is not None and self.mode != "relay":
            return (self.mcast_addr, self.mcast_port)
        return None


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

    heartbeat: float = HEARTBEAT_INTERVAL
    session_timeout: float = SESSION_TIMEOUT
    floor: fl.FloorConfig = fl.FloorConfig()
    rate_limits: limits.RateLimits = limits.RateLimits()
    emergency_roles: frozenset[m.Role] = EMERGENCY_ROLES
    max_devices: int = MAX_DEVICES  # sessions per user at once (ServerConfig.max_devices)
    login_limits: limits.LoginLimits = limits.LoginLimits()


class ServerBase:
    """Shared state and sending; not used alone (see ``ptt.protocol.server.ServerCore``)."""

    def __init__(
        self,
        entropy: Callable[[int], bytes],
        config: ServerCoreConfig = ServerCoreConfig(),
    ) -> None:
        """``entropy(n)`` returns n random bytes (``os.urandom``); the core reads no clock."""
        self._entropy = entropy
        self.config = config
        # decoy salts and verifiers, stateless challenges; the adapter sets the stored one
        # (LoginGate.set_secret) so that decoys do not change when the server restarts
        self._secret = entropy(32)
        self.users: dict[str, UserEntry] = {}
        self.groups: dict[str, GroupEntry] = {}
        self._by_id: dict[int, GroupEntry] = {}
        self.sessions = SessionTable(config.session_timeout)
        self.floors = fl.FloorSet()
        self._used_nonces = auth.UsedNonces(auth.LOGIN_TTL + 2.0)  # > a stamp's whole life
        self._login_limits = limits.LoginLimiter(config.login_limits)
        self._known_hosts: dict[str, None] = {}  # hosts that logged in, in order (server_gate)
        # answers by (addr, txn) for plain requests, by (session id, txn) for sealed ones (sealed)
        self._cache: ResponseCache[tuple[object, int]] = ResponseCache()
        self._reliable: Retransmitter[tuple[int, int]] = Retransmitter()  # plaintext, to a Session
        # sessions ended with a SessionClosed not yet acknowledged, by id: kept only to resend
        # it and to open the client's Ack (server_gate), until the ack or RETRY_TOTAL
        self._closed_unacked: dict[int, Session] = {}
        self._limiter = limits.RateLimiter(config.rate_limits)
        # the same limits, apart, for hosts that logged in before: a flood spoofed from many
        # new addresses cannot spend their aggregate budget (server_gate.known_host); without
        # a share per prefix, so the clients behind one NAT address all come back at once
        self._known_limiter = limits.RateLimiter(config.rate_limits.unshared())
        self._req_len = 0  # size of the plain datagram being answered (no amplification)
        self._txn = 0
        self._out: list[tuple[bytes, Addr]] = []
        self._events: deque[ServerEvent] = deque()
        self._next_private = PRIVATE_GROUP_BASE
        self.relayed = b""  # the last accepted voice frame as it is forwarded (MAC removed)
        self.relayed_signed = b""  # ... to a multicast address: the talker's signature kept
        self._repeats: list[tuple[float, int, int]] = []  # (when, group id, version) to repeat
        self._presence_heap: list[tuple[float, int]] = []  # (when, group id): batches due
        self.voice_refused = 0  # voice for a burst that is not the holder's current one (metrics)

    if TYPE_CHECKING:  # what one concept calls in another; ServerCore composes them all
        def _floor_events(self, events: Sequence[object], now: float,
                          group: GroupEntry | None = None) -> None: ...  # server_floor
        def _notice_holder(self, g: GroupEntry, ev: fl.Granted) -> None: ...  # server_relay
        def _holder_notice(self, g: GroupEntry, user: str | None, burst_id: int,
                           to: list[Session]) -> None: ...  # server_relay
        def _end_session(self, s: Session, reason: str, now: float) -> None: ...  # server_groups
        def remove_group(self, name: str, now: float) -> None: ...  # server_groups
        def _ring_waiting_calls(self, s: Session, now: float) -> None: ...  # server_groups
        def _delivery_started(self, g: GroupEntry, ev: fl.Granted) -> None: ...  # server_delivery
        def _delivery_ended(self, g: GroupEntry, ev: fl.BurstEnded,
                            now: float) -> None: ...  # server_delivery
        def _on_session_message(self, s: Session, msg: m.Message,
                                now: float) -> None: ...  # server
        def _on_receiver_report(self, s: Session, r: m.ReceiverReport,
                                now: float) -> None: ...  # server_feedback
        def _call_refusal(self, s: Session, peer: str) -> str | None: ...  # server_groups
        def _retire_grants(self, group: str, epoch: int,
                           grants: dict[str, bytes]) -> None: ...  # server_pages
        def _on_acked(self, key: tuple[int, int], now: float) -> None: ...  # server_pages
        def _pages_joined(self, s: Session, now: float) -> None: ...  # server_pages
        def _pages_session_ended(self, s: Session) -> None: ...  # server_pages

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

    def _announce(self, g: GroupEntry, msg: m.Message, skip: Session | None = None,
                  skip_user: str | None = None) -> None:
        data = encode_message(msg)  # encoded once, sealed per member
        self._out.extend((self._seal(s, data), s.addr) for s in g.joined.values()
                         if s is not skip and s.user != skip_user)

    def _announce_floor(self, g: GroupEntry, news: m.FloorTaken | m.FloorIdle, now: float
                        ) -> None:
        """Floor news for the whole group, repeated at STATE_REPEATS while it is the latest:
        one lost datagram must not leave a member showing a talker who is long gone."""
        self._announce(g, news)
        g.floor_news = news
        for delay in STATE_REPEATS:
            heapq.heappush(self._repeats, (now + delay, g.group_id, news.version))

    def _repeat_floor_news(self, now: float) -> None:
        heap = self._repeats
        while heap and heap[0][0] <= now:
            _, gid, version = heapq.heappop(heap)
            g = self._by_id.get(gid)
            if g is not None and g.floor_news is not None and g.version == version:
                self._announce(g, g.floor_news)

    def _digest(self, s: Session) -> int:
        """HeartbeatAck.digest: the floor-state versions of the session's groups, summed."""
        groups = self.groups
        return sum(groups[n].version for n in s.joined if n in groups) & 0xFFFFFFFF

    def _send_to_user(self, user: str, msg: m.Message) -> None:
        """To every device of the user."""
        for s in self.sessions.devices(user):
            self._send(s, msg)

    def _floor_session(self, g: GroupEntry, user: str) -> Session | None:
        """The session that speaks for ``user`` on ``g``'s floor: the one granted the floor if
        the user holds it, else the one that asked last, else the user's newest."""
        holds = g.name in self.groups and self.floors.floor(g.name).holder == user
        sid = g.holder_sid if holds else 0
        s = self.sessions.by_id.get(sid or g.requesters.get(user, 0))
        if s is not None and s.user == user:
            return s
        return self.sessions.by_user.get(user)

    def _send_reliable(self, s: Session, make: Callable[[int], m.Message], now: float
                       ) -> tuple[int, int]:
        """Send until acked; the plaintext is kept and sealed anew for every resend."""
        return self._send_reliable_bytes(s, lambda txn: encode_message(make(txn)), now)

    def _send_reliable_bytes(self, s: Session, encode: Callable[[int], bytes], now: float
                             ) -> tuple[int, int]:
        """:meth:`_send_reliable` of a message already encoded but for its txn
        (``ptt.protocol.wire.encoder_of``)."""
        self._txn = (self._txn + 1) & 0x7FFFFFFF or 1
        plain = encode(self._txn)
        key = (s.session_id, self._txn)
        self._reliable.add(key, plain, s, now)
        self._out.append((self._seal(s, plain), s.addr))
        return key

    def _drop(self, addr: Addr, reason: str) -> None:
        """Report a dropped datagram. ``reason`` is "kind" or "kind: detail": the kind comes from
        a fixed set (counters key on it), only the detail may echo what the peer sent."""
        self._events.append(Dropped(addr, reason))
