"""CPU of one write of where a node's clients are: ``Ownership.write`` on the loop, or from a thread.

    .venv/bin/python bench/bench_etcd_write.py              # 300 writes against a real etcd
    .venv/bin/python bench/bench_etcd_write.py --writes 100 --ways loop,thread,loop,thread

A cluster node writes the shards of its client list that changed (``ClusterNode``'s
``_publish_clients``, one ``Ownership.write`` transaction) at most every
``CLIENTS_PUBLISH_EVERY`` s while clients come and go: under the churn bench's logins and
logouts that is about every time. This measures what one such transaction costs the node's
process (every thread), as a node sends it: one shard of ~300 bytes, 10 ms apart, against etcd
started here on a loopback port (stopped by its PID), less the same loop of sleeps without
writes, and the wake-ups (voluntary context switches) of every thread of the process. Ways
(``--ways``, each in turn, one etcd): ``loop``, ``Ownership.write`` (etcd's JSON gateway from the
event loop, ``ptt.cluster.gateway``); ``thread``, the same request on ``http.client`` from a
write thread of its own (``lease.Gateway`` in a one-thread executor: what ``Ownership.write``
did before the loop's client); ``aetcd``, an aetcd transaction on the loop (before that; only
where aetcd is installed: ptt no longer depends on it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import loadgen  # noqa: E402
from bench_idle import thread_cpu  # noqa: E402

from ptt.cluster import engines  # noqa: E402
from ptt.cluster.gateway import put_op  # noqa: E402
from ptt.cluster.lease import Gateway  # noqa: E402
from ptt.cluster.ownership import Ownership, parse_endpoints  # noqa: E402

WAYS = ("loop", "thread", "aetcd")

GAP = 0.01  # s between two writes: the loop goes idle between them, as a node's does


def _cpu() -> float:
    return time.process_time()  # the scheduler's own count, not 10 ms ticks


def _wakeups() -> float:
    return sum(v for k, v in thread_cpu(os.getpid()).items() if k.endswith(" wakeups"))


async def measure(endpoint: str, writes: int, way: str) -> dict[str, float]:
    member = parse_endpoints([endpoint])[0]
    own = Ownership([endpoint], "bench")
    value = os.urandom(300)
    closing: list[Any] = []
    if way == "aetcd":
        import aetcd  # optional: only for this comparison

        client = aetcd.Client(host=member[0], port=member[1])
        closing.append(client.close)
        tx = client.transactions
    elif way == "thread":
        pool = ThreadPoolExecutor(1, thread_name_prefix="ptt-etcd-write")
        gateway = Gateway(member)

    async def write(key: bytes) -> None:
        if way == "aetcd":
            await client.transaction(compare=[], success=[tx.put(key, value)], failure=[])
        elif way == "thread":
            body = json.dumps({"success": [put_op(key, value)]}).encode()
            status, _ = await asyncio.get_running_loop().run_in_executor(
                pool, gateway.post, "/v3/kv/txn", body, 1.0)
            assert status == 200
        else:
            await own.write({key: value})

    try:
        for k in range(20):  # the channel or connection up and warm
            await write(b"/bench/w")
        c0, w0, e0 = _cpu(), time.monotonic(), _wakeups()
        for k in range(writes):
            await write(b"/ptt-access/a/%03x" % (k % 5))
            await asyncio.sleep(GAP)
        c1, w1, e1 = _cpu(), time.monotonic(), _wakeups()
        s0, ew0 = _cpu(), time.monotonic()
        for _ in range(writes):
            await asyncio.sleep(GAP)
        s1, e2, ew1 = _cpu(), _wakeups(), time.monotonic()
    finally:
        await own.stop(release=False)
        for close in closing:
            await close()
        if way == "thread":
            pool.submit(gateway.close)
            pool.shutdown(wait=True)
    return {"write_ms_cpu": 1e3 * ((c1 - c0) - (s1 - s0)) / writes,
            "write_ms_wall": 1e3 * ((w1 - w0) / writes - GAP),
            "wakeups_per_write": ((e1 - e0) - (e2 - e1) * (w1 - w0) / (ew1 - ew0)) / writes}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--writes", type=int, default=300)
    ap.add_argument("--ways", default="loop,thread",
                    help=f"comma-separated, measured in this order: {', '.join(WAYS)}")
    args = ap.parse_args()
    ways = args.ways.split(",")
    if args.writes < 1 or not set(ways) <= set(WAYS):
        print(f"bench_etcd_write: --writes must be at least 1, --ways of {', '.join(WAYS)}",
              file=sys.stderr)
        return 2
    how = {"loop": "Ownership.write, the JSON gateway from the loop",
           "thread": "the JSON gateway from a write thread", "aetcd": "an aetcd transaction"}
    with tempfile.TemporaryDirectory(prefix="ptt-bench-etcd-write-") as tmp:
        etcd = engines.start_etcd(Path(tmp) / "etcd", heartbeat_ms=50, election_ms=500)
        try:
            for way in ways:
                load = loadgen.load_average()
                r = asyncio.run(measure(etcd.endpoints[0], args.writes, way))
                print(f"{args.writes} writes ({how[way]}): {r['write_ms_cpu']:.3f} ms CPU each "
                      f"(this process, every thread), {r['write_ms_wall']:.3f} ms wall, "
                      f"{r['wakeups_per_write']:.1f} wake-ups of its threads each; load "
                      f"average {load} -> {loadgen.load_average()}", flush=True)
        finally:
            etcd.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
