"""Floor access time with 1,000 and 10,000 registered, heartbeating clients on loopback.

A real server runs in its own process. Load workers (separate processes) log every client in, join
it to its group (groups of 20) and heartbeat each at the server's interval (1 s) with random phases.
A probe process holds two clients in each of 50 probe groups and times floor requests at the client:
request sent -> FloorResponse GRANTED received (idle group), and request sent -> QUEUED received
(busy group: the other probe client holds the floor). ``kernel`` columns take the receive time from
the socket's kernel timestamp (SO_TIMESTAMPNS) instead of the probe's user-space read, which leaves
out the probe process's own wake-up. Server CPU is the server process's CPU time over the probe
window. Target: p99 <= 1 ms at 10,000 clients (MCPTT KPI 1 allows 300 ms).

    .venv/bin/python bench/bench_floor_access.py           # 1,000 and 10,000 clients
    .venv/bin/python bench/bench_floor_access.py --quick   # 200 clients, 2 s (checks the harness)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import echo_floor  # noqa: E402
import loadgen  # noqa: E402

GROUP_SIZE = 20
PROBE_GROUPS = 50
RATE = 100.0  # probe samples started per second (one in four is a busy-group sample)
TRIALS = 3  # own-core 10,000-client runs, each followed by the machine's floor at the same rate


def measure(n_clients: int, duration: float, *, group_size: int = GROUP_SIZE,
            probe_groups: int = PROBE_GROUPS, rate: float = RATE,
            workers: int | None = None, settle: float = 2.0, server_nice: int = 0,
            light: bool = False, own_core: bool = False) -> dict[str, Any]:
    """One run: ``n_clients`` online and heartbeating; probe floor requests for ``duration`` s.

    ``light``: once logged in, the load clients only heartbeat, sealing each one themselves and
    draining the answers unopened (:meth:`loadgen.ClientPool.go_light`): the server sees the
    same traffic for about half the load generator's CPU. ``own_core``: the server process on
    CPU 0 alone, the load workers and the probe on the other CPUs, as a server with a core of
    its own would run."""
    n_groups = -(-n_clients // group_size)
    groups = {f"g{k:05d}": [f"u{j:06d}" for j in range(k * group_size,
                                                       min((k + 1) * group_size, n_clients))]
              for k in range(n_groups)}
    t_setup = time.monotonic()
    server = loadgen.ServerProc(nice=server_nice if os.geteuid() == 0 else 0)
    cpus = sorted(os.sched_getaffinity(0))
    pin = own_core and len(cpus) > 1
    if pin:
        os.sched_setaffinity(server.pid, {cpus[0]})
    procs: list[loadgen.WorkerProc] = []
    try:
        tokens = server.provision(groups)
        probe_clients: list[tuple[str, str, list[str]]] = []
        load_clients: list[tuple[str, str, list[str]]] = []
        for k, (g, members) in enumerate(groups.items()):
            for j, u in enumerate(members):
                entry = (u, tokens[u], [g])
                (probe_clients if k < probe_groups and j < 2 else load_clients).append(entry)
        n_workers = workers or (1 if len(load_clients) <= 3000 else 2)
        n_workers = max(1, min(n_workers, len(load_clients)))
        timeout = 60 + n_clients / 100
        inflight = max(5, loadgen.LOGIN_INFLIGHT // (2 * n_workers))
        procs = [loadgen.WorkerProc(server.address, load_clients[k::n_workers],
                                    login_timeout=timeout, inflight=inflight)
                 for k in range(n_workers)]
        probe = loadgen.WorkerProc(server.address, probe_clients, kernel_ts=True,
                                   login_timeout=timeout)
        procs.append(probe)
        if pin:
            for p in procs:
                os.sched_setaffinity(p.proc.pid, set(cpus[1:]))
        for p in procs:
            p.wait_ready()
        if light:
            for p in procs[:-1]:  # the probe keeps full client cores: it measures
                p.call("light")
        setup_s = time.monotonic() - t_setup
        time.sleep(settle)  # heartbeats settle into their random phases
        s0 = server.stats()
        res = probe.call("probe", {"rate": rate, "duration": duration}, timeout=duration + 30)
        s1 = server.stats()
        wstats = [p.call("stats", timeout=30) for p in procs]
    finally:
        for p in procs:
            p.stop()
        server.stop()
    d = loadgen.cpu_between(s0, s1)
    grant = loadgen.percentiles(res["grant_ms"])
    queued = loadgen.percentiles(res["queued_ms"])
    grant_k = loadgen.percentiles(res["grant_kernel_ms"])
    return {
        "clients": n_clients,
        "online": s1["sessions"],
        "groups": n_groups,
        "grants": len(res["grant_ms"]),
        "grant_p50_ms": grant["p50"], "grant_p95_ms": grant["p95"],
        "grant_p99_ms": grant["p99"], "grant_max_ms": grant["max"],
        "grant_kernel_p50_ms": grant_k["p50"], "grant_kernel_p99_ms": grant_k["p99"],
        "queued": len(res["queued_ms"]),
        "queued_p50_ms": queued["p50"], "queued_p99_ms": queued["p99"],
        "queued_max_ms": queued["max"],
        "server_cpu_pct": 100.0 * d["cpu"] / d["wall"],
        "server_datagrams_in_per_s": d["datagrams_in"] / d["wall"],
        "failed": res["failed"] + res["unfinished"],
        "disconnects": sum(w["disconnects"] for w in wstats),
        "gc_full_collections": s1["gc"]["count"][2] - s0["gc"]["count"][2],
        "gc_pause_ms_total": 1e3 * (sum(s1["gc"]["total"]) - sum(s0["gc"]["total"])),
        "timer_fires_per_s": (s1["timer_fires"] - s0["timer_fires"]) / d["wall"],
        "gc_longest_ms": 1e3 * max(s1["gc"]["longest"]),
        "load_workers": n_workers,
        "server_nice": server_nice if os.geteuid() == 0 else 0,
        "setup_s": setup_s,
        "light_load": light,
        "server_own_core": pin,
    }


ROW_KEYS = {
    "clients": "clients", "online": "online", "grants": "grants",
    "grant_p50_ms": "grant p50 ms", "grant_p95_ms": "grant p95 ms",
    "grant_p99_ms": "grant p99 ms", "grant_max_ms": "grant max ms",
    "grant_kernel_p99_ms": "grant p99 ms (kernel ts)",
    "queued": "queued", "queued_p50_ms": "queued p50 ms", "queued_p99_ms": "queued p99 ms",
    "queued_max_ms": "queued max ms",
    "server_cpu_pct": "server CPU %", "server_datagrams_in_per_s": "server datagrams in/s",
    "failed": "failed", "disconnects": "disconnects",
    "gc_pause_ms_total": "server GC pauses ms",
    "server_own_core": "server own core, light load",
}


def run(quick: bool = False) -> dict[str, Any]:
    sizes = (200,) if quick else (1_000, 10_000)
    duration = 2.0 if quick else 15.0
    load0 = loadgen.load_average()
    results: list[dict[str, Any]] = []
    for n in sizes:
        try:
            results.append(measure(n, duration, settle=0.5 if quick else 2.0))
        except Exception as exc:  # keep the sizes that worked; say why this one did not
            results.append({"clients": n, "error": f"{type(exc).__name__}: {exc}"[:300]})
    floors: list[dict[str, Any]] = []
    if not quick:
        # the same 10,000 with the server on a core of its own and lighter load, then at once
        # the machine's floor (an echo server, ptt.server's reader shape, no protocol) at the
        # rate the server saw: this VM's noise changes from minute to minute, so the two are
        # measured back to back, TRIALS times
        for _ in range(TRIALS):
            try:
                r = measure(sizes[-1], duration, light=True, own_core=True)
            except Exception as exc:
                r = {"clients": sizes[-1], "error": f"{type(exc).__name__}: {exc}"[:300],
                     "light_load": True, "server_own_core": True}
            results.append(r)
            rate = r.get("server_datagrams_in_per_s") or sizes[-1] * 1.02
            floors.append(echo_floor.measure(rate, duration, own_core=True))
    def row(r: dict[str, Any]) -> dict[str, Any]:
        return {label: r.get(k, "") for k, label in ROW_KEYS.items()} | (
            {"error": r["error"]} if "error" in r else {})

    def floor_row(f: dict[str, Any]) -> dict[str, Any]:
        return {"clients": "echo floor", "grant p50 ms": f["p50_ms"], "grant p99 ms": f["p99_ms"],
                "grant max ms": f["max_ms"], "grant p99 ms (kernel ts)": f["kernel_p99_ms"],
                "server CPU %": f["server_cpu_pct"], "server datagrams in/s": f["datagrams_per_s"],
                "server own core, light load": True}

    base = len(results) - len(floors)
    rows = [row(r) for r in results[:base]]
    for r, f in zip(results[base:], floors):  # each trial beside the floor measured after it
        rows += [row(r), floor_row(f)]
    big = [r for r in results if not r.get("server_own_core")][-1]
    own = [r for r in results if r.get("server_own_core") and "error" not in r]
    cmd = ".venv/bin/python bench/bench_floor_access.py" + (" --quick" if quick else "")

    def median(values: list[float]) -> float:
        v = sorted(values)
        return v[len(v) // 2] if v else float("nan")

    return {
        "title": "Floor access time (request sent -> grant received at the client)",
        "command": cmd,
        "target": "p99 <= 1 ms at 10,000 registered, heartbeating clients "
                  "(MCPTT KPI 1 allows 300 ms)",
        "rows": rows,
        "p99_ms_at_max": big.get("grant_p99_ms", float("nan")),
        "p99_ms_at_max_own_core_median": median([r["grant_p99_ms"] for r in own]) if own else None,
        "kernel_p99_ms_at_max_own_core_median": (
            median([r["grant_kernel_p99_ms"] for r in own]) if own else None),
        "echo_floor_p99_ms_median": median([f["p99_ms"] for f in floors]) if floors else None,
        "echo_floor_kernel_p99_ms_median": (median([f["kernel_p99_ms"] for f in floors])
                                            if floors else None),
        "met": bool(big.get("grant_p99_ms", 1e9) <= 1.0) if not quick else None,
        "notes": (f"Groups of {GROUP_SIZE}; {PROBE_GROUPS} probe groups sampled at {RATE:g} "
                  f"requests/s ({1 if quick else 15} s) while every client heartbeats once a "
                  "second. Server, load workers and the probe are separate processes on the same "
                  "machine. 'kernel ts': receive time from SO_TIMESTAMPNS (leaves out the probe's "
                  "own wake-up). Server CPU: its process CPU time over the probe window. The "
                  "server runs as `ptt server` does: its long-lived state frozen out of the "
                  "garbage collector (gc.freeze, PTT_NO_GC_FREEZE=1 turns it off); its reader "
                  "takes what the socket holds and handles requests and voice before keepalives "
                  "(ptt.net.reader; heartbeats are sealed marked 'K'); 'server GC pauses': "
                  "collector time in the probe window. Logins in flight are split between the "
                  "load workers (a login burst must not queue heartbeats for seconds). Rows "
                  "marked 'server own core, light load': the server pinned to CPU 0 alone, load "
                  "workers and probe on the other CPU, load clients in light mode (they seal "
                  "their heartbeats themselves and drain the answers unopened, about half the "
                  "load generator's CPU), each followed at once by an 'echo floor' row: "
                  "bench/echo_floor.py, a server with ptt's reader shape that only answers, "
                  "pinned the same way, fed the same datagram rate from 1,000 sockets and probed "
                  "at 100 requests/s. No server code can beat that row on this machine at that "
                  "minute; this VM's noise moves it from under 1 ms to several ms within an "
                  "hour."),
        "machine": loadgen.machine_line(),
        "load_average": f"{load0} at the start, {loadgen.load_average()} at the end",
        "results": results,
        "echo_floor": floors,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="200 clients for 2 s")
    ap.add_argument("--clients", type=int, nargs="*", help="client counts to measure")
    ap.add_argument("--duration", type=float, default=15.0)
    ap.add_argument("--group-size", type=int, default=GROUP_SIZE)
    ap.add_argument("--workers", type=int, default=None, help="load worker processes")
    ap.add_argument("--server-nice", type=int, default=0,
                    help="server process priority (negative: it pre-empts the load generators)")
    ap.add_argument("--light", action="store_true",
                    help="load clients only heartbeat, sealed by themselves (half the CPU)")
    ap.add_argument("--own-core", action="store_true",
                    help="the server alone on CPU 0, load and probe on the other CPUs")
    ap.add_argument("--json", action="store_true", help="print the result as JSON too")
    args = ap.parse_args()
    print(f"machine: {loadgen.machine_line()}")
    if args.clients:
        results = [measure(n, args.duration, group_size=args.group_size, workers=args.workers,
                           server_nice=args.server_nice, light=args.light,
                           own_core=args.own_core)
                   for n in args.clients]
        res: dict[str, Any] = {"rows": [{label: r[k] for k, label in ROW_KEYS.items()}
                                        for r in results],
                               "command": " ".join([".venv/bin/python", *sys.argv]),
                               "results": results}
    else:
        res = run(args.quick)
    print(f"command: {res['command']}")
    print(loadgen.fmt_table(res["rows"]))
    if res.get("target"):
        print(f"target: {res['target']}")
    if args.json:
        print(json.dumps(res, default=str, indent=1))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
