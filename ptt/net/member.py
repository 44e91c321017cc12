"""A client's multicast I/O: one sending socket, and one joined socket per group.

Used by :class:`ptt.client.connection.Connection`, which listens and sends where
:class:`ptt.protocol.voicepath.VoicePaths` says::

    ms = MemberSockets(MulticastOptions(), on_datagram)   # on_datagram(group_id, data)
    ms.join(3, ("239.255.0.3", 7806))   # NetError: no interface, no route, cannot join
    ms.send(frame, ("239.255.0.3", 7806))
    ms.leave(3); ms.close()

Sockets are non-blocking and read with ``loop.add_reader``: joining happens inside the protocol
event handler, which is not a coroutine.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

from ptt.net.multicast import (
    Interface,
    MulticastOptions,
    check_multicast,
    open_member_socket,
    open_sender_socket,
)

Dest = tuple[str, int]
READ_BATCH = 64


class MemberSockets:
    def __init__(self, opts: MulticastOptions, on_datagram: Callable[[int, bytes], None]) -> None:
        self.opts = opts
        self._on_datagram = on_datagram
        self._tx: socket.socket | None = None
        self._rx: dict[int, tuple[Dest, socket.socket]] = {}
        self.iface: Interface | None = None
        self.send_errors = 0

    def joined(self, group_id: int) -> Dest | None:
        entry = self._rx.get(group_id)
        return entry[0] if entry else None

    def join(self, group_id: int, dest: Dest) -> Interface:
        """Listen on ``dest`` for group ``group_id`` (again, if the address changed)."""
        if self.joined(group_id) == dest:
            assert self.iface is not None
            return self.iface
        self.leave(group_id)
        iface = check_multicast(dest[0], self.opts)
        if self._tx is None or self.iface != iface:
            if self._tx is not None:
                self._tx.close()
            self._tx = open_sender_socket(iface, self.opts.ttl)
            self.iface = iface
        sock = open_member_socket(dest[0], dest[1], iface)
        self._rx[group_id] = (dest, sock)
        asyncio.get_running_loop().add_reader(sock.fileno(), self._readable, group_id, sock)
        return iface

    def leave(self, group_id: int) -> None:
        entry = self._rx.pop(group_id, None)
        if entry is None:
            return
        try:
            asyncio.get_running_loop().remove_reader(entry[1].fileno())
        except RuntimeError:  # the loop is gone (closing at exit)
            pass
        entry[1].close()

    def send(self, data: bytes, dest: Dest) -> bool:
        if self._tx is None:
            return False
        try:
            self._tx.sendto(data, dest)
        except OSError:  # a full socket buffer, or the route vanished: voice is lossy anyway
            self.send_errors += 1
            return False
        return True

    def close(self) -> None:
        for gid in list(self._rx):
            self.leave(gid)
        if self._tx is not None:
            self._tx.close()
            self._tx = None

    def _readable(self, group_id: int, sock: socket.socket) -> None:
        for _ in range(READ_BATCH):
            try:
                data = sock.recv(2048)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            self._on_datagram(group_id, data)
