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

:class:`ServerCore` is composed of one part per concept, each an object of its module's class
given, in its constructor, the one :class:`~ptt.protocol.server_state.ServerState` (settings,
directory, sessions, floors), the one :class:`~ptt.protocol.server_outbox.Outbox` (datagrams,
events, the response cache and the acknowledged pushes) and the parts it calls, so every call
between parts shows in the constructors (none calls back up the chain)::

    Relay, Delivery, Feedback, Pages      the state and the outbox only
    FloorControl  -> Relay, Delivery       holder notices, delivery reports
    Keys          -> Pages                 grants kept for retained pages
    Directory     -> FloorControl, Pages   a leaving member's floor, its page subscriptions
    Gate          -> Directory             sessions replaced, closed or given up

The parts:

- ``server_gate`` (``Gate``): the plain login (Hello/Challenge/Login), rate limits and the
  no-amplification rule for datagrams without a session, and sealed datagrams opened per
  session (the sealed control plane, ``docs/security.md``);
- ``server_groups`` (``Directory``): the directory (users, groups, members) and sessions
  joining, leaving, calling;
- ``server_floor`` (``FloorControl``): floor requests and releases translated for
  ``ptt.protocol.floor`` (which holds every floor rule, roles included), floor events turned
  into answers and pushes;
- ``server_relay`` (``Relay``): voice routing, relay targets, the multicast bridge and holder
  notices;
- ``server_keys`` (``Keys``): the groups' key grants;
- ``server_feedback`` (``Feedback``): listeners' loss reports summed up per group for the talker;
- ``server_delivery`` (``Delivery``): end-of-burst receipts turned into the talker's
  delivery report;
- ``server_pages`` (``Pages``): text pages checked, stored by the adapter before they are
  acknowledged, delivered once per device, with receipts;
- ``server_events``: the events out.

This module keeps the entry points, the timers (each timed part answers ``get_timer`` and
``handle_timer`` as the core does) and the dispatch of session messages, and re-exports the
public names of those modules: import them from here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ptt.crypto.channel import SEALED_MAGICS
from ptt.errors import ProtocolError
from ptt.protocol import limits
from ptt.protocol import messages as m
from ptt.protocol.floor import EMERGENCY_ROLES, HIGH_ROLES, FloorSet
from ptt.protocol.keepalive import expiry_check_at
from ptt.protocol.messages import RECEIPT_WAIT, VOICE_PATH_OP
from ptt.protocol.parts import FETCH_OP
from ptt.protocol.server_delivery import Delivery
from ptt.protocol.server_events import (
    AdminCommand,
    DeliveryReported,
    Dropped,
    FloorEvent,
    FloorRequested,
    GroupUpdated,
    MemberJoined,
    MemberLeft,
    PageDelivered,
    PageRead,
    PageStored,
    PageSubmitted,
    ServerEvent,
    SessionEnded,
    SessionMoved,
    SessionStarted,
)
from ptt.protocol.server_feedback import Feedback
from ptt.protocol.server_floor import FloorControl
from ptt.protocol.server_gate import LOGIN_PENDING_TTL, Gate
from ptt.protocol.server_groups import Directory
from ptt.protocol.server_keys import Keys
from ptt.protocol.server_outbox import Outbox
from ptt.protocol.server_pages import PAGE_LIST_OP, Pages
from ptt.protocol.server_relay import STALE_NOTICE_INTERVAL, Relay
from ptt.protocol.server_state import (
    PRIVATE_GROUP_BASE,
    GroupEntry,
    PageEntry,
    ServerCoreConfig,
    ServerState,
    UserEntry,
)
from ptt.protocol.session import Addr, Session, SessionTable
from ptt.wire.voice import ECHO_SEQ, HOLDER_SEQ, PROBE_SEQ, VOICE_MAGIC

__all__ = [
    "ECHO_SEQ",
    "EMERGENCY_ROLES",
    "HIGH_ROLES",
    "HOLDER_SEQ",
    "LOGIN_PENDING_TTL",
    "PRIVATE_GROUP_BASE",
    "PROBE_SEQ",
    "RECEIPT_WAIT",
    "STALE_NOTICE_INTERVAL",
    "VOICE_PATH_OP",
    "AdminCommand",
    "DeliveryReported",
    "Dropped",
    "FloorEvent",
    "FloorRequested",
    "GroupEntry",
    "GroupUpdated",
    "MemberJoined",
    "MemberLeft",
    "PageDelivered",
    "PageEntry",
    "PageRead",
    "PageStored",
    "PageSubmitted",
    "ServerCore",
    "ServerCoreConfig",
    "ServerEvent",
    "SessionEnded",
    "SessionMoved",
    "SessionStarted",
    "UserEntry",
]


class ServerCore:
    """The whole server core: ``ServerCore(entropy, config)``; see the module docstring."""

    def __init__(self, entropy: Callable[[int], bytes],
                 config: ServerCoreConfig = ServerCoreConfig()) -> None:
        self.state = state = ServerState(entropy, config)
        self.outbox = out = Outbox()
        self.relay = Relay(state, out)
        self.delivery = Delivery(state, out)
        self.feedback = Feedback(state, out)
        self.paging = Pages(state, out)
        self.floor_control = FloorControl(state, out, self.relay, self.delivery)
        self.keys = Keys(state, out, self.paging)
        self.directory = Directory(state, out, self.floor_control, self.paging)
        self.gate = Gate(state, out, self.directory)
        # the state's tables, read by the adapter, the administration and tests
        self.config: ServerCoreConfig = config
        self.users: dict[str, UserEntry] = state.users
        self.groups: dict[str, GroupEntry] = state.groups
        self.sessions: SessionTable = state.sessions
        self.floors: FloorSet = state.floors
        self.pages: dict[int, PageEntry] = self.paging.pages

    # --- outputs ------------------------------------------------------------------------------

    def datagrams_to_send(self) -> list[tuple[bytes, Addr]]:
        return self.outbox.take_datagrams()

    def has_output(self) -> bool:
        """Cheap check for the relay's hot path: anything to send or report?"""
        out = self.outbox
        return bool(out.datagrams or out.events)

    def events(self) -> list[ServerEvent]:
        return self.outbox.take_events()

    # --- timers -------------------------------------------------------------------------------

    def get_timer(self) -> float | None:
        timers = [
            t
            for t in (self.floors.get_timer(), self.sessions.get_timer(),
                      self.outbox.reliable.get_timer(), self.delivery.get_timer(),
                      self.paging.get_timer(), self.floor_control.get_timer(),
                      self.directory.get_timer())
            if t is not None
        ]
        cache = self.outbox.cache.get_timer()
        if cache is not None:  # on the sessions' grid: a login burst wakes the loop 4 times a second
            timers.append(expiry_check_at(cache))
        return min(timers) if timers else None

    def handle_timer(self, now: float) -> None:
        for s in self.sessions.expired(now):
            self.directory.end_session(s, "expired", now)
        self.floor_control.handle_timer(now)
        self.directory.handle_timer(now)
        self.gate.handle_timer(now)
        self.delivery.handle_timer(now)
        self.paging.handle_timer(now)
        self.outbox.cache.expire(now)

    # --- datagrams in -------------------------------------------------------------------------

    def receive_datagram(self, data: bytes, addr: Addr, now: float) -> tuple[Addr, ...] | None:
        """Handle one datagram. For an accepted voice frame, returns the relay's destinations
        (possibly none); for anything else, None."""
        if not data or len(data) > limits.max_size(data):
            self.outbox.drop(addr, f"datagram size out of bounds: {len(data)} bytes")
            return None
        first = data[0]
        if first == VOICE_MAGIC:
            return self.relay.route_voice(data, addr, now)
        if first in SEALED_MAGICS:
            opened = self.gate.receive_sealed(data, addr, now)
            if opened is not None:
                self._on_opened(opened[0], opened[1], addr, now)
        else:
            self.gate.receive_plain(data, addr, now)
        return None

    def route_voice(self, data: bytes, addr: Addr, now: float) -> tuple[Addr, ...] | None:
        """The relay's hot path (``Relay.route_voice``)."""
        return self.relay.route_voice(data, addr, now)

    def receive_multicast(self, data: bytes, addr: Addr, now: float) -> tuple[Addr, ...] | None:
        """Voice heard on a group's multicast address (``Relay.receive_multicast``)."""
        return self.relay.receive_multicast(data, addr, now)

    @property
    def relayed(self) -> bytes:
        """The last accepted voice frame as it is forwarded (the session MAC removed)."""
        return self.relay.relayed

    @property
    def relayed_signed(self) -> bytes:
        """The same frame as it goes to a multicast address (the talker's signature kept)."""
        return self.relay.relayed_signed

    @property
    def voice_refused(self) -> int:
        """Voice frames refused for a burst that is not the holder's current one (metrics)."""
        return self.relay.voice_refused

    def _on_opened(self, s: Session, msg: m.Message, addr: Addr, now: float) -> None:
        """A sealed datagram the gate opened and did not answer itself."""
        if isinstance(msg, m.Ack):
            key = (s.session_id, msg.txn)
            if self.outbox.reliable.ack(key):
                self.paging.on_acked(key, now)
        elif isinstance(msg, m.ReceiverReport):
            self.feedback.on_receiver_report(s, msg, now)
        else:
            try:
                self._on_session_message(s, msg, now)
            except ProtocolError as exc:
                self.outbox.drop(addr, f"refused request: {exc}")

    def _on_session_message(self, s: Session, msg: m.Message, now: float) -> None:
        """Dispatch a session's opened request (resends were answered from the cache)."""
        out = self.outbox
        if isinstance(msg, m.Heartbeat):  # not the fast path's shape, still a heartbeat
            out.send(s, m.HeartbeatAck(msg.txn, self.state.digest(s)))
        elif isinstance(msg, m.Bye):
            out.answer(s, msg.txn, m.Ack(msg.txn), now)
            self.directory.end_session(s, "bye", now)
        elif isinstance(msg, m.Join):
            self.directory.on_join(s, msg, now)
        elif isinstance(msg, m.Leave):
            self.directory.leave(s, msg.group, now)
            out.answer(s, msg.txn, m.Left(msg.txn, msg.group), now)
        elif isinstance(msg, m.FloorRequest):
            self.floor_control.on_floor_request(s, msg, now)
        elif isinstance(msg, m.FloorRelease):
            self.floor_control.on_floor_release(s, msg, now)
        elif isinstance(msg, m.BurstReceipt):
            self.delivery.on_burst_receipt(s, msg, now)
        elif isinstance(msg, m.Call):
            self.directory.on_call(s, msg, now)
        elif isinstance(msg, m.PageSend):
            self.paging.on_page_send(s, msg, now)
        elif isinstance(msg, m.PageSubscribe):
            self.paging.on_page_subscribe(s, msg, now)
        elif isinstance(msg, m.PageReceipt):
            self.paging.on_page_receipt(s, msg, now)
        elif isinstance(msg, m.Admin) and msg.op == PAGE_LIST_OP:
            self.paging.on_page_list(s, msg, now)
        elif isinstance(msg, m.Admin) and msg.op == VOICE_PATH_OP:
            self.relay.on_voice_path(s, msg, now)
        elif isinstance(msg, m.Admin):
            # anyone may fetch the parts of a large answer of its own (ptt.protocol.parts);
            # only a coordinator's requests are large enough to go in parts
            if s.role != m.Role.COORDINATOR and msg.op not in ("group.list", "group.show",
                                                                "group.keys", FETCH_OP):
                out.answer(s, msg.txn, m.Error(msg.txn, m.ErrorCode.FORBIDDEN,
                                               "not a coordinator"), now)
                return
            out.emit(AdminCommand(s.session_id, s.user, s.role, msg.op, dict(msg.args), msg.txn,
                                  s.addr))

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
            self.outbox.drop(cmd.addr, f"answer for a session that ended: {cmd.op}")
            return
        self.outbox.answer(s, cmd.txn, reply, now)

    # --- the gate: logins, known hosts, restarts ---------------------------------------------

    def set_access_servers(self, servers: list[str]) -> None:
        """A cluster's live access nodes (HOST:PORT), told to each client in its Welcome."""
        self.state.access = list(servers)

    def set_secret(self, secret: bytes) -> None:
        """The server's long-term secret (``Gate.set_secret``)."""
        self.gate.set_secret(secret)

    def known_host(self, addr: Addr) -> bool:
        """Has a session come from this host lately (``Gate.known_host``)?"""
        return self.gate.known_host(addr)

    def patient_login(self, data: bytes) -> bool:
        """Does the client of this plain datagram wait past ``LOGIN_TRY`` (``Gate.patient_login``)?"""
        return self.gate.patient_login(data)

    def plain_budget(self, addr: Addr, now: float) -> bool:
        """May a plain datagram from ``addr`` pass the aggregate limit now (``Gate``)?"""
        return self.gate.plain_budget(addr, now)

    def announce_restart(self, addrs: Sequence[Addr], now: float, spread: float = 0.0,
                         repeat: bool = False) -> int:
        """Tell the clients of the last run their sessions are gone (``Gate``)."""
        return self.gate.announce_restart(addrs, now, spread, repeat)

    def bind_nonces(self, label: str) -> None:
        """Bind this server's nonces to a cluster node's id (``Gate.bind_nonces``)."""
        self.gate.bind_nonces(label)

    # --- the directory, kept in step with the store by the adapter ---------------------------

    def upsert_user(self, name: str, role: m.Role, salt: bytes, iterations: int,
                    verifier: bytes) -> None:
        self.directory.upsert_user(name, role, salt, iterations, verifier)

    def remove_user(self, name: str, now: float) -> None:
        self.directory.remove_user(name, now)

    def upsert_group(self, name: str, group_id: int, max_talk: float, mode: str = "relay",
                     private: bool = False, mcast_addr: str | None = None,
                     mcast_port: int = 0) -> None:
        self.directory.upsert_group(name, group_id, max_talk, mode, private, mcast_addr,
                                    mcast_port)

    def remove_group(self, name: str, now: float) -> None:
        self.directory.remove_group(name, now)

    def set_member(self, group: str, user: str, listen_only: bool = False,
                   now: float = 0.0) -> None:
        """Add a member, or change its listen-only flag (``Directory.set_member``)."""
        self.directory.set_member(group, user, listen_only, now)

    def remove_member(self, group: str, user: str, now: float) -> None:
        self.directory.remove_member(group, user, now)

    def group_state(self, name: str, budget: int | None = None) -> m.GroupState:
        """The group as a member sees it (``Directory.group_state``)."""
        return self.directory.group_state(name, budget)

    def devices_in(self, group: str, user: str) -> list[str]:
        """The device ids of ``user``'s sessions in ``group``, oldest login first."""
        return self.directory.devices_in(group, user)

    def online_users(self) -> set[str]:
        return self.directory.online_users()

    def set_multicast_ready(self, group: str, ready: bool) -> None:
        """The adapter does (or no longer does) listen on the group's multicast address."""
        self.relay.set_multicast_ready(group, ready)

    # --- group keys ---------------------------------------------------------------------------

    def set_group_key(self, group: str, epoch: int, grants: dict[str, bytes], now: float) -> None:
        """A coordinator uploaded ``group``'s key for ``epoch`` (``Keys.set_group_key``)."""
        self.keys.set_group_key(group, epoch, grants, now)

    def group_key(self, group: str) -> tuple[int, dict[str, bytes]]:
        """``(epoch, grants)`` of ``group`` (0 and no grants before the first upload)."""
        return self.keys.group_key(group)

    # --- text pages, stored by the adapter ----------------------------------------------------

    def load_page(self, page: PageEntry, cursors: dict[tuple[str, str], int] | None = None
                  ) -> None:
        """A retained page from the store (at start, in id order), with its receipts."""
        self.paging.load_page(page, cursors)

    def load_cursors(self, cursors: dict[tuple[str, str], int]) -> None:
        self.paging.load_cursors(cursors)

    def keep_grants(self, group: str, epoch: int, grants: dict[str, bytes]) -> None:
        """Grants of an epoch of ``group`` that retained pages were sealed with."""
        self.paging.keep_grants(group, epoch, grants)

    def forget_pages(self, page_ids: list[int]) -> None:
        """Pages whose retention ended (the adapter deleted them from the store)."""
        self.paging.forget_pages(page_ids)

    def page_stored(self, ev: PageSubmitted, page_id: int, sent_ms: int, now: float) -> None:
        """The adapter committed the page ``ev`` asked for (``Pages.page_stored``)."""
        self.paging.page_stored(ev, page_id, sent_ms, now)

    def page_failed(self, ev: PageSubmitted, message: str, now: float) -> None:
        """The adapter could not store the page: the sender is told it was not accepted."""
        self.paging.page_failed(ev, message, now)

    def page_cursor(self, user: str, device: str) -> int:
        return self.paging.page_cursor(user, device)
