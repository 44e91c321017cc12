"""The bus (ptt.cluster.bus) on a real NATS: a message is on the wire in the loop turn that sent
it, and messages arrive in the order sent whichever way each left."""

from __future__ import annotations

import asyncio
import struct
import threading
import time

from ptt.cluster.bus import Bus
from ptt.cluster.engines import Nats

WAIT = 10.0  # s at most for anything to arrive


def test_a_message_leaves_before_the_loop_turn_that_sent_it_ends(nats: Nats) -> None:
    """The sender's loop is blocked right after ``send`` (as by the rest of a server's turn):
    the message reaches a node on another loop all the same."""
    heard = threading.Event()
    ready = threading.Event()
    stop = threading.Event()

    def other_node() -> None:
        async def main() -> None:
            bus = Bus("b", [nats.url], lambda data: heard.set(), "bustest1")
            await bus.start()
            ready.set()
            while not stop.is_set():
                await asyncio.sleep(0.01)
            await bus.close()
        asyncio.run(main())

    thread = threading.Thread(target=other_node, daemon=True)
    thread.start()
    try:
        assert ready.wait(WAIT)

        async def main() -> bool:
            bus = Bus("a", [nats.url], lambda data: None, "bustest1")
            await bus.start()
            try:
                bus.send("b", b"floor input")
                return heard.wait(WAIT)  # blocks this loop: no task of it runs meanwhile
            finally:
                await bus.close()

        assert asyncio.run(main()), "the message waited for the sender's next loop turn"
    finally:
        stop.set()
        thread.join(WAIT)


def test_order_holds_when_some_messages_wait_for_the_socket(nats: Nats) -> None:
    """A burst larger than the socket takes at once: the first go straight to it, the rest wait
    for the writer; all arrive, in order."""
    count, size = 200, 64 * 1024
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
            for k in range(count):
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
    assert 0 < sent_at_once < count, f"both ways taken? {sent_at_once} of {count} at once"
    assert time.monotonic() - started < WAIT
