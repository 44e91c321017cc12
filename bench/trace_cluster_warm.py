"""The cross-node floor request's and voice frame's Python, run warm: the floor of what
``trace_cluster_legs.py`` measures on the nodes.

Three cores with their routings in one process (``tests/protocol/clustersim.py``, a virtual
clock, no socket): the talker on A, the listener on B, the group homed on C, as in
``bench_cluster``. Each floor cycle (request, a frame, release) runs back to back, so the code is
warm in the caches; ``time.perf_counter`` around ``ServerCore.receive_datagram`` (a client's
datagram at its node) and ``ClusterRouting.receive`` (a node-to-node message) and
``receive_voice``. Against the traced legs (the same work on a node that slept between cycles)
the ratio is what cold caches cost on this machine.

    .venv/bin/python bench/trace_cluster_warm.py              # 300 cycles
    .venv/bin/python bench/trace_cluster_warm.py --cycles 1000
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from ptt.protocol.client import Participation  # noqa: E402
from ptt.protocol.cluster_routing import ClusterRouting  # noqa: E402
from ptt.protocol.server import ServerCore  # noqa: E402
from ptt.wire import cluster as wc  # noqa: E402
from ptt.wire.voice import is_voice  # noqa: E402
from tests.protocol.clustersim import bench_layout  # noqa: E402


def _kind(data: bytes) -> str:
    if is_voice(data):
        return "voice frame"
    try:
        msg = wc.decode(data)
    except Exception:  # noqa: BLE001 - a client's sealed datagram, not a cluster message
        return "client datagram"
    if isinstance(msg, wc.FloorInput):
        return f"FloorInput {msg.kind.name}"
    return type(msg).__name__


def run(cycles: int) -> dict[str, list[float]]:
    sim = bench_layout()
    timed: dict[str, list[float]] = {}
    saved: list[tuple[type, str, Any]] = []

    def wrap(cls: type, name: str, what: str, node_of: Callable[[Any], str]) -> None:
        f = getattr(cls, name)
        saved.append((cls, name, f))

        def g(self: Any, data: bytes, *a: Any, **k: Any) -> Any:
            t = time.perf_counter()
            r = f(self, data, *a, **k)
            us = (time.perf_counter() - t) * 1e6
            timed.setdefault(f"{node_of(self)}: {what} ({_kind(data)})", []).append(us)
            return r
        setattr(cls, name, g)

    names = {id(core): n for n, core in sim.cores.items()}
    wrap(ServerCore, "receive_datagram", "core.receive_datagram", lambda s: names[id(s)])
    wrap(ClusterRouting, "receive", "routing.receive", lambda s: s.node)
    wrap(ClusterRouting, "receive_voice", "routing.receive_voice", lambda s: s.node)
    try:
        ann = sim.clients["ann"]
        for _ in range(cycles):
            ann.request_floor("g", sim.now)
            sim.run_until(sim.now + 0.05)
            if ann.participation("g") is not Participation.HAS_PERMISSION:
                raise RuntimeError("the request was not granted")
            sim.send_voice()
            sim.run_until(sim.now + 0.02)
            ann.release_floor("g", sim.now)
            sim.run_until(sim.now + 0.05)
    finally:
        for cls, name, f in saved:
            setattr(cls, name, f)
    return timed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cycles", type=int, default=300, help="floor cycles (default 300)")
    args = ap.parse_args()
    if args.cycles < 1:
        print("trace_cluster_warm: --cycles at least 1", file=sys.stderr)
        return 2
    for what, us in sorted(run(args.cycles).items()):
        print(f"{what:58s} n {len(us):5d}  p50 {statistics.median(us):7.1f} us")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
