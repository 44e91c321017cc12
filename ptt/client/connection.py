"""The client's asyncio adapter: one UDP socket to the server around a :class:`ClientCore`.

::

    async with Connection(("127.0.0.1", 7700), "ann", token) as conn:   # logs in
        state = await conn.join("volunteers")
        outcome = await conn.request_floor("volunteers")     # granted, queued or denied
        conn.send_voice(datagram)                             # while granted
        await conn.release_floor("volunteers")

Voice datagrams from the relay go to ``on_voice``; every protocol event goes to each queue made by
:meth:`subscribe`. The connection re-registers by itself after a server restart or an outage.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any, Callable

import asyncio_dgram

from ptt.errors import AuthError, NetError, RequestError
from ptt.names import format_hostport
from ptt.protocol import client as cl
from ptt.protocol import messages as m
from ptt.protocol.wire import is_voice

log = logging.getLogger("ptt.client")

CONNECT_TIMEOUT = 6.0

_FAILURE_TEXT = {
    m.DenyCause.NOT_MEMBER: "you are not a member of this group",
    m.DenyCause.LISTEN_ONLY: "you are a listen-only member of this group",
    m.DenyCause.QUEUE_FULL: "the queue is full",
    m.DenyCause.RETRY_LATER: "the floor is busy: try again later",
    m.DenyCause.NOT_ALLOWED: "your role may not use that priority",
}


def deny_text(cause: m.DenyCause) -> str:
    return _FAILURE_TEXT.get(cause, cause.name.lower().replace("_", " "))


class Connection:
    def __init__(self, server: tuple[str, int], user: str, token: str) -> None:
        self.server = server
        self.core = cl.ClientCore(user, token, os.urandom)
        self.on_voice: Callable[[bytes], None] | None = None
        self._stream: Any = None
        self._recv_task: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._queues: list[asyncio.Queue[cl.ClientEvent]] = []
        self._closed = False

    @property
    def user(self) -> str:
        return self.core.user

    @property
    def connected(self) -> bool:
        return self.core.conn is cl.ConnState.CONNECTED

    # --- lifecycle ----------------------------------------------------------------------------

    async def open(self, timeout: float = CONNECT_TIMEOUT) -> cl.Connected:
        """Log in; NetError if the server does not answer, AuthError if it refuses."""
        where = format_hostport(*self.server)
        try:
            self._stream = await asyncio_dgram.connect(self.server)
        except OSError as exc:
            raise NetError(f"cannot reach server at {where}: {exc.strerror or exc}") from None
        self._recv_task = asyncio.create_task(self._recv_loop())
        q = self.subscribe()
        try:
            self.core.connect(self._now())
            self._flush()
            ev = await self.wait_for(q, lambda e: isinstance(e, (cl.Connected, cl.LoginFailed)),
                                  timeout, f"server at {where} did not answer")
        finally:
            self.unsubscribe(q)
        if isinstance(ev, cl.LoginFailed):
            await self.close()
            raise AuthError(ev.message)
        assert isinstance(ev, cl.Connected)
        return ev

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._stream is not None:
            self.core.close(self._now())
            self._flush()
            await asyncio.sleep(0)
        if self._timer is not None:
            self._timer.cancel()
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
        return ev.state

    async def request_floor(
        self, group: str, priority: m.Priority = m.Priority.NORMAL, timeout: float = 7.0
    ) -> cl.FloorStateChanged:
        """Ask for the floor; returns the outcome: HAS_PERMISSION, QUEUED or NO_PERMISSION."""
        q = self.subscribe()
        try:
            self.core.request_floor(group, self._now(), priority)
            self._flush()
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

    async def release_floor(self, group: str) -> None:
        self.core.release_floor(group, self._now())
        self._flush()

    async def leave(self, group: str) -> None:
        self.core.leave(group, self._now())
        self._flush()

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
        q = self.subscribe()
        try:
            txn = self.core.admin(op, args, self._now())
            self._flush()
            ev = await self.wait_for(q, lambda e: (isinstance(e, cl.AdminResult)
                                                and e.txn in (txn, 0))
                                  or (isinstance(e, cl.RequestFailed) and e.what == "admin"),
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
        if self._stream is not None and not self._closed:
            self._stream._transport.sendto(datagram)  # no await: voice is fire-and-forget

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

    async def _recv_loop(self) -> None:
        while True:
            try:
                data, _ = await self._stream.recv()
            except asyncio_dgram.TransportClosed:
                return
            except OSError:
                continue  # ICMP "port unreachable" while the server is down: keep waiting
            if is_voice(data):
                if self.on_voice is not None:
                    self.on_voice(data)
                continue
            self.core.receive_datagram(data, self._now())
            self._flush()

    def _on_timer(self) -> None:
        self._timer = None
        self.core.handle_timer(self._now())
        self._flush()

    def _flush(self) -> None:
        if self._closed and self._stream is None:
            return
        transport = self._stream._transport if self._stream is not None else None
        for data in self.core.datagrams_to_send():
            if transport is not None and not transport.is_closing():
                transport.sendto(data)
        for ev in self.core.events():
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
