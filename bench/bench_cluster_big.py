"""The simulated 100,000-client cluster (issue #17): memory, idle CPU and failover under load.

    nice -n 5 timeout 3600 .venv/bin/python bench/bench_cluster_big.py --clients 100000
    .venv/bin/python bench/bench_cluster_big.py --quick      # 2,000 clients, 20 s idle: a check

Four nodes (``PttServer`` + ``ClusterNode``, as ``ptt server --cluster`` runs them, each in a
forked process of its own: ``bench_cluster_churn.NodeProc``) over a real NATS and a real etcd
(1 s leases, 50/500 ms raft timers) started here on loopback ports; each node on a copy of one
SQLite directory (``--clients`` users in groups of 10, one token and salt shared by all: the
load processes skip PBKDF2). Every group is homed through an etcd claim by the static rule,
except ``--kill`` failover groups homed on node d.

Clients: the real :class:`~ptt.protocol.client.ClientCore` (``loadgen.ClientPool``), one UDP
socket each, each on a node drawn at random with the server list [its node, the others], in
load processes of at most ``--per-proc`` clients (the file descriptor limit), each process on a
loopback address of its own (127.0.1.k: one address has ~28,000 ephemeral ports; with
``--prefix-each``, 127.0.k.1: each in a /24 of its own, which the servers' per-prefix rate limit
for datagrams without a session charges apart, ``ptt.protocol.limits``). They log in
(``--inflight`` at a time per process), join their group and stay idle, driven by their own
timers: the real idle cadence (55 s), nobody talks.

Reported, each with the machine's load average:

- login: from the first load process started to the last one's clients all joined; every 30 s
  of it each node's sessions and RSS (and with ``--census`` its most numerous object types);
- memory: each node's RSS after its start (directory loaded, no client) and after the idle
  window, per client (growth over its sessions); the load processes' RSS;
- idle CPU: utime + stime of each node from ``/proc`` over ``--window`` s (two idle intervals by
  default, so every client heartbeats), per idle client per second;
- failover under load (``bench_cluster_churn.failover``): talkers on a hold the floors of the
  ``--kill`` groups homed on d, their listeners on b; d is SIGKILLed: when each group's members
  are told the floor is free, when a new grant is possible; and d's own clients (a quarter of
  all): when each logged in again on a, b or c (the survivors tell them, from the list d
  published in etcd), within ``--back-within`` s, and the survivors' CPU and RSS meanwhile;
  when every group had a home again (etcd's raft proposals till then), the claim transactions
  each survivor sent, its notices and when it read d's list, the time its loop spent on
  ownership events; with ``--pyspy DIR`` each survivor's threads sampled for 40 s from just
  before the kill (idle samples included).

Everything talks to 127.0.0.0/8; every wait has a deadline; every process started here is
stopped by its PID at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import select
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_access_list  # noqa: E402
import bench_cluster  # noqa: E402
import bench_cluster_churn as churn  # noqa: E402
import loadgen  # noqa: E402
from bench_idle import proc_cpu  # noqa: E402
from bench_load import rss_kib  # noqa: E402

from ptt.protocol import auth  # noqa: E402
from ptt.protocol import client as cl  # noqa: E402

NODES = churn.NODES
KILL_NODE = churn.KILL_NODE
GROUP_SIZE = churn.GROUP_SIZE
PER_PROC = 15_000  # clients per load process: one socket each, under the 20,000 fd limit here
BACK_WITHIN = 60.0  # s after the kill: a client of d not back by then counts as never
Addr = tuple[str, int]


def provision(db: Path, clients: int, kill_groups: int) -> tuple[dict[str, list[str]], str,
                                                                 tuple[bytes, int, bytes]]:
    """Users ``u000000``.. in groups ``g00000``.. of 10 and per failover group ``f<k>`` a talker
    and a listener, all with one token (returned with its (salt, iterations, verifier))."""
    from ptt.server.store import Store

    groups = {f"g{k:05d}": [f"u{j:06d}" for j in range(k * GROUP_SIZE,
                                                       min((k + 1) * GROUP_SIZE, clients))]
              for k in range(-(-clients // GROUP_SIZE))}
    for k in range(kill_groups):
        groups[f"f{k:02d}"] = [f"ft{k:02d}", f"fl{k:02d}"]
    token = auth.new_token(secrets.token_bytes(auth.TOKEN_BYTES))
    creds = auth.make_credentials(token, secrets.token_bytes(auth.SALT_SIZE),
                                  auth.MIN_ITERATIONS)
    store = Store(db)
    try:
        for name in dict.fromkeys(u for ms in groups.values() for u in ms):
            store.add_user(name, "volunteer", creds.salt, creds.iterations, creds.verifier)
        for g, members in groups.items():
            store.create_group(g, mode="relay", encrypted=False)
            store.change_members(g, add=members)
    finally:
        store.close()
    return groups, token, (creds.salt, creds.iterations, creds.verifier)


# --- a load process ------------------------------------------------------------------------------


def _worker_main(conn: Any, servers: list[Addr], source: str,
                 verifier: tuple[bytes, int, bytes], clients: list[tuple[str, str, list[str]]],
                 login_timeout: float, inflight: int) -> None:
    """Log ``clients`` in to ``servers[0]`` (their list: ``servers``) and keep them idle; then
    "stats", "killed" (monotonic time, the dead node's address: time each client of it until it
    is connected and joined elsewhere), "moved", "stop"."""
    import logging

    logging.basicConfig(level=logging.WARNING)
    pool = loadgen.ClientPool(servers[0], servers=servers if len(servers) > 1 else None,
                              source=source, verifier=verifier)
    if not loadgen.logged_in(conn, pool, clients, login_timeout, inflight):
        return
    conn.send(("ready", {"clients": len(clients), "cpu": time.process_time(), **rss_kib()}))
    state: dict[str, Any] = {"stop": False, "killed": None}
    back: dict[int, tuple[float, Any]] = {}  # a client of the dead node: connected again
    rejoined: dict[int, float] = {}
    doomed: set[int] = set()

    def on_events(i: int, evs: list[Any], t_recv: float, t_kernel: float) -> None:
        if i not in doomed:
            return
        now = time.monotonic()
        for ev in evs:
            if isinstance(ev, cl.Connected) and i not in back:
                back[i] = (now - state["killed"], pool.cores[i].server)
            elif isinstance(ev, cl.GroupJoined) and i in back and i not in rejoined:
                rejoined[i] = now - state["killed"]

    def on_command() -> None:
        try:
            cmd, arg = conn.recv()
        except (EOFError, OSError):
            state["stop"] = True
            return
        if cmd == "stop":
            state["stop"] = True
        elif cmd == "stats":
            conn.send(("ok", {"cpu": time.process_time(), "connected": len(pool.online),
                              "disconnects": pool.disconnects, "lost_why": pool.lost_why,
                              "back": len(back), "rejoined": len(rejoined),
                              "doomed": len(doomed), **rss_kib()}))
        elif cmd == "killed":
            state["killed"], dead = arg[0], tuple(arg[1])
            doomed.update(i for i, c in enumerate(pool.cores) if c.server == dead)
            pool.on_events = on_events
            conn.send(("ok", len(doomed)))
        elif cmd == "moved":
            conn.send(("ok", {"back": [(t, list(a)) for t, a in back.values()],
                              "rejoined": list(rejoined.values()), "doomed": len(doomed)}))
        else:
            conn.send(("error", f"unknown command {cmd!r}"))

    pool.extra_fds[conn.fileno()] = on_command
    pool.ep.register(conn.fileno(), select.EPOLLIN)
    pool.run(time.monotonic() + 3 * 3600, lambda: state["stop"])  # bounded without a parent
    pool.close_all()


class Worker(loadgen._Proc):
    def __init__(self, servers: list[Addr], source: str, verifier: tuple[bytes, int, bytes],
                 clients: list[tuple[str, str, list[str]]], inflight: int) -> None:
        self.login_timeout = 300 + len(clients) / 10
        super().__init__(_worker_main, servers, source, verifier, clients, self.login_timeout,
                         inflight)
        self.n = len(clients)
        self.node = servers[0]


class _Killer:
    """Node d as ``churn.failover`` sees it: its kill tells the load processes when."""

    def __init__(self, node: churn.NodeProc, workers: list[Worker]) -> None:
        self.node, self.workers = node, workers
        self.killed = 0.0

    def kill(self) -> None:
        self.node.kill()
        self.killed = time.monotonic()
        for w in self.workers:
            w.send("killed", (self.killed, self.node.address))
        for w in self.workers:
            w.recv(60)


# --- the run -------------------------------------------------------------------------------------


def _node_line(nodes: dict[str, churn.NodeProc], census: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for n, p in nodes.items():
        s = p.call("stats", timeout=60)
        out[n] = {"sessions": s["sessions"], "rss_mib": round(s["rss_kib"] / 1024),
                  "homed": s.get("homed")}
        if census:
            out[n]["census"] = p.call("census", timeout=60)
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    from ptt.cluster import engines

    rng = random.Random(args.seed)
    out: dict[str, Any] = {"clients": args.clients, "groups": -(-args.clients // GROUP_SIZE),
                           "machine": loadgen.machine_line()}
    with tempfile.TemporaryDirectory(prefix="ptt-bench-big-") as tmp:
        root = Path(tmp)
        t0 = time.monotonic()
        groups, token, verifier = provision(root / "seed.db", args.clients, args.kill)
        out["provision_s"] = round(time.monotonic() - t0, 1)
        _say(f"provisioned {args.clients} users in {out['provision_s']} s")
        load = [u for g, ms in groups.items() if g.startswith("g") for u in ms]
        assign = {u: rng.choice(NODES) for u in load}
        kill_groups = [g for g in groups if g.startswith("f")]
        nats = engines.start_nats(root / "nats")
        etcd = engines.start_etcd(root / "etcd", heartbeat_ms=50, election_ms=500,
                                  compact_after=args.compact)
        etcd_seen: dict[str, Any] = {}
        out["etcd"] = etcd_seen
        nodes: dict[str, churn.NodeProc] = {}
        workers: list[Worker] = []
        try:
            for n in NODES:
                d = root / n
                d.mkdir()
                shutil.copy(root / "seed.db", d / "db.sqlite")
                for attempt in range(3):  # a port picked free may be taken before the bind
                    port = bench_cluster._free_udp_port()
                    spec = {"node": n, "nodes": tuple(NODES), "nats": (nats.url,),
                            "etcd": tuple(etcd.endpoints), "address": (loadgen.LOCALHOST, port),
                            "homes": {g: KILL_NODE for g in kill_groups},
                            "steer": False}  # clients stay on the node the bench chose
                    try:
                        nodes[n] = churn.NodeProc(d, port, spec)
                        break
                    except (EOFError, RuntimeError, TimeoutError):
                        if attempt == 2:
                            raise
            out["rss_start_mib"] = {n: round(p.start_rss_kib / 1024) for n, p in nodes.items()}
            _say(f"nodes up, RSS {out['rss_start_mib']} MiB; load {loadgen.load_average()}")
            addrs = [nodes[n].address for n in NODES]
            _etcd_phase(etcd_seen, "start", etcd, nodes)
            t0 = time.monotonic()
            k = 0
            for n in NODES:
                mine = [(u, token, [_group_of(u)]) for u in load if assign[u] == n]
                procs = max(1, -(-len(mine) // args.per_proc))
                for j in range(procs):
                    k += 1
                    servers = [nodes[n].address] + [a for a in addrs if a != nodes[n].address
                                                    and not args.no_list]
                    source = f"127.0.{k}.1" if args.prefix_each else f"127.0.1.{k}"
                    workers.append(Worker(servers, source, verifier, mine[j::procs],
                                          args.inflight))
            out["load_processes"] = len(workers)
            timeline = []
            for w in workers:
                while not w.conn.poll(30):
                    line = _node_line(nodes, args.census)
                    line["t"] = round(time.monotonic() - t0)
                    line["load"] = loadgen.load_average()
                    timeline.append(line)
                    _say(f"logins: {line}")
                w.recv(w.login_timeout + 30)
            out["login_s"] = round(time.monotonic() - t0, 1)
            _etcd_phase(etcd_seen, "logins", etcd, nodes)
            out["login_timeline"] = timeline
            out["load_average_logins"] = loadgen.load_average()
            _say(f"{len(load)} clients logged in in {out['login_s']} s; "
                 f"load {loadgen.load_average()}")
            time.sleep(args.settle)
            s0 = {n: p.call("stats", timeout=60) for n, p in nodes.items()}
            c0 = {n: proc_cpu(p.pid) for n, p in nodes.items()}
            wc0 = [proc_cpu(w.proc.pid) for w in workers]
            w0 = time.monotonic()
            load0 = loadgen.load_average()
            time.sleep(args.window)
            c1 = {n: proc_cpu(p.pid) for n, p in nodes.items()}
            wc1 = [proc_cpu(w.proc.pid) for w in workers]
            wall = time.monotonic() - w0
            s1 = {n: p.call("stats", timeout=60) for n, p in nodes.items()}
            out["load_average_idle"] = f"{load0} at the start, {loadgen.load_average()} at the end"
            _say(f"idle window over ({wall:.0f} s); load {loadgen.load_average()}")
            wstats = [w.call("stats", timeout=60) for w in workers]
            out["nodes"] = {n: {
                "sessions": s1[n]["sessions"],
                "rss_mib": round(s1[n]["rss_kib"] / 1024),
                "peak_rss_mib": round(s1[n]["hwm_kib"] / 1024),
                "rss_kib_per_client": round((s1[n]["rss_kib"] - nodes[n].start_rss_kib)
                                            / max(1, s1[n]["sessions"]), 2),
                "cpu_pct": round(100 * (c1[n] - c0[n]) / wall, 1),
                "cpu_us_per_idle_client_s": round(1e6 * (c1[n] - c0[n]) / wall
                                                  / max(1, s0[n]["sessions"]), 2),
                "homed": s1[n].get("homed"),
                "burst_ends": s1[n]["floor"]["ends"],
                # plain datagrams shed by the reader since the start, by reason (logins)
                "shed": s1[n].get("shed"),
                "lease": s1[n].get("lease"),
            } for n in NODES}
            out["load_processes_cpu_pct"] = round(100 * sum(b - a for a, b in zip(wc0, wc1))
                                                  / wall, 1)
            out["load_processes_rss_mib"] = round(sum(w["rss_kib"] for w in wstats) / 1024)
            out["load_connected"] = sum(w["connected"] for w in wstats)
            out["sessions_lost_at_clients"] = sum(w["disconnects"] for w in wstats)
            out["sessions_lost_why"] = churn._summed([w["lost_why"] for w in wstats])
            out["window_s"] = round(wall, 1)
            _etcd_phase(etcd_seen, "idle", etcd, nodes)
            if not args.no_failover:
                try:
                    out["failover"] = _failover(nodes, workers, token, kill_groups, args,
                                                etcd.endpoint)
                except Exception as exc:  # the figures above stand without it
                    out["failover"] = f"{type(exc).__name__}: {exc}"
                _etcd_phase(etcd_seen, "failover", etcd, {n: p for n, p in nodes.items()
                                                          if n != KILL_NODE})
            etcd_seen.pop("_last", None)
            etcd_seen["data_dir_mib"] = round(bench_access_list.du(etcd.root) / 2**20, 1)
        finally:
            for w in workers:  # all at once: a process still logging in reads no command
                try:
                    w.send("stop")
                except OSError:
                    pass
            for w in workers:
                w.proc.join(10)
                w.stop(1)
            for p in nodes.values():
                p.stop(10)
            etcd.stop()
            nats.stop()
    return out


def _failover(nodes: dict[str, churn.NodeProc], workers: list[Worker], token: str,
              kill_groups: list[str], args: argparse.Namespace,
              etcd_endpoint: str) -> dict[str, Any]:
    survivors = [n for n in NODES if n != KILL_NODE]
    groups = -(-args.clients // GROUP_SIZE) + len(kill_groups)
    m0 = bench_access_list.metrics(etcd_endpoint)
    killer = _Killer(nodes[KILL_NODE], workers)
    as_seen: dict[str, Any] = {**nodes, KILL_NODE: killer}
    c0 = {n: proc_cpu(nodes[n].pid) for n in survivors}
    st0 = {n: nodes[n].call("stats", timeout=60) for n in survivors}
    d0 = {n: st0[n]["counters"]["drop_reasons"] for n in survivors}
    wc0 = [proc_cpu(w.proc.pid) for w in workers]
    load0 = loadgen.load_average()
    tokens = {u: token for g in kill_groups for u in (f"ft{g[1:]}", f"fl{g[1:]}")}
    spies = []
    if args.pyspy:  # every thread of each survivor, idle samples too: a loop blocked shows
        import subprocess

        exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        args.pyspy.mkdir(parents=True, exist_ok=True)
        spies = [subprocess.Popen([exe, "record", "--pid", str(nodes[n].pid), "--rate", "100",
                                   "--duration", "40", "--format", "raw", "--nonblocking",
                                   "--idle", "--threads", "-o", str(args.pyspy / f"{n}.txt")],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                 for n in survivors]
        time.sleep(1.0)
    res: dict[str, Any] = {"floors": churn.failover(as_seen, tokens, kill_groups)}
    killed = killer.killed
    if not killed:
        res["clients"] = "d was not killed"
        return res
    doomed = sum(w.call("stats", timeout=60)["doomed"] for w in workers)
    claims: dict[str, Any] = {}  # when every group had a home again, and etcd's work till then
    back_at: list[tuple[float, int]] = []  # (s after the kill, d's clients joined again)
    while time.monotonic() < killed + args.back_within:
        time.sleep(1)
        if not claims:
            homed = sum(nodes[n].call("stats", timeout=60).get("homes_here") or 0
                        for n in survivors)
            if homed >= groups:
                m1 = bench_access_list.metrics(etcd_endpoint)
                t = time.monotonic() - killed
                claims = {"all_homed_by_s": round(t, 1),
                          "proposals": int(m1["proposals"] - m0["proposals"])}
        back = sum(w.call("stats", timeout=60)["rejoined"] for w in workers)
        back_at.append((round(time.monotonic() - killed, 1), back))
        if back >= doomed and claims:
            break
    settled = time.monotonic()
    c1 = {n: proc_cpu(nodes[n].pid) for n in survivors}
    wc1 = [proc_cpu(w.proc.pid) for w in workers]
    moved = [w.call("moved", timeout=60) for w in workers]
    s1 = {n: nodes[n].call("stats", timeout=60) for n in survivors}
    times = [t for m in moved for t, _ in m["back"]]
    joined = [t for m in moved for t in m["rejoined"]]
    where: dict[str, int] = {}
    by_addr = {nodes[n].address: n for n in NODES}
    for m in moved:
        for _, a in m["back"]:
            node = by_addr.get(tuple(a), "?")  # type: ignore[arg-type]
            where[node] = where.get(node, 0) + 1
    for spy in spies:
        spy.wait(60)
    m2 = bench_access_list.metrics(etcd_endpoint)
    res["claims"] = {**claims, "claims_sent": {n: s1[n].get("claims_sent") for n in survivors},
                     "proposals_to_the_end": int(m2["proposals"] - m0["proposals"]),
                     "s_to_the_end": round(time.monotonic() - killed, 1)}
    res["clients"] = {
        "of_d": doomed,
        "joined_again_over_time": back_at,
        "told": {n: s1[n].get("told") for n in survivors},
        # over the failover: events, s of the loop they took, the longest one
        "ownership_events": {n: {k: round(v - (st0[n].get("ownership_events") or {}).get(k, 0)
                                          if k != "max_s" else v, 4)
                                 for k, v in (s1[n].get("ownership_events") or {}).items()}
                             for n in survivors},
        "back": len(times), "group_joined_again": len(joined),
        "back_s": loadgen.percentiles(times, (50, 95, 99)),
        "joined_again_s": loadgen.percentiles(joined, (50, 95, 99)),
        "within_3_s": sum(1 for t in times if t <= 3.0), "within_5_s":
            sum(1 for t in times if t <= 5.0),
        "spread": where,
        "survivors_cpu_pct": {n: round(100 * (c1[n] - c0[n]) / (settled - killed + 1e-9), 1)
                              for n in survivors},
        "survivors_sessions": {n: s1[n]["sessions"] for n in survivors},
        # each load process's share of a core meanwhile: those holding d's clients log them in
        "load_processes_cpu_pct": [round(100 * (b - a) / (settled - killed + 1e-9), 1)
                                   for a, b in zip(wc0, wc1)],
        "load_processes_of_d": [w.node == nodes[KILL_NODE].address for w in workers],
        "survivors_rss_mib": {n: round(s1[n]["rss_kib"] / 1024) for n in survivors},
        "survivors_homed": {n: s1[n].get("homed") for n in survivors},
        # plain datagrams each survivor's reader shed over the failover, by reason
        # (ptt_datagrams_shed_total): the logins of d's clients it did not take in
        "survivors_shed": {n: {why: k - (st0[n].get("shed") or {}).get(why, 0)
                               for why, k in (s1[n].get("shed") or {}).items()}
                           for n in survivors},
        # renewals withheld, the longest silence of the loop renewed through (wall, charged)
        "survivors_lease": {n: s1[n].get("lease") for n in survivors},
        # each survivor's loop after the kill: its timer ticks more than 0.25 s late (a long
        # turn, or a wait for a CPU): how many, how many over 1 s, the latest
        "survivors_loop_lag": {n: _lags(s1[n].get("loop_lags") or [], killed) for n in survivors},
        "survivors_dropped": {n: {why: k - d0[n].get(why, 0)
                                  for why, k in s1[n]["counters"]["drop_reasons"].items()
                                  if k > d0[n].get(why, 0)} for n in survivors},
        "load_average": f"{load0} before the kill, {loadgen.load_average()} after",
    }
    return res


def _lags(lags: list[list[float]], since: float) -> dict[str, Any]:
    late = [t for at, t in lags if at >= since]
    return {"over_0.25s": len(late), "over_1s": sum(1 for t in late if t > 1.0),
            "max_s": max(late, default=0.0)}


def _etcd_phase(seen: dict[str, Any], name: str, etcd: Any,
                nodes: dict[str, churn.NodeProc]) -> None:
    """What etcd received and holds at the end of a phase, against the previous one (the
    nodes' client lists are most of what they write): ``seen[name]``."""
    try:
        m = bench_access_list.metrics(etcd.endpoint)
        written = {n: p.call("stats", timeout=60).get("clients_written") for n, p in nodes.items()}
    except Exception as exc:  # noqa: BLE001 - the run's other figures stand without these
        seen[name] = f"{type(exc).__name__}: {exc}"
        return
    now = time.monotonic()
    prev = seen.get("_last")
    row: dict[str, Any] = {
        "db_mib": round(m["db_bytes"] / 2**20, 1),
        "db_in_use_mib": round(m["db_in_use_bytes"] / 2**20, 1),
        "clients_written": written, "load": loadgen.load_average()}
    if prev is not None:
        wall = max(1e-9, now - prev["t"])
        row.update({
            "s": round(wall, 1),
            "rx_kb_s": round((m["rx_bytes"] - prev["m"]["rx_bytes"]) / wall / 1e3, 1),
            "keys_written_s": round((m["puts"] + m["deletes"] - prev["m"]["puts"]
                                     - prev["m"]["deletes"]) / wall, 1),
            "proposals_s": round((m["proposals"] - prev["m"]["proposals"]) / wall, 1)})
    seen[name] = row
    seen["_last"] = {"t": now, "m": m}
    _say(f"etcd after {name}: {row}")


def _group_of(user: str) -> str:
    return f"g{int(user[1:]) // GROUP_SIZE:05d}"


def _say(what: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {what}", file=sys.stderr, flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="2,000 clients, 20 s idle: a check")
    ap.add_argument("--clients", type=int, default=100_000)
    ap.add_argument("--per-proc", type=int, default=PER_PROC,
                    help="clients per load process at most")
    ap.add_argument("--inflight", type=int, default=25, help="logins in flight per process")
    ap.add_argument("--settle", type=float, default=10.0, help="s after the logins")
    ap.add_argument("--window", type=float, default=110.0,
                    help="s of idle measured (two idle heartbeat intervals)")
    ap.add_argument("--kill", type=int, default=20, help="failover groups homed on d")
    ap.add_argument("--back-within", type=float, default=BACK_WITHIN,
                    help="s after the kill to wait for d's clients")
    ap.add_argument("--no-failover", action="store_true")
    ap.add_argument("--no-list", action="store_true",
                    help="clients know only their own node (they do not move when it dies)")
    ap.add_argument("--census", action="store_true",
                    help="every 30 s of the logins, the nodes' most numerous object types")
    ap.add_argument("--prefix-each", action="store_true",
                    help="each load process in a /24 of its own (127.0.k.1), not 127.0.1.k")
    ap.add_argument("--compact", help="etcd's periodic auto-compaction retention (e.g. 5m)")
    ap.add_argument("--pyspy", type=Path,
                    help="py-spy each survivor for 40 s from just before the kill into DIR")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", type=Path, help="write every figure here")
    args = ap.parse_args()
    if args.quick:
        args.clients, args.window, args.kill, args.back_within = 2000, 20.0, 4, 20.0
    if args.clients < GROUP_SIZE or args.per_proc < 1 or args.kill < 1:
        print("bench_cluster_big: --clients must be at least 10, --per-proc and --kill at "
              "least 1", file=sys.stderr)
        return 2
    print(f"machine: {loadgen.machine_line()}; load average {loadgen.load_average()}")
    r = run(args)
    for k, v in r.items():
        if k != "login_timeline":
            print(f"{k}: {v}")
    if args.json:
        args.json.write_text(json.dumps(r, indent=1, default=str))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
