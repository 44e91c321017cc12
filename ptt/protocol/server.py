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

:class:`ServerCore` composes one module per concept, all mixins over the shared state of
:class:`~ptt.protocol.server_base.ServerBase`:

- ``server_gate``: the plain login (Hello/Challenge/Login), rate limits and the no-amplification
  rule for datagrams without a session, and sealed datagrams opened per session (the sealed
  control plane, ``docs/security.md``);
- ``server_groups``: the directory (users, groups, members) and sessions joining, leaving, calling;
- ``server_floor``: floor requests checked against roles (``ServerCoreConfig.emergency_roles``),
  floor events turned into answers and pushes;
- ``server_relay``: voice routing, relay targets, the multicast bridge and holder notices;
- ``server_keys``: the groups' key grants;
- ``server_feedback``: listeners' loss reports summed up per group for the talker;
- ``server_pages``: text pages checked, stored by the adapter before they are acknowledged,
  delivered once per device, with receipts;
- ``server_events``: the events out; ``server_base``: settings, state and sending.

This module keeps the entry points, the timers and the dispatch of session messages, and
re-exports every public name of those modules: import them from here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from ptt.crypto import limits
from ptt.crypto.channel import SEALED_MAGICS
from ptt.protocol import messages as m
from ptt.protocol.parts import FETCH_OP
from ptt.protocol.server_base import (
    EMERGENCY_ROLES,
    HIGH_ROLES,
    PRIVATE_GROUP_BASE,
    GroupEntry,
    ServerCoreConfig,
    UserEntry,
)
from ptt.protocol.server_delivery import RECEIPT_WAIT, DeliveryReports
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
from ptt.protocol.server_feedback import LinkFeedback
from ptt.protocol.server_floor import (
    _END_TO_REVOKE,  # noqa: F401 (tests compare)
    FloorControl,
)
from ptt.protocol.server_gate import LOGIN_PENDING_TTL, LoginGate
from ptt.protocol.server_groups import Directory
from ptt.protocol.server_keys import KeyGrants
from ptt.protocol.server_pages import PAGE_LIST_OP, PageEntry, TextPages
from ptt.protocol.server_relay import (
    ECHO_SEQ,
    HOLDER_SEQ,
    PROBE_SEQ,
    STALE_NOTICE_INTERVAL,
    VOICE_PATH_OP,
    VoiceRelay,
)
from ptt.protocol.session import Addr, Session
from ptt.wire.voice import VOICE_MAGIC

log = logging.getLogger(__name__)

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


class ServerCore(LoginGate, Directory, FloorControl, VoiceRelay, KeyGrants, LinkFeedback,
                 DeliveryReports, TextPages):
    """The whole server core: ``ServerCore(entropy, config)``; see the module docstring."""

    def __init__(self, entropy: Callable[[int], bytes],
                 config: ServerCoreConfig = ServerCoreConfig()) -> None:
        super().__init__(entropy, config)
        self._delivery_init()
        self._pages_init()

    def get_timer(self) -> float | None:
        timers = [
            t
            for t in (self.floors.get_timer(), self.sessions.get_timer(),
                      self._reliable.get_timer(), self._delivery_timer(), self._page_timer(),
                      self._repeats[0][0] if self._repeats else None,
                      self._presence_heap[0][0] if self._presence_heap else None)
            if t is not None
        ]
        return min(timers) if timers else None

    def handle_timer(self, now: float) -> None:
        for s in self.sessions.expired(now):
            self._end_session(s, "expired", now)
        self._floor_events(self.floors.handle_timer(now), now)
        self._repeat_floor_news(now)
        self._presence_batches_due(now)
        resend, expired = self._reliable.handle_timer(now)
        for plain, dest in resend:  # sealed anew: the client's window took the first copy
            if isinstance(dest, Session) and dest in (self.sessions.by_id.get(dest.session_id),
                                                      self._closed_unacked.get(dest.session_id)):
                self._out.append((self._seal(dest, plain), dest.addr))
        for e in expired:
            sid = e.key[0]
            if self._closed_unacked.pop(sid, None) is not None:
                continue  # its SessionClosed, never acknowledged: nothing more to end
            gone = self.sessions.by_id.get(sid)
            if gone is not None:
                log.info("no ack from %s for an acknowledged message; ending its session",
                         gone.user)
                self._end_session(gone, "expired", now)
        self._delivery_due(now)
        self._pages_due(now)
        self._cache.expire(now)

    def receive_datagram(self, data: bytes, addr: Addr, now: float) -> tuple[Addr, ...] | None:
        """Handle one datagram. For an accepted voice frame, returns the relay's destinations
        (possibly none); for anything else, None."""
        if not data or len(data) > limits.max_size(data):
            self._drop(addr, f"datagram size out of bounds: {len(data)} bytes")
            return None
        first = data[0]
        if first == VOICE_MAGIC:
            return self.route_voice(data, addr, now)
        if first in SEALED_MAGICS:
            self._receive_sealed(data, addr, now)
        else:
            self._receive_plain(data, addr, now)
        return None

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

    def _on_session_message(self, s: Session, msg: m.Message, now: float) -> None:
        """Dispatch a session's opened request (resends were answered from the cache)."""
        if isinstance(msg, m.Heartbeat):  # not the fast path's shape, still a heartbeat
            self._send(s, m.HeartbeatAck(msg.txn, self._digest(s)))
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
            self._on_floor_release(s, msg, now)
        elif isinstance(msg, m.BurstReceipt):
            self._on_burst_receipt(s, msg, now)
        elif isinstance(msg, m.Call):
            self._on_call(s, msg, now)
        elif isinstance(msg, m.PageSend):
            self._on_page_send(s, msg, now)
        elif isinstance(msg, m.PageSubscribe):
            self._on_page_subscribe(s, msg, now)
        elif isinstance(msg, m.PageReceipt):
            self._on_page_receipt(s, msg, now)
        elif isinstance(msg, m.Admin) and msg.op == PAGE_LIST_OP:
            self._on_page_list(s, msg, now)
        elif isinstance(msg, m.Admin) and msg.op == VOICE_PATH_OP:
            self._on_voice_path(s, msg, now)
        elif isinstance(msg, m.Admin):
            # anyone may fetch the parts of a large answer of its own (ptt.protocol.parts);
            # only a coordinator's requests are large enough to go in parts
            if s.role != m.Role.COORDINATOR and msg.op not in ("group.list", "group.show",
                                                                "group.keys", FETCH_OP):
                self._answer(s, msg.txn, m.Error(msg.txn, m.ErrorCode.FORBIDDEN,
                                                      "not a coordinator"), now)
                return
            self._events.append(AdminCommand(s.session_id, s.user, s.role, msg.op,
                                             dict(msg.args), msg.txn, s.addr))
