"""A node's bus messages (ptt.cluster.node over a real NATS, the server in this process, node b a
bare Bus): a read of messages that only change what the node knows costs the server one turn,
not one per message; the node's own messages without a floor message among them go in one
write per BUS_GATHER, all of them, in order."""

from __future__ import annotations

import asyncio
from pathlib import Path

from ptt.cluster.engines import Nats
from ptt.cluster.node import BUS_GATHER
from ptt.wire import cluster as wc
from tests.cluster.test_node_voice import _until, node_a_and_bus_b

GROUP = "ops"
PREFIX = "nodebus"
USERS = [f"u{i:02d}" for i in range(40)]


def test_members_elsewhere_read_together_cost_the_server_one_turn(nats: Nats,
                                                                  tmp_path: Path) -> None:
    """b tells a (the group's home) of 40 members online on b, one message each, in one write
    (a dead node's clients arriving at b): a learns all 40, in far fewer server turns than
    messages (not one a message)."""
    async def main() -> None:
        async with node_a_and_bus_b(nats, tmp_path, PREFIX, lambda data: None) as (server, node, b):
            assert server.admin is not None
            now = asyncio.get_running_loop().time()
            for u in USERS:
                server.admin.create_user(u, "volunteer")
            server.admin.execute("group.create", {"name": GROUP}, now)
            server.admin.execute("group.add", {"name": GROUP, "users": USERS}, now)
            await node.start()
            await b.start()
            turns = [0]
            transmit = server.transmit

            def counting(at: float) -> None:
                turns[0] += 1
                transmit(at)

            server.transmit = counting  # type: ignore[method-assign]
            g = server.core.state.groups[GROUP]
            b.send_all([("a", wc.encode(wc.Members(GROUP, "b", 0, "", (u,), (), False)))
                        for u in USERS])
            await _until(lambda: set(g.remote) == set(USERS), "the 40 members on b")
            await asyncio.sleep(0.05)
            assert turns[0] <= len(USERS) // 4, turns  # one a message: 40
            assert node.turns >= 1

    asyncio.run(main())


def test_logins_told_in_one_write_per_gather_time_all_in_order(nats: Nats,
                                                               tmp_path: Path) -> None:
    """20 server turns within a few ms, each with a login to tell b: the first goes at once,
    the rest in the write BUS_GATHER later (not one write a turn); b gets all 20, in
    order."""
    async def main() -> None:
        got: list[str] = []

        def heard(data: bytes) -> None:
            msg = wc.decode(data)
            if isinstance(msg, wc.Login):
                got.extend(msg.users)

        async with node_a_and_bus_b(nats, tmp_path, PREFIX, heard) as (server, node, b):
            await node.start()
            await b.start()
            await asyncio.sleep(2 * BUS_GATHER)
            writes = [0]
            send_all = node.bus.send_all

            def counting(messages: list[tuple[str, bytes]]) -> None:
                writes[0] += 1
                send_all(messages)

            node.bus.send_all = counting  # type: ignore[method-assign]
            loop = asyncio.get_running_loop()
            for u in USERS[:20]:
                node.routing.logged_in(u, "dev", loop.time())
                node.flush(loop.time())
            assert writes[0] == 1
            await _until(lambda: len(got) == 20, "the 20 logins at b")
            assert got == USERS[:20] and writes[0] == 2

    asyncio.run(main())
