"""CPU of one write of where a node's clients are: an aetcd transaction from the event loop.

    .venv/bin/python bench/bench_etcd_write.py              # 300 writes against a real etcd
    .venv/bin/python bench/bench_etcd_write.py --writes 100

A cluster node writes the shards of its client list that changed (``ClusterNode``'s
``_publish_clients``, one ``Ownership.write`` transaction) at most every
``CLIENTS_PUBLISH_EVERY`` s while clients come and go: under the churn bench's logins and
logouts that is about every time. This measures what one such transaction costs the node's
process (every thread: the loop, gRPC's), as a node sends it: one shard of ~300 bytes, 10 ms
apart, against etcd started here on a loopback port (stopped by its PID), less the same loop
of sleeps without writes. ``--sync``: the same transaction on gRPC's synchronous stub from a
worker thread (``asyncio.to_thread``), as the lease renewer's thread talks to etcd: what a
cheaper write path would cost.
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

from ptt.cluster import engines  # noqa: E402
from ptt.cluster.ownership import parse_endpoints  # noqa: E402

GAP = 0.01  # s between two writes: the loop goes idle between them, as a node's does


def _cpu() -> float:
    t = os.times()
    return t.user + t.system


async def measure(endpoint: str, writes: int, sync: bool) -> dict[str, float]:
    host, port = parse_endpoints([endpoint])[0]
    client = aetcd.Client(host=host, port=port)
    tx = client.transactions
    channel = grpc.insecure_channel(f"{host}:{port}")
    stub = rpc.KVStub(channel)
    value = os.urandom(300)

    async def write(key: bytes) -> None:
        if sync:
            request = rpc.TxnRequest(success=[rpc.RequestOp(
                request_put=rpc.PutRequest(key=key, value=value))])
            await asyncio.to_thread(stub.Txn, request, timeout=1.0)
        else:
            await client.transaction(compare=[], success=[tx.put(key, value)], failure=[])

    try:
        for k in range(20):  # the channel up and warm
            await write(b"/bench/w")
        c0, w0 = _cpu(), time.monotonic()
        for k in range(writes):
            await write(b"/ptt-access/a/%03x" % (k % 5))
            await asyncio.sleep(GAP)
        c1, w1 = _cpu(), time.monotonic()
        s0 = _cpu()
        for _ in range(writes):
            await asyncio.sleep(GAP)
        s1 = _cpu()
    finally:
        await client.close()
        channel.close()
    return {"write_ms_cpu": 1e3 * ((c1 - c0) - (s1 - s0)) / writes,
            "write_ms_wall": 1e3 * ((w1 - w0) / writes - GAP)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--writes", type=int, default=300)
    ap.add_argument("--sync", action="store_true",
                    help="gRPC's synchronous stub from a worker thread instead of aetcd")
    args = ap.parse_args()
    if args.writes < 1:
        print("bench_etcd_write: --writes must be at least 1", file=sys.stderr)
        return 2
    load = loadgen.load_average()
    with tempfile.TemporaryDirectory(prefix="ptt-bench-etcd-write-") as tmp:
        etcd = engines.start_etcd(Path(tmp) / "etcd", heartbeat_ms=50, election_ms=500)
        try:
            r = asyncio.run(measure(etcd.endpoints[0], args.writes, args.sync))
        finally:
            etcd.stop()
    how = "sync stub in a thread" if args.sync else "aetcd on the loop"
    print(f"{args.writes} writes ({how}): {r['write_ms_cpu']:.3f} ms CPU each (this process, every "
          f"thread), {r['write_ms_wall']:.3f} ms wall; load average {load} -> "
          f"{loadgen.load_average()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
