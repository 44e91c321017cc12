"""A client's UDP socket to the server, on asyncio's own datagram protocol.

::

    ep = await ClientEndpoint.open(("127.0.0.1", 7700), on_datagram, on_error)
    ep.send(data)          # no await: datagrams are fire-and-forget
    ep.close()

The socket is connected to the server, so only the server's datagrams arrive, and an ICMP "port
unreachable" comes back as ``on_error(ConnectionRefusedError)``. ``local`` binds the sending
address (host, port) first.

A client with a list of servers (a cluster's access nodes) opens it with ``roaming``: the socket
is not connected, sends to :attr:`ClientEndpoint.peer` (:meth:`retarget` moves it, keeping the
local port), hands the peer's datagrams to ``on_datagram`` and those of every other sender to
``roaming(data, addr)`` (a surviving node's notice that the client's node died). It gets no
ICMP errors.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import cast

from ptt.errors import NetError

Addr = tuple[str, int]


def _bound(local: Addr, server: Addr) -> socket.socket:
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


def resolve_address(server: Addr) -> Addr:
    """``server`` as datagrams from it carry it: a numeric host (names resolved once)."""
    info = socket.getaddrinfo(server[0], server[1], type=socket.SOCK_DGRAM)[0]
    return str(info[4][0]), int(info[4][1])


def _unconnected(local: Addr | None, server: Addr) -> socket.socket:
    """A UDP socket bound to ``local``, else to the address the system would send to
    ``server`` from (port chosen by the system), not connected."""
    family = socket.AF_INET6 if ":" in server[0] else socket.AF_INET
    if local is None:
        probe = socket.socket(family, socket.SOCK_DGRAM)
        try:
            probe.connect(server)  # UDP: nothing is sent, the route picks the source
            local = (probe.getsockname()[0], 0)
        finally:
            probe.close()
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.bind(local)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class ClientEndpoint(asyncio.DatagramProtocol):
    def __init__(self, on_datagram: Callable[[bytes], None],
                 on_error: Callable[[OSError], None],
                 roaming: Callable[[bytes, Addr], None] | None = None,
                 peer: Addr | None = None) -> None:
        self._on_datagram = on_datagram
        self._on_error = on_error
        self._roaming = roaming
        self.peer = peer  # where a roaming socket sends (None: its connected peer)
        self._transport: asyncio.DatagramTransport | None = None

    @classmethod
    async def open(cls, server: Addr, on_datagram: Callable[[bytes], None],
                   on_error: Callable[[OSError], None],
                   local: Addr | None = None,
                   roaming: Callable[[bytes, Addr], None] | None = None) -> ClientEndpoint:
        """A socket connected to ``server`` (from ``local`` if given); OSError if it cannot
        be made. With ``roaming``, not connected (module docstring)."""
        loop = asyncio.get_running_loop()
        if roaming is not None:
            server = resolve_address(server)
            ep = cls(on_datagram, on_error, roaming, server)
            await loop.create_datagram_endpoint(lambda: ep, sock=_unconnected(local, server))
            return ep
        ep = cls(on_datagram, on_error)
        if local is None:
            await loop.create_datagram_endpoint(lambda: ep, remote_addr=server)
        else:
            await loop.create_datagram_endpoint(lambda: ep, sock=_bound(local, server))
        return ep

    def send(self, data: bytes) -> None:
        """Send one datagram to the server; dropped once the socket is closing."""
        if self._transport is not None and not self._transport.is_closing():
            if self.peer is None:
                self._transport.sendto(data)
            else:
                self._transport.sendto(data, self.peer)

    @property
    def roaming(self) -> bool:
        return self._roaming is not None

    def retarget(self, server: Addr) -> None:
        """A roaming socket sends to ``server`` from now on (same local port)."""
        self.peer = resolve_address(server)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    @property
    def local_address(self) -> Addr:
        """The socket's own address:port (what the server sees as this client's source)."""
        if self._transport is None:
            raise NetError("the endpoint is not open")
        host, port = self._transport.get_extra_info("sockname")[:2]
        return str(host), int(port)

    # --- asyncio.DatagramProtocol -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # asyncio's selector transport for datagrams is not a DatagramTransport subclass
        self._transport = cast(asyncio.DatagramTransport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None

    def datagram_received(self, data: bytes, addr: Addr) -> None:
        if self._roaming is None or addr[:2] == self.peer:
            self._on_datagram(data)
        else:
            self._roaming(data, (addr[0], addr[1]))

    def error_received(self, exc: Exception) -> None:
        if isinstance(exc, OSError):
            self._on_error(exc)
