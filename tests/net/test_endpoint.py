"""ptt.net.endpoint on real loopback sockets: the client's socket to the server."""

from __future__ import annotations

import ast
import asyncio
import socket
import time
from pathlib import Path

import pytest

import ptt.client.connection
from ptt.client.connection import Connection
from ptt.errors import NetError
from ptt.net.endpoint import ClientEndpoint


def _server() -> socket.socket:
    srv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    srv.bind(("127.0.0.1", 0))
    srv.settimeout(3.0)
    return srv


def _free_port() -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = int(s.getsockname()[1])
    s.close()
    return port


def test_datagrams_both_ways_and_nothing_after_close() -> None:
    srv = _server()
    got: list[bytes] = []

    async def main() -> None:
        arrived = asyncio.Event()

        def on_datagram(data: bytes) -> None:
            got.append(data)
            arrived.set()

        ep = await ClientEndpoint.open(srv.getsockname(), on_datagram, lambda exc: None)
        ep.send(b"hello")
        data, addr = await asyncio.to_thread(srv.recvfrom, 2048)
        assert data == b"hello"
        srv.sendto(b"answer", addr)
        await asyncio.wait_for(arrived.wait(), 3.0)
        ep.close()
        await asyncio.sleep(0.05)
        ep.send(b"after close")  # dropped, no error
        srv.settimeout(0.2)
        with pytest.raises(TimeoutError):
            srv.recvfrom(2048)

    try:
        asyncio.run(main())
    finally:
        srv.close()
    assert got == [b"answer"]


def test_a_local_address_is_the_source_and_only_the_server_is_heard() -> None:
    srv, other = _server(), _server()
    local = ("127.0.0.1", _free_port())
    got: list[bytes] = []

    async def main() -> None:
        ep = await ClientEndpoint.open(srv.getsockname(), got.append, lambda exc: None, local)
        ep.send(b"x")
        _, addr = await asyncio.to_thread(srv.recvfrom, 2048)
        assert addr == local
        other.sendto(b"not the server", local)  # a connected socket does not take it
        srv.sendto(b"the server", local)
        deadline = time.monotonic() + 3.0
        while not got and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        ep.close()

    try:
        asyncio.run(main())
    finally:
        srv.close()
        other.close()
    assert got == [b"the server"]


def test_port_unreachable_is_reported_as_refused() -> None:
    errors: list[OSError] = []
    port = _free_port()

    async def main() -> None:
        ep = await ClientEndpoint.open(("127.0.0.1", port), lambda d: None, errors.append)
        deadline = time.monotonic() + 3.0
        while not errors and time.monotonic() < deadline:
            ep.send(b"anyone?")
            await asyncio.sleep(0.05)
        ep.close()

    asyncio.run(main())
    assert errors and isinstance(errors[0], ConnectionRefusedError)


def test_a_connection_to_a_port_nobody_listens_on_fails_at_once() -> None:
    port = _free_port()

    async def main() -> float:
        conn = Connection(("127.0.0.1", port), "ann", "token-of-ann-0123456789abcdef")
        start = time.monotonic()
        with pytest.raises(NetError, match=r"nothing is listening at .* \(connection refused\)"):
            await conn.open(timeout=6.0)
        return time.monotonic() - start

    took = asyncio.run(main())
    assert took < 3.0  # the refusal ends it, not the 6 s timeout


def test_the_connection_touches_no_other_objects_private_attributes() -> None:
    """Only ``self._x``: no ``self._stream._transport`` or ``other._x`` reached into."""
    tree = ast.parse(Path(ptt.client.connection.__file__).read_text())
    offenders = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))):
            offenders.append(f"line {node.lineno}: .{node.attr}")
    assert offenders == []
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert "asyncio_dgram" not in imported
