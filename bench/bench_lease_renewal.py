"""What one lease renewal costs the renewer thread: a new ``LeaseKeepAlive`` stream per renewal
(what ``ptt.cluster.lease`` did) against one long-lived stream (``lease.KeepAliveStream``, what it
does), against a real etcd started here; rounds alternate, CPU of the whole process (every
thread: gRPC's request and reader threads included) per renewal.

    .venv/bin/python bench/bench_lease_renewal.py [--renewals 300] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import grpc
from aetcd import rpc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ptt.cluster import engines  # noqa: E402
from ptt.cluster.lease import KeepAliveStream  # noqa: E402


def per_call(channel: grpc.Channel, lease_id: int) -> int:
    """A new stream for one renewal, as the renewer did before KeepAliveStream."""
    call = rpc.LeaseStub(channel).LeaseKeepAlive(
        iter([rpc.LeaseKeepAliveRequest(ID=lease_id)]), timeout=1.0)
    try:
        return int(next(call).TTL)
    finally:
        call.cancel()


def measure(renew: object, n: int) -> tuple[float, float]:
    """ms of CPU and of wall per renewal over ``n``."""
    c0, t0 = time.process_time(), time.monotonic()
    for _ in range(n):
        assert renew() > 0  # type: ignore[operator]
    return 1e3 * (time.process_time() - c0) / n, 1e3 * (time.monotonic() - t0) / n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--renewals", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="ptt-bench-lease-") as tmp:
        etcd = engines.start_etcd(Path(tmp) / "etcd", heartbeat_ms=50, election_ms=500)
        try:
            host, port = etcd.endpoints[0].removeprefix("http://").rsplit(":", 1)
            channel = grpc.insecure_channel(f"{host}:{port}")
            lease = rpc.LeaseStub(channel).LeaseGrant(rpc.LeaseGrantRequest(TTL=60)).ID
            stream = KeepAliveStream(channel)
            got: dict[str, list[tuple[float, float]]] = {"stream per renewal": [],
                                                          "one stream": []}
            for _ in range(args.rounds):
                got["stream per renewal"].append(
                    measure(lambda: per_call(channel, lease), args.renewals))
                got["one stream"].append(
                    measure(lambda: stream.renew(lease, 1.0), args.renewals))
            stream.close()
            channel.close()
        finally:
            etcd.stop()
    with open("/proc/loadavg") as f:
        load = f.read().split()[0]
    for name, runs in got.items():
        cpu = [c for c, _ in runs]
        wall = [w for _, w in runs]
        print(f"{name}: {statistics.median(cpu):.3f} ms CPU per renewal (rounds "
              f"{', '.join(f'{c:.3f}' for c in cpu)}), {statistics.median(wall):.2f} ms wall")
    print(f"load average {load}; {args.rounds} rounds of {args.renewals} renewals, alternating")
    return 0


if __name__ == "__main__":
    sys.exit(main())
