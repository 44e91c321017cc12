"""The client's asyncio adapter: one UDP socket to the server around a :class:`ClientCore`.

::

    async with Connection(("127.0.0.1", 7700), "ann", token) as conn:   # logs in
        state = await conn.join("volunteers")
        outcome = await conn.request_floor("volunteers")     # granted, queued or denied
        conn.send_voice(datagram)                             # while granted
        await conn.release_floor("volunteers")

Voice datagrams from the relay go to ``on_voice``; every protocol event goes to each queue made by
:meth:`subscribe`. The connection re-registers by itself after a server restart or an outage.

Multicast. A group in ``multicast`` or ``auto`` mode is joined on the relay first (so a member who
joins mid-burst hears the talker at once), then the connection joins the group's multicast address
and probes it: a PROBE datagram to the group that the server, which listens there, echoes back
to the group. When the echo comes back within ``PROBE_TIMEOUT`` the server is asked (member
operation ``VOICE_PATH_OP``) to stop relaying to this member, and voice for the group is sent to
the group address; otherwise the group stays on the relay. Either way a :class:`VoicePathChosen` event says which, and why
(:meth:`voice_path` tells it later). In ``multicast`` mode a missing interface or route is an
error (``join`` raises NetError); in ``auto`` mode it is a reason to use the relay.
Multicast frames are played only if they belong to the burst the server announced, from the
holder's session the server named in its holder notice, and in an encrypted group only with the
holder's own signature (:attr:`talker_check`); the rest is dropped and counted in
:attr:`voice_stats`. A revoke for silence while talking by multicast means the server no longer
hears the group (its mode changed): the connection probes again, and falls back to the relay.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import asyncio_dgram

from ptt.client.receipts import Receipts
from ptt.errors import AuthError, NetError, ProtocolError, RequestError, ValidationError
from ptt.names import format_hostport
from ptt.net.member import MemberSockets
from ptt.net.multicast import MulticastOptions
from ptt.protocol import client as cl
from ptt.protocol import messages as m
from ptt.protocol import parts
from ptt.protocol.server import ECHO_SEQ, HOLDER_SEQ, PROBE_SEQ, VOICE_PATH_OP
from ptt.protocol.transactions import RETRY_TOTAL
from ptt.wire.voice import (
    VoiceFlags,
    VoiceHeader,
    add_mac,
    encode_voice,
    is_probe,
    is_voice,
    peek_group,
    peek_route,
    peek_seq,
    strip_mac,
)

if TYPE_CHECKING:
    from ptt.config import ClientConfig
    from ptt.media.receiver import LossReport

log = logging.getLogger("ptt.client")

CONNECT_TIMEOUT = 6.0
REFUSED = "connection refused"
PROBE_TIMEOUT = 1.0  # no echo by then: the group stays on the relay
PROBE_INTERVAL = 0.25  # probes are datagrams too: send a few
CONFIRM_TIMEOUT = 3.0  # after the echo, for the server's answer to the voice path request
RELEASE_WAIT = RETRY_TOTAL + 0.5  # for the server's answer to a release (it is retransmitted)
STOP_RELEASE_WAIT = 2.0  # the same after a stop key: the command must end soon
RELAY, PROBING, MULTICAST = "relay", "probing", "multicast"


@dataclass(frozen=True, slots=True)
class VoicePathChosen:
    """How this client gets and sends ``group``'s voice: ``path`` is "multicast" or "relay";
    ``reason`` says why (e.g. the route that is missing), for the user to see."""

    group: str
    path: str
    reason: str = ""


@dataclass
class VoiceStats:
    """Voice datagrams this connection handled; ``dropped`` were not played."""

    relay_in: int = 0  # from the server (which forwards only the holder's current burst)
    multicast_in: int = 0  # from a group address, of the announced burst from its holder
    not_holder: int = 0  # from a group address, sent by a member who does not hold the floor
    wrong_burst: int = 0  # from the holder, but not of the burst the server announced
    own: int = 0  # our own multicast, looped back (not counted as dropped)
    malformed: int = 0
    relay_out: int = 0
    multicast_out: int = 0
    probes: int = 0
    unsigned: int = 0  # from a group address, of an encrypted group: not the holder's signature

    @property
    def dropped(self) -> int:
        return self.not_holder + self.wrong_burst + self.malformed + self.unsigned


@dataclass
class _GroupPath:
    group: str
    group_id: int = 0
    mode: str = "relay"
    dest: tuple[str, int] | None = None
    path: str = RELAY
    reason: str = ""
    error: NetError | None = None
    nonce: int = 0
    probe_until: float = 0.0
    txn: int = 0  # of the pending voice path request
    timer: asyncio.TimerHandle | None = field(default=None, repr=False)


def multicast_options(config: ClientConfig) -> MulticastOptions:
    """The connection's multicast settings from the client config (its ``multicast``,
    ``multicast_interface`` and ``multicast_ttl``)."""
    return MulticastOptions(config.multicast_interface, config.multicast_ttl, config.multicast)

_FAILURE_TEXT = {
    m.DenyCause.NOT_MEMBER: "you are not a member of this group",
    m.DenyCause.LISTEN_ONLY: "you are a listen-only member of this group",
    m.DenyCause.QUEUE_FULL: "the queue is full",
    m.DenyCause.RETRY_LATER: "the floor is busy: try again later",
    m.DenyCause.NOT_ALLOWED: "your role may not use that priority",
}


def deny_text(cause: m.DenyCause) -> str:
    return _FAILURE_TEXT.get(cause, cause.name.lower().replace("_", " "))


_CONNECTIONS = itertools.count(1)


def device_id() -> str:
    """This connection's device id: host, process and connection number. Every process is a
    device of its own, so a user's one-shot command (``ptt group list``) never replaces the
    session of its ``ptt listen``; a connection logging in again keeps its id, and replaces
    only the session it had."""
    host = socket.gethostname()[:40] or "host"
    return f"{host}/{os.getpid()}.{next(_CONNECTIONS)}"


def _bound(local: tuple[str, int], server: tuple[str, int]) -> socket.socket:
    """A UDP socket sending from ``local`` to ``server`` only."""
    sock = socket.socket(socket.AF_INET6 if ":" in local[0] else socket.AF_INET,
                         socket.SOCK_DGRAM)
    try:
        sock.bind(local)
        sock.connect(server)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class Connection:
    def __init__(self, server: tuple[str, int], user: str, token: str,
                 multicast: MulticastOptions | None = None, *,
                 local: tuple[str, int] | None = None) -> None:
        self.server = server
        self.local = local  # the address to send from (host, port); None: the system's choice
        self.core = cl.ClientCore(user, token, os.urandom, device_id())
        self.on_voice: Callable[[bytes], None] | None = None
        # (group, holder's user name, frame) -> may a frame heard on a multicast address be
        # played? Set by ptt.client.keys.VoiceKeys, which holds the talker keys
        self.talker_check: Callable[[str, str, bytes], bool] | None = None
        self.voice_stats = VoiceStats()
        self._mcast = MemberSockets(multicast or MulticastOptions(), self._on_group_datagram)
        self._paths: dict[str, _GroupPath] = {}
        self._by_id: dict[int, _GroupPath] = {}
        self._on_multicast: dict[int, tuple[str, int]] = {}  # group id -> address, if multicast
        self._holders: dict[int, tuple[int, int]] = {}  # group id -> (holder session, burst)
        self._extra: list[Any] = []
        self._stream: Any = None
        self._recv_task: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._queues: list[asyncio.Queue[cl.ClientEvent]] = []
        self._closed = False
        self._logged_in = False  # before the first login, "connection refused" ends open()
        self._grants: dict[str, tuple[int, bytes]] = {}  # group -> newest (epoch, grant)
        self._grant_callbacks: list[Callable[[str, int, bytes], None]] = []
        self.receipts = Receipts(self)  # players report what they heard; receipts go out
        # called (soon after, from the loop) with each text page pushed to this client
        self.page_handlers: list[Callable[[m.PagePush], None]] = []

    @property
    def user(self) -> str:
        return self.core.user

    @property
    def token(self) -> str:
        """The user's token, from which the client derives its identity (never sent)."""
        return self.core.token

    @property
    def connected(self) -> bool:
        return self.core.conn is cl.ConnState.CONNECTED

    # --- lifecycle ----------------------------------------------------------------------------

    async def open(self, timeout: float = CONNECT_TIMEOUT) -> cl.Connected:
        """Log in; NetError if the server does not answer, AuthError if it refuses."""
        where = format_hostport(*self.server)
        try:
            if self.local is None:
                self._stream = await asyncio_dgram.connect(self.server)
            else:
                self._stream = await asyncio_dgram.from_socket(_bound(self.local, self.server))
        except OSError as exc:
            raise NetError(f"cannot reach server at {where}: {exc.strerror or exc}") from None
        self._recv_task = asyncio.create_task(self._recv_loop())
        q = self.subscribe()
        try:
            self.core.connect(self._now())
            self._flush()
            ev = await self.wait_for(
                q, lambda e: isinstance(e, (cl.Connected, cl.LoginFailed))
                or (isinstance(e, cl.Disconnected) and e.reason == REFUSED),
                timeout, f"server at {where} did not answer")
        finally:
            self.unsubscribe(q)
        if isinstance(ev, cl.Disconnected):
            await self.close()
            raise NetError(f"nothing is listening at {where} (connection refused)")
        self._logged_in = True
        if isinstance(ev, cl.LoginFailed):
            await self.close()
            raise AuthError(ev.message)
        assert isinstance(ev, cl.Connected)
        return ev

    async def close(self) -> None:
        if self._closed:
            return
        if self._stream is not None:
            self.receipts.flush()
        self._closed = True
        if self._stream is not None:
            self.core.close(self._now())
            self._flush()
            await asyncio.sleep(0)
        if self._timer is not None:
            self._timer.cancel()
        for p in self._paths.values():
            if p.timer is not None:
                p.timer.cancel()
        self._mcast.close()
        if self._recv_task is not None:
            self._recv_task.cancel()
            try:
                await self._recv_task
            except (asyncio.CancelledError, Exception):
                pass
        if self._stream is not None:
            self._stream.close()

    async def __aenter__(self) -> Connection:
        try:
            await self.open()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- requests -----------------------------------------------------------------------------

    async def join(self, group: str, timeout: float = CONNECT_TIMEOUT) -> m.GroupState:
        q = self.subscribe()
        try:
            self.core.join(group, self._now())
            self._flush()
            ev = await self.wait_for(q, lambda e: (isinstance(e, cl.GroupJoined)
                                                and e.state.group == group)
                                  or (isinstance(e, cl.RequestFailed) and e.what == "join"
                                      and e.group == group), timeout, "no answer to join")
        finally:
            self.unsubscribe(q)
        if isinstance(ev, cl.RequestFailed):
            raise RequestError(ev.message, (ev.code or m.ErrorCode.BAD_REQUEST).name.lower())
        assert isinstance(ev, cl.GroupJoined)
        p = self._paths.get(group)
        if p is not None and p.error is not None:  # a multicast group this machine cannot reach
            error = p.error
            await self.leave(group)
            raise error
        return ev.state

    def ask_floor(self, group: str, priority: m.Priority = m.Priority.NORMAL) -> None:
        """Ask for the floor without waiting; the outcome arrives as a FloorStateChanged event
        (for key handlers that must not block)."""
        self.core.request_floor(group, self._now(), priority)
        self._flush()

    def drop_floor(self, group: str) -> None:
        """Release the floor, or withdraw a queued request, without waiting."""
        self.core.release_floor(group, self._now())
        self._flush()

    async def request_floor(
        self, group: str, priority: m.Priority = m.Priority.NORMAL, timeout: float = 7.0
    ) -> cl.FloorStateChanged:
        """Ask for the floor; returns the outcome: HAS_PERMISSION, QUEUED or NO_PERMISSION."""
        q = self.subscribe()
        try:
            self.ask_floor(group, priority)
            ev = await self.wait_for(q, lambda e: (isinstance(e, cl.FloorStateChanged)
                                                and e.group == group and e.state is not
                                                cl.Participation.PENDING_REQUEST)
                                  or (isinstance(e, cl.RequestFailed) and e.group == group),
                                  timeout, "no answer to the floor request")
        finally:
            self.unsubscribe(q)
        if isinstance(ev, cl.RequestFailed):
            raise RequestError(ev.message)
        assert isinstance(ev, cl.FloorStateChanged)
        return ev

    async def wait_floor(self, group: str, timeout: float | None = None) -> cl.FloorStateChanged:
        """Wait while queued until granted, or until the request ends otherwise."""
        if self.core.participation(group) is cl.Participation.HAS_PERMISSION:
            g = self.core.groups[group]
            return cl.FloorStateChanged(group, cl.Participation.HAS_PERMISSION, g.my_burst)
        q = self.subscribe()
        try:
            ev = await self.wait_for(q, lambda e: isinstance(e, cl.FloorStateChanged)
                                  and e.group == group
                                  and e.state in (cl.Participation.HAS_PERMISSION,
                                                  cl.Participation.NO_PERMISSION),
                                  timeout, "still queued")
        finally:
            self.unsubscribe(q)
        assert isinstance(ev, cl.FloorStateChanged)
        return ev

    async def release_floor(self, group: str, timeout: float | None = None) -> bool:
        """Release the floor (or withdraw from the queue). With ``timeout``, wait for the
        server's answer: True once it acknowledged the release, False if it did not (no
        answer, or the session was lost meanwhile)."""
        if timeout is None:
            self.drop_floor(group)
            return False
        if self.core.participation(group) is cl.Participation.NO_PERMISSION:
            return False
        q = self.subscribe()
        try:
            self.drop_floor(group)
            try:
                ev = await self.wait_for(q, lambda e: (isinstance(e, cl.FloorStateChanged)
                                                    and e.group == group and e.state is
                                                    cl.Participation.NO_PERMISSION)
                                         or (isinstance(e, cl.RequestFailed) and e.group == group
                                             and e.what == "release"),
                                         timeout, "no answer to the release")
            except NetError:
                return False
        finally:
            self.unsubscribe(q)
        # the answer to the release leaves the state without a cause; a lost session gives one
        return isinstance(ev, cl.FloorStateChanged) and ev.revoke_cause is None

    def group_of(self, group_id: int) -> str | None:
        """The name of a joined group by its wire id."""
        p = self._by_id.get(group_id)
        return p.group if p is not None else None

    def send_receipt(self, group: str, burst_id: int, received: int, expected: int) -> None:
        """Tell the server how much of ``burst_id`` this client received (see ``receipts``)."""
        if self._closed:
            return
        self.core.send_receipt(group, burst_id, received, expected, self._now())
        asyncio.get_running_loop().call_soon(self._flush)  # may be called from within _flush

    async def leave(self, group: str) -> None:
        self.core.leave(group, self._now())
        self._forget_group(group)
        self._flush()

    # --- group keys ---------------------------------------------------------------------------

    def key_grant(self, group: str) -> tuple[int, bytes] | None:
        """``(epoch, grant)``: the newest opaque grant of ``group``'s key received (from a Join
        answer or a push), or None. An older epoch arriving late does not replace a newer one."""
        return self._grants.get(group)

    def on_key_grant(self, callback: Callable[[str, int, bytes], None]) -> None:
        """Call ``callback(group, epoch, grant)`` in the event loop for every grant received,
        repeats included (``GroupKeyring.accept`` tells new from old)."""
        self._grant_callbacks.append(callback)

    def _key_grant(self, ev: cl.KeyGrantReceived) -> None:
        held = self._grants.get(ev.group)
        if held is None or ev.epoch >= held[0]:
            self._grants[ev.group] = (ev.epoch, ev.grant)
        for cb in list(self._grant_callbacks):
            try:
                cb(ev.group, ev.epoch, ev.grant)
            except Exception:  # one bad callback must not stop the connection
                log.exception("key grant callback failed for %s", ev.group)

    # --- voice path ---------------------------------------------------------------------------

    def voice_path(self, group: str) -> str:
        """"multicast", "relay" or "probing" (deciding) for a joined group."""
        p = self._paths.get(group)
        return p.path if p is not None else RELAY

    def voice_path_reason(self, group: str) -> str:
        p = self._paths.get(group)
        return p.reason if p is not None else ""

    async def wait_voice_path(self, group: str, timeout: float = PROBE_TIMEOUT + 2.0) -> str:
        """Wait until the group's path is decided; returns "multicast" or "relay"."""
        if self.voice_path(group) != PROBING:
            return self.voice_path(group)
        q = self.subscribe()
        try:
            while self.voice_path(group) == PROBING:
                await self.wait_for(q, lambda e: isinstance(e, VoicePathChosen)
                                    and e.group == group, timeout, "no voice path chosen")
        finally:
            self.unsubscribe(q)
        return self.voice_path(group)

    async def call(self, peer: str, timeout: float = CONNECT_TIMEOUT) -> str:
        """Open a one-to-one call; returns the private group's name (already being joined)."""
        q = self.subscribe()
        try:
            self.core.call(peer, self._now())
            self._flush()
            ev = await self.wait_for(q, lambda e: isinstance(e, cl.CallOpened)
                                  or (isinstance(e, cl.RequestFailed) and e.what == "call"),
                                  timeout, "no answer to the call")
            if isinstance(ev, cl.RequestFailed):
                raise RequestError(ev.message)
            assert isinstance(ev, cl.CallOpened)
            group = ev.group
            joined = await self.wait_for(
                q, lambda e: (isinstance(e, cl.GroupJoined) and e.state.group == group)
                or (isinstance(e, cl.RequestFailed) and e.what == "join"),
                timeout, "could not join the call")
            if isinstance(joined, cl.RequestFailed):
                raise RequestError(joined.message)
        finally:
            self.unsubscribe(q)
        return group

    async def admin(self, op: str, args: dict[str, Any], timeout: float = CONNECT_TIMEOUT
                    ) -> dict[str, Any]:
        """Run one coordinator operation; arguments or an answer too large for one datagram
        travel in parts (ptt.protocol.parts), each answered before the next is sent."""
        data = parts.encode_args(args)
        if len(data) > parts.PART_BYTES:
            if len(data) > parts.MAX_TOTAL:
                raise ValidationError(f"request too large ({len(data)} bytes, at most "
                                      f"{parts.MAX_TOTAL})")
            upload = secrets.randbits(31) or 1
            pieces = parts.split(data)
            for index, chunks in enumerate(pieces):
                await self._admin_once(parts.PART_OP, {
                    "upload": upload, "index": index, "count": len(pieces),
                    "total": len(data), "data": chunks}, timeout)
            args = {parts.PARTS_KEY: upload}
        result = await self._admin_once(op, args, timeout)
        kept = result.get(parts.PARTS_KEY)
        if kept is None or set(result) != {parts.PARTS_KEY, "count", "total"}:
            return result
        count, total = result["count"], result["total"]
        if (type(count) is not int or type(total) is not int
                or not 0 < total <= parts.MAX_TOTAL or count != -(-total // parts.PART_BYTES)):
            raise ProtocolError("malformed answer in parts")
        got = bytearray()
        for index in range(count):
            piece = await self._admin_once(parts.FETCH_OP, {"id": kept, "index": index}, timeout)
            got += parts.join_chunks(piece.get("data"))
            if len(got) > total:
                raise ProtocolError("answer in parts larger than announced")
        if len(got) != total:
            raise ProtocolError("answer in parts smaller than announced")
        return parts.decode_result(bytes(got))

    async def _admin_once(self, op: str, args: dict[str, Any], timeout: float
                          ) -> dict[str, Any]:
        q = self.subscribe()
        try:
            txn = self.core.admin(op, args, self._now())
            self._flush()
            ev = await self.wait_for(q, lambda e: (isinstance(e, cl.AdminResult)
                                                and e.txn in (txn, 0))
                                  or (isinstance(e, cl.RequestFailed) and e.what == "admin"
                                      and e.txn in (txn, 0)),
                                  timeout, "no answer from the server")
        finally:
            self.unsubscribe(q)
        if isinstance(ev, cl.RequestFailed):
            raise RequestError(ev.message, (ev.code or m.ErrorCode.BAD_REQUEST).name.lower())
        assert isinstance(ev, cl.AdminResult)
        if ev.error is not None:
            code, text = ev.error
            if code == m.ErrorCode.FORBIDDEN:
                raise AuthError(text)
            raise RequestError(text, code.name.lower())
        return ev.result or {}

    def send_voice(self, datagram: bytes) -> None:
        """Send one voice datagram: to its group's address on the multicast path, else to the
        relay. No await: voice is fire-and-forget."""
        if self._stream is None or self._closed:
            return
        datagram = add_mac(self.core.voice_key, datagram)  # the server relays nothing without
        if self._on_multicast:
            dest = self._on_multicast.get(peek_group(datagram))
            if dest is not None and self._mcast.send(datagram, dest):
                self.voice_stats.multicast_out += 1
                return
        self._stream._transport.sendto(datagram)
        self.voice_stats.relay_out += 1

    def report_reception(self, group: str, burst_id: int, report: LossReport) -> None:
        """Tell the server what this listener received of ``burst_id`` since its last report
        (``ReceptionReports`` says when); it sums the group up for the talker. No await."""
        if self._stream is None or self._closed:
            return
        self.core.report_reception(group, burst_id, report.frames, report.lost, report.runs,
                                   report.late)
        self._flush()

    # --- events -------------------------------------------------------------------------------

    def subscribe(self) -> asyncio.Queue[cl.ClientEvent]:
        q: asyncio.Queue[cl.ClientEvent] = asyncio.Queue()
        self._queues.append(q)
        return q

    def unsubscribe(self, q: asyncio.Queue[cl.ClientEvent]) -> None:
        if q in self._queues:
            self._queues.remove(q)

    async def wait_for(self, q: asyncio.Queue[cl.ClientEvent], pred: Callable[[Any], bool],
                    timeout: float | None, what: str) -> cl.ClientEvent:
        try:
            async with asyncio.timeout(timeout):
                while True:
                    ev = await q.get()
                    if pred(ev):
                        return ev
        except TimeoutError:
            raise NetError(f"{what} (after {timeout:g} s)") from None

    # --- the adapter --------------------------------------------------------------------------

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    def now(self) -> float:
        """The loop's clock, as the core is driven with."""
        return self._now()

    def flush(self) -> None:
        """Send what the core has queued (after calling it directly) and re-arm its timer."""
        self._flush()

    async def _recv_loop(self) -> None:
        while True:
            try:
                data, _ = await self._stream.recv()
            except asyncio_dgram.TransportClosed:
                return
            except OSError:
                continue  # ICMP "port unreachable" while the server is down: keep waiting
            if is_voice(data):
                if is_probe(data):
                    self._holder_notice(data)
                    continue
                self.voice_stats.relay_in += 1
                if self.on_voice is not None:
                    self.on_voice(data)
                continue
            self.core.receive_datagram(data, self._now())
            self._flush()

    def _check_refused(self) -> None:
        """Before the first login a "port unreachable" means nothing listens there: tell open()
        now rather than at its timeout. (asyncio-dgram keeps socket errors until asked; later
        ones are a restarting server, which the core rides out by itself.)"""
        try:
            self._stream.exception
        except ConnectionRefusedError:
            for q in self._queues:
                q.put_nowait(cl.Disconnected(REFUSED))
        except OSError:
            pass

    def _on_timer(self) -> None:
        self._timer = None
        self.core.handle_timer(self._now())
        self._flush()

    def _flush(self) -> None:
        if self._closed and self._stream is None:
            return
        events: list[Any] = self.core.events()
        if not self._closed:
            for ev in events:
                self._track(ev)  # may make requests (voice path) and events of its own
        if self._extra:
            events += self._extra
            self._extra = []
        transport = self._stream._transport if self._stream is not None else None
        if not self._logged_in and self._stream is not None:
            self._check_refused()
        for data in self.core.datagrams_to_send():
            if transport is not None and not transport.is_closing():
                transport.sendto(data)
        for ev in events:
            for q in self._queues:
                q.put_nowait(ev)
        if self._closed:
            return
        at = self.core.get_timer()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if at is not None:
            self._timer = asyncio.get_running_loop().call_at(at, self._on_timer)

    # --- multicast ----------------------------------------------------------------------------

    def _track(self, ev: cl.ClientEvent) -> None:
        if isinstance(ev, cl.TalkerChanged):
            p = self._paths.get(ev.group)
            if p is not None:
                self.receipts.floor_moved(p.group_id, ev.burst_id if ev.talker else 0)
        if isinstance(ev, cl.KeyGrantReceived):
            self._key_grant(ev)
        elif isinstance(ev, cl.PageReceived):
            loop = asyncio.get_running_loop()
            for handler in list(self.page_handlers):
                loop.call_soon(handler, ev.page)
        elif isinstance(ev, cl.GroupJoined):
            self._setup_group(ev.state)
        elif isinstance(ev, cl.AdminResult) and ev.txn:
            for p in self._paths.values():
                if p.txn == ev.txn:
                    p.txn = 0
                    self._path_answered(p, ev.result or {})
        elif isinstance(ev, cl.FloorStateChanged) and ev.revoke_cause is m.RevokeCause.SILENCE:
            p = self._paths.get(ev.group)
            g = self.core.groups.get(ev.group)
            if p is not None and p.path == MULTICAST and g is not None and g.state is not None:
                log.info("[%s] the server did not hear our multicast: probing again", ev.group)
                self._setup_group(g.state)
        elif isinstance(ev, cl.GroupLeft):
            self._forget_group(ev.group)

    def _holder_notice(self, data: bytes) -> None:
        """The server names the holder of a group's current burst (for multicast playout)."""
        try:
            gid, sender, burst = peek_route(data)
        except ProtocolError:
            self.voice_stats.malformed += 1
            return
        if peek_seq(data) == HOLDER_SEQ:
            self._holders[gid] = (sender, burst)

    def _setup_group(self, state: m.GroupState) -> None:
        """A join was answered (first time, again, or after a re-login): decide the path anew."""
        p = self._paths.get(state.group)
        if p is None:
            p = self._paths[state.group] = _GroupPath(state.group)
        self._by_id.pop(p.group_id, None)
        self._on_multicast.pop(p.group_id, None)
        p.group_id, p.mode, p.error = state.group_id, state.mode, None
        self._by_id[p.group_id] = p
        if not self._mcast.opts.enabled:
            self._choose(p, RELAY, "multicast is off on this client")
            return
        if state.mode == "relay" or not state.mcast_addr:
            self._choose(p, RELAY, f"the group's mode is {state.mode}")
            return
        p.dest = (state.mcast_addr, state.mcast_port)
        try:
            self._mcast.join(p.group_id, p.dest)
        except NetError as exc:
            if state.mode == "multicast":
                p.error = exc
            self._choose(p, RELAY, str(exc))
            return
        p.path, p.reason = PROBING, ""
        p.nonce = int.from_bytes(os.urandom(4), "big") | 1
        p.probe_until = self._now() + PROBE_TIMEOUT
        self._probe(p)

    def _probe(self, p: _GroupPath) -> None:
        p.timer = None
        if p.path != PROBING or self._closed:
            return
        now = self._now()
        if now >= p.probe_until:
            self._choose(p, RELAY, f"no echo from multicast {p.dest[0]}:{p.dest[1]} within "  # type: ignore[index]
                                   f"{PROBE_TIMEOUT:g} s: the LAN may not carry multicast")
            self._flush()
            return
        probe = add_mac(self.core.voice_key, encode_voice(
            VoiceHeader(p.group_id, self.core.session_id, p.nonce, PROBE_SEQ, 0, VoiceFlags.PROBE),
            b""))
        if self._mcast.send(probe, p.dest):  # type: ignore[arg-type]
            self.voice_stats.probes += 1
        at = min(now + PROBE_INTERVAL, p.probe_until)
        p.timer = asyncio.get_running_loop().call_at(at, self._probe, p)

    def _path_answered(self, p: _GroupPath, result: dict[str, object]) -> None:
        group = p.group
        if result.get("multicast") is True and p.path == PROBING and p.dest is not None:
            if p.timer is not None:
                p.timer.cancel()
                p.timer = None
            p.path = MULTICAST
            iface = self._mcast.iface
            p.reason = (f"multicast {p.dest[0]}:{p.dest[1]} on "
                        f"{iface.name if iface else '?'}, TTL {self._mcast.opts.ttl}")
            self._on_multicast[p.group_id] = p.dest
            self._extra.append(VoicePathChosen(group, MULTICAST, p.reason))
            log.info("[%s] voice by %s", group, p.reason)
        elif p.path != RELAY:
            why = result.get("error") or "the server does not listen on the group's address"
            self._choose(p, RELAY, f"the server refused multicast: {why}")

    def _confirm_timeout(self, p: _GroupPath) -> None:
        p.timer = None
        if p.path == PROBING and p.txn:
            p.txn = 0
            self._choose(p, RELAY, "the server did not answer the voice path request")
            self._flush()

    def _choose(self, p: _GroupPath, path: str, reason: str) -> None:
        if p.timer is not None:
            p.timer.cancel()
            p.timer = None
        if path == RELAY:
            self._on_multicast.pop(p.group_id, None)
            self._mcast.leave(p.group_id)
        p.path, p.reason = path, reason
        self._extra.append(VoicePathChosen(p.group, path, reason))
        level = logging.WARNING if p.mode == "multicast" else logging.INFO
        log.log(level, "[%s] voice through the relay: %s", p.group, reason)

    def _forget_group(self, group: str) -> None:
        p = self._paths.pop(group, None)
        if p is None:
            return
        if p.timer is not None:
            p.timer.cancel()
        self._by_id.pop(p.group_id, None)
        self._on_multicast.pop(p.group_id, None)
        self._mcast.leave(p.group_id)

    def _on_group_datagram(self, group_id: int, data: bytes) -> None:
        """A datagram heard on a group's multicast address: play only the announced burst."""
        st = self.voice_stats
        try:
            if not is_voice(data):
                raise ProtocolError("not voice")
            data = strip_mac(data)  # a talker's, heard directly: only the server can check it
            gid, sender, burst = peek_route(data)
        except ProtocolError:
            st.malformed += 1
            return
        p = self._by_id.get(group_id)
        if p is None:
            return
        if is_probe(data):
            if (sender == self.core.session_id and burst == p.nonce and p.path == PROBING
                    and peek_seq(data) == ECHO_SEQ):
                if p.timer is not None:  # answered: now the server's answer decides
                    p.timer.cancel()
                p.nonce = 0  # the echoes of the other probes change nothing
                p.txn = self.core.admin(VOICE_PATH_OP, {"group": p.group, "multicast": True},
                                        self._now())
                p.timer = asyncio.get_running_loop().call_later(
                    CONFIRM_TIMEOUT, self._confirm_timeout, p)
                self._flush()
            return
        g = self.core.groups.get(p.group)
        holder = self._holders.get(gid)
        ok = (gid == group_id and g is not None and g.talker is not None
              and holder == (sender, burst) and burst == g.talker_burst)
        if p.path != MULTICAST and not ok:
            return  # still probing: the relay brings what this member should hear
        if sender == self.core.session_id:
            st.own += 1
            return
        if not ok:
            if holder is not None and sender == holder[0]:
                st.wrong_burst += 1
            else:
                st.not_holder += 1
            return
        # every member holds an encrypted group's key, so only the holder's signature tells
        # its frames from another member's forgery
        check = self.talker_check
        assert g is not None and g.talker is not None  # as ok says
        if (check is None and g.state is not None and g.state.key_epoch) or (
                check is not None and not check(p.group, g.talker, data)):
            st.unsigned += 1
            return
        st.multicast_in += 1
        if self.on_voice is not None:
            self.on_voice(data)
