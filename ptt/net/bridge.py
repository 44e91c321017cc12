"""The server's multicast side: it listens on every multicast-capable group's address and sends
bridged frames and probe echoes to them.

Used by :class:`ptt.server.app.PttServer`::

    bridge = MulticastBridge(opts, "239.255.0.0/16", on_datagram, on_batch)
    reason = bridge.start()                   # None, or why multicast is off on this server
    opened, closed = bridge.sync({"volunteers": ("239.255.0.1", 7802), ...})
    bridge.send(frame, ("239.255.0.1", 7802))

``on_datagram(data, addr)`` runs for each datagram heard on a group address, except the bridge's
own (which come back when members share the machine); ``on_batch()`` once after each batch read.
Sockets are read with ``loop.add_reader`` so that ``sync`` can run inside a datagram handler.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections.abc import Callable

from ptt.errors import NetError
from ptt.net.multicast import (
    Interface,
    MulticastOptions,
    check_multicast,
    open_member_socket,
    open_sender_socket,
)

log = logging.getLogger("ptt.server")

Dest = tuple[str, int]
READ_BATCH = 64  # datagrams per wake-up at most, so one busy group cannot starve the rest


class MulticastBridge:
    def __init__(
        self,
        opts: MulticastOptions,
        network: str,
        on_datagram: Callable[[bytes, tuple[str, int]], None],
        on_batch: Callable[[], None],
    ) -> None:
        self.opts = opts
        self.network = network
        self._on_datagram = on_datagram
        self._on_batch = on_batch
        self.iface: Interface | None = None
        self._tx: socket.socket | None = None
        self._own: tuple[str, int] | None = None
        self._socks: dict[str, tuple[Dest, socket.socket]] = {}
        self.dests: set[Dest] = set()  # group addresses listened on (targets to send() to)
        self.send_errors = 0

    @property
    def enabled(self) -> bool:
        return self._tx is not None

    def start(self) -> str | None:
        """Check the interface and the route for the network; None when multicast is on, else
        the one-line reason it is off (every group then stays on the relay)."""
        if not self.opts.enabled:
            return "multicast disabled by configuration"
        probe = str(ipaddress.IPv4Network(self.network).network_address + 1)
        try:
            self.iface = check_multicast(probe, self.opts)
            self._tx = open_sender_socket(self.iface, self.opts.ttl)
        except NetError as exc:
            self.iface = None
            return str(exc)
        self._own = self._tx.getsockname()[:2]
        return None

    def sync(self, wanted: dict[str, Dest]) -> tuple[list[str], list[str]]:
        """Listen on exactly the groups in ``wanted``; returns (opened, closed) group names."""
        closed = [g for g, (dest, _) in self._socks.items() if wanted.get(g) != dest]
        for g in closed:
            self._close(g)
        opened = []
        if self.iface is not None:
            for g, dest in wanted.items():
                if g in self._socks:
                    continue
                try:
                    sock = open_member_socket(dest[0], dest[1], self.iface)
                except NetError as exc:
                    log.warning("group '%s' stays on the relay: %s", g, exc)
                    continue
                self._socks[g] = (dest, sock)
                self.dests.add(dest)
                asyncio.get_running_loop().add_reader(sock.fileno(), self._readable, sock)
                opened.append(g)
        return opened, closed

    def send(self, data: bytes, dest: Dest) -> None:
        try:
            self._tx.sendto(data, dest)  # type: ignore[union-attr]
        except OSError:  # a full buffer (non-blocking) or a vanished route: voice is lossy
            self.send_errors += 1

    def close(self) -> None:
        for g in list(self._socks):
            self._close(g)
        if self._tx is not None:
            self._tx.close()
            self._tx = None

    def _close(self, group: str) -> None:
        dest, sock = self._socks.pop(group)
        if not any(d == dest for d, _ in self._socks.values()):
            self.dests.discard(dest)
        try:
            asyncio.get_running_loop().remove_reader(sock.fileno())
        except RuntimeError:  # no running loop: closing at shutdown
            pass
        sock.close()

    def _readable(self, sock: socket.socket) -> None:
        own = self._own
        for _ in range(READ_BATCH):
            try:
                data, addr = sock.recvfrom(2048)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                break
            if addr != own:  # our own bridged frames and echoes come back on a shared machine
                self._on_datagram(data, addr)
        self._on_batch()
