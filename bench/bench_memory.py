"""Server memory per registered client: resident set of a real server process as clients are added.

Three snapshots of the server process's VmRSS (bench/bench_load.py's monitored server):
started with an empty database; after registering N users in groups of 10 (store and core
directory); after all N log in, join and heartbeat (sessions, group membership, response caches).
The per-client figures are the differences divided by N. Run on loopback; bounded in time.

    .venv/bin/python bench/bench_memory.py            # 10,000 clients
    .venv/bin/python bench/bench_memory.py --quick    # 1,000 clients
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_load  # noqa: E402
import loadgen  # noqa: E402

GROUP_SIZE = 10


def measure(clients: int, workers: int = 2, settle: float = 3.0) -> dict[str, Any]:
    groups = {f"g{k:05d}": [f"u{j:06d}" for j in range(k * GROUP_SIZE,
                                                       min((k + 1) * GROUP_SIZE, clients))]
              for k in range(-(-clients // GROUP_SIZE))}
    server = bench_load.MonitoredServer()
    procs: list[bench_load.ChurnWorker] = []
    try:
        empty = server.stats()
        tokens = server.provision(groups)
        registered = server.stats()
        entries = [(u, tokens[u], [g]) for g, members in groups.items() for u in members]
        timeout = 60 + clients / 50
        procs = [bench_load.ChurnWorker(server.address, entries[k::workers], timeout)
                 for k in range(workers)]
        for p in procs:
            p.recv(timeout + 10)
        time.sleep(settle)  # heartbeats settle; login caches fill
        online = server.stats()
    finally:
        for p in procs:
            p.stop()
        server.stop()
    kib = 1024
    return {
        "clients": clients,
        "online": online["sessions"],
        "empty_rss_mib": empty["rss_kib"] / kib,
        "registered_rss_mib": registered["rss_kib"] / kib,
        "online_rss_mib": online["rss_kib"] / kib,
        "per_registered_kib": (registered["rss_kib"] - empty["rss_kib"]) / clients,
        "per_online_kib": (online["rss_kib"] - registered["rss_kib"]) / clients,
        "per_client_total_kib": (online["rss_kib"] - empty["rss_kib"]) / clients,
    }


ROW_KEYS = {"clients": "clients", "online": "online", "empty_rss_mib": "empty RSS MiB",
            "registered_rss_mib": "registered RSS MiB", "online_rss_mib": "online RSS MiB",
            "per_registered_kib": "KiB per registered user",
            "per_online_kib": "KiB per online session",
            "per_client_total_kib": "KiB per client (total)"}


def run(quick: bool = False) -> dict[str, Any]:
    sizes = (1_000,) if quick else (1_000, 10_000)
    results = [measure(n) for n in sizes]
    return {
        "title": "Server memory per client",
        "command": ".venv/bin/python bench/bench_memory.py" + (" --quick" if quick else ""),
        "rows": [{label: r[k] for k, label in ROW_KEYS.items()} for r in results],
        "kib_per_client": results[-1]["per_client_total_kib"],
        "notes": ("Resident set (VmRSS) of the server process: empty database, after registering "
                  "the users in groups of 10, after they all log in, join and heartbeat. RSS "
                  "includes allocator slack, so small sizes are noisy."),
        "machine": loadgen.machine_line(),
        "results": results,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1,000 clients")
    ap.add_argument("--clients", type=int, nargs="*")
    args = ap.parse_args()
    print(f"machine: {loadgen.machine_line()}")
    if args.clients:
        rows = [{label: r[k] for k, label in ROW_KEYS.items()}
                for r in (measure(n) for n in args.clients)]
        res: dict[str, Any] = {"rows": rows, "command": " ".join([".venv/bin/python", *sys.argv])}
    else:
        res = run(args.quick)
    print(f"command: {res['command']}")
    print(loadgen.fmt_table(res["rows"]))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
