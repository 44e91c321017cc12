"""The ``--cluster`` file: what it accepts, and one line with exit 2 for anything wrong."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from ptt.cluster.config import load_cluster_config, parse_cluster_config
from ptt.errors import ConfigError
from tests.acceptance.harness import PTT, clean_env

GOOD = {"node": "a", "nodes": ["a", "b"], "nats": ["nats://127.0.0.1:14222"]}


def test_a_minimal_file_and_a_full_one() -> None:
    c = parse_cluster_config(GOOD)
    assert (c.node, c.nodes, c.nats, c.address, c.lease_ttl) == (
        "a", ("a", "b"), ("nats://127.0.0.1:14222",), None, None)
    full = parse_cluster_config({**GOOD, "address": "127.0.0.1:0", "lease_ttl": 1,
                                 "etcd": ["http://127.0.0.1:12379"], "homes": {"g": "b"},
                                 "postgres": "postgresql://127.0.0.1:15432/ptt",
                                 "subject_prefix": "ptt.test", "steer": False,
                                 "peer": "[::1]:7801"})
    assert c.steer and not full.steer  # steering clients to their groups' homes: on by default
    assert full.address == ("127.0.0.1", 0) and full.homes == {"g": "b"}
    assert full.lease_ttl == 1 and full.etcd == ("http://127.0.0.1:12379",)
    assert c.peer == ("127.0.0.1", 0) and full.peer == ("::1", 7801)  # loopback by default


@pytest.mark.parametrize(("change", "message"), [
    ({"node": "z"}, "'node' (z) is not one of 'nodes'"),
    ({"node": "a b"}, "'node' must be a node id"),
    ({"nodes": ["a", "a"]}, "'nodes' lists a node twice"),
    ({"nats": []}, "'nats' must be a non-empty list"),
    ({"nats": ["http://x"]}, "is not a nats:// URL"),
    ({"address": "nowhere"}, "'address'"),
    ({"lease_ttl": 0}, "'lease_ttl' must be a whole number"),
    ({"lease_ttl": 1.5}, "'lease_ttl' must be a whole number"),
    ({"homes": {"g": "c"}}, "homes.g: 'c' is not one of 'nodes'"),
    ({"colour": "red"}, "unknown setting 'colour'"),
    ({"subject_prefix": "a..b"}, "'subject_prefix'"),
    ({"steer": "yes"}, "'steer' must be true or false"),
    ({"peer": 7801}, "'peer' must be a string HOST:PORT"),
    ({"peer": "127.0.0.1:99999"}, "'peer'"),
    ({"peer": "0.0.0.0:7801"}, "'peer' must be this node's own address"),
])
def test_each_mistake_is_named(change: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_cluster_config({**GOOD, **change})


def test_the_server_refuses_a_bad_file_in_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "node.toml"
    bad.write_text('node = "a"\nnodes = ["a"]\n')
    with pytest.raises(ConfigError, match=f"cluster config {bad}: 'nats' is required"):
        load_cluster_config(bad)
    proc = subprocess.run([PTT, "server", "--db", str(tmp_path / "ptt.db"), "--port", "0",
                           "--cluster", str(bad)], capture_output=True, text=True, timeout=30,
                          env=clean_env(tmp_path), stdin=subprocess.DEVNULL)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines == [f"error: cluster config {bad}: 'nats' is required"], proc.stderr
