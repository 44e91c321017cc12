"""Group home failover: the claim over etcd alone, or through real nodes as members see it.

Also the etcd client's latencies.

Failover: two node processes (tests/cluster/ownership_runner.py) want one group; the home is
SIGKILLed at a random point of its renewal cycle and the time until the survivor's claim (its
``claimed`` line, stamped on the system's monotonic clock) is recorded; a fresh standby then
joins and the new home is killed in turn. Once with etcd's default raft timers (heartbeat 100 ms,
election 1 s: etcd raises the 1 s lease asked for to 2 s) and once with shortened ones
(50 ms / 500 ms: 1 s leases granted).

The alternative the issue names, NATS JetStream KV, the same way: the home creates its key and
rewrites it conditionally TTL/3 apart in a bucket whose max age is the TTL; the survivor watches
and, once no rewrite came for a TTL, creates the key (which succeeds once the server aged it out).

Client: the node's own, etcd's JSON gateway from the loop (``ptt.cluster.gateway``), against
one member with the shortened timers: lease renewal, a claim (create-if-absent transaction),
and a put seen by another client's watch; and a lease renewal from a thread on http.client (the
renewer's). aetcd on gRPC, measured here before, is no longer a dependency.

    .venv/bin/python bench/bench_cluster_failover.py --kills 20

Through the nodes (``--nodes``): four ``ptt server --cluster`` processes on PostgreSQL (the
directory), NATS (the bus) and an etcd with shortened timers (1 s leases); a group homed on one
node, its three members (sans-I/O ``ClientCore``s on UDP sockets in this process) on the three
others: a talker holding the floor and sending frames, two listeners. The home is SIGKILLed
mid-burst; per kill: when each member is told (the talker's revoke with cause FAILOVER, a
listener's floor-free news) and when a listener that asks from the kill on is granted by the new
home. The killed node is started again before the next kill (members then log in to the three
nodes that are not the home).

    .venv/bin/python bench/bench_cluster_failover.py --nodes --kills 20
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from ptt.cluster import engines
from ptt.cluster.gateway import GatewayClient, created_at, kvs, put_op, range_op, txn_op
from ptt.cluster.ownership import parse_endpoints

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from loadgen import load_average, machine_line, percentiles  # noqa: E402

from ptt.protocol import messages as m  # noqa: E402

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


async def _loop_latencies(endpoint: str, count: int) -> dict[str, list[float]]:
    [member] = parse_endpoints([endpoint])
    out: dict[str, list[float]] = {"renewal": [], "claim": [], "watch": []}
    a, b = GatewayClient(member), GatewayClient(member)
    try:
        lease = int((await a.post("/v3/lease/grant", {"TTL": "10"}, 2.0))["ID"])
        for _ in range(count):
            t = time.perf_counter()
            await a.post("/v3/lease/keepalive", {"ID": str(lease)}, 2.0)
            out["renewal"].append(time.perf_counter() - t)
        for i in range(count):
            key = f"/bench/claim/{i}-{random.random()}".encode()
            t = time.perf_counter()
            await a.post("/v3/kv/txn", txn_op([created_at(key, 0)],
                                              [put_op(key, b"n", lease), range_op(key)],
                                              [range_op(key)])["request_txn"], 2.0)
            out["claim"].append(time.perf_counter() - t)
        events = b.watch(b"/bench/watch/", b"/bench/watch0", 1, 2.0).__aiter__()
        for i in range(count):
            t = time.perf_counter()
            await a.post("/v3/kv/put", put_op(f"/bench/watch/{i}".encode(), b"x")["request_put"],
                         2.0)
            await events.__anext__()
            out["watch"].append(time.perf_counter() - t)
        await events.aclose()
        await a.post("/v3/lease/revoke", {"ID": str(lease)}, 2.0)
    finally:
        a.close()
        b.close()
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
        measured = asyncio.run(_loop_latencies(etcd.endpoint, count))
        gateway = _gateway_renewals(etcd.endpoint, count)
    finally:
        etcd.stop()
    rows = [{"operation": f"gateway from the loop: {name}", **_ms(values)}
            for name, values in measured.items()]
    rows.append({"operation": "JSON gateway renewal (http.client, kept alive)", **_ms(gateway)})
    return rows


# --- failover through the nodes ----------------------------------------------------------------

NODE_NAMES = ("a", "b", "c", "d")
GROUP = "fo"
FIRST_HOME = "c"


def _directory(dsn: str) -> dict[str, str]:
    """The talker and two listeners in one plain relay group, in the PostgreSQL directory."""
    import secrets

    from ptt.cluster.directory import open_directory
    from ptt.protocol import auth
    from ptt.protocol.messages import Role

    directory = open_directory(dsn)
    tokens = {}
    try:
        for name in ("talker", "one", "two"):
            token = secrets.token_urlsafe(24)
            creds = auth.make_credentials(token, secrets.token_bytes(16), auth.MIN_ITERATIONS)
            directory.add_user(name, Role.VOLUNTEER, creds.salt, creds.iterations, creds.verifier)
            tokens[name] = token
        directory.create_group(GROUP, max_talk=600.0, mode="relay", encrypted=False)
        for name in tokens:
            directory.add_member(GROUP, name)
    finally:
        directory.close()
    return tokens


async def _read_home(endpoint: str) -> tuple[str, int] | None:
    from ptt.cluster.ownership import home_key

    [(host, port)] = parse_endpoints([endpoint])
    client = GatewayClient((host, port))
    try:
        found = kvs(await client.post("/v3/kv/range", range_op(home_key(GROUP))["request_range"],
                                      5.0))
    finally:
        client.close()
    return (found[0].value.decode(), found[0].create_revision) if found else None


def _wait_home(endpoint: str, other_than: str | None, within: float) -> tuple[str, int]:
    deadline = time.monotonic() + within
    while True:
        home = asyncio.run(_read_home(endpoint))
        if home is not None and home[0] != other_than:
            return home
        if time.monotonic() > deadline:
            raise RuntimeError(f"no home of {GROUP} but {other_than} within {within} s: {home}")
        time.sleep(0.05)


def _wait_log(log: Path, needle: str, within: float) -> None:
    deadline = time.monotonic() + within
    while needle not in log.read_text(errors="replace"):
        if time.monotonic() > deadline:
            raise RuntimeError(f"no {needle!r} in {log} within {within} s")
        time.sleep(0.05)


def _one_kill(bc: Any, tokens: dict[str, str], addr: dict[str, tuple[str, int]], home: str,
              kill: Any) -> dict[str, Any]:
    """Members on the three other nodes; the talker holds the floor and talks; ``kill()`` at a
    random point; then each member's first news of the floor's end, and the first grant of a
    request that ``one`` makes from the kill on (asked again at once if denied or failed)."""
    from ptt.protocol import client as cl
    from ptt.wire.voice import VoiceHeader, add_mac, encode_voice

    others = [n for n in NODE_NAMES if n != home]
    random.shuffle(others)
    members = {name: bc._Client(name, tokens[name], addr[node])
               for name, node in zip(("talker", "one", "two"), others, strict=True)}
    talker, one = members["talker"], members["one"]
    loop = bc._Loop(list(members.values()))
    now = time.monotonic()
    for c in members.values():
        c.core.connect(now)
        c.core.join(GROUP, now)
    loop.until(lambda: all(GROUP in c.core.groups and c.core.groups[GROUP].state is not None
                           for c in members.values()), 20, "logins and joins")
    # the home hears of each node's first member (Presence) before the talker asks: a node
    # added to the relay set mid-burst gets the floor's state but not the grant's news
    settled = time.monotonic() + 1.0
    loop.until(lambda: time.monotonic() > settled, 5, "settling")
    talker.core.request_floor(GROUP, time.monotonic())
    loop.until(lambda: talker.core.participation(GROUP) is cl.Participation.HAS_PERMISSION,
               10, "the talker's grant")
    loop.until(lambda: all(c.core.groups[GROUP].talker == "talker"
                           for c in members.values() if c is not talker), 10, "talker news")
    route = talker.core.talk_route(GROUP)
    assert route is not None
    gid, sid, burst = route
    seq = 0
    start = time.monotonic()
    kill_at = start + random.uniform(0.5, 1.5)  # mid-burst, anywhere in the lease's cycle
    killed = None
    told: dict[str, float] = {}
    granted = None
    for c in members.values():
        c.events.clear()

    def talk() -> None:
        nonlocal seq
        if talker.core.participation(GROUP) is not cl.Participation.HAS_PERMISSION:
            return
        while time.monotonic() >= start + seq * 0.02:
            frame = encode_voice(VoiceHeader(gid, sid, burst, seq, 0), bytes(60))
            talker.sock.sendto(add_mac(talker.core.voice_key, frame), talker.server)
            seq += 1

    deadline = kill_at + 15.0
    while time.monotonic() < deadline and (granted is None or len(told) < len(members)):
        talk()
        loop.step(0.005)
        if killed is None:
            if time.monotonic() >= kill_at:
                kill()
                killed = time.monotonic()
                one.core.request_floor(GROUP, killed)
            else:
                for c in members.values():
                    c.events.clear()
            continue
        for name, c in members.items():
            for t, ev in c.events:
                if name in told:
                    break
                if (name == "talker" and isinstance(ev, cl.FloorStateChanged)
                        and ev.state is not cl.Participation.HAS_PERMISSION):
                    if ev.revoke_cause is not m.RevokeCause.FAILOVER:
                        raise RuntimeError(f"the talker lost the floor by {ev}")
                    told[name] = t - killed
                elif name != "talker" and isinstance(ev, cl.TalkerChanged) and ev.talker is None:
                    told[name] = t - killed
            for t, ev in c.events:
                if c is not one or granted is not None:
                    break
                if isinstance(ev, cl.FloorStateChanged):
                    if ev.state is cl.Participation.HAS_PERMISSION:
                        granted = t - killed
                    elif ev.state is cl.Participation.NO_PERMISSION:
                        one.core.request_floor(GROUP, time.monotonic())  # denied: ask again
                elif isinstance(ev, cl.RequestFailed) and ev.what == "floor":
                    one.core.request_floor(GROUP, time.monotonic())
            c.events.clear()
    if granted is None or len(told) < len(members):
        raise RuntimeError(f"within 15 s of the kill: told {told}, granted {granted}")
    one.core.release_floor(GROUP, time.monotonic())
    loop.until(lambda: one.core.participation(GROUP) is cl.Participation.NO_PERMISSION, 10,
               "the release")
    now = time.monotonic()
    for c in members.values():
        c.core.close(now)
        c.flush()
        c.sock.close()
    return {"told": told, "granted": granted, "frames": seq,
            "nodes": dict(zip(("talker", "one", "two"), others, strict=True))}


def nodes_failover(kills: int) -> dict[str, Any]:
    """Four ``ptt server --cluster`` nodes on PostgreSQL, NATS and an etcd with shortened
    timers (1 s leases); SIGKILL the group's home ``kills`` times, restarting it after each."""
    import bench_cluster as bc

    root = Path(tempfile.mkdtemp(prefix="ptt-bench-nodes-failover-"))
    pg = engines.start_postgres(root / "pg")
    nats_engine = engines.start_nats(root / "nats")
    etcd = engines.start_etcd(root / "etcd", heartbeat_ms=50, election_ms=500)
    procs: dict[str, subprocess.Popen[bytes]] = {}
    dbs: dict[str, Path] = {}
    rounds: list[dict[str, Any]] = []
    load = [load_average()]
    try:
        tokens = _directory(pg.dsn)
        ports = {n: bc._free_udp_port() for n in NODE_NAMES}
        addr = {n: ("127.0.0.1", p) for n, p in ports.items()}
        for name in NODE_NAMES:
            d = root / name
            d.mkdir()
            (d / "cluster.toml").write_text(
                f'node = "{name}"\nnodes = {json.dumps(list(NODE_NAMES))}\n'
                f'nats = ["{nats_engine.url}"]\netcd = ["{etcd.endpoint}"]\n'
                f'postgres = "{pg.dsn}"\nlease_ttl = 1\n[homes]\n{GROUP} = "{FIRST_HOME}"\n')
            dbs[name] = d / "ptt.db"
            procs[name] = bc._server(dbs[name], ports[name], d / "cluster.toml")
        home, fencing = _wait_home(etcd.endpoint, None, 20)
        for name in NODE_NAMES:
            _wait_log(dbs[name].with_suffix(".log"), f"group {GROUP}: ", 20)
        for i in range(kills):
            def kill(node: str = home) -> None:
                procs[node].kill()

            try:
                r = _one_kill(bc, tokens, addr, home, kill)
            except RuntimeError:
                for name in NODE_NAMES:
                    print(f"--- node {name} (home {home})")
                    print(dbs[name].with_suffix(".log").read_text()[-1500:])
                raise
            procs[home].wait(5)
            new_home, new_fencing = _wait_home(etcd.endpoint, home, 10)
            if new_fencing <= fencing:
                raise RuntimeError(f"fencing did not rise: {fencing} -> {new_fencing}")
            r.update(killed=home, new_home=new_home)
            rounds.append(r)
            print(f"kill {i + 1}: home {home} -> {new_home} (talker, one, two on "
                  f"{', '.join(r['nodes'].values())}); told "
                  + ", ".join(f"{n} {t:.3f}" for n, t in r["told"].items())
                  + f" s; grant {r['granted']:.3f} s", flush=True)
            for attempt in range(3):
                try:
                    procs[home] = bc._server(dbs[home], ports[home],
                                             dbs[home].parent / "cluster.toml")
                    break
                except RuntimeError as exc:
                    # while the node was dead its UDP port was free, and any socket of the
                    # machine (a client's of this bench, bound to port 0) may have taken it
                    if "already in use" not in str(exc) or attempt == 2:
                        raise
                    ports[home] = bc._free_udp_port()
                    addr[home] = ("127.0.0.1", ports[home])
            _wait_log(dbs[home].with_suffix(".log"), f"group {GROUP}: learned", 20)
            home, fencing = new_home, new_fencing
            load.append(load_average())
    finally:
        bc.stop_servers(procs.values())
        for engine in (etcd, nats_engine, pg):
            engine.stop()
        shutil.rmtree(root, ignore_errors=True)
    told = [t for r in rounds for t in r["told"].values()]
    last = [max(r["told"].values()) for r in rounds]
    grants = [r["granted"] for r in rounds]

    def row(what: str, values: list[float]) -> dict[str, Any]:
        pct = percentiles(values, (50, 95, 99))
        return {"what": what, "n": len(values), "min (s)": round(min(values), 3),
                "p50 (s)": round(pct["p50"], 3), "p95 (s)": round(pct["p95"], 3),
                "p99 (s)": round(pct["p99"], 3), "max (s)": round(max(values), 3)}

    return {
        "title": "Cluster: home failover through the nodes (SIGKILL of the group's home "
                 "mid-burst)",
        "target": "members told within 1.5 s (p50); new grant possible within 2.0 s (p99) "
                  "(issue #17)",
        "command": f".venv/bin/python bench/bench_cluster_failover.py --nodes --kills {kills}",
        "rows": [row("member told (each member, each kill)", told),
                 row("last member told (each kill)", last),
                 row("new grant (a member asking from the kill on)", grants)],
        "kills": len(rounds),
        "new homes": "".join(r["new_home"] for r in rounds),
        "load_average": " ".join(load),
        "notes": "Four `ptt server --cluster` nodes (PostgreSQL directory, NATS bus, etcd with "
                 "heartbeat 50 ms / election 500 ms and 1 s leases), one member on each node but "
                 "the home (a talker holding the floor and sending 20 ms frames, two "
                 "listeners); the home SIGKILLed 0.5-1.5 s into the burst, restarted after. "
                 "Told: the talker's revoke with cause FAILOVER, a listener's floor-free news. "
                 "Grant: one listener asks at the kill; the client resends its request; a "
                 "denial or a failed request is asked again at once.",
    }


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
    parser.add_argument("--nodes", action="store_true",
                        help="failover through four real nodes (members told, new grant)")
    args = parser.parse_args()
    if args.nodes:
        res = nodes_failover(args.kills if not args.quick else 4)
        print(machine_line())
        for row in res["rows"]:
            print(json.dumps(row))
        print(f"new homes {res['new homes']}; load average {res['load_average']}")
        return 0
    result = run(args.quick, args.kills)
    print(machine_line())
    for row in result["rows"] + result["tables"][0]["rows"]:
        print(row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
