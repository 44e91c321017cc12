"""Floor operations per second on the pure core: 10,000 participants in 1,000 groups, one core.

    .venv/bin/python bench/bench_floor.py [--quick]

Three runs on a FloorSet driven by a virtual clock; no sockets, no asyncio, no threads:

* ``mixed`` (the target run): a 20 ms tick. Every talker sends one voice frame per tick. Each tick
  10 random members key up (90% normal, 8% high, 2% emergency priority), so groups stay busy,
  queues form and emergencies pre-empt; talkers release after 0.5-4 s, one in ten falls silent
  instead and leaves it to T1; a session is lost about once a second; the server fires every due
  timer.
* ``control``: no voice at all: one request or release per virtual millisecond, lost sessions,
  timers. The control path alone, the expensive one.
* ``voice``: ``FloorSet.voice`` alone, the per-frame hot path, 1,000 talkers.

Every call into the FloorSet counts as one operation (``get_timer`` included). Random choices are
drawn before the clock starts, but the driver's bookkeeping (who talks, when they stop) runs inside
the timed loops, so the figures are floors, not peaks. Time is CPU time of this process.
"""

from __future__ import annotations

import argparse
import platform
import random
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from ptt.protocol.floor import BurstEnded, FloorEvent, FloorSet, Granted
from ptt.protocol.messages import Priority

GROUPS = 1_000
MEMBERS = 10  # per group; the last one listens only
TICK = 0.020  # one 20 ms voice frame
REQUESTS_PER_TICK = 10
TARGET = 200_000  # floor operations per second, one core
COMMAND = ".venv/bin/python bench/bench_floor.py"
PRIORITIES = [Priority.NORMAL] * 90 + [Priority.HIGH] * 8 + [Priority.EMERGENCY] * 2


@dataclass(slots=True)
class Talk:
    user: str
    burst_id: int
    stop_at: float
    silent: bool  # stops sending without releasing: T1 ends the burst


def build() -> tuple[FloorSet, list[list[str]]]:
    """1,000 groups of 10 members; returns the set and each group's [name, *members]."""
    floors = FloorSet()
    groups = []
    for g in range(GROUPS):
        group = f"group-{g:04d}"
        floors.add_group(group)
        users = [f"{group}/user-{m}" for m in range(MEMBERS)]
        for m, user in enumerate(users):
            floors.add_member(group, user, listen_only=m == MEMBERS - 1)
        groups.append([group, *users])
    return floors, groups


def picks(rng: random.Random, groups: list[list[str]], n: int) -> list[tuple[str, str, Priority]]:
    """n random (group, member, priority) drawn ahead of the timed loop."""
    out = []
    for _ in range(n):
        group = groups[rng.randrange(GROUPS)]
        out.append((group[0], group[1 + rng.randrange(MEMBERS)], rng.choice(PRIORITIES)))
    return out


def mixed(seconds: float, seed: int = 1) -> dict[str, Any]:
    floors, groups = build()
    rng = random.Random(seed)
    ticks = int(seconds / TICK)
    requests = picks(rng, groups, ticks * REQUESTS_PER_TICK)
    lost = picks(rng, groups, ticks // 50 + 1)
    plans = [(rng.uniform(0.5, 4.0), rng.random() < 0.1) for _ in range(len(requests))]
    talkers: dict[str, Talk] = {}
    ops: Counter[str] = Counter()
    plan = iter(plans)
    now = 0.0

    def absorb(events: list[FloorEvent]) -> None:
        for event in events:
            if type(event) is Granted:
                length, silent = next(plan)
                talkers[event.group] = Talk(event.user, event.burst_id, now + length, silent)
            elif type(event) is BurstEnded:
                del talkers[event.group]

    voice, request, release = floors.voice, floors.request, floors.release
    get_timer = floors.get_timer
    started = time.process_time()
    for tick in range(ticks):
        now = tick * TICK
        stopping = []
        for group, talk in talkers.items():
            if now >= talk.stop_at:
                if not talk.silent:
                    stopping.append((group, talk.user))
            elif not talk.silent:
                voice(group, talk.user, talk.burst_id, now)
                ops["voice"] += 1
        for group, user in stopping:
            absorb(release(group, user, now))
        ops["release"] += len(stopping)
        first = tick * REQUESTS_PER_TICK
        for group, user, priority in requests[first:first + REQUESTS_PER_TICK]:
            absorb(request(group, user, priority, now))
        ops["request"] += REQUESTS_PER_TICK
        if tick % 50 == 0:
            group, user, _ = lost[tick // 50]
            absorb(floors.participant_lost(group, user, now))
            ops["lost"] += 1
        while True:
            deadline = get_timer()
            ops["get_timer"] += 1
            if deadline is None or deadline > now:
                break
            absorb(floors.handle_timer(now))
            ops["handle_timer"] += 1
    return _result(ops, time.process_time() - started, seconds)


def control(seconds: float, seed: int = 2) -> dict[str, Any]:
    floors, groups = build()
    rng = random.Random(seed)
    steps = int(seconds / 0.001)
    choices = picks(rng, groups, steps)
    ops: Counter[str] = Counter()
    started = time.process_time()
    for step, (group, user, priority) in enumerate(choices):
        now = step * 0.001
        if step % 3 == 2:
            floors.release(group, floors.floor(group).holder or user, now)
            ops["release"] += 1
        else:
            floors.request(group, user, priority, now)
            ops["request"] += 1
        if step % 500 == 0:
            floors.participant_lost(group, user, now)
            ops["lost"] += 1
        deadline = floors.get_timer()
        ops["get_timer"] += 1
        if deadline is not None and deadline <= now:
            floors.handle_timer(now)
            ops["handle_timer"] += 1
    return _result(ops, time.process_time() - started, seconds)


def voice_only(frames: int) -> dict[str, Any]:
    floors, groups = build()
    talkers = []
    for group, user, *_ in groups:
        (grant,) = floors.request(group, user, Priority.NORMAL, 0.0)
        assert isinstance(grant, Granted)
        talkers.append((group, user, grant.burst_id))
    voice = floors.voice
    rounds = max(1, frames // GROUPS)
    started = time.process_time()
    for r in range(rounds):
        now = r * TICK
        for group, user, burst_id in talkers:
            voice(group, user, burst_id, now)
    return _result(Counter(voice=rounds * GROUPS), time.process_time() - started, rounds * TICK)


def _result(ops: Counter[str], cpu: float, virtual_seconds: float) -> dict[str, Any]:
    total = sum(ops.values())
    return {
        "ops": total,
        "CPU s": round(cpu, 3),
        "ops/s": round(total / cpu),
        "virtual s": virtual_seconds,
        "mix": ", ".join(f"{op} {n:,}" for op, n in sorted(ops.items())),
    }


def run(quick: bool = False) -> dict[str, Any]:
    """All three runs, in the shape bench/run_all.py renders; ``ops_per_s`` is the mixed run's."""
    seconds = 10.0 if quick else 60.0
    rows = [
        {"run": "mixed", **mixed(seconds)},
        {"run": "control", **control(seconds / 2)},
        {"run": "voice", **voice_only(200_000 if quick else 2_000_000)},
    ]
    ops_per_s = rows[0]["ops/s"]
    return {
        "title": "Floor arbitration core: operations per second",
        "command": COMMAND + (" --quick" if quick else ""),
        "target": f">= {TARGET:,} floor operations/s on one core, "
        f"{GROUPS * MEMBERS:,} participants in {GROUPS:,} groups",
        "rows": rows,
        "ops_per_s": ops_per_s,
        "control_ops_per_s": rows[1]["ops/s"],
        "voice_ops_per_s": rows[2]["ops/s"],
        "passed": ops_per_s >= TARGET,
        "python": platform.python_version(),
        "notes": "Pure FloorSet, virtual clock, CPU time of one process. mixed: a 20 ms tick, "
        "every talker sends a frame, 10 random members key up per tick (2% emergency), talkers "
        "release after 0.5-4 s or fall silent, timers fired as due; the target applies to it. "
        "control: no voice, one request or release per virtual ms. voice: FloorSet.voice alone. "
        "Every call into the FloorSet counts as one operation, get_timer included.",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 s of virtual traffic, not 60")
    result = run(parser.parse_args().quick)
    print(f"command: {result['command']}")
    print(f"{GROUPS * MEMBERS:,} participants in {GROUPS:,} groups, one core, "
          f"Python {result['python']}")
    for r in result["rows"]:
        print(f"  {r['run']:8} {r['ops/s']:>10,} ops/s   {r['ops']:,} ops in {r['CPU s']} s CPU"
              f" ({r['mix']})")
    verdict = "ok" if result["passed"] else "BELOW TARGET"
    print(f"floor ops/s (mixed): {result['ops_per_s']:,}   target {TARGET:,}   {verdict}")


if __name__ == "__main__":
    main()
