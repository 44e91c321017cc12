"""The bus (ptt.cluster.bus) on a real NATS: a message is on the wire in the loop turn that sent
it, and messages arrive in the order sent whichever way each left, across a reconnection too;
they reach the node in nats-py's read loop, with no task of their own."""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import threading
import time

import pytest

from ptt.cluster.bus import CLIENT_NAME, Bus
from ptt.cluster.engines import Nats
from tests.cluster.fixtures import EngineStarter

WAIT = 10.0  # s at most for anything to arrive


def test_messages_leave_before_the_loop_turn_that_sent_them_ends(nats: Nats) -> None:
    """The sender's loop is blocked right after ``send_all`` to two nodes (as by the rest of a
    server's turn): both nodes, on another loop, get theirs all the same."""
    heard = {"b": threading.Event(), "c": threading.Event()}
    ready = threading.Event()
    stop = threading.Event()

    def other_nodes() -> None:
        async def main() -> None:
            buses = [Bus(n, [nats.url], lambda data, n=n: heard[n].set(), "bustest1")
                     for n in heard]
            for bus in buses:
                await bus.start()
            ready.set()
            while not stop.is_set():
                await asyncio.sleep(0.01)
            for bus in buses:
                await bus.close()
        asyncio.run(main())

    thread = threading.Thread(target=other_nodes, daemon=True)
    thread.start()
    try:
        assert ready.wait(WAIT)

        async def main() -> bool:
            bus = Bus("a", [nats.url], lambda data: None, "bustest1")
            await bus.start()
            try:
                bus.send_all([("b", b"floor news"), ("c", b"floor news")])
                # blocks this loop: no task of it runs meanwhile
                return all(e.wait(WAIT) for e in heard.values())
            finally:
                await bus.close()

        assert asyncio.run(main()), "the messages waited for the sender's next loop turn"
    finally:
        stop.set()
        thread.join(WAIT)


def test_order_holds_when_some_messages_wait_for_the_socket(nats: Nats) -> None:
    """A first batch larger than the socket takes at once (16 MB: the kernel's send buffer is
    4 MB at most here) leaves part of it in the transport's buffer; the messages sent after it
    wait for the writer. All arrive, in order."""
    batch, count, size = 128, 256, 128 * 1024
    got: list[int] = []

    async def main() -> int:
        done = asyncio.Event()

        def on_message(data: bytes) -> None:
            got.append(struct.unpack_from("!I", data)[0])
            if len(got) == count:
                done.set()

        receiver = Bus("b", [nats.url], on_message, "bustest2")
        sender = Bus("a", [nats.url], lambda data: None, "bustest2")
        await receiver.start()
        await sender.start()
        try:
            sender.send_all([("b", struct.pack("!I", k) + bytes(size)) for k in range(batch)])
            for k in range(batch, count):
                sender.send("b", struct.pack("!I", k) + bytes(size))
            sent_at_once = sender.sent
            await asyncio.wait_for(done.wait(), WAIT)
            return sent_at_once
        finally:
            await sender.close()
            await receiver.close()

    started = time.monotonic()
    sent_at_once = asyncio.run(main())
    assert got == list(range(count))
    assert sent_at_once == batch, f"{sent_at_once} of {count} written at once, not the batch"
    assert time.monotonic() - started < WAIT


def test_a_node_whose_nats_member_dies_sends_on_through_another_in_order(
        fresh_engines: EngineStarter) -> None:
    """The sender's NATS member is killed mid-stream: the bus reconnects to another member of
    the cluster (learnt from the first), what it sent meanwhile waits and follows, and what
    arrives arrives in order, the last message included."""
    cluster = fresh_engines.nats(3)
    first, _, last = cluster.urls
    count = 60
    got: list[int] = []

    async def main() -> None:
        done = asyncio.Event()

        def on_message(data: bytes) -> None:
            got.append(struct.unpack("!I", data)[0])
            if got[-1] == count - 1:
                done.set()

        receiver = Bus("b", [last], on_message, "bustest3")
        sender = Bus("a", [first], lambda data: None, "bustest3")
        await receiver.start()
        await sender.start()
        await asyncio.sleep(0.5)  # the route between the members carries the subscription
        try:
            for k in range(count):
                if k == count // 4:
                    cluster.members[0].kill()
                sender.send("b", struct.pack("!I", k))
                await asyncio.sleep(0.01)
            await asyncio.wait_for(done.wait(), WAIT)
        finally:
            await sender.close()
            await receiver.close()

    asyncio.run(main())
    assert got == sorted(set(got)) and got[-1] == count - 1  # in order, none twice, the last
    assert len(got) >= count // 2, f"only {len(got)} of {count} arrived"


def test_messages_reach_the_node_in_natspy_read_loop_in_order(
        nats: Nats, caplog: pytest.LogCaptureFixture) -> None:
    """What the bus relies on in the installed nats-py (``ptt.cluster.bus``, receiving): a
    subscription made with ``future=`` gets every message, in order, from the task that reads
    the socket, and no task of its own is made for it. A handler that raises is logged and
    breaks nothing: the messages after it arrive on the same connection."""
    count = 300
    got: list[int] = []
    readers: set[str] = set()

    async def main() -> tuple[list[str], int]:
        done = asyncio.Event()

        def on_message(data: bytes) -> None:
            task = asyncio.current_task()
            readers.add(task.get_coro().__qualname__ if task is not None else "no task")
            k = struct.unpack("!I", data)[0]
            got.append(k)
            if k == 7:
                raise RuntimeError("a handler's bug")
            if len(got) == count:
                done.set()

        receiver = Bus("b", [nats.url], on_message, "bustest4")
        sender = Bus("a", [nats.url], lambda data: None, "bustest4")
        await receiver.start()
        await sender.start()
        try:
            tasks = [t.get_coro().__qualname__ for t in asyncio.all_tasks()]
            for k in range(count):
                sender.send("b", struct.pack("!I", k))
                if k % 50 == 0:
                    await asyncio.sleep(0)
            await asyncio.wait_for(done.wait(), WAIT)
            assert receiver._nc is not None
            return tasks, receiver._nc.stats["reconnects"]
        finally:
            await sender.close()
            await receiver.close()

    with caplog.at_level(logging.ERROR, "ptt.cluster.bus"):
        tasks, reconnects = asyncio.run(main())
    assert got == list(range(count))
    assert readers == {"Client._read_loop"}, readers
    assert not [t for t in tasks if "wait_for_msgs" in t], tasks
    assert reconnects == 0
    assert "bus message handler failed" in caplog.text and "a handler's bug" in caplog.text


def _connected_as(url: str, name: str) -> socket.socket:
    """A bare NATS connection under ``name`` (nats-server's protocol by hand), connected."""
    host, port = url.rsplit("/", 1)[-1].rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=WAIT)
    sock.recv(4096)  # INFO
    sock.sendall(b'CONNECT {"name":"%s","verbose":false,"pedantic":false}\r\nPING\r\n'
                 % name.encode())
    got = b""
    while b"PONG" not in got:
        got += sock.recv(4096)
    return sock


def test_a_node_that_left_is_told_with_whether_its_own_end_closed(nats: Nats) -> None:
    """A connection under a node's name whose own end shuts its socket (as a killed process's
    kernel does) or resets it comes to ``on_left`` as closed by the node; one nats-server
    closes (here a protocol violation; a slow consumer, a stale connection alike) as not:
    the survivors probe such a node twice (``ptt.cluster.node``), since it connects again."""
    left: list[tuple[str, bool]] = []

    def on_left(node: str, by_client: bool) -> None:
        if node in ("x", "y", "z"):  # not another test's node closing late
            left.append((node, by_client))

    async def main() -> None:
        bus = Bus("a", [nats.url], lambda data: None, "bustest5", on_left=on_left)
        await bus.start()
        try:
            shut = _connected_as(nats.url, f"{CLIENT_NAME}x")
            shut.close()  # FIN: "Client Closed"
            reset = _connected_as(nats.url, f"{CLIENT_NAME}y")
            reset.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            reset.close()  # RST: "Read Error"
            kicked = _connected_as(nats.url, f"{CLIENT_NAME}z")
            kicked.sendall(b"PUB bustest5.x 2\r\ntoo long\r\n")  # "Protocol Violation"
            until = time.monotonic() + WAIT
            while len(left) < 3 and time.monotonic() < until:
                await asyncio.sleep(0.01)
            kicked.close()
        finally:
            await bus.close()

    asyncio.run(main())
    assert sorted(left) == [("x", True), ("y", True), ("z", False)], left
