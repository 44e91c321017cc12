"""CPU of one write of where a node's clients are: ``Ownership.write``, or an aetcd transaction.

    .venv/bin/python bench/bench_etcd_write.py              # 300 writes against a real etcd
    .venv/bin/python bench/bench_etcd_write.py --writes 100 --ways gateway,aetcd,gateway,aetcd

A cluster node writes the shards of its client list that changed (``ClusterNode``'s
``_publish_clients``, one ``Ownership.write`` transaction) at most every
``CLIENTS_PUBLISH_EVERY`` s while clients come and go: under the churn bench's logins and
logouts that is about every time. This measures what one such transaction costs the node's
process (every thread: the loop, gRPC's), as a node sends it: one shard of ~300 bytes, 10 ms
apart, against etcd started here on a loopback port (stopped by its PID), less the same loop
of sleeps without writes, and the wake-ups of gRPC's ``event_engine`` thread a second. Ways
(``--ways``, each in turn, one etcd): ``gateway``, ``Ownership.write`` (etcd's JSON gateway from
the node's write thread); ``aetcd``, the same transaction as an aetcd call on the loop (what
``Ownership.write`` was); ``sync``, on gRPC's synchronous stub from a worker thread
(``asyncio.to_thread``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

import aetcd
import grpc
from aetcd import rpc

sys.path.insert(0, str(Path(__file__).resolve().parent))
import loadgen  # noqa: E402
from bench_idle import thread_cpu  # noqa: E402

from ptt.cluster import engines  # noqa: E402
from ptt.cluster.ownership import Ownership, parse_endpoints  # noqa: E402

WAYS = ("gateway", "aetcd", "sync")

GAP = 0.01  # s between two writes: the loop goes idle between them, as a node's does


def _cpu() -> float:
    return time.process_time()  # the scheduler's own count, not 10 ms ticks


def _engine_wakeups() -> float:
    return thread_cpu(os.getpid()).get("event_engine wakeups", 0.0)


async def measure(endpoint: str, writes: int, way: str) -> dict[str, float]:
    host, port = parse_endpoints([endpoint])[0]
    client = aetcd.Client(host=host, port=port)  # its channel is open whichever way writes
    tx = client.transactions
    own = Ownership([endpoint], "bench")
    channel = grpc.insecure_channel(f"{host}:{port}")
    stub = rpc.KVStub(channel)
    value = os.urandom(300)
    await client.get(b"/bench/w")

    async def write(key: bytes) -> None:
        if way == "sync":
            request = rpc.TxnRequest(success=[rpc.RequestOp(
                request_put=rpc.PutRequest(key=key, value=value))])
            await asyncio.to_thread(stub.Txn, request, timeout=1.0)
        elif way == "aetcd":
            await client.transaction(compare=[], success=[tx.put(key, value)], failure=[])
        else:
            await own.write({key: value})

    try:
        for k in range(20):  # the channel or connection up and warm
            await write(b"/bench/w")
        c0, w0, e0 = _cpu(), time.monotonic(), _engine_wakeups()
        for k in range(writes):
            await write(b"/ptt-access/a/%03x" % (k % 5))
            await asyncio.sleep(GAP)
        c1, w1, e1 = _cpu(), time.monotonic(), _engine_wakeups()
        s0, ew0 = _cpu(), time.monotonic()
        for _ in range(writes):
            await asyncio.sleep(GAP)
        s1, e2, ew1 = _cpu(), _engine_wakeups(), time.monotonic()
    finally:
        await own.stop(release=False)
        await client.close()
        channel.close()
    return {"write_ms_cpu": 1e3 * ((c1 - c0) - (s1 - s0)) / writes,
            "write_ms_wall": 1e3 * ((w1 - w0) / writes - GAP),
            "engine_wakeups_per_write": ((e1 - e0) - (e2 - e1) * (w1 - w0) / (ew1 - ew0))
            / writes}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--writes", type=int, default=300)
    ap.add_argument("--ways", default="gateway,aetcd",
                    help=f"comma-separated, measured in this order: {', '.join(WAYS)}")
    args = ap.parse_args()
    ways = args.ways.split(",")
    if args.writes < 1 or not set(ways) <= set(WAYS):
        print(f"bench_etcd_write: --writes must be at least 1, --ways of {', '.join(WAYS)}",
              file=sys.stderr)
        return 2
    how = {"gateway": "Ownership.write, the JSON gateway from its thread",
           "aetcd": "an aetcd transaction on the loop", "sync": "sync stub in a thread"}
    with tempfile.TemporaryDirectory(prefix="ptt-bench-etcd-write-") as tmp:
        etcd = engines.start_etcd(Path(tmp) / "etcd", heartbeat_ms=50, election_ms=500)
        try:
            for way in ways:
                load = loadgen.load_average()
                r = asyncio.run(measure(etcd.endpoints[0], args.writes, way))
                print(f"{args.writes} writes ({how[way]}): {r['write_ms_cpu']:.3f} ms CPU each "
                      f"(this process, every thread), {r['write_ms_wall']:.3f} ms wall, "
                      f"{r['engine_wakeups_per_write']:.1f} event_engine wake-ups each; load "
                      f"average {load} -> {loadgen.load_average()}", flush=True)
        finally:
            etcd.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
