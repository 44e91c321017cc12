"""A cluster under churn: 4 nodes, 20,000 clients in 2,000 groups, against one server in the same run.

    .venv/bin/python bench/bench_cluster_churn.py                  # 20,000 clients, 60 s of churn
    .venv/bin/python bench/bench_cluster_churn.py --clients 2000 --duration 20   # smaller
    .venv/bin/python bench/bench_cluster_churn.py --quick          # 400 clients, 8 s: a check

Two phases with the same clients, the same load processes and the same churn (same seeds):

1. **single**: one ``PttServer`` (as ``ptt server`` runs it) takes every client;
2. **cluster**: four nodes (``PttServer`` + ``ClusterNode``, as ``ptt server --cluster`` runs it)
   over a real NATS and a real etcd (1 s leases, 50/500 ms raft timers) started here on loopback
   ports; each client logs in to a node drawn at random, so a group's ten members sit on
   different nodes and most floor traffic crosses the bus, and each group is homed by the static
   rule (CRC-32 of its name), claimed through etcd with a fencing number.

Each node and the single server run in a forked process of their own with a floor monitor on
their events (``bench_load.FloorMonitor``, on the groups the node homes): a grant while the
group's floor is held by another burst is a *double grant*; a burst ended by silence or no-start
(talkers send voice until they release) or a floor still held at the end is a *lost release*.
The load processes (one per node, ``loadgen.ClientPool``: the real ``ClientCore`` on one UDP
socket per client, heartbeating at the real cadence: 55 s idle, 1 s while a group of theirs has
a talker) churn: each client thinks (exponential, ``--think`` s mean), asks for its group's
floor (``--emergency`` of the asks made while the floor is taken use emergency priority and
pre-empt the talker), talks 20 ms voice frames for 0.5-1.5 s and releases; a queued client
withdraws after 8 s. Logins and logouts: ``--relogins`` a second over all clients, an idle
client says Bye and logs in again 2-6 s later. The clients report each grant they saw (group,
from, to): two grants of one group whose holders both believed they held it for more than
``OVERLAP`` s is a double grant *as the clients saw it*. Every request must resolve and every
release be answered.

CPU: utime + stime of each server PID from ``/proc`` over the churn window; per client = that
over the node's logged-in clients and the window. Latency under that load: a talker and a
listener in this process (``bench_cluster``'s probe: 20 ms frames carrying their send time and
timed floor cycles) on the single server, then with the talker on node a, the listener on node
b and their group homed on node c. After the cluster's churn, a failover under load: ``--kill``
groups with a talker on a (holding the floor) and a listener on b are homed on node d, d is
SIGKILLed; the listener's time to see the floor free and the talker's time to a new grant.

Everything talks to 127.0.0.1; every wait has a deadline and every process started here is
stopped by its PID at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import shutil
import signal
import struct
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_cluster  # noqa: E402
import bench_load  # noqa: E402
import loadgen  # noqa: E402
import machine_floor  # noqa: E402
from bench_idle import proc_cpu, thread_cpu  # noqa: E402

from ptt.protocol import auth  # noqa: E402
from ptt.protocol import client as cl  # noqa: E402
from ptt.protocol import messages as m  # noqa: E402
from ptt.wire.voice import HEADER_SIZE, VoiceHeader, add_mac, encode_voice, peek_frame  # noqa: E402

NODES = ("a", "b", "c", "d")
GROUP_SIZE = 10
THINK = 1200.0  # s between one client's asks: a group of 10 asks every 2 min on average
TALK = (0.5, 1.5)  # s of voice per burst
EMERGENCY = 0.05  # of the asks made while the group's floor is taken
RELOGINS = 5.0  # Bye and login again, per second over all clients
OVERLAP = 0.5  # s: two holders both told "yours" for longer than this is a double grant
SILENCE_WINDOW = 2.0  # s: T1 (1.5 s) and an ALIVE's period, with room: a stop this near an end
PROBE_GROUP = bench_cluster.GROUP  # the latency probe's group (talker, listener), homed on c
KILL_NODE = "d"


# --- the directory ---------------------------------------------------------------------------


def provision(db: Path, clients: int, kill_groups: int) -> tuple[dict[str, list[str]],
                                                                 dict[str, str]]:
    """Users ``u00000``.. in groups ``g0000``.. of 10, the probe's pair in ``bench``, and per
    failover group ``f<k>`` a talker and a listener: one SQLite file, copied to every node."""
    from ptt.server.store import Store

    groups = {f"g{k:04d}": [f"u{j:05d}" for j in range(k * GROUP_SIZE,
                                                       min((k + 1) * GROUP_SIZE, clients))]
              for k in range(-(-clients // GROUP_SIZE))}
    groups[PROBE_GROUP] = ["talker", "listener"]
    for k in range(kill_groups):
        groups[f"f{k:02d}"] = [f"ft{k:02d}", f"fl{k:02d}"]
    store = Store(db)
    tokens: dict[str, str] = {}
    try:
        # made here, so the nodes' copies share it as a real cluster's nodes do (one database
        # copied, or PostgreSQL): each node made its own at start, and voice between nodes
        # went over NATS ("derives another peer key") instead of the peer ports
        store.secret("decoy")
        salt = secrets.token_bytes(auth.SALT_SIZE)
        for name in dict.fromkeys(u for ms in groups.values() for u in ms):
            # one salt for all: a load generator's shortcut (PBKDF2 per user is what costs here)
            token = auth.new_token(secrets.token_bytes(auth.TOKEN_BYTES))
            creds = auth.make_credentials(token, salt, auth.MIN_ITERATIONS)
            store.add_user(name, "volunteer", creds.salt, creds.iterations, creds.verifier)
            tokens[name] = token
        for g, members in groups.items():
            store.create_group(g, mode="relay", encrypted=False)
            store.change_members(g, add=members)
    finally:
        store.close()
    return groups, tokens


# --- a server or node process ----------------------------------------------------------------


class NodeProc(loadgen._Proc):
    """bench_load's monitored server on ``workdir``/db.sqlite, a cluster node with ``cluster``
    (ClusterConfig's fields), with the collector frozen after the load as ``ptt server``."""

    def __init__(self, workdir: Path, port: int, cluster: dict[str, Any] | None) -> None:
        super().__init__(bench_load._server_main, str(workdir), auth.MIN_ITERATIONS, port,
                         cluster, True)
        ready = self.recv(60)
        self.pid: int = ready["pid"]
        self.address = (loadgen.LOCALHOST, port)
        self.start_rss_kib: int = ready["rss_kib"]

    def kill(self) -> None:
        os.kill(self.pid, signal.SIGKILL)  # our own child, by its PID
        self.proc.join(5)


def start_nodes(nodes: dict[str, NodeProc], phase_name: str, root: Path, seed_db: Path,
                nats_url: str | None, etcd: list[str] | None, extra: dict[str, Any]) -> None:
    """Into ``nodes``: the single server (without ``nats_url``) or the four nodes, each on a
    copy of ``seed_db`` in a directory of its own (``extra``: more ClusterConfig fields)."""
    for n in (NODES if nats_url else ("single",)):
        d = root / f"{phase_name}-{n}"
        d.mkdir()
        shutil.copy(seed_db, d / "db.sqlite")
        spec = None
        if nats_url:
            spec = {"node": n, "nodes": tuple(NODES), "nats": (nats_url,),
                    "etcd": tuple(etcd or ()), **extra}
        nodes[n] = NodeProc(d, bench_cluster._free_udp_port(), spec)


def spy(phase_name: str, nodes: dict[str, NodeProc], seconds: float, outdir: Path
        ) -> list[Any]:
    """py-spy sampling each server process for ``seconds``: collapsed stacks of the samples
    that ran (not idle) to ``outdir``/<phase>-<node>.txt (bench/profile_summary.py)."""
    import subprocess

    exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    outdir.mkdir(parents=True, exist_ok=True)
    return [subprocess.Popen([exe, "record", "--pid", str(p.pid), "--rate", "100",
                              "--duration", str(max(1, int(seconds))),
                              "--format", "raw", "--nonblocking",
                              "-o", str(outdir / f"{phase_name}-{n}.txt")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for n, p in nodes.items()]


def end_spies(spies: list[Any]) -> None:
    for s in spies:
        try:
            s.wait(30)
        except Exception:  # noqa: BLE001 - our own child, ended by its PID
            s.kill()
            s.wait(5)


# --- the churn role --------------------------------------------------------------------------


class Churn(bench_load.Churn):
    """bench_load's churn with pre-emptions, logouts/logins and the grants each client saw."""

    def __init__(self, pool: loadgen.ClientPool, conn: Any, duration: float, seed: int,
                 think: float, emergency: float, relogins: float) -> None:
        self.emergency = emergency
        # group, user, burst, told granted, told not
        self.grants: list[tuple[str, str, int, float, float]] = []
        self.held: dict[int, tuple[int, float]] = {}
        self.released: list[tuple[str, str, int]] = []  # group, user, burst: release sent
        self.away: set[int] = set()
        self.m = {"emergency": 0, "preempted": 0, "logouts": 0, "logins": 0}
        self.seed = seed
        self.rngs: dict[int, random.Random] = {}
        super().__init__(pool, conn, duration, seed, think)
        if relogins > 0:
            # each client's own logouts (its share of the rate), drawn from its own stream
            per_client = relogins / max(1, len(pool.cores))
            now = time.monotonic()
            for i in range(len(pool.cores)):
                pool.call_at(now + self.rng_of(i).expovariate(per_client),
                             lambda i=i: self.logout(i, per_client))

    def rng_of(self, i: int) -> random.Random:
        """Client ``i``'s own stream, seeded by the churn's seed and its name: a client thinks,
        talks and logs out alike whichever load process drives it, so a single server with
        node a's clients gets node a's very churn (with one stream per load process the
        floor requests of two seeds differed by 14% in a 25 s window, more than the
        difference measured)."""
        rng = self.rngs.get(i)
        if rng is None:
            rng = self.rngs[i] = random.Random(f"{self.seed // 100}:{self.pool.cores[i].user}")
        return rng

    def ask(self, i: int) -> None:
        now = time.monotonic()
        if i in self.away:
            self.pool.call_at(now + 1.0, lambda: self.ask(i))
            return
        core = self.pool.cores[i]
        g = core.groups.get(self.group(i))
        if (now < self.end and g is not None and g.talker is not None
                and i not in self.asked and i not in self.talking and i not in self.queued_at
                and core.participation(self.group(i)) is cl.Participation.NO_PERMISSION
                and self.rng_of(i).random() < self.emergency):
            self.asked[i] = now
            self.n["requests"] += 1
            self.m["emergency"] += 1
            core.request_floor(self.group(i), now, m.Priority.EMERGENCY)
            self.pool.flush(i)
            return
        super().ask(i)

    def logout(self, i: int, rate: float) -> None:
        now = time.monotonic()
        if now >= self.end:
            return
        self.pool.call_at(now + self.rng_of(i).expovariate(rate), lambda: self.logout(i, rate))
        core = self.pool.cores[i]
        if (i in self.away or i in self.asked or i in self.talking or i in self.queued_at
                or i in self.releasing or i not in self.pool.online
                or core.participation(self.group(i)) is not cl.Participation.NO_PERMISSION):
            return
        self.away.add(i)
        self.m["logouts"] += 1
        core.close(now)
        self.pool.flush(i)
        self.pool.online.discard(i)
        self.pool.call_at(now + self.rng_of(i).uniform(2.0, 6.0), lambda: self.login(i))

    def login(self, i: int) -> None:
        self.pool.connect(i)

    def release(self, i: int) -> None:
        held = self.held.get(i)
        if held is not None:
            self.released.append((self.group(i), self.pool.cores[i].user, held[0]))
        super().release(i)

    def on_events(self, i: int, evs: list[Any], t_recv: float, t_kernel: float) -> None:
        now = time.monotonic()
        for ev in evs:
            if isinstance(ev, cl.Connected) and i in self.away:
                self.away.discard(i)
                self.m["logins"] += 1
            if not isinstance(ev, cl.FloorStateChanged) or ev.group != self.group(i):
                continue
            if ev.state is cl.Participation.HAS_PERMISSION and i not in self.held:
                self.held[i] = (ev.burst_id, now)
            elif ev.state in (cl.Participation.NO_PERMISSION, cl.Participation.QUEUED,
                              cl.Participation.PENDING_RELEASE) and i in self.held:
                # PENDING_RELEASE: the client let go (it sends no more voice from here)
                burst, t0 = self.held.pop(i)
                self.grants.append((self.group(i), self.pool.cores[i].user, burst, t0, now))
            if (ev.state is cl.Participation.NO_PERMISSION
                    and ev.revoke_cause is m.RevokeCause.PREEMPTED and i in self.talking):
                # the expected end of a burst here: bench_load counts it among "revoked"
                self.m["preempted"] += 1
        super().on_events(i, evs, t_recv, t_kernel)

    def finish(self) -> None:
        now = time.monotonic()
        for i, (burst, t0) in self.held.items():
            self.grants.append((self.group(i), self.pool.cores[i].user, burst, t0, now))
        self.held.clear()
        self.m["away_at_end"] = len(self.away)
        conn, self.conn = self.conn, _Box()
        super().finish()
        res = self.conn.sent
        res["m"] = self.m
        res["stuck"] = [f for f in self.pool.failures if "timer stuck" in f][:5]
        res["lost_why"] = dict(self.pool.lost_why)  # sessions lost, by the client's reason
        self.m["stuck_timers"] = len(self.pool.stuck)
        res["grants"] = self.grants
        res["released"] = self.released
        conn.send(("ok", res))


class Pauser(threading.Thread):
    """Home moves on purpose: every ``every`` s of the churn window, one node drawn at random
    is stopped (SIGSTOP) for ``pause`` s, longer than its lease, then continued: etcd expires
    its lease and the survivors claim its groups while it still believes it holds them."""

    def __init__(self, nodes: dict[str, NodeProc], pause: float, every: float, end: float,
                 seed: int) -> None:
        super().__init__(daemon=True)
        self.nodes, self.pause, self.every, self.end = nodes, pause, every, end
        self.rng = random.Random(seed)
        self.done: list[tuple[str, float]] = []  # node, s into the window
        self.spans: list[tuple[str, float, float]] = []  # node, stopped, continued (monotonic)

    def run(self) -> None:
        start = time.monotonic()
        t = start + self.every / 2
        while t + self.pause < self.end:
            time.sleep(max(0.0, t - time.monotonic()))
            name = self.rng.choice(sorted(self.nodes))
            pid = self.nodes[name].pid  # our own child, by its PID
            stopped = time.monotonic()
            os.kill(pid, signal.SIGSTOP)
            try:
                time.sleep(self.pause)
            finally:
                os.kill(pid, signal.SIGCONT)
            self.done.append((name, round(t - start, 1)))
            self.spans.append((name, stopped, time.monotonic()))
            t += self.every


class _Box:
    """Catches what bench_load's finish sends, to add this role's figures to it."""

    sent: dict[str, Any]

    def send(self, msg: tuple[str, dict[str, Any]]) -> None:
        self.sent = msg[1]


class Worker(loadgen._Proc):
    """A load process; the k-th binds its clients to 127.0.2.k: 20,000 sockets on 127.0.0.1
    took most of its ~28,000 ephemeral ports, and other programs' port picks on it failed."""

    made = 0

    def __init__(self, server: tuple[str, int], clients: list[tuple[str, str, list[str]]],
                 login_timeout: float, inflight: int,
                 servers: list[tuple[str, int]] | None = None) -> None:
        Worker.made += 1
        super().__init__(bench_load._worker_main, server, clients, login_timeout, Churn,
                         inflight, f"127.0.2.{Worker.made % 250 + 1}", servers)
        self.n = len(clients)
        self.login_timeout = login_timeout


# --- a phase -----------------------------------------------------------------------------------


def _double_grants_seen(grants: list[tuple[str, str, int, float, float]]
                        ) -> tuple[int, list[float], list[str]]:
    """Pairs of grants of one group both held (as their clients saw it) for more than OVERLAP
    s at once, every overlap seen (s, however short), and a few examples."""
    by: dict[str, list[tuple[float, float, str, int]]] = {}
    for g, user, burst, t0, t1 in grants:
        by.setdefault(g, []).append((t0, t1, user, burst))
    doubles, overlaps, examples = 0, [], []
    for g, spans in by.items():
        spans.sort()
        end, prev = float("-inf"), ("", 0)
        for t0, t1, user, burst in spans:
            overlap = min(end, t1) - t0
            if overlap > 0:
                overlaps.append(overlap)
            if overlap > OVERLAP:
                doubles += 1
                examples.append(f"{g}: {user}/{burst} granted while {prev[0]}/{prev[1]} "
                                f"held it {overlap:.2f} s more")
            if t1 > end:
                end, prev = t1, (user, burst)
    return doubles, overlaps, examples[:5]


def bring_up(nodes: dict[str, NodeProc], workers: dict[str, Worker], out: dict[str, Any],
             name: str, root: Path, seed_db: Path, groups: dict[str, list[str]],
             tokens: dict[str, str], assign: dict[str, str], args: argparse.Namespace,
             nats_url: str | None, etcd: list[str] | None, only: str | None = None,
             split: dict[str, str] | None = None) -> list[str]:
    """Into ``nodes`` and ``workers``: the single server or the four nodes and their load
    processes, every client logged in (``only``: those of that node); returns the clients.
    The single server's clients are split over load processes by ``split`` (client -> node)
    where given, else by ``assign``."""
    cluster = nats_url is not None
    names = NODES if cluster else ("single",)
    kill_groups = [g for g in groups if g.startswith("f")]
    homes = {PROBE_GROUP: "c", **{g: KILL_NODE for g in kill_groups}}
    start_nodes(nodes, name, root, seed_db, nats_url, etcd,
                # product: each Welcome steers its client to its group's home (the
                # clients list every node); else each stays where the bench put it
                {"homes": homes, "lease_ttl": args.lease,
                 "steer": args.placement == "product"})
    out["rss_start_mib"] = {n: p.start_rss_kib / 1024 for n, p in nodes.items()}
    t0 = time.monotonic()
    load = [u for g, ms in groups.items() if g.startswith("g") for u in ms
            if only is None or assign[u] == only]
    for n in names:
        mine = [(u, tokens[u], [_group_of(u, groups)]) for u in load
                if not cluster or assign[u] == n]
        by = split if split is not None and not cluster else assign
        for k in (NODES if not cluster else (n,)):  # the same split in both phases
            part = [e for e in mine if by[e[0]] == k]
            for j in range(args.procs if part else 0):
                listed = ([nodes[n].address] + [p.address for m, p in nodes.items()
                                                if m != n]
                          if cluster and args.placement == "product" else None)
                workers[f"{k}{j}"] = Worker(nodes[n].address, part[j::args.procs],
                                            120 + len(part) / 20, args.inflight, listed)
    for w in workers.values():
        while args.census and not w.conn.poll(30):
            for n, p in nodes.items():
                _say(f"{name} {n} census: {p.call('census', timeout=60)}")
        w.recv(w.login_timeout + 30)
    out["login_s"] = time.monotonic() - t0
    _say(f"{name}: {len(load)} clients logged in in {out['login_s']:.0f} s")
    return load


def churn_args(args: argparse.Namespace, w: Worker, k: int) -> dict[str, Any]:
    """The churn of load process ``k``: its logins and logouts are its share of ``--relogins``
    over *all* ``--clients``, so a server with one node's clients gets that node's rate."""
    return {"duration": args.duration, "seed": args.seed * 100 + k,
            "think": args.think,
            "emergency": args.emergency, "relogins": args.relogins * w.n / args.clients}


def phase(name: str, root: Path, seed_db: Path, groups: dict[str, list[str]],
          tokens: dict[str, str], assign: dict[str, str], args: argparse.Namespace,
          nats_url: str | None, etcd: list[str] | None, only: str | None = None
          ) -> dict[str, Any]:
    """One phase: the servers, the load, the churn window, the probe; figures. ``only``: of
    the clients, only those of that node (the same load process, seed and churn as there)."""
    cluster = nats_url is not None
    names = NODES if cluster else ("single",)
    kill_groups = [g for g in groups if g.startswith("f")]
    nodes: dict[str, NodeProc] = {}
    workers: dict[str, Worker] = {}
    out: dict[str, Any] = {"phase": name}
    try:
        bring_up(nodes, workers, out, name, root, seed_db, groups, tokens, assign, args,
                 nats_url, etcd, only)
        ta = nodes["a" if cluster else "single"].address
        tb = nodes["b" if cluster else "single"].address
        pair = (bench_cluster._Client("talker", tokens["talker"], ta),
                bench_cluster._Client("listener", tokens["listener"], tb))
        probing = _probe_login(*pair)
        time.sleep(args.settle)
        s0 = {n: p.call("stats") for n, p in nodes.items()}
        b0 = {n: p.call("bus") for n, p in nodes.items()}
        for p in nodes.values():
            p.call("handles")
        v0 = {n: thread_cpu(p.pid) for n, p in nodes.items()}
        c0 = {n: proc_cpu(p.pid) for n, p in nodes.items()}
        w0 = time.monotonic()
        # less the probe's start, so the samples stay inside the CPU window
        spies = spy(name, nodes, args.duration - 4, args.pyspy) if args.pyspy else []
        load_before = loadgen.load_average()
        for k, w in enumerate(workers.values()):
            if args.light:  # heartbeats only, at the real cadence; nobody else talks
                w.call("light")
            else:
                w.send("churn", churn_args(args, w, k))
        pauser = None
        if cluster and args.pause > 0:
            pauser = Pauser(nodes, args.pause, args.pause_every, w0 + args.duration, args.seed)
            pauser.start()
        # the probe, while the churn runs
        time.sleep(min(5.0, args.duration / 4))
        probe = (_probe(*pair, args.cycles, args.voice) if probing else
                 {"access": [], "voice": [], "frames": 0, "failed": -1,
                  "machine": {w: {"cold": [], "warm": []} for w in ("access", "voice")}})
        left = w0 + args.duration - time.monotonic()
        if left > 0:
            time.sleep(left)
        if pauser is not None:
            pauser.join()
            out["pauses"] = pauser.done
            out["pause_spans"] = pauser.spans
        c1 = {n: proc_cpu(p.pid) for n, p in nodes.items()}
        w1 = time.monotonic()
        b1 = {n: p.call("bus") for n, p in nodes.items()}
        v1 = {n: thread_cpu(p.pid) for n, p in nodes.items()}
        h1 = {n: p.call("handles") for n, p in nodes.items()}
        end_spies(spies)
        out["load_average"] = f"{load_before} at the start, {loadgen.load_average()} at the end"
        _say(f"{name}: churn window over, load average {loadgen.load_average()}")
        res = [] if args.light else [w.recv(args.duration + bench_load.SETTLE + 120)
                                     for w in workers.values()]
        s1 = {n: p.call("stats") for n, p in nodes.items()}
        wstats = []
        for k, w in workers.items():
            try:
                wstats.append(w.call("stats", timeout=15))
            except TimeoutError:
                _say(f"{name}: load process {k} (pid {w.proc.pid}) did not answer")
                wstats.append({"rss_kib": 0, "connected": 0})
        if cluster and kill_groups:
            try:
                out["failover"] = failover(nodes, tokens, kill_groups)
            except Exception as exc:  # the churn's figures stand without it
                out["failover"] = f"{type(exc).__name__}: {exc}"
    finally:
        for w in workers.values():
            w.stop(10)
        for p in nodes.values():
            p.stop(10)
    wall = w1 - w0
    online = {n: s0[n]["sessions"] for n in names}
    out["nodes"] = {n: {
        "clients": online[n],
        "cpu_pct": 100 * (c1[n] - c0[n]) / wall,
        "cpu_us_per_client_s": 1e6 * (c1[n] - c0[n]) / wall / max(1, online[n]),
        "rss_mib": s1[n]["rss_kib"] / 1024, "peak_rss_mib": s1[n]["hwm_kib"] / 1024,
        "grants_homed": s1[n]["floor"]["grants"] - s0[n]["floor"]["grants"],
        "groups_homed": (s0[n].get("homed"), s1[n].get("homed")),
        "double_grants": s1[n]["floor"]["double_grants"],
        "held_detail": s1[n]["floor"].get("held_detail", []),
        "ends": s1[n]["floor"]["ends"], "held_at_end": s1[n]["floor"]["held"],
        "voice_in": s1[n]["counters"]["voice_in"] - s0[n]["counters"]["voice_in"],
        "voice_out": s1[n]["counters"]["voice_out"] - s0[n]["counters"]["voice_out"],
        "datagrams_in": s1[n]["counters"]["datagrams_in"] - s0[n]["counters"]["datagrams_in"],
        "drop_reasons": s1[n]["counters"]["drop_reasons"],
        "bus_per_s": {k: round((v - b0[n].get(k, 0)) / (w1 - w0), 1)
                      for k, v in sorted(b1[n].items())},
        "threads_per_s": {k: round((v - v0[n].get(k, 0)) / (w1 - w0) * (
            1 if k.endswith("wakeups") else 1e3), 1) for k, v in sorted(v1[n].items())},
        "loop_callbacks_per_s": {k: round(v / (w1 - w0), 1) for k, v in sorted(
            h1[n].items(), key=lambda kv: -kv[1])[:15]},
    } for n in names}
    total_cpu = sum(c1[n] - c0[n] for n in names)
    total_clients = sum(online.values())
    out["cpu_us_per_client_s"] = 1e6 * total_cpu / wall / max(1, total_clients)
    out["window_s"] = wall
    n: dict[str, int] = dict.fromkeys(("requests", "granted", "queued", "denied", "withdrawn",
                                       "no_decision", "failed", "revoked", "relogins",
                                       "frames_sent", "frames_heard"), 0)
    mm: dict[str, int] = dict.fromkeys(("emergency", "preempted", "logouts", "logins",
                                        "away_at_end", "stuck_timers"), 0)
    grants: list[tuple[str, str, int, float, float]] = []
    for r in res:
        for k, v in r["n"].items():
            n[k] = n.get(k, 0) + v
        for k, v in r["m"].items():
            mm[k] = mm.get(k, 0) + v
        grants += r["grants"]
    ends: dict[str, int] = {}
    for s in s1.values():
        for k, v in s["floor"]["ends"].items():
            ends[k] = ends.get(k, 0) + v
    doubles_seen, overlaps, examples = _double_grants_seen(grants)
    # a burst ended by silence or no-start after its talker sent the release is a release lost
    # on its way; one its talker never released was cut off (its node stopped, its voice lost)
    released = {tuple(x) for r in res for x in r["released"]}
    quiet = [(n, *x, a) for n, s in s1.items()
             for x, a in zip(s["floor"].get("quiet", ()),
                             s["floor"].get("release_arrivals", [[]] * 10**6))]
    quiet_released = [q for q in quiet if tuple(q[1:4]) in released]
    # each: the release reached the home late (after the end), early (before it: it should
    # have ended the burst), or never (within 5 s)
    arrivals = {"late": 0, "early": 0, "never": 0}
    for q in quiet_released:
        arrivals["never" if not q[5] else "late" if min(q[5]) >= 0 else "early"] += 1
    # with --pause: of those, the ones whose talker's node or home was stopped within
    # SILENCE_WINDOW s before the end (the release reached the home after its silence timer)
    spans = out.get("pause_spans", [])
    during = [q for q in quiet_released
              if any(node in (q[0], assign.get(q[2])) and t0 <= q[4] <= t1 + SILENCE_WINDOW
                     for node, t0, t1 in spans)]
    resolve = loadgen.percentiles([x for r in res for x in r["resolve_ms"]])
    release = loadgen.percentiles([x for r in res for x in r["release_ms"]])
    out.update({
        "clients_online": total_clients, "requests": n["requests"], "granted": n["granted"],
        "queued": n["queued"], "denied": n["denied"], "withdrawn": n["withdrawn"],
        "emergency": mm["emergency"], "preempted": mm["preempted"],
        "logouts": mm["logouts"], "logins": mm["logins"], "away_at_end": mm["away_at_end"],
        "unresolved": sum(r["unresolved"] for r in res) + n["no_decision"] + n["failed"],
        "unanswered_releases": sum(r["unanswered_releases"] for r in res),
        "double_grants_homes": sum(s["floor"]["double_grants"] for s in s1.values()),
        "double_grants_seen": doubles_seen, "longest_overlap_ms": 1e3 * max(overlaps, default=0.0),
        "overlaps_ms": loadgen.percentiles([1e3 * x for x in overlaps]),
        "overlaps": len(overlaps),
        "double_examples": examples + [x for s in s1.values()
                                       for x in s["floor"]["double_examples"]],
        "burst_ends": ends,
        "quiet_ends_after_a_release": len(quiet_released),
        "quiet_ends_after_a_release_near_a_pause": len(during),
        "quiet_ends_after_a_release_arrivals": arrivals,
        "quiet_ends_after_a_release_examples": [q for q in quiet_released if q not in during][:5],
        "quiet_ends_without_a_release": len(quiet) - len(quiet_released),
        "lost_releases": (ends.get("silence", 0) + ends.get("no_start", 0)
                          + sum(s["floor"]["held"] for s in s1.values())
                          + sum(r["unanswered_releases"] for r in res)),
        "other_revokes": n["revoked"] - mm["preempted"], "sessions_lost": n["relogins"],
        "resolve_p50_ms": resolve["p50"], "resolve_p99_ms": resolve["p99"],
        "release_p99_ms": release["p99"], "frames_sent": n["frames_sent"],
        "frames_heard": n["frames_heard"],
        "failures": [f for r in res for f in r["failures"]][:5],
        "stuck_timers": mm["stuck_timers"], "stuck": [f for r in res for f in r["stuck"]][:5],
        "sessions_lost_why": _summed([r["lost_why"] for r in res]),
        "load_rss_mib": sum(w["rss_kib"] for w in wstats) / 1024,
        "load_connected": sum(w["connected"] for w in wstats),
        "probe_access": loadgen.percentiles(probe["access"]),
        "probe_voice": loadgen.percentiles(probe["voice"]),
        "probe_voice_heard": f"{len(probe['voice'])}/{probe['frames']}",
        "probe_failed": probe["failed"],
        "probe_machine": probe["machine"],
    })
    return out


def _probe_login(talker: bench_cluster._Client, listener: bench_cluster._Client) -> bool:
    """Log the probe's pair in and join (before the churn: a login behind the churn's logins
    from the same host can meet the server's failed-login back-off of that host)."""
    group = bench_cluster.GROUP
    loop = bench_cluster._Loop([talker, listener])
    now = time.monotonic()
    for c in (talker, listener):
        c.core.connect(now)
        c.core.join(group, now)
    try:
        loop.until(lambda: all(group in c.core.groups and c.core.groups[group].state is not None
                               for c in (talker, listener)), 60, "the probe's logins and joins")
    except RuntimeError:
        for c in (talker, listener):
            _say(f"probe {c.core.user}: {c.core.conn} {[ev for _, ev in c.events][-5:]}")
        return False
    pause = time.monotonic() + 2.5  # the listener's node known to the home (Presence)
    loop.until(lambda: time.monotonic() > pause, 5, "settling")
    return True


def _probe(talker: bench_cluster._Client, listener: bench_cluster._Client, cycles: int,
           voice_seconds: float) -> dict[str, Any]:
    """bench_cluster's floor cycles and voice, bounded per cycle: a cycle that gets no grant
    within 5 s (its request lost with a home whose lease lapsed under load, say) is counted
    as failed and the next one starts; the run stops after 10 failures. The machine's floor
    of the same moments (``machine_floor``): a train of UDP round trips in each cycle's
    pause and halfway between voice frames, as ``bench_cluster`` takes it."""
    udp = machine_floor.UdpRoundTrip()
    try:
        return _probe_with(talker, listener, cycles, voice_seconds, udp)
    finally:
        udp.close()


def _probe_with(talker: bench_cluster._Client, listener: bench_cluster._Client, cycles: int,
                voice_seconds: float, udp: machine_floor.UdpRoundTrip) -> dict[str, Any]:
    group = bench_cluster.GROUP
    loop = bench_cluster._Loop([talker, listener])
    access: list[float] = []
    failed = 0
    machine: dict[str, dict[str, list[float]]] = {
        window: {"cold": [], "warm": []} for window in ("access", "voice")}

    def sample(window: str) -> None:
        cold, warm = machine_floor.train(udp)
        if cold is not None:
            machine[window]["cold"].append(cold)
        machine[window]["warm"] += warm

    def state() -> cl.Participation:
        return talker.core.participation(group)

    for _ in range(cycles):
        if failed >= 10:
            break
        talker.events.clear()
        t0 = time.monotonic()
        talker.core.request_floor(group, t0)
        talker.flush()
        try:
            loop.until(lambda: state() is cl.Participation.HAS_PERMISSION, 5, "a grant")
        except RuntimeError:
            failed += 1
            talker.core.release_floor(group, time.monotonic())
            continue
        granted = next(t for t, ev in talker.events if isinstance(ev, cl.FloorStateChanged)
                       and ev.state is cl.Participation.HAS_PERMISSION)
        access.append((granted - t0) * 1000)
        talker.core.release_floor(group, time.monotonic())
        try:
            loop.until(lambda: listener.core.groups[group].talker is None
                       and state() is cl.Participation.NO_PERMISSION, 5, "the idle floor")
        except RuntimeError:
            failed += 1
        idle = time.monotonic()
        pause = idle + bench_cluster.PAUSE
        # as bench_cluster: once the nodes sent the cycle's bus copies
        while time.monotonic() < idle + bench_cluster.MACHINE_AT:
            loop.step(idle + bench_cluster.MACHINE_AT - time.monotonic())
        sample("access")
        while time.monotonic() < pause:
            loop.step(pause - time.monotonic())
    latency: list[float] = []
    frames = 0
    talker.core.request_floor(group, time.monotonic())
    try:
        loop.until(lambda: state() is cl.Participation.HAS_PERMISSION, 10, "a grant")
    except RuntimeError:
        failed += 1
    route = talker.core.talk_route(group)
    if route is not None:
        listener.voice.clear()
        frames = int(voice_seconds / bench_cluster.FRAME)
        start = time.monotonic()
        for seq in range(frames):
            while time.monotonic() < start + seq * bench_cluster.FRAME:
                loop.step(start + seq * bench_cluster.FRAME - time.monotonic())
            sent = time.monotonic()
            frame = encode_voice(VoiceHeader(*route, seq, 0),
                                 struct.pack("!d", sent) + bytes(60))
            talker.sock.sendto(add_mac(talker.core.voice_key, frame), talker.server)
            half = start + (seq + 0.5) * bench_cluster.FRAME
            while time.monotonic() < half:
                loop.step(half - time.monotonic())
            sample("voice")
        end = time.monotonic() + 0.5
        while time.monotonic() < end:
            loop.step(0.05)
        for received, data in listener.voice:
            if peek_frame(data)[2] == route[2]:
                (t,) = struct.unpack_from("!d", data, HEADER_SIZE)
                latency.append((received - t) * 1000)
    talker.core.release_floor(group, time.monotonic())
    for c in (talker, listener):
        c.core.close(time.monotonic())
        c.flush()
        c.sock.close()
    return {"access": access, "voice": latency, "frames": frames, "failed": failed,
            "machine": machine}


def _summed(counts: list[dict[str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for c in counts:
        for k, v in c.items():
            out[k] = out.get(k, 0) + v
    return out


def _say(what: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {what}", file=sys.stderr, flush=True)


def _group_of(user: str, groups: dict[str, list[str]]) -> str:
    return f"g{int(user[1:]) // GROUP_SIZE:04d}"


def failover(nodes: dict[str, NodeProc], tokens: dict[str, str], kill_groups: list[str]
             ) -> dict[str, Any]:
    """Talkers on a hold the floors of the groups homed on d, listeners on b; d is SIGKILLed:
    when each group's members are told the floor is free (the listener sees no talker, or the
    talker is told it lost the floor), and when the listener's request, made from the kill on,
    is granted."""
    talkers = [bench_cluster._Client(f"ft{g[1:]}", tokens[f"ft{g[1:]}"], nodes["a"].address)
               for g in kill_groups]
    listeners = [bench_cluster._Client(f"fl{g[1:]}", tokens[f"fl{g[1:]}"], nodes["b"].address)
                 for g in kill_groups]
    loop = bench_cluster._Loop(talkers + listeners)
    now = time.monotonic()
    for c, g in zip(talkers + listeners, kill_groups + kill_groups):
        c.core.connect(now)
        c.core.join(g, now)
    pairs = list(zip(kill_groups, talkers, listeners))
    loop.until(lambda: all(g in c.core.groups and c.core.groups[g].state is not None
                           for g, t, lst in pairs for c in (t, lst)), 60, "failover logins")
    # b tells each home it has members (Presence) as its listener joins; a grant the home
    # decides before that reaches it is not shown to b's clients later (docs/cluster.md), so
    # the talkers wait for the full presence list (sent every PRESENCE_EVERY = 2 s)
    pause = time.monotonic() + 2.5
    loop.until(lambda: time.monotonic() > pause, 5, "presence")
    for g, t, _ in pairs:
        t.core.request_floor(g, time.monotonic())
    try:
        loop.until(lambda: all(t.core.participation(g) is cl.Participation.HAS_PERMISSION
                               and lst.core.groups[g].talker is not None
                               for g, t, lst in pairs), 30, "failover grants")
    except RuntimeError:
        pass
    # the kill is measured on the groups whose talker holds the floor and whose listener
    # hears it (a group whose request was lost, or whose news missed b, is left out: counted)
    ready = [(g, t, lst) for g, t, lst in pairs
             if t.core.participation(g) is cl.Participation.HAS_PERMISSION
             and lst.core.groups[g].talker is not None]
    not_ready = len(pairs) - len(ready)
    pairs = ready
    killed = time.monotonic()
    nodes[KILL_NODE].kill()
    freed: dict[str, float] = {}
    asked: set[str] = set()
    granted: dict[str, float] = {}

    def step() -> bool:
        now = time.monotonic()
        for g, t, lst in pairs:
            # told: the listener sees the floor free, or the talker is told it lost it
            if g not in freed and (lst.core.groups[g].talker is None
                                   or t.core.participation(g) is not
                                   cl.Participation.HAS_PERMISSION):
                freed[g] = now - killed
            # a new grant: the listener asks from the kill on (its core resends; asked again
            # when an answer leaves it without the floor)
            if g not in granted:
                p = lst.core.participation(g)
                if p is cl.Participation.HAS_PERMISSION:
                    granted[g] = now - killed
                elif p is cl.Participation.NO_PERMISSION and (g not in asked or g in freed):
                    asked.add(g)
                    lst.core.request_floor(g, now)
        return len(freed) == len(pairs) and len(granted) == len(pairs)

    try:
        loop.until(step, 20, "failover")
    except RuntimeError:
        pass  # reported below as the groups not freed or not granted within 20 s
    for c in talkers + listeners:
        c.core.close(time.monotonic())
        c.flush()
        c.sock.close()
    return {"groups": len(pairs), "not_held_before_the_kill": not_ready,
            "freed": len(freed), "granted": len(granted),
            "told_free_s": loadgen.percentiles(freed.values()),
            "new_grant_s": loadgen.percentiles(granted.values())}


def placement(rng: random.Random, tokens: dict[str, str], groups: dict[str, list[str]],
              how: str) -> tuple[dict[str, str], dict[str, str]]:
    """Each client's node: drawn at random (where "product" logs it in) and where it ends."""
    drawn = {u: rng.choice(NODES) for u in tokens}
    assign = dict(drawn)
    if how != "random":
        # each client on its group's home by the static rule (the homes the nodes claim
        # at start): where "home" puts it, and where "product"'s steering should take it,
        # so the same-rate single server (--quarter) carries the clients node a ends with
        from ptt.protocol.cluster_routing import StaticHomes

        static = StaticHomes(NODES)
        for g, members in groups.items():
            if g.startswith("g"):
                for u in members:
                    assign[u] = static.home_of(g)[0]
    return drawn, assign


# --- alternating windows -----------------------------------------------------------------------


class Setup:
    """One side of an alternating comparison, started and logged in once: ``quarter`` (a
    single server with the clients of ``--node`` only, at that node's rate) or ``cluster``
    (the four nodes with every client); its *target* is the process compared (the single,
    that node)."""

    def __init__(self, index: int, label: str, kind: str, root: Path, groups: dict[str, list[str]],
                 tokens: dict[str, str], drawn: dict[str, str], assign: dict[str, str],
                 args: argparse.Namespace, nats_url: str | None, etcd: list[str] | None
                 ) -> None:
        self.index, self.label, self.kind = index, label, kind
        cluster = kind == "cluster"
        self.target = args.node if cluster else "single"
        self.nodes: dict[str, NodeProc] = {}
        self.workers: dict[str, Worker] = {}
        out: dict[str, Any] = {}
        try:
            bring_up(self.nodes, self.workers, out, label, root, root / "seed.db", groups,
                     tokens, drawn if cluster and args.placement == "product" else assign,
                     args, nats_url if cluster else None, etcd if cluster else None,
                     None if cluster else args.node,
                     # --same-loaders: node a's clients in the load processes that carry
                     # them in the cluster (product placement: the nodes they drew)
                     drawn if args.same_loaders and args.placement == "product" else None)
        except BaseException:
            self.stop()
            raise
        self.login_s: float = out["login_s"]
        if args.timing:  # installs the loop thread's timing in the target process
            self.nodes[self.target].call("timing", None)
        if args.wakes:  # installs the census of the target's wake-ups
            self.nodes[self.target].call("wakes", None)
        if cluster and args.placement == "product":
            # steering done: each node carries the clients of the groups it homes (up to 30 s;
            # a client left off its home puts its group's traffic on the bus)
            want = {n: sum(1 for u in assign if u.startswith("u") and assign[u] == n)
                    for n in NODES}
            until = time.monotonic() + 30
            while True:
                have = {n: p.call("stats")["sessions"] for n, p in self.nodes.items()}
                if all(abs(have[n] - want[n]) <= want[n] // 200 for n in NODES) or \
                        time.monotonic() > until:
                    break
                time.sleep(1)
            self.placed = {n: (have[n], want[n]) for n in NODES}
            _say(f"{label}: clients per node (have, want) {self.placed}")
            if any(abs(have[n] - want[n]) > want[n] // 200 for n in NODES):
                # homes moved during the logins (etcd missed renewals): nodes carry other
                # nodes' groups, and their traffic crosses the bus
                _say(f"{label}: placement not complete after 30 s: its windows are not figures")

    def window(self, args: argparse.Namespace, tag: str) -> dict[str, Any]:
        """One churn window of ``--duration`` s on this side (the other side idles, its
        clients heartbeating): CPU per client per s of each process, the load average."""
        return self.window_result(args, self.window_end(args, self.window_begin(args, tag)))

    def window_begin(self, args: argparse.Namespace, tag: str) -> dict[str, Any]:
        """Start a churn window: the figures at its start."""
        s0 = {n: p.call("stats") for n, p in self.nodes.items()}
        c0 = {n: proc_cpu(p.pid) for n, p in self.nodes.items()}
        t0 = thread_cpu(self.nodes[self.target].pid)
        load_before = loadgen.load_average()
        target = self.nodes[self.target]
        b0 = target.call("bus") if args.timing else {}
        if args.wakes:  # what woke the target's threads from here on
            target.call("wakes", None)
        if args.timing:  # the loop thread's CPU by part, cProfile with --cprofile
            target.call("timing", {"cprofile": str(args.timing / f"{tag}.prof")
                                   if args.cprofile else None})
        w0 = time.monotonic()
        spies = (spy(tag, {self.target: self.nodes[self.target]}, args.duration - 1,
                     args.pyspy) if args.pyspy else [])
        for k, w in enumerate(self.workers.values()):
            w.send("churn", churn_args(args, w, k))
        return {"s0": s0, "c0": c0, "t0": t0, "load_before": load_before, "w0": w0,
                "spies": spies, "b0": b0}

    def window_end(self, args: argparse.Namespace, st: dict[str, Any]) -> dict[str, Any]:
        """At the end of the window begun with ``st``, its CPU readings (taken for every side
        before any waits for its load processes' results, which come SETTLE s later)."""
        time.sleep(max(0.0, st["w0"] + args.duration - time.monotonic()))
        c1 = {n: proc_cpu(p.pid) for n, p in self.nodes.items()}
        t1 = thread_cpu(self.nodes[self.target].pid)
        wall = time.monotonic() - st["w0"]
        timing: dict[str, Any] = {}
        bus: dict[str, float] = {}
        if args.timing:
            target = self.nodes[self.target]
            raw = target.call("timing", {"cprofile": None})
            span = raw.pop("wall_ns") / 1e9
            timing = {k: (round(n / span, 1), round(ns / span / 1e6, 3))
                      for k, (n, ns) in raw.items()}
            b1 = target.call("bus")
            bus = {k: round((v - st["b0"].get(k, 0)) / wall, 2) for k, v in b1.items()
                   if v != st["b0"].get(k, 0)}
        wakes = ({k: round(v / wall, 2) for k, v in
                  self.nodes[self.target].call("wakes", None).items()} if args.wakes else {})
        return {**st, "c1": c1, "t1": t1, "wall": wall, "timing": timing, "bus": bus,
                "wakes": wakes,
                "load_after": loadgen.load_average()}

    def window_result(self, args: argparse.Namespace, st: dict[str, Any]) -> dict[str, Any]:
        """The figures of the window ended with ``st``."""
        s0, c0, t0, c1, t1 = st["s0"], st["c0"], st["t0"], st["c1"], st["t1"]
        wall, load_before, load_after = st["wall"], st["load_before"], st["load_after"]
        end_spies(st["spies"])
        res = [w.recv(args.duration + bench_load.SETTLE + 120) for w in self.workers.values()]
        online = {n: s0[n]["sessions"] for n in self.nodes}
        us = {n: 1e6 * (c1[n] - c0[n]) / wall / max(1, online[n]) for n in self.nodes}
        return {"side": self.label, "load": f"{load_before}-{load_after}",
                "us": us[self.target], "clients": online[self.target], "us_all": us,
                "clients_all": online,
                # the target's threads: ms of CPU per s (the loop is "python"), wake-ups per s
                "threads_per_s": {k: round((v - t0.get(k, 0)) / wall * (
                    1 if k.endswith("wakeups") else 1e3), 2) for k, v in sorted(t1.items())
                    if not k.endswith((" user", " sys"))},
                # calls and ms of the loop thread's CPU per s, by part (--timing)
                "timing": st["timing"], "bus_per_s": st["bus"],
                # what woke the target's loop and renewer threads, per s (--wakes)
                "wakes_per_s": st["wakes"],
                "requests": sum(r["n"]["requests"] for r in res),
                "unresolved": sum(r["unresolved"] + r["n"]["no_decision"] + r["n"]["failed"]
                                  for r in res)}

    def stop(self) -> None:
        for w in self.workers.values():
            w.stop(10)
        for p in self.nodes.values():
            p.stop(10)


def alternate(args: argparse.Namespace) -> dict[str, Any]:
    """``--alternate X,Y``: both sides up at once, logged in once; then ``--rounds`` pairs of
    churn windows, X then Y and Y then X in turn (ABBA: a load that drifts through the hold
    weighs on both sides alike), the same churn seed in every window of a side. Each pair's
    ratio is Y's target over X's; their median and spread decide, and X,Y = quarter,quarter
    (the same-rate single against a copy of itself) measures the method's own resolution."""
    from ptt.cluster import engines

    kinds = args.alternate
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="ptt-bench-churn-") as tmp:
        root = Path(tmp)
        groups, tokens = provision(root / "seed.db", args.clients, 0)
        drawn, assign = placement(rng, tokens, groups, args.placement)
        nats = etcd = None
        sides: list[Setup] = []
        pairs: list[dict[str, Any]] = []
        try:
            if "cluster" in kinds:
                nats = engines.start_nats(root / "nats")
                etcd = engines.start_etcd(root / "etcd", heartbeat_ms=50, election_ms=500)
            for k, kind in enumerate(kinds):
                sides.append(Setup(k, f"{kind}{k}", kind, root, groups, tokens, drawn, assign,
                                   args, nats.url if nats else None,
                                   etcd.endpoints if etcd else None))
            time.sleep(args.settle)
            for r in range(args.rounds):
                order = tuple(range(len(sides)))[::1 if r % 2 == 0 else -1]
                got: dict[int, dict[str, Any]] = {}
                if args.together:
                    begun = {i: sides[i].window_begin(args, f"r{r}-{sides[i].label}")
                             for i in order}
                    ended = {i: sides[i].window_end(args, begun[i]) for i in order}
                    got = {i: sides[i].window_result(args, ended[i]) for i in order}
                for i in order:
                    if not args.together:
                        got[i] = sides[i].window(args, f"r{r}-{sides[i].label}")
                    _say(f"round {r} {sides[i].label}: {got[i]['us']:.2f} us per client per s "
                         f"({got[i]['clients']} clients), load {got[i]['load']}")
                pairs.append({"ratio": got[1]["us"] / got[0]["us"], "x": got[0], "y": got[1],
                              **({"z": got[2], "ratio_z": got[2]["us"] / got[0]["us"]}
                                 if len(sides) > 2 else {})})
                _say(f"round {r}: {kinds[1]} / {kinds[0]} = {pairs[-1]['ratio']:.3f}"
                     + (f", {kinds[2]} / {kinds[0]} = {pairs[-1]['ratio_z']:.3f}"
                        if len(sides) > 2 else ""))
        finally:
            for side in sides:
                side.stop()
            if etcd is not None:
                etcd.stop()
            if nats is not None:
                nats.stop()
    out = {"clients": args.clients, "placement": args.placement, "sides": list(kinds),
           "login_s": [side.login_s for side in sides], "pairs": pairs}
    if args.timing and pairs:
        table = timing_table(pairs, kinds)
        (args.timing / "timing.txt").write_text(table)
        print(table)
    if args.wakes and pairs:
        out["wakes"] = wakes_table(pairs, kinds)
        print(out["wakes"])
    for key in ("ratio", "ratio_z")[:len(kinds) - 1]:
        ratios = sorted(p[key] for p in pairs)
        out.update({f"{key}_median": _median(ratios), f"{key}_min": ratios[0],
                    f"{key}_max": ratios[-1]})
    return out


def timing_table(pairs: list[dict[str, Any]], kinds: tuple[str, ...]) -> str:
    """Per part of the targets' loop threads (``--timing``): the median over the rounds of
    calls and ms of CPU per s on each side, and Y's ms/s less X's, largest first; then the
    bus messages into and out of Y's target per s by type."""
    def med(side: str, key: str, i: int) -> float:
        return _median([p[side]["timing"].get(key, (0.0, 0.0))[i] for p in pairs])

    keys = sorted({k for p in pairs for side in ("x", "y") for k in p[side]["timing"]})
    rows = sorted(((med("y", k, 1) - med("x", k, 1), k) for k in keys), reverse=True)
    x, y = kinds[:2]
    lines = [f"median of {len(pairs)} windows; ms of loop-thread CPU per s (calls per s)",
             f"{'part':<58} {x:>18} {y:>18} {'diff ms/s':>9}"]
    for diff, k in rows:
        lines.append(f"{k[:58]:<58} {med('x', k, 1):8.3f} ({med('x', k, 0):6.1f}) "
                     f"{med('y', k, 1):8.3f} ({med('y', k, 0):6.1f}) {diff:9.3f}")
    bus = sorted({k for p in pairs for k in p["y"]["bus_per_s"]})
    lines.append(f"bus messages of {y}'s target per s (median): " + ", ".join(
        f"{k} {_median([p['y']['bus_per_s'].get(k, 0.0) for p in pairs]):.1f}" for k in bus))
    return "\n".join(lines) + "\n"


def wakes_table(pairs: list[dict[str, Any]], kinds: tuple[str, ...]) -> str:
    """The census of the targets' wake-ups (``--wakes``): the median over the rounds of each
    cause per s on each side, and Y's less X's, largest first."""
    def med(side: str, key: str) -> float:
        return _median([p[side]["wakes_per_s"].get(key, 0.0) for p in pairs])

    keys = sorted({k for p in pairs for side in ("x", "y") for k in p[side]["wakes_per_s"]})
    rows = sorted(((med("y", k) - med("x", k), k) for k in keys), reverse=True)
    x, y = kinds[:2]
    lines = [f"median of {len(pairs)} windows; wake-ups per s of the targets' threads by cause",
             f"{'cause':<72} {x:>9} {y:>9} {'diff':>7}"]
    lines += [f"{k[:72]:<72} {med('x', k):9.2f} {med('y', k):9.2f} {d:7.2f}" for d, k in rows]
    return "\n".join(lines) + "\n"


def _median(xs: list[float]) -> float:
    xs = sorted(xs)
    mid = len(xs) // 2
    return xs[mid] if len(xs) % 2 else (xs[mid - 1] + xs[mid]) / 2


def alternate_summary(r: dict[str, Any]) -> dict[str, Any]:
    x, y = r["sides"][:2]
    z = r["sides"][2] if len(r["sides"]) > 2 else None
    out: dict[str, Any] = {"clients": r["clients"], "placement": r["placement"],
                           "logins s": ", ".join(f"{v:.0f}" for v in r["login_s"])}
    for k, p in enumerate(r["pairs"]):
        out[f"pair {k}"] = (
            f"{x} {p['x']['us']:.2f} us ({p['x']['clients']} clients, load {p['x']['load']}, "
            f"unresolved {p['x']['unresolved']}/{p['x']['requests']}); "
            f"{y} {p['y']['us']:.2f} us ({p['y']['clients']} clients, load {p['y']['load']}, "
            f"unresolved {p['y']['unresolved']}/{p['y']['requests']}); ratio {p['ratio']:.3f}"
            + (f"; {z} {p['z']['us']:.2f} us ({p['z']['clients']} clients, load "
               f"{p['z']['load']}, unresolved {p['z']['unresolved']}/{p['z']['requests']}); "
               f"ratio {p['ratio_z']:.3f}" if z else ""))
        for side in ("x", "y", "z")[:len(r["sides"])]:
            out[f"pair {k} {p[side]['side']}'s threads (ms/s; wake-ups/s)"] = \
                p[side]["threads_per_s"]
        for side in ("x", "y", "z")[:len(r["sides"])]:
            if len(p[side]["us_all"]) > 1:
                out[f"pair {k} every node of {p[side]['side']}, us"] = ", ".join(
                    f"{n} {v:.2f}" for n, v in p[side]["us_all"].items())
    for key, other in (("ratio", y), ("ratio_z", z))[:len(r["sides"]) - 1]:
        out[f"{other} / {x}: median (min-max) of {len(r['pairs'])} pairs"] = (
            f"{r[key + '_median']:.3f} ({r[key + '_min']:.3f}-{r[key + '_max']:.3f})")
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    from ptt.cluster import engines

    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="ptt-bench-churn-") as tmp:
        root = Path(tmp)
        t0 = time.monotonic()
        groups, tokens = provision(root / "seed.db", args.clients, args.kill)
        provision_s = time.monotonic() - t0
        drawn, assign = placement(rng, tokens, groups, args.placement)
        nats = engines.start_nats(root / "nats")
        etcd = engines.start_etcd(root / "etcd", heartbeat_ms=50, election_ms=500)
        try:
            single = None if args.cluster_only else phase(
                "single", root, root / "seed.db", groups, tokens, assign, args, None, None)
            # the single server with one node's share: the same rate per process as a node
            quarter = phase("single-quarter", root, root / "seed.db", groups, tokens, assign,
                            args, None, None, only=args.node) if args.quarter else None
            # product: logged in at random, the nodes steer them
            cluster = phase("cluster", root, root / "seed.db", groups, tokens,
                            drawn if args.placement == "product" else assign, args,
                            nats.url, etcd.endpoints)
        finally:
            etcd.stop()
            nats.stop()
    return {"clients": args.clients, "groups": args.clients // GROUP_SIZE,
            "placement": args.placement, "lease": args.lease,
            "provision_s": provision_s, "single": single, "single_quarter": quarter,
            "node": args.node, "cluster": cluster}


def _verdicts(access: dict[str, float], added: dict[str, float],
              cluster: dict[str, dict[str, list[float]]],
              single: dict[str, dict[str, list[float]]]) -> list[machine_floor.Verdict]:
    """The probe's figures against the targets, raw and scaled by the warm UDP round trips of
    the same moments (``machine_floor``): floor access by the cluster phase's cycles, voice
    added by both phases' bursts (it is their difference). The nodes share the seed's secret,
    so their floor messages and voice take the peer plane (UDP)."""
    kind = machine_floor.rests_on("peer port (UDP)")
    out = []
    for what, measured, target, warm in (
            ("cross-node floor access", access, bench_cluster.ACCESS_TARGET,
             cluster["access"]["warm"]),
            ("cross-node voice added", added, bench_cluster.VOICE_TARGET,
             cluster["voice"]["warm"] + single["voice"]["warm"])):
        if not warm:
            continue
        now = loadgen.percentiles(warm)
        for q, t, ref in zip(("p50", "p99"), target, machine_floor.ISSUE_FLOOR[kind],
                             strict=True):
            assert ref is not None
            out.append(machine_floor.scale(f"{what} {q} (on {kind})", measured[q], t, now[q],
                                           ref))
    return out


def summary(r: dict[str, Any]) -> dict[str, Any]:
    c = r["cluster"]
    s = r["single"] or {}
    per_node = {n: v["cpu_us_per_client_s"] for n, v in c["nodes"].items()}
    out: dict[str, Any] = {"clients": r["clients"], "placement": r["placement"]}

    def both(key: str) -> str:
        return (f"single {s[key]}, " if s else "") + f"cluster {c[key]}"

    out["double grants at the homes"] = both("double_grants_homes")
    out["double grants seen by clients"] = both("double_grants_seen")
    out["lost releases"] = both("lost_releases")
    out["of the silence/no-start ends: after the talker's release (of them with its node or home "
        "stopped) / talker cut off"] = (
        f"{c['quiet_ends_after_a_release']} ({c['quiet_ends_after_a_release_near_a_pause']}) / "
        f"{c['quiet_ends_without_a_release']}")
    out["releases of those silence ends at the home: late / early / never"] = \
        c["quiet_ends_after_a_release_arrivals"]
    if c["quiet_ends_after_a_release_examples"]:
        out["silence ends after a release, no node stopped (home, group, user, burst, t)"] = \
            c["quiet_ends_after_a_release_examples"]
    out["held at the end / releases unanswered"] = (
        f"{sum(v['held_at_end'] for v in c['nodes'].values())} / {c['unanswered_releases']}")
    ov = c["overlaps_ms"]
    out["overlaps of two granted talkers seen by clients: n, p50/p99/max ms"] = (
        f"{c['overlaps']}, {ov['p50']:.0f}/{ov['p99']:.0f}/{ov['max']:.0f}")
    out["unresolved requests"] = both("unresolved")
    out["requests / granted / queued / emergency / logouts"] = (
        f"cluster {c['requests']} / {c['granted']} / {c['queued']} / {c['emergency']} / "
        f"{c['logouts']}")
    out["bursts ended by failover during the churn (lease lapses)"] = \
        c["burst_ends"].get("failover", 0)
    out["server CPU us per client per s"] = (
        (f"single {s['cpu_us_per_client_s']:.2f}; " if s else "") + "cluster per node "
        + ", ".join(f"{n} {v:.2f}" for n, v in per_node.items()))
    if s:
        out["per-node / single (max)"] = round(max(per_node.values())
                                               / s["cpu_us_per_client_s"], 3)
    q = r.get("single_quarter")
    if q:
        n = r.get("node", NODES[0])
        out[f"single with node {n}'s clients only"] = (
            f"{q['cpu_us_per_client_s']:.2f} us per client per s ({q['clients_online']} "
            f"clients); node {n} / it: "
            f"{per_node[n] / q['cpu_us_per_client_s']:.3f}; load {q['load_average']}")
    out["RSS MiB per node (start -> end)"] = ", ".join(
        f"{n} {c['rss_start_mib'][n]:.0f} -> {v['rss_mib']:.0f}" for n, v in c["nodes"].items())
    out["RSS KiB per client (node growth / clients)"] = ", ".join(
        f"{n} {1024 * (v['rss_mib'] - c['rss_start_mib'][n]) / max(1, v['clients']):.1f}"
        for n, v in c["nodes"].items())
    pa, pv = c["probe_access"], c["probe_voice"]
    if s:
        sa, sv = s["probe_access"], s["probe_voice"]
        out["floor access p50/p99 ms"] = (f"single {sa['p50']:.2f}/{sa['p99']:.2f}, "
                                          f"cross-node {pa['p50']:.2f}/{pa['p99']:.2f}")
        out["voice p50/p99 ms"] = (f"single {sv['p50']:.2f}/{sv['p99']:.2f}, "
                                   f"cross-node {pv['p50']:.2f}/{pv['p99']:.2f}")
        out["voice added p50/p99 ms"] = (f"{pv['p50'] - sv['p50']:.2f}/"
                                         f"{pv['p99'] - sv['p99']:.2f}")
        out["the targets against the machine's floor (bench/machine_floor.py)"] = [
            v.line() for v in _verdicts(pa, {q: pv[q] - sv[q] for q in ("p50", "p99")},
                                        c["probe_machine"], s["probe_machine"])]
    else:
        out["cross-node floor access p50/p99 ms"] = f"{pa['p50']:.2f}/{pa['p99']:.2f}"
        out["cross-node voice p50/p99 ms"] = f"{pv['p50']:.2f}/{pv['p99']:.2f}"
    out["double grant examples"] = c["double_examples"]
    out["floors held at the end (group, monitor, holder, burst, state, home, may act, timer, "
        "inputs held)"] = [x for v in c["nodes"].values() for x in v.get("held_detail", [])]
    if "pauses" in c:
        out["nodes paused (node, s into the window)"] = c["pauses"]
    out["loop wake-ups per s (python thread)"] = (
        (f"single {s['nodes']['single']['threads_per_s'].get('python wakeups')}; " if s else "")
        + ", ".join(f"{n} {v['threads_per_s'].get('python wakeups')}"
                    for n, v in c["nodes"].items()))
    out["bus messages per s, node a"] = {k: v for k, v in c["nodes"]["a"]["bus_per_s"].items()
                                          if "bytes" not in k}
    out["failover"] = c.get("failover")
    out["load average"] = (f"single: {s['load_average']}; " if s else "") + \
        f"cluster: {c['load_average']}"
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="400 clients, 8 s of churn")
    ap.add_argument("--clients", type=int, default=20_000)
    ap.add_argument("--duration", type=float, default=60.0, help="s of churn per phase")
    ap.add_argument("--think", type=float, default=THINK)
    ap.add_argument("--emergency", type=float, default=EMERGENCY)
    ap.add_argument("--relogins", type=float, default=RELOGINS)
    ap.add_argument("--settle", type=float, default=5.0, help="s after the logins")
    ap.add_argument("--cycles", type=int, default=200, help="probe floor cycles per phase")
    ap.add_argument("--voice", type=float, default=5.0, help="s of probe voice per phase")
    ap.add_argument("--kill", type=int, default=20, help="groups homed on the node killed")
    ap.add_argument("--inflight", type=int, default=25, help="logins in flight per load process")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--procs", type=int, default=1, help="load processes per node")
    ap.add_argument("--light", action="store_true",
                    help="no churn: clients only heartbeat (cheap load processes), for memory "
                         "and failover at large N")
    ap.add_argument("--cluster-only", action="store_true", help="no single-server phase")
    ap.add_argument("--quarter", action="store_true",
                    help="also a single server with only --node's clients (its share, same "
                         "churn): the same rate per process as a node")
    ap.add_argument("--census", action="store_true",
                    help="every 30 s of the logins, the nodes' most numerous object types")
    ap.add_argument("--placement", choices=("random", "home", "product"), default="random",
                    help="clients on a node drawn at random, on their group's home (put there "
                         "by the bench), or logged in at random and steered to the home by the "
                         "nodes (their Welcome, ptt.protocol.server_list)")
    ap.add_argument("--lease", type=int, default=None,
                    help="etcd lease TTL, s (default: ptt.cluster.ownership's)")
    ap.add_argument("--pause", type=float, default=0.0,
                    help="s: stop one node at a time (SIGSTOP) this long during the churn, "
                         "to move homes on purpose (longer than the lease)")
    ap.add_argument("--pause-every", type=float, default=6.0,
                    help="s between the starts of two pauses (with --pause)")
    ap.add_argument("--alternate", type=lambda v: tuple(v.split(",")), metavar="X,Y[,Z]",
                    help="instead of the phases: sides X and Y (quarter or cluster) up at "
                         "once, churned in turn in --rounds pairs of --duration s windows "
                         "(quarter,cluster: --node against the same-rate single; "
                         "quarter,quarter: the method against itself)")
    ap.add_argument("--rounds", type=int, default=3, help="pairs of windows (--alternate)")
    ap.add_argument("--node", choices=NODES, default=NODES[0],
                    help="the node compared with the same-rate single (--quarter, --alternate): "
                         "that single server carries this node's clients")
    ap.add_argument("--same-loaders", action="store_true",
                    help="with --alternate and --placement product: the same-rate single's "
                         "clients spread over the four load processes that carry them in the "
                         "cluster (the node each drew), not one: a datagram to a client wakes "
                         "the process it lives in, so one process for all of them wakes less")
    ap.add_argument("--together", action="store_true",
                    help="with --alternate: both sides churn in the same windows (the same "
                         "machine at every moment) instead of in turn")
    ap.add_argument("--timing", type=Path, metavar="DIR",
                    help="with --alternate: the target's loop thread CPU per callback and per "
                         "part (bus messages by type, the node's hooks), per window; the "
                         "table in DIR/timing.txt")
    ap.add_argument("--cprofile", action="store_true",
                    help="with --timing: also cProfile the target's loop thread each window "
                         "(DIR/<round>-<side>.prof; slows it: its CPU figures are not results)")
    ap.add_argument("--wakes", action="store_true",
                    help="with --alternate: a census of what woke the targets' loop and "
                         "renewer threads (bench_load's `wakes`), per window and side")
    ap.add_argument("--json", type=Path, help="write every figure here")
    ap.add_argument("--pyspy", type=Path, metavar="DIR",
                    help="sample each server with py-spy (in the venv) over the churn window: "
                         "collapsed stacks in DIR (bench/profile_summary.py reads them)")
    args = ap.parse_args()
    if args.quick:
        args.clients, args.duration, args.think = 400, 8.0, 40.0
        args.cycles, args.voice, args.kill = 20, 1.0, 4
    if args.clients < GROUP_SIZE:
        print("bench_cluster_churn: --clients must be at least 10", file=sys.stderr)
        return 2
    if args.timing is not None:
        if args.alternate is None:
            print("bench_cluster_churn: --timing goes with --alternate", file=sys.stderr)
            return 2
        args.timing.mkdir(parents=True, exist_ok=True)
    if args.alternate is not None and (
            len(args.alternate) not in (2, 3) or set(args.alternate) - {"quarter", "cluster"}
            or args.alternate.count("cluster") > 1 or args.rounds < 1):
        print("bench_cluster_churn: --alternate takes two or three of quarter, cluster "
              "(X,Y[,Z], cluster at most once) and --rounds at least 1", file=sys.stderr)
        return 2
    print(f"machine: {loadgen.machine_line()}; load average {loadgen.load_average()}")
    r = alternate(args) if args.alternate else run(args)
    for k, v in (alternate_summary(r) if args.alternate else summary(r)).items():
        print(f"{k}: {v}")
    if args.json:
        args.json.write_text(json.dumps(r, indent=1, default=str))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
