"""A node's voice path (ptt.server.app with ptt.cluster.node, over a real NATS): a frame the relay
accepts goes to the other nodes with listeners before this node's own listeners, since theirs is
the longer way (a real server and node in this process, node b a bare Bus that says it has
members)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from ptt.client.connection import Connection
from ptt.cluster.bus import Bus
from ptt.cluster.config import ClusterConfig
from ptt.cluster.engines import Nats
from ptt.cluster.node import ClusterNode
from ptt.config import ServerConfig
from ptt.protocol.client import Participation
from ptt.server.app import PttServer
from ptt.wire import cluster as wc
from ptt.wire.voice import VoiceHeader, encode_voice, is_voice

GROUP = "ops"
PREFIX = "nodevoice"


async def _until(cond: object, what: str, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():  # type: ignore[operator]
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def test_a_frame_goes_to_the_other_nodes_before_the_local_listeners(nats: Nats,
                                                                    tmp_path: Path) -> None:
    async def main() -> None:
        server = PttServer(ServerConfig(host="127.0.0.1", port=0, db=tmp_path / "ptt.db",
                                        record_dir=tmp_path / "rec"), iterations=1000)
        await server.start()
        node = ClusterNode(server, ClusterConfig("a", ("a", "b"), (nats.url,),
                                                 subject_prefix=PREFIX, homes={GROUP: "a"}))
        other: list[bytes] = []
        b = Bus("b", [nats.url], lambda data: other.append(data) if is_voice(data) else None,
                PREFIX)
        conns: list[Connection] = []
        try:
            assert server.admin is not None
            now = asyncio.get_running_loop().time()
            tokens = {u: server.admin.create_user(u, "volunteer")[1] for u in ("ann", "bob")}
            server.admin.execute("group.create", {"name": GROUP}, now)
            server.admin.execute("group.add", {"name": GROUP, "users": ["ann", "bob"]}, now)
            await node.start()
            await b.start()
            gid = server.core.state.groups[GROUP].group_id
            b.send("a", wc.encode(wc.Presence("b", (GROUP,), (), True)))  # members on b
            await _until(lambda: node.routing.voice_nodes(gid) == ("b",), "b in the relay set")

            seen: list[int] = []  # the local listeners' frames sent when the bus got the frame
            to_bus = node.voice

            def voice(data: bytes, now: float) -> None:
                seen.append(server.counters.voice_out)
                to_bus(data, now)

            node.voice = voice  # type: ignore[method-assign]
            heard: list[bytes] = []
            conns = [Connection(server.address, u, tokens[u]) for u in ("ann", "bob")]
            for c in conns:
                await c.open()
                await c.join(GROUP)
            ann, bob = conns
            bob.on_voice = heard.append
            assert (await ann.request_floor(GROUP)).state is Participation.HAS_PERMISSION
            route = ann.core.talk_route(GROUP)
            assert route is not None
            frame = encode_voice(VoiceHeader(*route, 0, 0), bytes(80))
            ann.send_voice(frame)
            await _until(lambda: heard and other, "the frame at bob and at node b")
            assert heard == other == [frame]
            assert seen == [0]  # bob's copy was not yet sent when node b's was
        finally:
            for c in conns:
                await c.close()
            await b.close()
            await node.close()
            server.close()

    asyncio.run(main())
