"""A node's voice path (ptt.server.app with ptt.cluster.node, over a real NATS): a frame the relay
accepts goes to the other nodes with listeners before this node's own listeners, since theirs is
the longer way (a real server and node in this process, node b a bare Bus that says it has
members); and its peer port (the media plane) takes only authentic, current datagrams of a
node that told it its epoch: forged, replayed and malformed ones are dropped and counted."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from ptt.client.connection import Connection
from ptt.cluster.bus import Bus
from ptt.cluster.config import ClusterConfig
from ptt.cluster.engines import Nats
from ptt.cluster.node import ClusterNode
from ptt.config import ServerConfig
from ptt.protocol.client import Participation
from ptt.protocol.server_events import Dropped
from ptt.server.app import PttServer
from ptt.wire import cluster as wc
from ptt.wire.peer import key_check, peer_key, seal
from ptt.wire.voice import VoiceHeader, encode_voice, is_voice

GROUP = "ops"
PREFIX = "nodevoice"


async def _until(cond: object, what: str, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():  # type: ignore[operator]
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def node_a_and_bus_b(nats: Nats, tmp_path: Path, prefix: str,
                           heard: Callable[[bytes], None],
                           ) -> AsyncIterator[tuple[PttServer, ClusterNode, Bus]]:
    """A real server in this process as cluster node a (GROUP's home) and node b as a bare Bus
    handing what it hears to ``heard``: the server started, the node and the bus left to the
    test to start (some make users and groups first), all three closed after it."""
    server = PttServer(ServerConfig(host="127.0.0.1", port=0, db=tmp_path / "ptt.db",
                                    record_dir=tmp_path / "rec"), iterations=1000)
    await server.start()
    node = ClusterNode(server, ClusterConfig("a", ("a", "b"), (nats.url,),
                                             subject_prefix=prefix, homes={GROUP: "a"}))
    b = Bus("b", [nats.url], heard, prefix)
    try:
        yield server, node, b
    finally:
        await b.close()
        await node.close()
        server.close()
        await server.wait_closed()


def test_a_frame_goes_to_the_other_nodes_before_the_local_listeners(nats: Nats,
                                                                    tmp_path: Path) -> None:
    async def main() -> None:
        other: list[bytes] = []
        conns: list[Connection] = []
        def at_b(data: bytes) -> None:
            if is_voice(data):
                other.append(data)

        async with node_a_and_bus_b(nats, tmp_path, PREFIX, at_b) as (server, node, b):
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

    asyncio.run(main())


def test_the_peer_port_drops_forged_replayed_and_malformed_datagrams(nats: Nats,
                                                                    tmp_path: Path) -> None:
    async def main() -> None:
        prefix = PREFIX + "-peer"
        told: list[wc.Message] = []
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

        def at_b(data: bytes) -> None:
            if not is_voice(data):
                told.append(wc.decode(data))

        async with node_a_and_bus_b(nats, tmp_path, prefix, at_b) as (server, node, b):
            try:
                await node.start()
                await b.start()
                assert node.peers is not None
                port = node.peers.addr
                # b shares a's secret, as a cluster's nodes do
                key = peer_key(server.shared_secret())
                b.send("a", wc.encode(wc.Peer("b", "127.0.0.1", 9, 77, 0, key_check(key))))
                await _until(lambda: any(isinstance(m, wc.Peer) for m in told), "a's answer")
                answer = next(m for m in told if isinstance(m, wc.Peer))
                assert (answer.node, answer.seen, answer.port) == (
                    "a", 77, port[1])
                frame = encode_voice(VoiceHeader(1, 2, 3, 4, 5), bytes(40))
                genuine = seal(key, "b", 77, 1, frame)
                sent = [
                    genuine,  # taken, and handed to the routing's mirror check
                    genuine,  # the same again: replayed
                    seal(peer_key(b"not the cluster's secret"), "b", 77, 2, frame),  # forged
                    seal(key, "b", 76, 3, frame),  # an earlier life of b: unknown
                    b"P\x01\x05nonsense",  # malformed
                    bytes(3000),  # too long: malformed
                ]
                dropped: list[Dropped] = []  # what the event log and the metrics hear
                server.listeners.append(lambda ev, now: dropped.append(ev)
                                        if isinstance(ev, Dropped) else None)
                for data in sent:
                    sock.sendto(data, port)
                drops = server.counters.drop_reasons
                await _until(lambda: sum(v for k, v in drops.items() if k.startswith("peer_")) == 5,
                             "the five refusals counted")
                assert {k: v for k, v in drops.items() if k.startswith("peer_")} == {
                    "peer_replayed": 1, "peer_forged": 1, "peer_unknown": 1, "peer_malformed": 2}
                assert sorted(ev.reason.split(":")[0] for ev in dropped) == [
                    "peer_forged", "peer_malformed", "peer_malformed", "peer_replayed",
                    "peer_unknown"]
                assert {ev.addr[1] for ev in dropped} == {sock.getsockname()[1]}
                assert node.peers.accepted == 1
                assert server.counters.voice_out == 0  # of no group here: nobody to send it to
                assert server.is_open and node.bad_messages == 0
            finally:
                sock.close()

    asyncio.run(main())
