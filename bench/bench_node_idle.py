"""What a cluster node costs with nobody on it: CPU per node per second, per thread, by engine.

    .venv/bin/python bench/bench_node_idle.py                  # 2,000 groups, 30 s per setup
    .venv/bin/python bench/bench_node_idle.py --groups 200 --seconds 10

A node's fixed work (its lease renewals, the ownership watch, the periodic presence lists to
every home, NATS pings, its own timers) is shared by its clients: divided over fewer clients
per node, it is what makes a cluster node's CPU per client exceed a single server's even when
nothing crosses the bus. Three setups, each with the same directory (``--groups`` groups of 10
users, nobody logged in) and the same four nodes as ``bench_cluster_churn`` starts them
(``PttServer`` + ``ClusterNode`` in forked processes):

1. **single**: one server, no cluster (the reference: its timers alone);
2. **nats**: four nodes over a real NATS, homes by the static rule (no etcd);
3. **nats+etcd**: the same with a real etcd (1 s leases, 50/500 ms raft timers): leases,
   claims of every group, the watch, the node keys.

CPU is utime + stime of each thread from ``/proc/PID/task/TID/stat`` over the window (after
``--settle`` s), reported per node and per thread name (the event loop's ``python`` thread,
gRPC's threads...), user and system time apart, with each thread's voluntary context switches
per second (its wake-ups, near enough). Everything talks to 127.0.0.1; every process started here is stopped by
its PID.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_cluster_churn as churn  # noqa: E402
import loadgen  # noqa: E402
from bench_idle import thread_cpu  # noqa: E402


def setup(name: str, root: Path, seed_db: Path, groups: list[str], nats_url: str | None,
          etcd: list[str] | None, args: argparse.Namespace) -> dict[str, Any]:
    names = churn.NODES if nats_url else ("single",)
    nodes: dict[str, churn.NodeProc] = {}
    try:
        churn.start_nodes(nodes, name, root, seed_db, nats_url, etcd, {})
        time.sleep(args.settle)
        for p in nodes.values():
            p.call("handles")
        b0 = {n: p.call("bus") for n, p in nodes.items()}
        c0 = {n: thread_cpu(p.pid) for n, p in nodes.items()}
        t0 = time.monotonic()
        load0 = loadgen.load_average()
        spies = (churn.spy(name, nodes, args.seconds - 2, args.pyspy) if args.pyspy
                 else [])
        time.sleep(args.seconds)
        c1 = {n: thread_cpu(p.pid) for n, p in nodes.items()}
        wall = time.monotonic() - t0
        b1 = {n: p.call("bus") for n, p in nodes.items()}
        h1 = {n: p.call("handles") for n, p in nodes.items()}
        homed = {n: p.call("stats").get("homed") for n, p in nodes.items()}
        churn.end_spies(spies)
    finally:
        for p in nodes.values():
            p.stop(10)
    out: dict[str, Any] = {"setup": name, "groups": len(groups), "window_s": round(wall, 1),
                           "load_average": f"{load0} -> {loadgen.load_average()}", "nodes": {}}
    for n in names:
        per_s = {t: (c1[n].get(t, 0.0) - c0[n].get(t, 0.0)) / wall for t in c1[n]}
        threads = {t: (v if t.endswith(" wakeups") else 1e3 * v) for t, v in per_s.items()}
        out["nodes"][n] = {
            "ms_cpu_per_s": round(sum(v for t, v in threads.items() if " " not in t), 2),
            "threads_ms_per_s": {t: round(v, 2) for t, v in threads.items() if v > 0},
            "homed": homed[n],
            "loop_callbacks_per_s": {k: round(v / wall, 1) for k, v in sorted(
                h1[n].items(), key=lambda kv: -kv[1])[:12]},
            "bus_per_s": {k: round((v - b0[n].get(k, 0)) / wall, 2)
                          for k, v in sorted(b1[n].items())},
        }
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--groups", type=int, default=2000)
    ap.add_argument("--seconds", type=float, default=30.0, help="the measured window per setup")
    ap.add_argument("--settle", type=float, default=5.0, help="s after the nodes start")
    ap.add_argument("--setups", default="single,nats,nats+etcd",
                    help="comma-separated: single, nats, nats+etcd")
    ap.add_argument("--json", type=Path, help="write every figure here")
    ap.add_argument("--pyspy", type=Path, metavar="DIR",
                    help="sample each node with py-spy over the window (bench/profile_summary.py)")
    args = ap.parse_args()
    wanted = args.setups.split(",")
    if args.groups < 1 or args.seconds <= 0 or not set(wanted) <= {"single", "nats", "nats+etcd"}:
        print("bench_node_idle: --groups >= 1, --seconds > 0, --setups of single, nats, "
              "nats+etcd", file=sys.stderr)
        return 2
    from ptt.cluster import engines

    print(f"machine: {loadgen.machine_line()}; load average {loadgen.load_average()}")
    results = []
    with tempfile.TemporaryDirectory(prefix="ptt-bench-node-idle-") as tmp:
        root = Path(tmp)
        groups, _ = churn.provision(root / "seed.db", args.groups * churn.GROUP_SIZE, 0)
        nats = engines.start_nats(root / "nats")
        etcd = engines.start_etcd(root / "etcd", heartbeat_ms=50, election_ms=500)
        try:
            for name in wanted:
                results.append(setup(name, root, root / "seed.db", list(groups),
                                     nats.url if name != "single" else None,
                                     etcd.endpoints if name == "nats+etcd" else None, args))
                r = results[-1]
                print(f"{name} ({r['groups']} groups, {r['window_s']} s, load "
                      f"{r['load_average']}):")
                for n, v in r["nodes"].items():
                    bus = {k: v for k, v in v["bus_per_s"].items() if v and "bytes" not in k}
                    print(f"  {n}: {v['ms_cpu_per_s']} ms CPU per s; threads "
                          f"{v['threads_ms_per_s']}; homed {v['homed']}; bus per s {bus}")
                    print(f"     loop callbacks per s: {v['loop_callbacks_per_s']}")
        finally:
            etcd.stop()
            nats.stop()
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
