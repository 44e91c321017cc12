"""CPU of one wake-up of an asyncio loop that slept: what a timer costs a node whose loop
would otherwise sleep (the lease's sign, the claims' sweep, a task's sleep).

    .venv/bin/python bench/bench_loop_wake.py                 # 3 s per gap
    .venv/bin/python bench/bench_loop_wake.py --gaps 0.01,0.1 --seconds 3

Each gap: ``asyncio.sleep(gap)`` again and again for ``--seconds``; the loop thread's CPU
(``time.thread_time``: the scheduler's count for this thread alone, not 10 ms ticks) per
wake-up. The Python run per cycle (``_run_once``, the task's step, the timer's heap) is tens
of microseconds on an idle machine; the rest is what the kernel and the hypervisor charge the
thread for leaving and re-entering an idle CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import loadgen  # noqa: E402


async def cycles(gap: float, seconds: float) -> tuple[float, float]:
    """CPU (us) per wake-up and the wall time (ms) of each sleep."""
    count = max(1, int(seconds / gap))
    c0, w0 = time.thread_time(), time.monotonic()
    for _ in range(count):
        await asyncio.sleep(gap)
    c1, w1 = time.thread_time(), time.monotonic()
    return 1e6 * (c1 - c0) / count, 1e3 * (w1 - w0) / count


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gaps", default="0.01,0.1", help="s slept between wake-ups, comma-separated")
    ap.add_argument("--seconds", type=float, default=3.0, help="per gap")
    args = ap.parse_args()
    try:
        gaps = [float(g) for g in args.gaps.split(",")]
    except ValueError:
        gaps = []
    if not gaps or min(gaps) <= 0 or args.seconds <= 0 or args.seconds > 60:
        print("bench_loop_wake: --gaps are positive seconds, --seconds in (0, 60]",
              file=sys.stderr)
        return 2
    for gap in gaps:
        load = loadgen.load_average()
        cpu, wall = asyncio.run(cycles(gap, args.seconds))
        print(f"asleep {gap * 1e3:g} ms: {cpu:.0f} us of the loop thread's CPU per wake-up "
              f"({wall:.2f} ms a cycle); load average {load} -> {loadgen.load_average()}",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
