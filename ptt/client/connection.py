"""The client's asyncio adapter: one UDP socket to the server around a :class:`ClientCore`.

::

    async with Connection(("127.0.0.1", 7700), "ann", token) as conn:   # logs in
        state = await conn.join("volunteers")
        outcome = await conn.request_floor("volunteers")     # granted, queued or denied
        conn.send_voice(datagram)                             # while granted
        await conn.release_floor("volunteers")

Voice datagrams from the relay go to ``on_voice``; every protocol event goes to each queue made by
:meth:`subscribe`. The connection re-registers by itself after a server restart or an outage.

Multicast. Which path each group's voice takes (relay or the group's multicast address, chosen
by a probe) is decided by :class:`~ptt.protocol.voicepath.VoicePaths`; this adapter listens on
the addresses it names, sends its probes, and plays what it says may be played. In ``multicast``
mode a missing interface or route is an error (``join`` raises NetError); in ``auto`` mode it is
a reason to use the relay. Frames heard by multicast that are not played are counted in
:attr:`voice_stats`; in an encrypted group a frame needs the holder's own signature
(:attr:`talker_check`).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import secrets
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from ptt.client.receipts import Receipts
from ptt.errors import AuthError, NetError, ProtocolError, RequestError, ValidationError
from ptt.names import format_hostport
from ptt.net.endpoint import ClientEndpoint, resolve_address
from ptt.net.member import MemberSockets
from ptt.net.multicast import MulticastOptions
from ptt.protocol import client as cl
from ptt.protocol import messages as m
from ptt.protocol import parts
from ptt.protocol.server_list import LOGIN_TRY
from ptt.protocol.transactions import RETRY_TOTAL
from ptt.protocol.voicepath import PROBE_TIMEOUT, Heard, VoicePath, VoicePathChosen, VoicePaths
from ptt.wire.voice import add_mac, is_probe, is_voice, peek_group, peek_route

if TYPE_CHECKING:
    from ptt.config import ClientConfig
    from ptt.media.receiver import LossReport

log = logging.getLogger("ptt.client")

CONNECT_TIMEOUT = 6.0
REFUSED = "connection refused"
RELEASE_WAIT = RETRY_TOTAL + 0.5  # for the server's answer to a release (it is retransmitted)
STOP_RELEASE_WAIT = 2.0  # the same after a stop key: the command must end soon
ROAM_TRIES = 20  # binds of the roaming socket, 10 ms apart, while the old one closes


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


class Connection:
    def __init__(self, server: tuple[str, int], user: str, token: str,
                 multicast: MulticastOptions | None = None, *,
                 local: tuple[str, int] | None = None,
                 servers: Sequence[tuple[str, int]] = ()) -> None:
        """``servers``: more access nodes of a cluster besides ``server`` (the first tried);
        the session moves among them when its node dies (``ptt.protocol.server_list``)."""
        self.server = server  # the server in use (moves with the session)
        self.local = local  # the address to send from (host, port); None: the system's choice
        self._listed = list(dict.fromkeys([server, *servers]))
        self.core = cl.ClientCore(user, token, os.urandom, device_id(),
                                  servers=self._listed)
        self._numeric: dict[tuple[str, int], tuple[str, int]] = {}  # resolved -> as listed
        self._roam_task: asyncio.Task[None] | None = None
        self.on_voice: Callable[[bytes], None] | None = None
        # (group, holder's user name, frame) -> may a frame heard on a multicast address be
        # played? Set by ptt.client.keys.VoiceKeys, which holds the talker keys
        self.talker_check: Callable[[str, str, bytes], bool] | None = None
        self.voice_stats = VoiceStats()
        # what the client layers keep for as long as this connection lives, one per kind
        # (ptt.client.keys: the group keys, the in-memory key pins): held here, so that they
        # go with the connection instead of living in a registry of their own
        self.attached: dict[type, object] = {}
        self._mcast = MemberSockets(multicast or MulticastOptions(), self._on_group_datagram)
        self.paths = VoicePaths(self.core, self._mcast.opts.enabled, os.urandom)
        self._endpoint: ClientEndpoint | None = None
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

    @property
    def local_address(self) -> tuple[str, int]:
        """This client's own address:port toward the server (NetError before it is open)."""
        if self._endpoint is None:
            raise NetError("not connected")
        return self._endpoint.local_address

    # --- lifecycle ----------------------------------------------------------------------------

    async def open(self, timeout: float = CONNECT_TIMEOUT) -> cl.Connected:
        """Log in; NetError if the server does not answer, AuthError if it refuses."""
        where = format_hostport(*self.server)
        roaming = self.core.roaming
        if roaming:
            where = ", ".join(format_hostport(*a) for a in self._listed)
            # open() gives up once each server of the list had its try (LOGIN_TRY, then the
            # re-login back-off): this bounds it should that never come
            timeout = max(timeout, (LOGIN_TRY + cl.RELOGIN_CAP) * len(self._listed) + 1.0)
        try:
            if roaming:
                for addr in self._listed:
                    self._numeric[resolve_address(addr)] = addr
            self._endpoint = await ClientEndpoint.open(
                self.server, self._received, self._socket_error, self.local,
                roaming=self._from_elsewhere if roaming else None)
        except OSError as exc:
            raise NetError(f"cannot reach server at {where}: {exc.strerror or exc}") from None
        q = self.subscribe()
        try:
            self.core.connect(self._now())
            self._flush()
            ev = await self.wait_for(
                q, lambda e: isinstance(e, (cl.Connected, cl.LoginFailed))
                or (isinstance(e, cl.Disconnected) and (e.reason == REFUSED or self._gave_up())),
                timeout, f"server at {where} did not answer")
        finally:
            self.unsubscribe(q)
        if isinstance(ev, cl.Disconnected):
            await self.close()
            if ev.reason != REFUSED:
                raise NetError(f"no server of {where} answered a login "
                               f"(each tried for {LOGIN_TRY:g} s)")
            raise NetError(f"nothing is listening at {where} (connection refused)")
        self._logged_in = True
        if isinstance(ev, cl.LoginFailed):
            await self.close()
            raise AuthError(ev.message)
        assert isinstance(ev, cl.Connected)
        return ev

    def _gave_up(self) -> bool:
        """Has a first login to every server of the list failed (``ServerList.exhausted``)?"""
        servers = self.core.servers
        return self.core.roaming and servers is not None and servers.exhausted

    async def close(self) -> None:
        if self._closed:
            return
        if self._endpoint is not None:
            self.receipts.flush()
        self._closed = True
        if self._endpoint is not None:
            self.core.close(self._now())
            self._flush()
            await asyncio.sleep(0)
        if self._timer is not None:
            self._timer.cancel()
        if self._roam_task is not None:
            self._roam_task.cancel()
        self._mcast.close()
        if self._endpoint is not None:
            self._endpoint.close()

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
        error = self.paths.error(group)
        if error is not None:  # a multicast group this machine cannot reach
            await self.leave(group)
            raise NetError(error)
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
        return self.paths.group_of(group_id)

    def send_receipt(self, group: str, burst_id: int, received: int, expected: int) -> None:
        """Tell the server how much of ``burst_id`` this client received (see ``receipts``)."""
        if self._closed:
            return
        self.core.send_receipt(group, burst_id, received, expected, self._now())
        asyncio.get_running_loop().call_soon(self._flush)  # may be called from within _flush

    async def leave(self, group: str) -> None:
        self.core.leave(group, self._now())
        self.paths.forget(group)
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

    def voice_path(self, group: str) -> VoicePath:
        """"multicast", "relay" or "probing" (deciding) for a joined group."""
        return self.paths.path(group)

    def voice_path_reason(self, group: str) -> str:
        return self.paths.reason(group)

    async def wait_voice_path(self, group: str, timeout: float = PROBE_TIMEOUT + 2.0) -> str:
        """Wait until the group's path is decided; returns "multicast" or "relay"."""
        if self.voice_path(group) is not VoicePath.PROBING:
            return self.voice_path(group)
        q = self.subscribe()
        try:
            while self.voice_path(group) is VoicePath.PROBING:
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
        if self._endpoint is None or self._closed:
            return
        datagram = add_mac(self.core.voice_key, datagram)  # the server relays nothing without
        if self.paths.any_multicast:
            dest = self.paths.multicast_dest(peek_group(datagram))
            if dest is not None and self._mcast.send(datagram, dest):
                self.voice_stats.multicast_out += 1
                return
        self._endpoint.send(datagram)
        self.voice_stats.relay_out += 1

    def report_reception(self, group: str, burst_id: int, report: LossReport) -> None:
        """Tell the server what this listener received of ``burst_id`` since its last report
        (``ReceptionReports`` says when); it sums the group up for the talker. No await."""
        if self._endpoint is None or self._closed:
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

    def _check_view(self, data: bytes) -> None:
        """Voice of a burst our floor view does not show: the core asks the server now."""
        try:
            group_id, _, burst_id = peek_route(data)
        except ProtocolError:
            return
        if self.core.voice_heard(group_id, burst_id, self._now()):
            self._flush()

    def _received(self, data: bytes) -> None:
        """A datagram from the server: voice to the player, the rest to the core."""
        if self._closed:
            return
        if is_voice(data):
            if is_probe(data):
                if not self.paths.holder_notice(data):
                    self.voice_stats.malformed += 1
                return
            self.voice_stats.relay_in += 1
            self._check_view(data)
            if self.on_voice is not None:
                self.on_voice(data)
            return
        self.core.receive_datagram(data, self._now())
        self._flush()

    async def _go_roaming(self) -> None:
        """The same local port, on a socket that takes datagrams from every node of the list
        (the server has this session at that address). The old socket is closed first; a
        datagram arriving in between is lost like any, and resent."""
        old = self._endpoint
        assert old is not None and self.core.servers is not None
        for addr in cast("tuple[tuple[str, int], ...]", self.core.servers.servers):
            try:
                self._numeric[resolve_address(addr)] = addr
            except OSError:
                continue  # a name that does not resolve: its notices are not heeded
        local = old.local_address
        old.close()
        last: OSError | None = None
        for _ in range(ROAM_TRIES):  # the old socket is closed by the loop's next turns
            await asyncio.sleep(0.01)
            if self._closed:
                return
            try:
                self._endpoint = await ClientEndpoint.open(
                    self.server, self._received, self._socket_error, local,
                    roaming=self._from_elsewhere)
            except OSError as exc:
                last = exc
                continue
            if self._closed:  # closed while it opened
                self._endpoint.close()
            return
        log.warning("cannot take other nodes' notices (%s): this connection stays on %s",
                    last, format_hostport(*self.server))
        self._endpoint = await ClientEndpoint.open(self.server, self._received,
                                                   self._socket_error)

    def _from_elsewhere(self, data: bytes, addr: tuple[str, int]) -> None:
        """A datagram from another address than the server in use: another node's notice
        that ours died, which the core weighs (``ClientCore.receive_datagram``)."""
        if self._closed:
            return
        self.core.receive_datagram(data, self._now(), source=self._numeric.get(addr, addr))
        self._flush()

    def _socket_error(self, exc: OSError) -> None:
        """Before the first login a "port unreachable" means nothing listens there: tell open()
        now rather than at its timeout. Later ones are a restarting server, which the core
        rides out by itself."""
        if isinstance(exc, ConnectionRefusedError) and not self._logged_in:
            for q in self._queues:
                q.put_nowait(cl.Disconnected(REFUSED))

    def _on_timer(self) -> None:
        self._timer = None
        now = self._now()
        self.core.handle_timer(now)
        self.paths.handle_timer(now)
        self._flush()

    def _flush(self) -> None:
        if self._closed and self._endpoint is None:
            return
        events: list[Any] = self.core.events()
        if not self._closed:
            for ev in events:
                self._track(ev)  # may make requests (voice path) and events of its own
            self._paths_out()
        for chosen in self.paths.events():
            events.append(chosen)
            self._log_path(chosen)
        if (self.core.roaming and self._endpoint is not None and not self._endpoint.roaming
                and not self._closed and self._roam_task is None):
            # the Welcome named a cluster's other nodes: take their notices from now on
            self._roam_task = asyncio.get_running_loop().create_task(self._go_roaming())
        target = cast("tuple[str, int] | None", self.core.server)  # a server of the list
        if target is not None and target != self.server and self._endpoint is not None:
            log.info("moving to server %s (from %s)", format_hostport(*target),
                     format_hostport(*self.server))
            self.server = target
            self._endpoint.retarget(target)
        for data in self.core.datagrams_to_send():
            if self._endpoint is not None:
                self._endpoint.send(data)
        for ev in events:
            for q in self._queues:
                q.put_nowait(ev)
        if self._closed:
            return
        at = min((t for t in (self.core.get_timer(), self.paths.get_timer()) if t is not None),
                 default=None)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if at is not None:
            self._timer = asyncio.get_running_loop().call_at(at, self._on_timer)

    # --- multicast ----------------------------------------------------------------------------

    def _track(self, ev: cl.ClientEvent) -> None:
        if isinstance(ev, cl.TalkerChanged):
            gid = self.paths.group_id(ev.group)
            if gid is not None:
                self.receipts.floor_moved(gid, ev.burst_id if ev.talker else 0)
        if isinstance(ev, cl.KeyGrantReceived):
            self._key_grant(ev)
        elif isinstance(ev, cl.PageReceived):
            loop = asyncio.get_running_loop()
            for handler in list(self.page_handlers):
                loop.call_soon(handler, ev.page)
        elif isinstance(ev, cl.GroupJoined):
            self._setup_group(ev.state)
        elif isinstance(ev, cl.AdminResult) and ev.txn:
            self.paths.answered(ev.txn, ev.result or {})
        elif isinstance(ev, cl.FloorStateChanged) and ev.revoke_cause is m.RevokeCause.SILENCE:
            g = self.core.groups.get(ev.group)
            if (self.paths.path(ev.group) is VoicePath.MULTICAST and g is not None
                    and g.state is not None):
                log.info("[%s] the server did not hear our multicast: probing again", ev.group)
                self._setup_group(g.state)
        elif isinstance(ev, cl.GroupLeft):
            self.paths.forget(ev.group)

    def _setup_group(self, state: m.GroupState) -> None:
        """A join was answered: listen where the voice path machine says, and let it probe."""
        dest = self.paths.joined(state, self._now())
        self._paths_out()
        if dest is None:
            return
        try:
            iface = self._mcast.join(state.group_id, dest)
        except NetError as exc:
            self.paths.unreachable(state.group, str(exc))
        else:
            self.paths.listening(state.group, self._now(),
                                 f"{iface.name}, TTL {self._mcast.opts.ttl}")
        self._paths_out()

    def _paths_out(self) -> None:
        """Do what the voice path machine asks of the sockets: stop listening, send probes."""
        for group_id in self.paths.addresses_to_leave():
            self._mcast.leave(group_id)
        for probe, dest in self.paths.datagrams_to_send():
            if self._mcast.send(probe, dest):
                self.voice_stats.probes += 1

    def _log_path(self, chosen: VoicePathChosen) -> None:
        if chosen.path == VoicePath.MULTICAST:
            log.info("[%s] voice by %s", chosen.group, chosen.reason)
            return
        level = logging.WARNING if self.paths.mode(chosen.group) == "multicast" else logging.INFO
        log.log(level, "[%s] voice through the relay: %s", chosen.group, chosen.reason)

    def _on_group_datagram(self, group_id: int, data: bytes) -> None:
        """A datagram heard on a group's multicast address: play only the announced burst."""
        st = self.voice_stats
        heard = self.paths.heard(group_id, data, self._now())
        verdict = heard.verdict
        if verdict is Heard.HOLDER:
            # every member holds an encrypted group's key, so only the holder's signature
            # tells its frames from another member's forgery
            check = self.talker_check
            if (check is None and heard.encrypted) or (
                    check is not None and not check(heard.group, heard.talker, heard.data)):
                st.unsigned += 1
                return
            st.multicast_in += 1
            if self.on_voice is not None:
                self.on_voice(heard.data)
        elif verdict is Heard.ECHO:
            self._flush()
        elif verdict is Heard.MALFORMED:
            st.malformed += 1
        elif verdict is Heard.OWN:
            st.own += 1
        elif verdict is Heard.WRONG_BURST:
            st.wrong_burst += 1
            self._check_view(data)
        elif verdict is Heard.NOT_HOLDER:
            st.not_holder += 1
            self._check_view(data)
