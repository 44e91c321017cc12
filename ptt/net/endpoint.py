"""A client's UDP socket to the server, on asyncio's own datagram protocol.

::

    ep = await ClientEndpoint.open(("127.0.0.1", 7700), on_datagram, on_error)
    ep.send(data)          # no await: datagrams are fire-and-forget
    ep.close()

The socket is connected to the server, so only the server's datagrams arrive, and an ICMP "port
unreachable" comes back as ``on_error(ConnectionRefusedError)``. ``local`` binds the sending
address (host, port) first.
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


class ClientEndpoint(asyncio.DatagramProtocol):
    def __init__(self, on_datagram: Callable[[bytes], None],
                 on_error: Callable[[OSError], None]) -> None:
        self._on_datagram = on_datagram
        self._on_error = on_error
        self._transport: asyncio.DatagramTransport | None = None

    @classmethod
    async def open(cls, server: Addr, on_datagram: Callable[[bytes], None],
                   on_error: Callable[[OSError], None],
                   local: Addr | None = None) -> ClientEndpoint:
        """A socket connected to ``server`` (from ``local`` if given); OSError if it cannot
        be made."""
        loop = asyncio.get_running_loop()
        ep = cls(on_datagram, on_error)
        if local is None:
            await loop.create_datagram_endpoint(lambda: ep, remote_addr=server)
        else:
            await loop.create_datagram_endpoint(lambda: ep, sock=_bound(local, server))
        return ep

    def send(self, data: bytes) -> None:
        """Send one datagram to the server; dropped once the socket is closing."""
        if self._transport is not None and not self._transport.is_closing():
            self._transport.sendto(data)

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
        self._on_datagram(data)

    def error_received(self, exc: Exception) -> None:
        if isinstance(exc, OSError):
            self._on_error(exc)
