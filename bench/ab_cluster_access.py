"""Cross-node floor access of two trees' servers, interleaved cycle by cycle in one run: an A/B
that the machine's moments (others' load, the hypervisor) cannot tell apart.

    PYTHONPATH=TREE .venv/bin/python bench/ab_cluster_access.py --a TREE_A --b TREE_B

Two clusters as ``bench_cluster.py`` builds them (nodes a, b, c, the group homed on c, the
talker on a, the listener on b), each over a NATS server of its own, the servers of one from
``--a``'s tree and of the other from ``--b``'s (their ``PYTHONPATH``), and two single servers
the same way. The clients are this process's (``ptt`` from ``PYTHONPATH``), one talker and one
listener per server set. Each floor cycle is ``bench_cluster.py``'s (request sent -> grant event
at the talker, release, the idle floor at the listener, ``PAUSE``); the cycles go A, B, B, A, A,
B, ... so each pair of neighbours has one of each, in both orders. Printed per tree: p50 and
mean of floor access (the grant's event time, and its datagram's kernel receive time); and
per pair, B minus A: the median and the count of pairs where B was slower.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_cluster as bc  # noqa: E402
from loadgen import load_average, machine_line, percentiles  # noqa: E402

from ptt.cluster import engines  # noqa: E402
from ptt.protocol import client as cl  # noqa: E402


def _say(what: str) -> None:
    print(f"{time.strftime('%H:%M:%S', time.gmtime())} {what}", file=sys.stderr, flush=True)


def _ready(talker: bc._Client, listener: bc._Client) -> bc._Loop:
    loop = bc._Loop([talker, listener])
    now = time.monotonic()
    for c in (talker, listener):
        c.core.connect(now)
        c.core.join(bc.GROUP, now)
    loop.until(lambda: all(bc.GROUP in c.core.groups and c.core.groups[bc.GROUP].state is not None
                           for c in (talker, listener)), 20, "logins and joins")
    return loop


def _cycle(loop: bc._Loop, talker: bc._Client, listener: bc._Client) -> tuple[float, float]:
    """One floor cycle of ``bench_cluster._measure``; access ms by the event and by the kernel."""
    talker.events.clear()
    talker.kernel_events.clear()
    t0 = time.monotonic()
    talker.core.request_floor(bc.GROUP, t0)
    talker.flush()
    loop.until(lambda: bc._state(talker) is cl.Participation.HAS_PERMISSION, 10, "a grant")
    granted = next(t for t, ev in talker.events if isinstance(ev, cl.FloorStateChanged)
                   and ev.state is cl.Participation.HAS_PERMISSION)
    kernel = next(t for t, ev in talker.kernel_events if isinstance(ev, cl.FloorStateChanged)
                  and ev.state is cl.Participation.HAS_PERMISSION)
    talker.core.release_floor(bc.GROUP, time.monotonic())
    loop.until(lambda: listener.core.groups[bc.GROUP].talker is None
               and bc._state(talker) is cl.Participation.NO_PERMISSION, 10, "the idle floor")
    pause = time.monotonic() + bc.PAUSE
    while time.monotonic() < pause:
        loop.step(pause - time.monotonic())
    return (granted - t0) * 1000, (kernel - t0) * 1000


def run(trees: dict[str, str], cycles: int) -> dict[str, dict[str, list[float]]]:
    """``cycles`` floor cycles on each tree's cluster, then on each tree's single server."""
    out: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory(prefix="ptt-ab-cluster-") as tmp:
        root = Path(tmp)
        seed = root / "seed.db"
        tokens = bc._directory(seed)
        nats = {k: engines.start_nats(root / f"nats-{k}") for k in trees}
        procs: list[subprocess.Popen[bytes]] = []
        try:
            addr = {}
            for k, tree in trees.items():
                (root / k).mkdir()
                addr[k] = bc.start_nodes(root / k, seed, nats[k].url, (*bc.NODES, "single"),
                                         procs, tree)
            _say("servers up")
            for setup, (ta, tb) in (("cross", ("a", "b")), ("single", ("single", "single"))):
                pairs = {k: (bc._Client("talker", tokens["talker"], addr[k][ta], True),
                             bc._Client("listener", tokens["listener"], addr[k][tb], True))
                         for k in trees}
                loops = {k: _ready(*pairs[k]) for k in trees}
                _say(f"{setup}: logged in")
                settle = time.monotonic() + 1.0
                while time.monotonic() < settle:
                    for loop in loops.values():
                        loop.step(0.01)
                got: dict[str, list[float]] = {f"{k} {what}": [] for k in trees
                                               for what in ("access", "kernel")}
                order = list(trees)
                for i in range(cycles):
                    k = order[(i + i // 2) % 2]  # A B B A A B ...
                    access, kernel = _cycle(loops[k], *pairs[k])
                    got[f"{k} access"].append(access)
                    got[f"{k} kernel"].append(kernel)
                for c in (c for p in pairs.values() for c in p):
                    c.sock.close()
                out[setup] = got
                _say(f"{setup}: done")
        finally:
            bc.stop_servers(procs)
            for engine in nats.values():
                engine.stop()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--a", required=True, metavar="TREE", help="PYTHONPATH of A's servers")
    parser.add_argument("--b", required=True, metavar="TREE", help="PYTHONPATH of B's servers")
    parser.add_argument("--cycles", type=int, default=600, help="floor cycles, both trees")
    args = parser.parse_args()
    if args.cycles < 4 or args.cycles > 5000:
        print("--cycles: 4 to 5000", file=sys.stderr)
        return 2
    print(f"load average {load_average()} at the start; A {args.a}, B {args.b}")
    res = run({"A": args.a, "B": args.b}, args.cycles)
    for setup, got in res.items():
        for what in ("access", "kernel"):
            a, b = got[f"A {what}"], got[f"B {what}"]
            diffs = [y - x for x, y in zip(a, b, strict=False)]
            print(f"{setup} {what}: A p50 {percentiles(a)['p50']:.3f} mean "
                  f"{statistics.fmean(a):.3f}, B p50 {percentiles(b)['p50']:.3f} mean "
                  f"{statistics.fmean(b):.3f} ms ({len(a)}, {len(b)} cycles); B - A by pair: "
                  f"median {statistics.median(diffs):+.3f} ms, B slower in "
                  f"{sum(d > 0 for d in diffs)} of {len(diffs)}")
    print(f"load average {load_average()} at the end")
    print(machine_line())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
