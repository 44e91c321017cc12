"""A cluster node's bus is written once per batch of datagrams the server reads, not once per
datagram (``PttServer._read_ready``): each write is a system call and a wake-up of NATS."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path
from typing import Any

from ptt.config import ServerConfig
from ptt.protocol import client as cl
from ptt.server.app import PttServer


class Hook:
    """The server's cluster hook (``ptt.server.app.ClusterHook``), noting when it is flushed."""

    def __init__(self, server: PttServer) -> None:
        self.server = server
        self.flushes: list[int] = []  # datagrams the server had read at each flush
        self.urgent_after: set[int] = set()  # datagrams read when urgent() says so

    def flush(self, now: float) -> None:
        self.flushes.append(self.server.counters.datagrams_in)

    def urgent(self) -> bool:
        return self.server.counters.datagrams_in in self.urgent_after

    def voice(self, data: bytes, now: float) -> None:
        pass

    def get_timer(self) -> float | None:
        return None

    def handle_timer(self, now: float) -> None:
        pass

    def clients(self, added: dict[int, tuple[str, int]], removed: set[int]) -> None:
        pass


def test_the_bus_is_flushed_once_after_a_batch_of_logins(tmp_path: Path) -> None:
    """Twelve clients' Hellos already waiting on the socket: the server answers each (a
    Challenge) in one batch and flushes the cluster once, after the last; a datagram that
    comes alone is flushed after it."""
    _batch(tmp_path, set(), [12], [12, 13])


def test_what_the_node_calls_urgent_is_flushed_inside_the_batch(tmp_path: Path) -> None:
    """The same batch, the node saying after the 5th datagram that a floor input waits (as
    ``ClusterNode.urgent`` does): flushed then, and the rest once at the end."""
    _batch(tmp_path, {5}, [5, 12], [5, 12, 13])


def _batch(tmp_path: Path, urgent_after: set[int], after_batch: list[int],
           after_one: list[int]) -> None:
    async def main() -> None:
        server = PttServer(ServerConfig(host="127.0.0.1", port=0, db=tmp_path / "ptt.db",
                                        record_dir=tmp_path / "rec"), iterations=1000)
        await server.start()
        hook = Hook(server)
        hook.urgent_after = urgent_after
        server.cluster = hook
        addr = server.address
        socks = []
        try:
            for i in range(13):
                core = cl.ClientCore(f"u{i}", "token", os.urandom, f"test/{i}")
                core.connect(0.0)
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                sock.bind(("127.0.0.1", 0))
                sock.settimeout(2.0)
                socks.append((sock, core))
            for sock, core in socks[:12]:  # no await between: all wait for one read
                for data in core.datagrams_to_send():
                    sock.sendto(data, addr)
            await _until(lambda: server.counters.datagrams_in >= 12)
            await asyncio.sleep(0.05)
            assert server.counters.datagrams_in == 12
            assert hook.flushes == after_batch, hook.flushes
            for sock, _ in socks[:12]:  # each was answered all the same
                assert sock.recvfrom(2048)[0]
            sock, core = socks[12]
            for data in core.datagrams_to_send():
                sock.sendto(data, addr)
            await _until(lambda: server.counters.datagrams_in >= 13)
            await asyncio.sleep(0.05)
            assert hook.flushes == after_one, hook.flushes
        finally:
            server.cluster = None
            for sock, _ in socks:
                sock.close()
            server.close()

    asyncio.run(main())


async def _until(done: Any, within: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not done():
        assert loop.time() < deadline, "the server did not read the datagrams in time"
        await asyncio.sleep(0.01)
