"""Group home failover over etcd, and the etcd client's latencies.

Failover: two node processes (tests/cluster/ownership_runner.py) want one group; the home is
SIGKILLed at a random point of its renewal cycle and the time until the survivor's claim (its
``claimed`` line, stamped on the system's monotonic clock) is recorded; a fresh standby then
joins and the new home is killed in turn. Once with etcd's default raft timers (heartbeat 100 ms,
election 1 s: etcd raises the 1 s lease asked for to 2 s) and once with shortened ones
(50 ms / 500 ms: 1 s leases granted).

The alternative the issue names, NATS JetStream KV, the same way: the home creates its key and
rewrites it conditionally TTL/3 apart in a bucket whose max age is the TTL; the survivor watches
and, once no rewrite came for a TTL, creates the key (which succeeds once the server aged it out).

Client: aetcd (gRPC) against one member with the shortened timers: lease renewal, a claim
(create-if-absent transaction), and a put seen by another client's watch; and, for the choice,
a lease renewal through etcd's JSON gateway (/v3/lease/keepalive) on a kept-alive HTTP/1.1
connection.

    .venv/bin/python bench/bench_cluster_failover.py --kills 20
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import aetcd

from ptt.cluster import engines
from ptt.cluster.ownership import parse_endpoints

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from loadgen import machine_line, percentiles  # noqa: E402

CONFIGS = {
    "etcd defaults (100/1000 ms), lease asked 1 s": (100, 1000),
    "shortened timers (50/500 ms), lease 1 s": (50, 500),
}


class Runner:
    """One ownership runner process and its lines."""

    def __init__(self, endpoint: str, node: str, group: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.cluster.ownership_runner", "--etcd", endpoint,
             "--node", node, "--groups", group, "--stamp-every", "1"],
            cwd=ROOT, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
        )
        self.lines: list[dict[str, Any]] = []
        self.changed = threading.Condition()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for text in self.process.stdout:
            with self.changed:
                self.lines.append(json.loads(text))
                self.changed.notify_all()

    def wait_for(self, event: str, within: float = 20.0) -> dict[str, Any]:
        deadline = time.monotonic() + within
        with self.changed:
            while True:
                found = [ln for ln in self.lines if ln["event"] == event]
                if found:
                    return found[0]
                if not self.changed.wait(deadline - time.monotonic()):
                    raise RuntimeError(f"no {event} within {within} s: {self.lines[-3:]}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


def failover(kills: int, heartbeat_ms: int, election_ms: int) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="ptt-bench-failover-"))
    etcd = engines.start_etcd(root, heartbeat_ms=heartbeat_ms, election_ms=election_ms)
    group = "failover"
    times: list[float] = []
    fencing: list[int] = []
    runners: list[Runner] = []
    try:
        home = Runner(etcd.endpoint, "n0", group)
        runners.append(home)
        ttl = home.wait_for("ready")["ttl"]
        fencing.append(home.wait_for("claimed")["fencing"])
        for i in range(1, kills + 1):
            standby = Runner(etcd.endpoint, f"n{i}", group)
            runners.append(standby)
            standby.wait_for("learned")
            time.sleep(random.uniform(0, ttl))  # anywhere in the home's renewal cycle
            killed = time.monotonic()
            home.stop()
            claim = standby.wait_for("claimed")
            times.append(claim["t"] - killed)
            fencing.append(claim["fencing"])
            home = standby
    finally:
        for runner in runners:
            runner.stop()
        etcd.stop()
    assert all(b > a for a, b in zip(fencing, fencing[1:], strict=False)), fencing
    pct = percentiles(times, (50, 99))
    return {"lease TTL (s)": ttl, "kills": len(times), "min (s)": min(times),
            "median (s)": statistics.median(times), "p99 (s)": pct["p99"],
            "max (s)": max(times)}


# A home over NATS JetStream KV (nats-server 2.9: a bucket-wide max age, no per-key lease and no
# notice when a key ages out): create the key, then rewrite it TTL/3 apart, each write
# conditional on the last revision.
_KV_OWNER = r"""
import asyncio, sys, nats
async def main(url, key, ttl):
    nc = await nats.connect(url)
    kv = await nc.jetstream().key_value("homes")
    rev = await kv.create(key, b"owner")
    print(rev, flush=True)
    while True:
        await asyncio.sleep(ttl / 3)
        rev = await kv.update(key, b"owner", last=rev)
asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3])))
"""


async def _kv_survivor(kv: Any, key: str, ttl: float) -> tuple[float, int]:
    """Claim ``key`` once no rewrite was seen for ``ttl``: the server says nothing when a key
    ages out, so the survivor keeps trying to create it from then on."""
    import nats.errors
    import nats.js.errors

    watcher = await kv.watch(key)
    last_seen = time.monotonic()
    while True:
        try:
            entry = await watcher.updates(timeout=0.02)
            if entry is not None:
                last_seen = time.monotonic()
        except nats.errors.TimeoutError:
            pass
        if time.monotonic() - last_seen > ttl:
            try:
                revision = await kv.create(key, b"survivor")
            except nats.js.errors.KeyWrongLastSequenceError:
                await asyncio.sleep(0.02)
                continue
            claimed = time.monotonic()
            await watcher.stop()
            return claimed, revision


async def _kv_failover(url: str, kills: int, ttl: float) -> tuple[list[float], bool]:
    import nats

    nc = await nats.connect(url)
    kv = await nc.jetstream().create_key_value(bucket="homes", ttl=ttl, history=1)
    times, rising = [], True
    try:
        for i in range(kills):
            key = f"failover-{i}"
            owner = subprocess.Popen([sys.executable, "-c", _KV_OWNER, url, key, str(ttl)],
                                     stdout=subprocess.PIPE, text=True)
            assert owner.stdout is not None
            first = int(await asyncio.to_thread(owner.stdout.readline))
            survivor = asyncio.create_task(_kv_survivor(kv, key, ttl))
            await asyncio.sleep(random.uniform(0.1, ttl))
            killed = time.monotonic()
            owner.kill()
            owner.wait()
            claimed, revision = await asyncio.wait_for(survivor, 20)
            times.append(claimed - killed)
            rising = rising and revision > first
    finally:
        await nc.close()
    return times, rising


def jetstream_failover(kills: int, ttl: float = 1.0) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="ptt-bench-kv-"))
    nats_server = engines.start_nats(root, jetstream=True)
    try:
        times, rising = asyncio.run(_kv_failover(nats_server.url, kills, ttl))
    finally:
        nats_server.stop()
    assert rising, "a claim's revision did not rise above the dead owner's"
    pct = percentiles(times, (50, 99))
    return {"etcd": "(NATS JetStream KV, bucket max age 1 s)", "lease TTL (s)": ttl,
            "kills": len(times), "min (s)": min(times), "median (s)": statistics.median(times),
            "p99 (s)": pct["p99"], "max (s)": max(times)}


def _ms(values: list[float]) -> dict[str, float]:
    pct = percentiles(values, (50, 99))
    return {"p50 (ms)": pct["p50"] * 1000, "p99 (ms)": pct["p99"] * 1000}


async def _aetcd_latencies(endpoint: str, count: int) -> dict[str, list[float]]:
    [(host, port)] = parse_endpoints([endpoint])
    out: dict[str, list[float]] = {"renewal": [], "claim": [], "watch": []}
    async with aetcd.Client(host=host, port=port) as a, aetcd.Client(host=host, port=port) as b:
        lease = await a.lease(10)
        for _ in range(count):
            t = time.perf_counter()
            await a.refresh_lease(lease.id)
            out["renewal"].append(time.perf_counter() - t)
        tx = a.transactions
        for i in range(count):
            key = f"/bench/claim/{i}-{random.random()}".encode()
            t = time.perf_counter()
            await a.transaction(compare=[tx.create(key) == 0],
                                success=[tx.put(key, b"n", lease=lease.id), tx.get(key)],
                                failure=[tx.get(key)])
            out["claim"].append(time.perf_counter() - t)
        watch = await b.watch_prefix(b"/bench/watch/")
        events = watch.__aiter__()
        for i in range(count):
            t = time.perf_counter()
            await a.put(f"/bench/watch/{i}".encode(), b"x")
            await events.__anext__()
            out["watch"].append(time.perf_counter() - t)
        await watch.cancel()
        await a.revoke_lease(lease.id)
    return out


def _gateway_renewals(endpoint: str, count: int) -> list[float]:
    host, port = endpoint.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=5)

    def call(path: str, body: dict[str, Any]) -> dict[str, Any]:
        conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
        return json.loads(conn.getresponse().read())

    lease = call("/v3/lease/grant", {"TTL": 10})["ID"]
    times = []
    for _ in range(count):
        t = time.perf_counter()
        reply = call("/v3/lease/keepalive", {"ID": lease})
        times.append(time.perf_counter() - t)
        assert int(reply["result"]["TTL"]) > 0, reply
    call("/v3/lease/revoke", {"ID": lease})
    conn.close()
    return times


def client_latencies(count: int) -> list[dict[str, Any]]:
    root = Path(tempfile.mkdtemp(prefix="ptt-bench-etcd-client-"))
    etcd = engines.start_etcd(root, heartbeat_ms=50, election_ms=500)
    try:
        measured = asyncio.run(_aetcd_latencies(etcd.endpoint, count))
        gateway = _gateway_renewals(etcd.endpoint, count)
    finally:
        etcd.stop()
    rows = [{"operation": f"aetcd {name}", **_ms(values)} for name, values in measured.items()]
    rows.append({"operation": "JSON gateway renewal (http.client, kept alive)", **_ms(gateway)})
    return rows


def run(quick: bool = False, kills: int | None = None) -> dict[str, Any]:
    kills = kills or (4 if quick else 20)
    rows = []
    for name, (heartbeat, election) in CONFIGS.items():
        rows.append({"etcd": name, **failover(kills, heartbeat, election)})
    rows.append(jetstream_failover(kills))
    return {
        "title": "Cluster: group home failover over etcd (SIGKILL of the home to the survivor's claim)",
        "target": "new grant possible within 2.0 s (p99) of a home's death (issue #17)",
        "rows": rows,
        "tables": [{"title": "etcd client latencies (one member, loopback)",
                    "rows": client_latencies(50 if quick else 500)}],
        "command": f".venv/bin/python bench/bench_cluster_failover.py --kills {kills}",
        "notes": "Each kill at a random point of the home's renewal cycle (TTL/3). The claim "
                 "waits for the lease to expire (TTL after its last renewal), etcd's lessor "
                 "to revoke it (it checks every 0.5 s) and the deletion to reach the survivor's "
                 "watch. Fencing numbers rose at every claim.",
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    result = run(args.quick, args.kills)
    print(machine_line())
    for row in result["rows"] + result["tables"][0]["rows"]:
        print(row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
