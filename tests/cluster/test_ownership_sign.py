"""The loop's sign to the lease renewer (``Ownership.alive_in_passing``): a loop that runs
anyway (a node's turns after datagrams) signs in passing, so the sign's timer never wakes it; a
loop with nothing to do still signs from the timer, at least every renewal interval. No engine:
the renewer is not started, only its record of the signs is read. ~2 s."""

from __future__ import annotations

import asyncio
import time

from ptt.cluster.lease import RENEWALS_PER_TTL
from ptt.cluster.ownership import Ownership


def _signs(passing_every: float | None, seconds: float) -> tuple[int, float]:
    """Timer signs and the longest gap between two signs over ``seconds``, with the node's
    turns calling ``alive_in_passing`` every ``passing_every`` s (None: no turns)."""

    async def run() -> tuple[int, float]:
        own = Ownership(["http://127.0.0.1:9"], "a")  # never connects: nothing is asked of etcd
        fired = 0
        signed: list[float] = []
        sign = own._renewer.silence.sign

        def record(now: float, waited: float) -> None:
            signed.append(now)
            sign(now, waited)

        def timer() -> None:
            nonlocal fired
            fired += 1
            show()

        own._renewer.silence.sign = record  # type: ignore[method-assign]
        show = own._show_alive
        own._show_alive = timer  # type: ignore[method-assign]
        show()  # as start() does
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            await asyncio.sleep(passing_every or 0.05)
            if passing_every is not None:
                own.alive_in_passing()
        own._closed = True
        if own._alive is not None:
            own._alive.cancel()
        gaps = [b - a for a, b in zip(signed, signed[1:], strict=False)]
        return fired, max(gaps)

    return asyncio.run(run())


def test_a_loop_that_runs_anyway_signs_in_passing_and_its_timer_never_fires() -> None:
    interval = 1.0 / RENEWALS_PER_TTL  # the default 1 s lease
    fired, longest = _signs(0.02, 1.0)
    assert fired == 0
    assert longest < interval


def test_a_loop_with_nothing_to_do_still_signs_from_the_timer() -> None:
    interval = 1.0 / RENEWALS_PER_TTL
    fired, longest = _signs(None, 1.0)
    assert fired >= 2
    assert longest < interval + 0.1
