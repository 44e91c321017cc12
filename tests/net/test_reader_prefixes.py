"""ptt.net.reader: plain datagrams queued per network prefix and served in turn, on real
loopback sockets bound to sources in several /24s (a flood from a few networks, a newcomer)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from ptt.net.reader import PriorityReader

LOGIN = b"\x96" + bytes(80)  # a plain control message: all the reader looks at is the first byte


@pytest.fixture
def server() -> Iterator[socket.socket]:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    s.bind(("127.0.0.1", 0))
    s.setblocking(False)
    yield s
    s.close()


def sender(host: str, server: socket.socket) -> socket.socket:
    c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    c.bind((host, 0))
    c.connect(server.getsockname())
    return c


def test_a_newcomer_waits_its_turn_among_prefixes_not_behind_the_whole_flood(
        server: socket.socket) -> None:
    flooders = [sender(f"127.77.{k}.1", server) for k in range(3)]
    newcomer = sender("127.66.0.1", server)
    try:
        for i in range(200):  # 600 queued from three networks, then the newcomer's one
            for c in flooders:
                c.send(LOGIN + bytes([i % 256]))
        newcomer.send(b"\x96NEWCOMER")
        time.sleep(0.05)
        order: list[str] = []

        def handle(data: bytes, addr: Any, now: float) -> bool:
            order.append(addr[0])
            return True

        reader = PriorityReader(server, handle, time.monotonic, budget=10.0)
        assert reader.run() is False
        assert len(order) == 601
        # read from the kernel a few hundred at a time, then served in turn with the three
        # flooding prefixes: a few dozen before it at most (in one queue: all 600)
        assert order.index("127.66.0.1") < 30, order.index("127.66.0.1")
        assert reader.plain_dropped == 0
    finally:
        for c in [*flooders, newcomer]:
            c.close()


def test_a_full_backlog_still_takes_a_prefix_with_nothing_queued(server: socket.socket) -> None:
    flooder = sender("127.77.0.1", server)
    newcomer = sender("127.66.0.1", server)
    try:
        for i in range(50):  # different datagrams: a copy of one still waiting is dropped
            flooder.send(LOGIN + bytes([i]))
        newcomer.send(b"\x96NEWCOMER")
        time.sleep(0.05)
        seen: list[bytes] = []

        def handle(data: bytes, addr: Any, now: float) -> bool:
            seen.append(data)
            return True

        reader = PriorityReader(server, handle, time.monotonic, backlog_max=10, chunk=1,
                                budget=10.0)
        reader.run()
        assert b"\x96NEWCOMER" in seen  # it pushed out one of the flood's instead
        assert len(seen) <= 11 and reader.plain_dropped >= 40
    finally:
        flooder.close()
        newcomer.close()
