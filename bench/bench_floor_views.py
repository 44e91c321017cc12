"""How long a member's view of the floor can stay stale at heavy random loss (sans-I/O soak).

Five members of one group on the in-memory lossy network of ``tests/protocol/simnet.py`` (every
datagram lost with probability LOSS, 1-30 ms delay), a short page by a random member every few
seconds for 60 s of virtual time, per seed; every 20 ms each member's view of the talker is
compared with the server's floor. Prints, per loss rate, the longest stale view of each run, the
floor changes seen and the sessions lost::

    .venv/bin/python bench/bench_floor_views.py [SEEDS]
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ptt.protocol.client import ConnState, Disconnected, Participation  # noqa: E402
from tests.protocol.simnet import SimNet  # noqa: E402
from tests.protocol.test_client_server import connect_all  # noqa: E402
from tests.protocol.test_floor_views import STEP, USERS, send_voice, stale_views  # noqa: E402


def soak(seed: int, loss: float, seconds: float = 60.0) -> tuple[float, int, int]:
    """(longest stale view in s, floor changes, sessions the clients gave up) of one run."""
    net = SimNet(seed=seed, loss=loss, delay=(0.001, 0.03))
    for u in USERS:
        net.add_user(u)
    connect_all(net, {"g": USERS})
    net.run_until(4.0)
    rng = random.Random(seed)
    since: dict[tuple[str, str], float] = {}
    worst, changes, t = 0.0, 0, net.now
    lost_before = sum(isinstance(e, Disconnected) for ev in net.client_events.values() for e in ev)
    while t < 4.0 + seconds:
        talker = net.clients[rng.choice(USERS)]
        if talker.conn is ConnState.CONNECTED:
            talker.request_floor("g", t)
        for until, talking in ((t + rng.uniform(0.5, 2.0), True), (None, False)):
            if until is None:
                if talker.participation("g") is Participation.HAS_PERMISSION:
                    talker.release_floor("g", t)
                until = t + rng.uniform(1.0, 3.0)
            while t < until:
                if talking:
                    send_voice(net)
                t += STEP
                net.run_until(t)
                worst = max(worst, stale_views(net, since))
        changes += 2
    lost = sum(isinstance(e, Disconnected) for ev in net.client_events.values() for e in ev)
    return worst, changes, lost - lost_before


def main() -> None:
    seeds = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    for loss in (0.2, 0.3):
        runs = [soak(1000 + s, loss) for s in range(seeds)]
        worst = sorted(r[0] for r in runs)
        print(f"loss {loss:.0%}: {seeds} runs of 60 s, {sum(r[1] for r in runs)} floor changes, "
              f"5 members; longest stale view per run: median {worst[len(worst) // 2]:.2f} s, "
              f"max {worst[-1]:.2f} s; views stale > 2 s: "
              f"{sum(w > 2.0 for w in worst)} runs; sessions given up: {sum(r[2] for r in runs)}")


if __name__ == "__main__":
    main()
