"""The list of where a node's clients are, as it writes it to etcd for the survivors of its
death (``ClusterNode.clients``, ``published_clients``): no engine needed to build it."""

from __future__ import annotations

from pathlib import Path

from ptt.cluster.config import ClusterConfig
from ptt.cluster.node import ClusterNode
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
