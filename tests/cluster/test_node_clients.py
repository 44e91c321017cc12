"""The list of where a node's clients are, as it writes it to etcd for the survivors of its
death (``ClusterNode.clients``, ``published_clients``): no engine needed to build it; when it
is written, against a real etcd."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from ptt.cluster import node as node_mod
from ptt.cluster.config import ClusterConfig
from ptt.cluster.engines import Etcd
from ptt.cluster.node import ClusterNode, clients_prefix
from ptt.config import ServerConfig
from ptt.protocol.cluster_clients import decode_clients
from ptt.server.app import PttServer


def test_the_published_list_follows_the_clients_that_come_and_go(tmp_path: Path) -> None:
    server = PttServer(ServerConfig(host="127.0.0.1", port=0, db=tmp_path / "db.sqlite",
                                    record_dir=tmp_path / "rec"))
    try:
        node = ClusterNode(server, ClusterConfig(node="a", nodes=("a", "b"),
                                                 nats=("nats://127.0.0.1:9",)))
        assert node.published_clients() == b""
        node.clients({1: ("127.0.0.1", 5001), 2: ("::1", 5002), 3: ("127.0.0.2", 5003)}, set())
        node.clients({4: ("127.0.0.1", 5004)}, {2})
        node.clients({1: ("127.0.0.9", 5009)}, set())  # session 1 moved: its new address
        node.clients({}, {7})  # a session never listed: nothing changes
        assert sorted(decode_clients(node.published_clients())) == [
            ("127.0.0.1", 5004), ("127.0.0.2", 5003), ("127.0.0.9", 5009)]
        node.clients({}, {1, 3, 4})
        assert node.published_clients() == b""
    finally:
        server.close()


def test_an_arrival_is_written_at_once_and_departures_alone_wait(
        tmp_path: Path, etcd: Etcd, monkeypatch: pytest.MonkeyPatch) -> None:
    """A client the written list lacks would not be told when its node dies: written within
    CLIENTS_PUBLISH_EVERY. A line left for a client that went costs a needless notice:
    departures alone wait for the next arrival's write, or CLIENTS_GONE_WAIT."""
    monkeypatch.setattr(node_mod, "CLIENTS_GONE_WAIT", 1.5)  # the test's wall time
    server = PttServer(ServerConfig(host="127.0.0.1", port=0, db=tmp_path / "db.sqlite",
                                    record_dir=tmp_path / "rec"))

    async def scenario() -> None:
        node = ClusterNode(server, ClusterConfig(node="a", nodes=("a", "b"),
                                                 nats=("nats://127.0.0.1:9",),
                                                 etcd=(etcd.endpoint,)))
        own = node.ownership
        assert own is not None
        await own.start()
        await own.delete_prefix(clients_prefix("a"))
        try:
            async def listed() -> list[tuple[str, int]]:
                return sorted(a for data in await own.get_prefix(clients_prefix("a"))
                              for a in decode_clients(data))

            async def until(want: list[tuple[str, int]], within: float) -> float:
                t0 = time.monotonic()
                while await listed() != want:
                    assert time.monotonic() - t0 < within, await listed()
                    await asyncio.sleep(0.05)
                return time.monotonic() - t0

            one, two, three = ("127.0.0.1", 5001), ("127.0.0.1", 5002), ("127.0.0.1", 5003)
            node.clients({1: one, 2: two}, set())
            await until([one, two], 0.5)  # the first arrivals: at once
            await asyncio.sleep(node_mod.CLIENTS_PUBLISH_EVERY + 0.1)
            node.clients({}, {2})  # a departure alone waits
            await asyncio.sleep(2 * node_mod.CLIENTS_PUBLISH_EVERY)
            assert await listed() == [one, two]
            node.clients({3: three}, set())  # an arrival: written with the departure
            await until([one, three], 0.5)
            await asyncio.sleep(node_mod.CLIENTS_PUBLISH_EVERY + 0.1)
            node.clients({}, {1})  # nothing arrives: written CLIENTS_GONE_WAIT later
            waited = await until([three], 2 * node_mod.CLIENTS_GONE_WAIT)
            assert waited > node_mod.CLIENTS_GONE_WAIT - 0.3
            # three writes succeeded: the departure alone never had one of its own (a write
            # etcd did not answer in time on a loaded machine is counted failed and made again)
            assert node.clients_written["writes"] == 3, node.clients_written
        finally:
            if node._publishing is not None:
                node._publishing.cancel()
            await own.stop()

    try:
        asyncio.run(scenario())
    finally:
        server.close()
