"""What a node's client list costs etcd (issue #17): bytes and writes a second, etcd's data.

    flock /work/wt/bench.lock timeout 600 .venv/bin/python bench/bench_access_list.py
    .venv/bin/python bench/bench_access_list.py --clients 2000 --seconds 5   # a check

One real etcd (50/500 ms raft timers, as the cluster benches run it) on a loopback port, and one
``ClusterNode`` (its ``Ownership`` started: the lease, its renewer thread, the watch; no NATS, no
clients' traffic) fed where its clients are as ``PttServer`` feeds it (``node.clients(added,
removed)``, every ``PEERS_SAVE_EVERY``), in two modes:

- ``shards``: the node's own publisher (``ptt.protocol.cluster_clients``: the shards that
  changed, one transaction at most every 0.5 s);
- ``whole``: the list written whole (one put of every client's line at most every 0.5 s, as the
  node did before the shards), reproduced here from the same ``ClientShards`` content.

Per mode and ``--clients`` (clients on the node): the node first fills to that many (``--fill``
logins a second, as the 100,000-client run's logins came to a node), then ``--seconds`` of
churn (``--rate`` logins and as many logouts a second). Measured from etcd's ``/metrics``
over each phase: bytes etcd received from its clients (gRPC), keys written (puts and deletes,
inside transactions too), raft proposals committed (one per put or transaction: what etcd
replicates and syncs to its WAL), its database's size (and in use) and its data directory's
size on disk (its WAL is preallocated, 61 MiB a file). With ``--compact``
etcd runs with periodic auto-compaction of revisions older than that (``engines.start_etcd``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import loadgen  # noqa: E402

from ptt.cluster import engines  # noqa: E402
from ptt.cluster.config import ClusterConfig  # noqa: E402
from ptt.cluster.node import CLIENTS_PUBLISH_EVERY, ClusterNode, clients_prefix  # noqa: E402
from ptt.config import ServerConfig  # noqa: E402
from ptt.server.app import PttServer  # noqa: E402
from ptt.server.peers import PEERS_SAVE_EVERY  # noqa: E402

METRICS = {
    "rx_bytes": "etcd_network_client_grpc_received_bytes_total",
    "puts": "etcd_mvcc_put_total",
    "deletes": "etcd_mvcc_delete_total",
    "proposals": "etcd_server_proposals_committed_total",
    "db_bytes": "etcd_mvcc_db_total_size_in_bytes",
    "db_in_use_bytes": "etcd_mvcc_db_total_size_in_use_in_bytes",
}


def metrics(endpoint: str) -> dict[str, float]:
    text = urllib.request.urlopen(f"{endpoint}/metrics", timeout=10).read().decode()
    out = dict.fromkeys(METRICS, 0.0)
    names = {v: k for k, v in METRICS.items()}
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in names:
            out[names[name]] += float(line.rsplit(" ", 1)[1])
    return out


def du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


class WholeList:
    """The list as the node wrote it before its shards: every client's line in one put."""

    def __init__(self, node: ClusterNode) -> None:
        self.node = node
        self.dirty = False
        self.task: asyncio.Task[None] | None = None
        self.written = {"bytes": 0, "writes": 0, "failed": 0}

    def clients(self, added: dict[int, tuple[str, int]], removed: set[int]) -> None:
        self.node._clients.change(added, removed)
        if self.node._clients.take():  # something changed: the whole list again
            self.dirty = True
            if self.task is None:
                self.task = asyncio.get_running_loop().create_task(self._publish())

    async def _publish(self) -> None:
        own = self.node.ownership
        assert own is not None
        try:
            while self.dirty:
                self.dirty = False
                data = self.node.published_clients()
                try:
                    await own.put(clients_prefix(self.node.config.node) + b"whole", data)
                    self.written["writes"] += 1
                    self.written["bytes"] += len(data)
                except Exception:  # noqa: BLE001 - counted, written again
                    self.written["failed"] += 1
                    self.dirty = True
                await asyncio.sleep(CLIENTS_PUBLISH_EVERY)
        finally:
            self.task = None


async def phase(feed: Any, sessions: dict[int, tuple[str, int]], rng: random.Random,
                logins: float, logouts: float, seconds: float, target: int | None,
                port: list[int]) -> None:
    """``logins``/``logouts`` a second, fed every PEERS_SAVE_EVERY as the server does, for
    ``seconds`` or (with ``target``) until that many clients."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    due_in = due_out = 0.0
    while True:
        await asyncio.sleep(PEERS_SAVE_EVERY)
        if target is None and loop.time() - start >= seconds:
            return
        due_in += logins * PEERS_SAVE_EVERY
        due_out += logouts * PEERS_SAVE_EVERY
        added: dict[int, tuple[str, int]] = {}
        removed: set[int] = set()
        while due_in >= 1 and (target is None or len(sessions) + len(added) < target):
            due_in -= 1
            sid = rng.getrandbits(32) or 1
            port[0] += 1
            added[sid] = (f"127.0.{1 + port[0] // 60000 % 200}.{1 + port[0] % 250}",
                          1024 + port[0] % 60000)
        while due_out >= 1 and sessions:
            due_out -= 1
            sid = next(iter(sessions))
            removed.add(sid)
            del sessions[sid]
        sessions.update(added)
        if added or removed:
            feed(added, removed)
        if target is not None and len(sessions) >= target:
            return


async def one(mode: str, clients: int, args: argparse.Namespace, root: Path) -> dict[str, Any]:
    etcd = engines.start_etcd(root / f"etcd-{mode}-{clients}", heartbeat_ms=50, election_ms=500,
                              compact_after=args.compact)
    server = PttServer(ServerConfig(host="127.0.0.1", port=0, db=root / f"{mode}{clients}.db",
                                    record_dir=root / "rec"))
    node = ClusterNode(server, ClusterConfig(node="a", nodes=("a",), nats=("nats://127.0.0.1:9",),
                                             etcd=tuple(etcd.endpoints),
                                             address=("127.0.0.1", 9)))
    own = node.ownership
    assert own is not None
    out: dict[str, Any] = {"mode": mode, "clients": clients}
    try:
        await own.start()
        whole = WholeList(node)
        feed = node.clients if mode == "shards" else whole.clients
        rng = random.Random(args.seed)
        sessions: dict[int, tuple[str, int]] = {}
        port = [0]
        data_dir = etcd.root / next(p.name for p in etcd.root.iterdir() if p.is_dir())
        for name, logins, logouts, seconds, target in (
                ("fill", args.fill, 0.0, 0.0, clients),
                ("churn", args.rate, args.rate, args.seconds, None)):
            m0, d0, t0 = metrics(etcd.endpoint), du(data_dir), time.monotonic()
            w0 = dict(node.clients_written if mode == "shards" else whole.written)
            load0 = loadgen.load_average()
            await phase(feed, sessions, rng, logins, logouts, seconds, target, port)
            await asyncio.sleep(2 * CLIENTS_PUBLISH_EVERY)  # the last write lands
            wall = time.monotonic() - t0
            m1, d1 = metrics(etcd.endpoint), du(data_dir)
            w1 = node.clients_written if mode == "shards" else whole.written
            out[name] = {
                "s": round(wall, 1),
                "clients_at_end": len(sessions),
                "etcd_rx_kb_s": round((m1["rx_bytes"] - m0["rx_bytes"]) / wall / 1e3, 1),
                "etcd_keys_written_s": round((m1["puts"] + m1["deletes"] - m0["puts"]
                                              - m0["deletes"]) / wall, 1),
                "etcd_proposals_s": round((m1["proposals"] - m0["proposals"]) / wall, 2),
                "node_value_kb_s": round((w1["bytes"] - w0["bytes"]) / wall / 1e3, 1),
                "node_writes": w1["writes"] - w0["writes"],
                "node_failed": w1["failed"] - w0["failed"],
                "db_mib": [round(m0["db_bytes"] / 2**20, 1), round(m1["db_bytes"] / 2**20, 1)],
                "db_in_use_mib": round(m1["db_in_use_bytes"] / 2**20, 1),
                "data_dir_mib": [round(d0 / 2**20, 1), round(d1 / 2**20, 1)],
                "load": f"{load0} -> {loadgen.load_average()}",
            }
            _say(f"{mode} {clients} {name}: {out[name]}")
        listed = await own.get_prefix(clients_prefix("a"))
        out["read_back_bytes"] = sum(len(v) for v in listed)
        out["read_back_keys"] = len(listed)
    finally:
        await own.stop()
        server.close()
        etcd.stop()
    return out


def _say(what: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {what}", file=sys.stderr, flush=True)


async def amain(args: argparse.Namespace) -> list[dict[str, Any]]:
    results = []
    with tempfile.TemporaryDirectory(prefix="ptt-bench-alist-") as tmp:
        for clients in args.clients:
            for mode in args.modes:
                results.append(await one(mode, clients, args, Path(tmp)))
    return results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=lambda s: [int(x) for x in s.split(",")],
                    default=[5000, 25000], help="clients on the node, comma-separated")
    ap.add_argument("--modes", type=lambda s: s.split(","), default=["whole", "shards"])
    ap.add_argument("--fill", type=float, default=200.0, help="logins a second while filling")
    ap.add_argument("--rate", type=float, default=40.0,
                    help="logins and logouts a second while churning")
    ap.add_argument("--seconds", type=float, default=60.0, help="s of churn")
    ap.add_argument("--compact", help="etcd's periodic auto-compaction retention (e.g. 1m)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    if min(args.clients) < 1 or args.rate < 0 or args.fill <= 0 or args.seconds <= 0 or any(
            m not in ("whole", "shards") for m in args.modes):
        print("bench_access_list: --clients >= 1, --fill > 0, --seconds > 0, --rate >= 0, "
              "--modes of whole,shards", file=sys.stderr)
        return 2
    print(f"machine: {loadgen.machine_line()}; load average {loadgen.load_average()}")
    results = asyncio.run(amain(args))
    for r in results:
        print(json.dumps(r))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
