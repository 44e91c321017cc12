"""20% loss on control datagrams, both ways, through the impairment proxy.

A request resolves when the client learns the floor decision (granted, queued or denied). With a
loss ``p`` each way an attempt (request and answer) fails with ``q = 1 - (1 - p)^2`` = 0.36; the
client resends at 0.1, 0.3, 0.5, 0.7, ... 1.9 s (first retry 100 ms, doubling, capped at 0.2 s),
so ``P(resolution > 2 s) = q^11`` = 1.3e-5 per request. This test measures the distribution,
checks it against that model, and holds the issue's rule: every request resolves within 2 s.
"""

from __future__ import annotations

import asyncio
import random
import time

from ptt.client.connection import Connection
from ptt.errors import NetError
from ptt.faults.proxy import Direction, Impairment, ImpairmentProxy, ProxyConfig
from ptt.protocol import client as cl
from ptt.protocol.transactions import RETRY_CAP, RETRY_FIRST, RETRY_TOTAL
from tests.e2e.serverproc import ServerProcess
from tests.faults.helpers import Stamped, provision

LOSS = 0.20
CLIENTS = 10  # in groups of two, so half the requests meet a busy floor
RUN_SECONDS = 7.0


def attempt_times(first: float = RETRY_FIRST, cap: float = RETRY_CAP,
                  total: float = RETRY_TOTAL) -> list[float]:
    """When the client sends a request and its retransmissions, from 0."""
    times, t, interval = [0.0], first, first
    while t < total:
        times.append(t)
        interval = min(interval * 2, cap)
        t += interval
    return times


def p_unresolved_after(seconds: float, loss: float) -> float:
    q = 1 - (1 - loss) ** 2
    return float(q ** sum(1 for t in attempt_times() if t < seconds))


async def _cycle(conn: Connection, group: str, rng: random.Random, end: float,
                 request_s: list[float], release_s: list[float], failures: list[str],
                 lost_grants: list[str]) -> None:
    events = conn.subscribe()
    while time.monotonic() < end:
        t0 = time.monotonic()
        try:
            got = await conn.request_floor(group, timeout=RETRY_TOTAL + 1)
        except NetError as exc:
            failures.append(f"{conn.user}: {exc}")
            continue
        request_s.append(time.monotonic() - t0)
        if got.state is cl.Participation.NO_PERMISSION and got.deny_cause is cl.m.DenyCause.NONE:
            failures.append(f"{conn.user}: request ended without a decision")
        if got.state in (cl.Participation.HAS_PERMISSION, cl.Participation.QUEUED):
            await asyncio.sleep(0.1 if got.state is cl.Participation.HAS_PERMISSION else 0)
            while not events.empty():
                events.get_nowait()
            t1 = time.monotonic()
            if conn.core.participation(group) is cl.Participation.NO_PERMISSION:
                # the floor went away before we released: see test_stale_give_back_* below
                lost_grants.append(f"{conn.user}: {got.state.name}")
                continue
            await conn.release_floor(group)
            try:
                await conn.wait_for(events, lambda e: isinstance(e, cl.FloorStateChanged)
                                    and e.state is cl.Participation.NO_PERMISSION,
                                    RETRY_TOTAL + 1, "release unanswered")
                release_s.append(time.monotonic() - t1)
            except NetError as exc:
                failures.append(f"{conn.user}: {exc}")
        await asyncio.sleep(rng.uniform(0.05, 0.25))
    conn.unsubscribe(events)


def test_floor_requests_resolve_under_20_percent_control_loss(server: ServerProcess) -> None:
    users = [f"v{i:02d}" for i in range(CLIENTS)]
    groups = {f"pair{k}": users[2 * k:2 * k + 2] for k in range(CLIENTS // 2)}
    lossy = Direction(control=Impairment(loss=LOSS))

    async def main() -> None:
        tokens = await provision(server, groups)
        cfg = ProxyConfig(server=server.address, up=lossy, down=lossy, seed=20)
        async with ImpairmentProxy(cfg) as proxy:
            conns = [Connection(proxy.address, u, tokens[u]) for u in users]
            request_s: list[float] = []
            release_s: list[float] = []
            failures: list[str] = []
            lost_grants: list[str] = []
            try:
                for c in conns:
                    await c.open(timeout=15)
                for k, (g, members) in enumerate(groups.items()):
                    for c in conns[2 * k:2 * k + 2]:
                        await c.join(g, timeout=15)
                watch = [Stamped(c) for c in conns]
                end = time.monotonic() + RUN_SECONDS
                rng = random.Random(4)
                await asyncio.gather(*(
                    _cycle(c, f"pair{i // 2}", random.Random(rng.random()), end, request_s,
                           release_s, failures, lost_grants) for i, c in enumerate(conns)))
                relogins = sum(len(w.of(cl.Disconnected)) for w in watch)
                for w in watch:
                    w.stop()
            finally:
                for c in conns:
                    await c.close()
            up, down = proxy.counters.up.control, proxy.counters.down.control
        n = len(request_s)
        s = sorted(request_s)
        over_2 = sum(1 for x in s if x > 2.0)
        model = p_unresolved_after(2.0, LOSS)
        print(f"\n{n} requests under {LOSS:.0%} control loss each way: "
              f"p50 {s[n // 2] * 1000:.0f} ms, p90 {s[int(n * .9)] * 1000:.0f} ms, "
              f"p99 {s[int(n * .99)] * 1000:.0f} ms, max {s[-1] * 1000:.0f} ms; "
              f"{over_2} over 2 s (model {model:.2%}); releases max {max(release_s):.2f} s; "
              f"spurious relogins {relogins}; floors lost right after a grant "
              f"{len(lost_grants)}; proxy lost up {up.lost}/{up.received}, "
              f"down {down.lost}/{down.received}")
        assert not failures, failures[:5]
        assert n >= 100
        assert 0.15 < up.lost / up.received < 0.25 and 0.15 < down.lost / down.received < 0.25
        assert s[-1] < RETRY_TOTAL  # every request resolved, none gave up
        assert max(release_s) < RETRY_TOTAL  # every release answered
        assert over_2 == 0, f"{over_2} requests took over 2 s"  # the rule; model 1e-5
        over_1 = sum(1 for x in s if x > 1.0)
        assert over_1 <= max(4, 3 * p_unresolved_after(1.0, LOSS) * n)
        assert s[n // 2] < 0.15  # most requests resolve on the first or second attempt

    asyncio.run(main())


def test_the_retransmission_model() -> None:
    assert [round(t, 6) for t in attempt_times()[:12]] == [
        0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.1, 1.3, 1.5, 1.7, 1.9, 2.1]
    assert abs(p_unresolved_after(2.0, 0.2) - 0.36 ** 11) < 1e-12
