"""A cluster node's bus is written once per batch of datagrams the server reads, not once per
datagram (``PttServer._read_ready``): each write is a system call and a wake-up of NATS; a batch
of forwarded voice frames alone writes nothing more and re-arms no timer (the relay's hot path),
and the floor's silence timer still ends the burst after the last frame."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path
from typing import Any

from ptt.client.connection import Connection
from ptt.config import ServerConfig
from ptt.protocol import client as cl
from ptt.protocol import floor as fl
from ptt.protocol.client import Participation
from ptt.protocol.server import ServerCoreConfig
from ptt.server.app import PttServer
from ptt.wire.voice import VoiceHeader, encode_voice


class Hook:
    """The server's cluster hook (``ptt.server.app.ClusterHook``), noting when it is flushed."""

    def __init__(self, server: PttServer) -> None:
        self.server = server
        self.flushes: list[int] = []  # datagrams the server had read at each flush
        self.urgent_after: set[int] = set()  # datagrams read when urgent() says so
        self.frames = 0  # voice frames handed to voice()

    def flush(self, now: float) -> None:
        self.flushes.append(self.server.counters.datagrams_in)

    def urgent(self) -> bool:
        return self.server.counters.datagrams_in in self.urgent_after

    def voice(self, data: bytes, now: float) -> None:
        self.frames += 1

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
        # One batch is what one call of the reader handles within its budget (2 ms); on a
        # loaded machine a preemption inside the twelve would end the batch there, so the
        # budget here outlasts any stall and the batch is the twelve waiting datagrams.
        assert server._reader is not None
        server._reader.budget = 30.0
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


def test_forwarded_frames_alone_flush_nothing_and_the_silence_timer_still_ends_the_burst(
        tmp_path: Path) -> None:
    async def main() -> None:
        silence = 0.3
        server = PttServer(ServerConfig(host="127.0.0.1", port=0, db=tmp_path / "ptt.db",
                                        record_dir=tmp_path / "rec"), iterations=1000,
                           core_config=ServerCoreConfig(floor=fl.FloorConfig(silence=silence)))
        await server.start()
        loop = asyncio.get_running_loop()
        assert server.admin is not None
        now = loop.time()
        tokens = {u: server.admin.create_user(u, "volunteer")[1] for u in ("ann", "bob")}
        server.admin.execute("group.create", {"name": "ops"}, now)
        server.admin.execute("group.add", {"name": "ops", "users": ["ann", "bob"]}, now)
        ann, bob = (Connection(server.address, u, tokens[u]) for u in ("ann", "bob"))
        hook = Hook(server)
        try:
            for c in (ann, bob):
                await c.open()
                await c.join("ops")
            assert (await ann.request_floor("ops")).state is Participation.HAS_PERMISSION
            heard: list[bytes] = []
            bob.on_voice = heard.append
            server.cluster = hook
            base = server.counters.datagrams_in
            timer_turns = [0]
            handle_timer = server.core.handle_timer

            def counted(now: float) -> None:
                timer_turns[0] += 1
                handle_timer(now)
            server.core.handle_timer = counted  # type: ignore[method-assign]
            gid, sid, burst = ann.core.talk_route("ops")  # type: ignore[misc]
            for k in range(20):  # 0.4 s of frames, longer than the silence timer
                ann.send_voice(encode_voice(VoiceHeader(gid, sid, burst, k, k * 320), b"x" * 60))
                await asyncio.sleep(0.02)
            last = loop.time()
            await _until(lambda: len(heard) == 20)
            # a flush for each other datagram (heartbeats, reports) and timer turn (the floor
            # news repeated) at most, none for a frame
            others = server.counters.datagrams_in - base - 20 + timer_turns[0]
            assert hook.frames == 20 and len(hook.flushes) <= others < 20, (hook.flushes, others)
            flushed = len(hook.flushes)
            await _until(lambda: bob.core.groups["ops"].talker is None, 3.0)
            ended = loop.time() - last
            assert silence <= ended + 0.02 < silence + 1.0, ended  # timed from the last frame
            assert len(hook.flushes) > flushed  # the burst's end: a turn, the bus flushed
        finally:
            server.cluster = None
            for c in (ann, bob):
                await c.close()
            server.close()

    asyncio.run(main())


async def _until(done: Any, within: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not done():
        assert loop.time() < deadline, "the server did not read the datagrams in time"
        await asyncio.sleep(0.01)
