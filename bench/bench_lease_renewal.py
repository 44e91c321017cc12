"""What lease renewals cost a node, against a real etcd started here.

Two measures:

- per renewal, back to back: CPU of the whole process per renewal on one
  ``lease.GatewayRenewals`` connection (the renewer's: one HTTP request and answer on etcd's
  JSON gateway), in rounds (a new gRPC ``LeaseKeepAlive`` stream per renewal, compared here
  before, measured 0.70 ms: docs/cluster.md);
- ``--paced S``: a ``lease.LeaseRenewer`` renewing a 1 s lease as a node does (3 a second, the
  loop's sign 3 a second) for S seconds: the process's CPU per second and each thread's
  wake-ups (voluntary context switches) per second. With ``PYTHONPATH`` on another tree (``git
  archive``) it measures that tree's renewer: the A/B of a change to it.

    .venv/bin/python bench/bench_lease_renewal.py [--renewals 300] [--rounds 3] [--paced 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parent.parent))  # after PYTHONPATH: A/B trees

from ptt.cluster import engines, lease  # noqa: E402
from ptt.protocol.cluster_fencing import LeaseClock  # noqa: E402


def grant(member: tuple[str, int], ttl: int) -> int:
    """A new lease of ``ttl`` s, over etcd's JSON gateway."""
    gateway = lease.Gateway(member)
    try:
        status, answer = gateway.post("/v3/lease/grant", b'{"TTL":%d}' % ttl, 2.0)
    finally:
        gateway.close()
    assert status == 200, answer
    return int(json.loads(answer)["ID"])


def measure(renew: object, n: int) -> tuple[float, float]:
    """ms of CPU and of wall per renewal over ``n``."""
    c0, t0 = time.process_time(), time.monotonic()
    for _ in range(n):
        assert renew() > 0  # type: ignore[operator]
    return 1e3 * (time.process_time() - c0) / n, 1e3 * (time.monotonic() - t0) / n


def wakeups() -> dict[str, int]:
    """Voluntary context switches per thread (by Python name where it has one)."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    out: dict[str, int] = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            comm = Path(f"/proc/self/task/{tid}/comm").read_text().strip()
            status = Path(f"/proc/self/task/{tid}/status").read_text()
        except OSError:
            continue
        name = names.get(int(tid), comm)
        out[name] = out.get(name, 0) + next(int(line.split()[1]) for line in status.splitlines()
                                            if line.startswith("voluntary_ctxt_switches"))
    return out


async def paced(member: tuple[str, int], seconds: float) -> None:
    lease_id = grant(member, 1)
    clock = LeaseClock(1.0)
    lost: list[str] = []
    renewer = lease.LeaseRenewer([member], clock, clock=time.monotonic, timeout=1 / 3,
                                 on_lost=lambda: lost.append("lost"),
                                 on_member_failed=lambda m: lost.append(f"member {m}"))
    renewer.begin(lease_id, time.monotonic(), 1.0)
    renewer.start(asyncio.get_running_loop())

    async def sign() -> None:  # the loop's sign, as Ownership gives it
        while True:
            renewer.loop_alive(time.monotonic())
            await asyncio.sleep(1 / lease.RENEWALS_PER_TTL)

    signing = asyncio.get_running_loop().create_task(sign())
    await asyncio.sleep(2.0)
    w0, c0, t0 = wakeups(), time.process_time(), time.monotonic()
    await asyncio.sleep(seconds)
    w1, c1, t1 = wakeups(), time.process_time(), time.monotonic()
    valid = clock.valid(time.monotonic())
    signing.cancel()
    await renewer.stop()
    span = t1 - t0
    per_thread = {n: round((w1[n] - w0.get(n, 0)) / span, 1) for n in w1}
    print(f"paced ({lease.__file__}): {1e3 * (c1 - c0) / span:.2f} ms CPU per s, "
          f"{sum(per_thread.values()):.1f} wake-ups per s; lease valid at the end: {valid}; "
          f"lost: {lost or 'nothing'}")
    print("  wake-ups per s by thread:", dict(sorted(per_thread.items())))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--renewals", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--paced", type=float, default=0.0, metavar="S",
                    help="only the paced renewer, for S seconds")
    args = ap.parse_args()
    with open("/proc/loadavg") as f:
        load_before = f.read().split()[0]
    with tempfile.TemporaryDirectory(prefix="ptt-bench-lease-") as tmp:
        etcd = engines.start_etcd(Path(tmp) / "etcd", heartbeat_ms=50, election_ms=500)
        try:
            host, port = etcd.endpoints[0].removeprefix("http://").rsplit(":", 1)
            member = (host, int(port))
            if args.paced:
                asyncio.run(paced(member, args.paced))
            else:
                per_renewal(member, args.rounds, args.renewals)
        finally:
            etcd.stop()
    with open("/proc/loadavg") as f:
        print(f"load average {load_before} before, {f.read().split()[0]} after")
    return 0


def per_renewal(member: tuple[str, int], rounds: int, renewals: int) -> None:
    lease_id = grant(member, 60)
    gateway = lease.GatewayRenewals(member)
    got: dict[str, list[tuple[float, float]]] = {"gateway, one connection": []}
    for _ in range(rounds):
        got["gateway, one connection"].append(
            measure(lambda: gateway.renew(lease_id, 1.0), renewals))
    gateway.close()
    for name, runs in got.items():
        cpu = [c for c, _ in runs]
        wall = [w for _, w in runs]
        print(f"{name}: {statistics.median(cpu):.3f} ms CPU per renewal (rounds "
              f"{', '.join(f'{c:.3f}' for c in cpu)}), {statistics.median(wall):.2f} ms wall")
    print(f"{rounds} rounds of {renewals} renewals")


if __name__ == "__main__":
    sys.exit(main())
