"""Claims of a dead node's groups by the survivors, over a real etcd (issue #17).

    flock /work/wt/bench.lock timeout 300 .venv/bin/python bench/bench_claims.py --groups 2520
    PYTHONPATH=/work/main .venv/bin/python bench/bench_claims.py   # another tree's ownership

One etcd (1 s leases, 50/500 ms raft timers, as bench_cluster_big) started here on a loopback
port; a dead node's ``--groups`` home keys (and its node key) under one lease of its own, put
by this process; ``--survivors`` survivor processes, each a real
:class:`~ptt.cluster.ownership.Ownership` with a node key (so each knows the live nodes) that
claims every group whose home vanished, as ``ptt.cluster.node`` does. Once every survivor has
read the homes, the dead node's lease is revoked (its keys go in one revision, as when it
expires) and each survivor says when its view has every group homed again.

Reported: seconds from the revoke until the first survivor sees every group homed, claims a
second, etcd's raft proposals over that time (``etcd_server_proposals_committed_total``), the
claim transactions each survivor sent and how many groups each got. The ownership module is the
one on the import path: run with ``PYTHONPATH`` set to another tree to measure it the same way.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_access_list  # noqa: E402
import loadgen  # noqa: E402

HOME_PREFIX = "/ptt/groups/"


def _say(what: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {what}", file=sys.stderr, flush=True)


# --- a survivor process -------------------------------------------------------------------------


async def _survivor(endpoint: str, name: str, groups: list[str]) -> None:
    from ptt.cluster.ownership import Change, Ownership, OwnershipEvent

    claimed: list[str] = []
    own: Ownership

    def on_event(event: OwnershipEvent) -> None:
        if event.change is Change.CLAIMED:
            claimed.append(event.group)
        if event.change is Change.VANISHED:  # as ptt.cluster.node does
            if hasattr(own, "want_soon"):
                own.want_soon([event.group])
            else:  # an ownership module from before batched claims
                asyncio.get_running_loop().create_task(own.want([event.group]))

    own = Ownership([endpoint], name, on_event=on_event, address=f"127.0.0.1:{os.getpid()}")
    await own.start()
    want = set(groups)
    while sum(1 for g in want if own.home(g) is not None) < len(want):
        await asyncio.sleep(0.01)
    print(json.dumps({"ready": True}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)  # "go"
    while any(own.home(g) is None or own.home(g).node == "dead" for g in want):  # type: ignore[union-attr]
        await asyncio.sleep(0.005)
    done = time.monotonic()
    await asyncio.sleep(1.0)  # the last answers of transactions still in flight
    print(json.dumps({"all_homed": done, "claimed": len(claimed),
                      "sent": getattr(own, "claims_sent", None),
                      "cpu": time.process_time()}), flush=True)
    await own.stop(release=False)


# --- the run ------------------------------------------------------------------------------------


async def _dead_node(endpoint: str, groups: list[str]) -> int:
    """The dead node's keys under a lease kept alive by hand; returns the lease id."""
    from ptt.cluster.gateway import GatewayClient, put_op
    from ptt.cluster.ownership import parse_endpoints

    client = GatewayClient(parse_endpoints([endpoint])[0])
    try:
        lease = int((await client.post("/v3/lease/grant", {"TTL": "30"}, 5.0))["ID"])
        for i in range(0, len(groups), 100):
            await client.post("/v3/kv/txn", {"success": [
                put_op(f"{HOME_PREFIX}{g}/home".encode(), b"dead", lease)
                for g in groups[i:i + 100]]}, 5.0)
        await client.post("/v3/kv/put", put_op(b"/ptt/nodes/dead", b"127.0.0.1:1",
                                               lease)["request_put"], 5.0)
    finally:
        client.close()
    return lease


async def _revoke(endpoint: str, lease_id: int) -> None:
    from ptt.cluster.gateway import GatewayClient
    from ptt.cluster.ownership import parse_endpoints

    client = GatewayClient(parse_endpoints([endpoint])[0])
    try:
        await client.post("/v3/lease/revoke", {"ID": str(lease_id)}, 5.0)
    finally:
        client.close()


def run(args: argparse.Namespace) -> dict[str, Any]:
    from ptt.cluster import engines, ownership

    groups = [f"g{k:05d}" for k in range(args.groups)]
    out: dict[str, Any] = {"groups": args.groups, "survivors": args.survivors,
                           "ownership": ownership.__file__,
                           "machine": loadgen.machine_line()}
    with tempfile.TemporaryDirectory(prefix="ptt-bench-claims-") as tmp:
        etcd = engines.start_etcd(Path(tmp) / "etcd", heartbeat_ms=50, election_ms=500)
        procs: list[subprocess.Popen[str]] = []
        try:
            lease = asyncio.run(_dead_node(etcd.endpoint, groups))
            for k in range(args.survivors):
                procs.append(subprocess.Popen(
                    [sys.executable, __file__, "--survivor", f"s{k}", "--etcd", etcd.endpoint,
                     "--groups", str(args.groups)],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True))
            for p in procs:
                assert p.stdout is not None
                line = p.stdout.readline()
                if not line:
                    raise RuntimeError("a survivor did not start")
            out["load_before"] = loadgen.load_average()
            m0 = bench_access_list.metrics(etcd.endpoint)
            for p in procs:
                assert p.stdin is not None
                p.stdin.write("go\n")
                p.stdin.flush()
            t0 = time.monotonic()
            asyncio.run(_revoke(etcd.endpoint, lease))
            results = []
            for p in procs:
                assert p.stdout is not None
                line = p.stdout.readline()
                if not line:
                    raise RuntimeError("a survivor ended without its figures")
                results.append(json.loads(line))
            m1 = bench_access_list.metrics(etcd.endpoint)
            first = min(r["all_homed"] for r in results) - t0
            out.update({
                "all_claimed_s": round(first, 3),
                "claims_per_s": round(args.groups / first, 1),
                # the survivors' last second (their transactions still in flight) included
                "proposals": int(m1["proposals"] - m0["proposals"]),
                "proposals_per_s": round((m1["proposals"] - m0["proposals"])
                                         / (time.monotonic() - t0), 1),
                "claimed_each": [r["claimed"] for r in results],
                "sent_each": [r["sent"] for r in results],
                "survivor_cpu_s": [round(r["cpu"], 2) for r in results],
                "load_after": loadgen.load_average(),
            })
        finally:
            for p in procs:
                p.kill()
                p.wait()
            etcd.stop()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--groups", type=int, default=2520, help="the dead node's groups")
    ap.add_argument("--survivors", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--survivor", help=argparse.SUPPRESS)
    ap.add_argument("--etcd", help=argparse.SUPPRESS)
    ap.add_argument("--json", type=Path, help="append each round's figures here, one a line")
    args = ap.parse_args()
    if args.groups < 1 or args.survivors < 1 or args.rounds < 1:
        print("bench_claims: --groups, --survivors and --rounds must be at least 1",
              file=sys.stderr)
        return 2
    if args.survivor:
        asyncio.run(_survivor(args.etcd, args.survivor,
                              [f"g{k:05d}" for k in range(args.groups)]))
        return 0
    for _ in range(args.rounds):
        r = run(args)
        print(json.dumps(r), flush=True)
        if args.json:
            with args.json.open("a") as f:
                f.write(json.dumps(r) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
