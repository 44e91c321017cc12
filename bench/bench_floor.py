"""Floor operations per second on the pure core: 10,000 participants in 1,000 groups, one core.

    .venv/bin/python bench/bench_floor.py [--quick]

Three runs on a FloorSet with a virtual clock, nothing else (no sockets, no asyncio):

* ``mixed``: a 20 ms tick. Every talker sends a voice frame per tick; each tick 10 random members
  key up (90% normal, 8% high, 2% emergency priority), so groups stay busy, queues form and
  emergencies pre-empt; talkers release after 0.5-4 s, one in ten falls silent instead and leaves it
  to T1; a session is lost now and then; the server fires every due timer. This is the target run.
* ``control``: the same groups with no voice at all: request / release / lost / timers only.
* ``voice``: ``FloorSet.voice`` alone, the per-frame hot path.

Every call into the FloorSet counts as one operation (``get_timer`` included). The driver's own
bookkeeping runs inside the timed loops, so the figures are floors, not peaks.
"""

from __future__ import annotations

import argparse
import platform
import random
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ptt.protocol.floor import BurstEnded, FloorEvent, FloorSet, Granted  # noqa: E402
from ptt.protocol.messages import Priority  # noqa: E402

GROUPS = 1_000
MEMBERS = 10  # per group; the last one listens only
TICK = 0.020  # one 20 ms voice frame
REQUESTS_PER_TICK = 10
TARGET = 200_000  # floor operations per second, one core
COMMAND = ".venv/bin/python bench/bench_floor.py"
PRIORITIES = [Priority.NORMAL] * 90 + [Priority.HIGH] * 8 + [Priority.EMERGENCY] * 2


def build() -> tuple[FloorSet, list[str], dict[str, list[str]]]:
    floors = FloorSet()
    groups = [f"group-{g:04d}" for g in range(GROUPS)]
    members: dict[str, list[str]] = {}
    for group in groups:
        floors.add_group(group)
        users = [f"{group}/user-{m}" for m in range(MEMBERS)]
        for m, user in enumerate(users):
            floors.add_member(group, user, listen_only=m == MEMBERS - 1)
        members[group] = users
    return floors, groups, members


def mixed(seconds: float, seed: int = 1) -> dict[str, object]:
    floors, groups, members = build()
    rng = random.Random(seed)
    ops: Counter[str] = Counter()
    talkers: dict[str, list[object]] = {}  # group -> [user, burst id, stop at, falls silent]

    def absorb(events: list[FloorEvent]) -> None:
        for event in events:
            if type(event) is Granted:
                silent = rng.random() < 0.1
                talkers[event.group] = [event.user, event.burst_id, now + rng.uniform(0.5, 4), silent]
            elif type(event) is BurstEnded:
                talkers.pop(event.group, None)

    now = 0.0
    started = time.process_time()
    for tick in range(int(seconds / TICK)):
        now = tick * TICK
        stopping = []
        for group, (user, burst_id, stop_at, silent) in talkers.items():
            if now >= stop_at:  # type: ignore[operator]
                if not silent:
                    stopping.append((group, user))
            elif not silent:
                floors.voice(group, user, burst_id, now)  # type: ignore[arg-type]
                ops["voice"] += 1
        for group, user in stopping:
            absorb(floors.release(group, user, now))  # type: ignore[arg-type]
            ops["release"] += 1
        for _ in range(REQUESTS_PER_TICK):
            group = groups[rng.randrange(GROUPS)]
            user = members[group][rng.randrange(MEMBERS)]
            absorb(floors.request(group, user, rng.choice(PRIORITIES), now))
            ops["request"] += 1
        if tick % 50 == 0:  # a session expires about once a second
            group = groups[rng.randrange(GROUPS)]
            absorb(floors.participant_lost(group, members[group][rng.randrange(MEMBERS)], now))
            ops["lost"] += 1
        while True:
            deadline = floors.get_timer()
            ops["get_timer"] += 1
            if deadline is None or deadline > now:
                break
            absorb(floors.handle_timer(now))
            ops["handle_timer"] += 1
    elapsed = time.process_time() - started
    return _result(ops, elapsed, seconds)


def control(seconds: float, seed: int = 2) -> dict[str, object]:
    """No voice: every talker falls silent or releases; one control operation per virtual ms."""
    floors, groups, members = build()
    rng = random.Random(seed)
    ops: Counter[str] = Counter()
    steps = int(seconds / 0.001)
    started = time.process_time()
    for step in range(steps):
        now = step * 0.001
        group = groups[rng.randrange(GROUPS)]
        user = members[group][rng.randrange(MEMBERS)]
        if step % 3 == 2:
            floors.release(group, floors.floor(group).holder or user, now)
            ops["release"] += 1
        else:
            floors.request(group, user, rng.choice(PRIORITIES), now)
            ops["request"] += 1
        if step % 500 == 0:
            floors.participant_lost(group, user, now)
            ops["lost"] += 1
        deadline = floors.get_timer()
        ops["get_timer"] += 1
        if deadline is not None and deadline <= now:
            floors.handle_timer(now)
            ops["handle_timer"] += 1
    elapsed = time.process_time() - started
    return _result(ops, elapsed, seconds)


def voice(frames: int) -> dict[str, object]:
    floors, groups, members = build()
    talkers = []
    for group in groups:
        user = members[group][0]
        (grant,) = floors.request(group, user, Priority.NORMAL, 0.0)
        assert isinstance(grant, Granted)
        talkers.append((group, user, grant.burst_id))
    frame = floors.voice
    rounds = max(1, frames // GROUPS)
    started = time.process_time()
    for r in range(rounds):
        now = r * TICK
        for group, user, burst_id in talkers:
            frame(group, user, burst_id, now)
    elapsed = time.process_time() - started
    return _result(Counter(voice=rounds * GROUPS), elapsed, rounds * TICK)


def _result(ops: Counter[str], elapsed: float, virtual_seconds: float) -> dict[str, object]:
    total = sum(ops.values())
    return {
        "ops": total,
        "seconds": round(elapsed, 3),
        "ops_per_s": round(total / elapsed),
        "virtual_seconds": virtual_seconds,
        "mix": dict(ops),
    }


def run(quick: bool = False) -> dict[str, object]:
    """Run all three; ``ops_per_s`` and ``passed`` are the mixed run's against the target."""
    seconds = 10.0 if quick else 60.0
    results = {
        "mixed": mixed(seconds),
        "control": control(seconds / 2),
        "voice": voice(200_000 if quick else 2_000_000),
    }
    ops_per_s = results["mixed"]["ops_per_s"]
    return {
        "benchmark": "floor",
        "command": COMMAND + (" --quick" if quick else ""),
        "groups": GROUPS,
        "participants": GROUPS * MEMBERS,
        "python": platform.python_version(),
        "target_ops_per_s": TARGET,
        "ops_per_s": ops_per_s,
        "passed": ops_per_s >= TARGET,  # type: ignore[operator]
        **results,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 s of virtual traffic, not 60")
    args = parser.parse_args()
    result = run(args.quick)
    print(f"command: {result['command']}")
    print(f"{result['participants']:,} participants in {result['groups']:,} groups, one core, "
          f"Python {result['python']}")
    for name in ("mixed", "control", "voice"):
        r = result[name]
        mix = ", ".join(f"{k} {v:,}" for k, v in sorted(r["mix"].items()))  # type: ignore[union-attr]
        print(f"  {name:8} {r['ops_per_s']:>11,} ops/s  ({r['ops']:,} ops in {r['seconds']} s: {mix})")  # type: ignore[index]
    verdict = "ok" if result["passed"] else "BELOW TARGET"
    print(f"floor ops/s (mixed): {result['ops_per_s']:,}  target {TARGET:,}  {verdict}")


if __name__ == "__main__":
    main()
