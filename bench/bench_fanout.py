"""Relay fan-out of one talker to a 5,000-member relay group, through a real ``ptt server``.

The server is the ``ptt server`` console script in its own process, on a database written
beforehand (users with the lowest PBKDF2 iteration count, one plain relay group ``big`` of
``--members`` members, the talker included). The members log in as real sessions, one UDP
socket each, from load-generator processes (``bench/loadgen.py``): all but ``--readers`` of them
are *deaf* once logged in (they heartbeat at the real cadence, every second while the talker holds
the floor and every 55 s before, but never read: their sockets have the
kernel's smallest receive buffer, so what the server sends them is dropped on arrival and the
load generator spends nothing on it), and join the group with one sealed Join each. The
``--readers`` others join as full clients and time every frame they receive.

Measured, for each way the adapter can send (``sendmmsg``: one system call per 1,024
destinations, ``ptt.net.sendmmsg``; ``sendto``: one call per destination, what
``PTT_NO_SENDMMSG=1`` forces):

- server CPU per forwarded packet: the server process's CPU time (``/proc``) over a talk of
  ``--duration`` s, one 102-byte frame every 20 ms, over the datagrams it sent (its own
  ``ptt_voice_out_total``); 'net of idle' subtracts what the same server spent per second with
  every member online and nobody talking (5,000 heartbeats a second);
- the kernel floor in the same minute: another process sends the same fan-out (as many
  destinations, unread sockets with the smallest buffer, as the deaf members) with one prebuilt
  ``sendmmsg`` per 1,024 destinations every 20 ms and no Python per datagram;
- memory: the server's resident set with 0, 1,000 and all members online as sessions.

    .venv/bin/python bench/bench_fanout.py                      # 5,000 members, 10 s per way
    .venv/bin/python bench/bench_fanout.py --quick              # 300 members, 2 s: a check

Bounded: every wait has a timeout; the server and the workers are stopped in ``finally``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import loadgen  # noqa: E402

from ptt.protocol import auth  # noqa: E402
from ptt.server.store import Store  # noqa: E402

PTT = str(Path(sys.executable).with_name("ptt"))
PAYLOAD = 80  # bytes after the 22-byte header, as bench_relay
GROUP = "big"
STEPS = (1_000,)  # members online at which the server's RSS is read, besides 0 and all
JOIN_RATE = 500.0  # deaf Joins a second at most, per worker
JOIN_BATCH = 50  # deaf Joins sent before waiting for the server to log them
SESSION_TIMEOUT = 600.0  # seconds: see Server


def provision(db: Path, members: int) -> dict[str, str]:
    """``talker`` and ``m00001``.. (``members`` in all) in the plain relay group ``big``."""
    store = Store(db)
    tokens: dict[str, str] = {}
    try:
        names = ["talker"] + [f"m{i:05d}" for i in range(1, members)]
        for name in names:
            token = auth.new_token(secrets.token_bytes(auth.TOKEN_BYTES))
            creds = auth.make_credentials(token, secrets.token_bytes(auth.SALT_SIZE),
                                          auth.MIN_ITERATIONS)
            store.add_user(name, "volunteer", creds.salt, creds.iterations, creds.verifier)
            tokens[name] = token
        store.create_group(GROUP, mode="relay")
        store.change_members(GROUP, add=names)
    finally:
        store.close()
    return tokens


def _free_port() -> int:
    """A loopback port free for both UDP (the server) and TCP (its metrics): a port free for one
    kind may be held in the other, e.g. by a bench holding thousands of UDP client sockets."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = int(udp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no loopback port free for both UDP and TCP in 100 tries")


class Server:
    """``ptt server`` on ``db``, with its Prometheus metrics on another loopback port."""

    def __init__(self, db: Path, log: Path, sendmmsg: bool) -> None:
        self.port, self.metrics_port = _free_port(), _free_port()
        # A long session timeout: at the server's default (5 s) deaf load-generator sessions
        # expired 8 s after logging in, while the first few hundred joined and the server was
        # far from busy (not explained yet: see docs/benchmarks.md "fan-out").
        env = {**os.environ, "PTT_NO_SENDMMSG": "0" if sendmmsg else "1",
               "PTT_SERVER_SESSION_TIMEOUT": str(SESSION_TIMEOUT),
               # outlasting the long busy timeout, as the idle cadence requires
               "PTT_SERVER_IDLE_SESSION_TIMEOUT": str(2 * SESSION_TIMEOUT)}
        self.log = log
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                [PTT, "server", "--port", str(self.port), "--db", str(db),
                 "--metrics", str(self.metrics_port)], stdout=out, stderr=out, env=env)
        deadline = time.monotonic() + 30
        while b"listening on" not in log.read_bytes():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.stop()
                raise RuntimeError(log.read_text()[-2000:])
            time.sleep(0.05)
        self.address = ("127.0.0.1", self.port)

    def cpu(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmRSS")

    def metric(self, name: str) -> float:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as r:
            text = r.read().decode()
        m = re.search(rf"^{re.escape(name)}(?:{{[^}}]*}})? (\S+)$", text, re.M)
        if m is None:
            raise RuntimeError(f"no metric {name}")
        return float(m.group(1))

    def joined(self) -> int:
        """Joins of ``big`` so far, from the server's log (one line each)."""
        return self.log.read_bytes().count(f"event=joined group={GROUP} ".encode())

    def joined_users(self) -> set[str]:
        return set(re.findall(rf"event=joined group={GROUP} user=(\S+)",
                              self.log.read_text(encoding="utf-8")))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def _settle(server: Server, seconds: float = 1.5) -> float:
    """The server's RSS once its CPU went quiet (at most ``seconds`` * 20 of waiting)."""
    for _ in range(20):
        c0 = server.cpu()
        time.sleep(seconds)
        if server.cpu() - c0 < 0.6 * seconds:  # below 60% of a core: the joins are absorbed
            break
    return server.rss_mib()


def _deaf_workers(server: Server, clients: list[tuple[str, str, list[str]]], per: int
                  ) -> list[loadgen.WorkerProc]:
    workers = []
    for k in range(0, len(clients), per):
        workers.append(loadgen.WorkerProc(server.address, clients[k:k + per],
                                          login_timeout=60 + per / 50))
    for w in workers:
        w.wait_ready()
    for w in workers:  # ready means every login was sent: wait for the answers, then go deaf
        deadline = time.monotonic() + 60 + w.n / 50
        while w.call("stats")["connected"] < w.n:
            if time.monotonic() > deadline:
                raise RuntimeError(f"logins: {w.call('stats')}")
            time.sleep(0.2)
        w.call("deaf")
    return workers


def _join_paced(server: Server, workers: list[loadgen.WorkerProc], users: list[str],
                timeout: float) -> None:
    """The deaf ``users`` of ``workers`` join, a batch at a time, each batch once the server
    logged most of the joins before it (so that a busy server is measured, not flooded); then
    those the server never logged ask again
    (a Join lost in a full socket buffer is not resent by a deaf client), a few rounds."""
    deadline = time.monotonic() + timeout
    for w in workers:
        while True:
            before = server.joined()
            n = w.call("join_deaf", {"group": GROUP, "rate": JOIN_RATE, "timeout": 60.0,
                                     "limit": JOIN_BATCH}, timeout=90)
            if n == 0:
                break
            _progress(server, before + n - JOIN_BATCH // 2, deadline)
    for _ in range(5):
        missing = set(users) - server.joined_users()
        if not missing:
            return
        before = server.joined()
        for w in workers:
            w.call("join_deaf", {"group": GROUP, "rate": JOIN_RATE, "timeout": 60.0,
                                 "users": sorted(missing)}, timeout=90)
        _progress(server, before + len(missing), deadline)


def _progress(server: Server, want: int, deadline: float, stall: float = 10.0) -> None:
    """Until the server logged ``want`` joins, or none more for ``stall`` seconds."""
    last, since = server.joined(), time.monotonic()
    while last < want and time.monotonic() < deadline:
        time.sleep(0.1)
        now = server.joined()
        if now > last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since > stall:
            return


def measure(db: Path, root: Path, tokens: dict[str, str], sendmmsg: bool, readers: int,
            duration: float) -> dict[str, Any]:
    names = sorted(u for u in tokens if u != "talker")
    deaf, reading = names[:len(names) - readers], names[len(names) - readers:]
    server = Server(db, root / f"server-{'mmsg' if sendmmsg else 'sendto'}.log", sendmmsg)
    procs: list[loadgen.WorkerProc] = []
    try:
        rss = {0: _settle(server, 1.0)}
        j0, t_join = server.cpu(), time.monotonic()
        first = [(u, tokens[u], []) for u in deaf[:STEPS[0]]]
        procs += (ws := _deaf_workers(server, first, 2_500))
        _join_paced(server, ws, [u for u, _, _ in first], 600)
        rss[len(first)] = _settle(server)
        rest = [(u, tokens[u], []) for u in deaf[STEPS[0]:]]
        procs += (ws := _deaf_workers(server, rest, 2_500))
        _join_paced(server, ws, [u for u, _, _ in rest], 1_200)
        listeners = loadgen.WorkerProc(server.address,
                                       [(u, tokens[u], [GROUP]) for u in reading])
        talker = loadgen.WorkerProc(server.address, [("talker", tokens["talker"], [GROUP])])
        procs += [listeners, talker]
        listeners.wait_ready()
        talker.wait_ready()
        _progress(server, len(names) + 1, time.monotonic() + 60)
        join_cpu, join_wall = server.cpu() - j0, time.monotonic() - t_join
        rss[len(names) + 1] = _settle(server)
        c0, t0 = server.cpu(), time.monotonic()
        time.sleep(3.0)  # everyone online, nobody talking: heartbeats and timers
        idle_rate = (server.cpu() - c0) / (time.monotonic() - t0)
        listeners.call("listen")
        for w in procs[:-2]:  # the deaf members hear the floor taken: busy cadence from now
            w.call("busy", [GROUP])
        talker.call("grab", {"payload": PAYLOAD}, timeout=30)  # talks at once (no-start timer)
        out0, c0, t0 = server.metric("ptt_voice_out_total"), server.cpu(), time.monotonic()
        talked = talker.call("talk", {"duration": duration}, timeout=duration + 30)
        time.sleep(0.05)
        cpu, wall = server.cpu() - c0, time.monotonic() - t0
        forwarded = server.metric("ptt_voice_out_total") - out0
        talker.call("release", timeout=10)
        for w in procs[:-2]:
            w.call("busy", [])
        heard = listeners.call("listen_done", timeout=30)
        online = server.metric("ptt_clients_online")
        joined = len(server.joined_users())
    finally:
        for p in procs:
            p.stop(5)
        server.stop()
    lat = loadgen.percentiles(v / 1e6 for v in _lat(heard["lat_ns"]))
    sent = talked["sent"]
    return {
        "send": "sendmmsg" if sendmmsg else "sendto",
        "members": len(names) + 1, "sessions_online": int(online), "joined": joined,
        "frames_sent": sent, "forwarded": int(forwarded),
        "forwarded_per_frame": forwarded / sent if sent else float("nan"),
        "forwarded_per_s": forwarded / wall,
        "server_cpu_pct": 100 * cpu / wall,
        "cpu_us_per_packet": cpu / forwarded * 1e6 if forwarded else float("nan"),
        "net_cpu_us_per_packet": ((cpu - idle_rate * wall) / forwarded * 1e6
                                  if forwarded else float("nan")),
        "idle_cpu_pct": 100 * idle_rate,
        "readers_loss_pct": 100 * (1 - heard["received"] / (sent * readers)) if sent else 0.0,
        "readers_latency_p50_ms": lat["p50"], "readers_latency_p99_ms": lat["p99"],
        "rss_mib": {str(k): round(v, 1) for k, v in rss.items()},
        "join_server_cpu_s": join_cpu, "join_wall_s": join_wall,
    }


def _lat(raw: bytes) -> list[int]:
    import array
    a = array.array("q")
    a.frombytes(raw)
    return list(a)


def kernel_floor(n: int, duration: float) -> dict[str, float]:
    """``n`` unread sinks with the smallest buffer, fed by loadgen's FloorSender."""
    loadgen._raise_fd_limit(n + 64)
    sinks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 0)
            s.bind(("127.0.0.1", 0))
            sinks.append(s)
        sender = loadgen.FloorSender([[s.getsockname() for s in sinks]], PAYLOAD)
        try:
            r = sender.measure(duration)
        finally:
            sender.stop()
    finally:
        for s in sinks:
            s.close()
    return {"us_per_packet": r["cpu"] / r["datagrams"] * 1e6, "datagrams": r["datagrams"],
            "cpu_pct": 100 * r["cpu"] / r["wall"]}


ROW_KEYS = {
    "send": "send", "members": "members", "sessions_online": "sessions online",
    "joined": "members joined",
    "forwarded_per_frame": "datagrams per frame", "forwarded_per_s": "forwarded/s",
    "server_cpu_pct": "server CPU %", "cpu_us_per_packet": "server CPU us/packet",
    "net_cpu_us_per_packet": "net of idle us/packet",
    "kernel_floor_us_per_packet": "kernel floor us/packet", "ratio_to_floor": "x floor",
    "idle_cpu_pct": "idle CPU % (heartbeats)", "readers_loss_pct": "readers' loss %",
    "readers_latency_p50_ms": "readers' p50 ms", "readers_latency_p99_ms": "readers' p99 ms",
}


def run(quick: bool = False, members: int | None = None, readers: int = 10,
        duration: float | None = None, ways: tuple[bool, ...] = (True, False)
        ) -> dict[str, Any]:
    members = members or (300 if quick else 5_000)
    duration = duration or (2.0 if quick else 10.0)
    loadgen._raise_fd_limit(members + 256)
    load0 = loadgen.load_average()
    with tempfile.TemporaryDirectory(prefix="ptt-bench-fanout-") as tmp:
        root = Path(tmp)
        db = root / "ptt.db"
        tokens = provision(db, members)
        results = []
        for way in ways:
            r = measure(db, root, tokens, way, readers, duration)
            fl = kernel_floor(members - 1 - readers, duration)
            r["kernel_floor_us_per_packet"] = fl["us_per_packet"]
            r["ratio_to_floor"] = r["cpu_us_per_packet"] / fl["us_per_packet"]
            results.append(r)
    memory = []
    for r in results:
        rss = r["rss_mib"]
        steps = sorted(rss, key=int)
        memory.append({"send": r["send"], **{f"RSS MiB, {int(k):,} online": rss[k]
                                             for k in steps},
                       "KiB per member online": round(
                           (rss[steps[-1]] - rss[steps[0]]) * 1024 / int(steps[-1]), 2)})
    best = min(results, key=lambda r: r["cpu_us_per_packet"])
    return {
        "title": f"Relay fan-out: one talker to a {members:,}-member relay group",
        "command": ".venv/bin/python bench/bench_fanout.py" + (" --quick" if quick else ""),
        "target": "server CPU per forwarded packet, sendmmsg batches and memory per member "
                  "at 5,000 members (issue 19); the relay at 200 listeners: <= 5 us/packet",
        "rows": [{label: r[k] for k, label in ROW_KEYS.items()} for r in results],
        "tables": [{"title": "Server memory with the group's members online as sessions",
                    "rows": memory,
                    "notes": "VmRSS of the `ptt server` process once its CPU went quiet: "
                             "the database written, nobody online; then 1,000 members "
                             "logged in and joined; then all of them (the talker included)."}],
        "best_us_per_packet": best["cpu_us_per_packet"],
        "best_send": best["send"],
        "notes": (f"The real `ptt server` process on a database written beforehand; "
                  f"{members - 1 - readers:,} members log in as real sessions (one UDP socket "
                  f"each, load-generator processes), then stop reading (their sockets keep the "
                  f"kernel's smallest receive buffer, so what the server sends them is dropped "
                  f"on arrival: receiving 250,000 datagrams a second would take the machine "
                  f"from the server) and join with one sealed Join each; {readers} more join "
                  f"as full clients and time every frame; one talker sends a "
                  f"{22 + PAYLOAD}-byte frame every 20 ms for {duration:g} s. 'server CPU': "
                  f"its CPU time (/proc) over the talk / the datagrams it sent "
                  f"(ptt_voice_out_total); 'net of idle': minus what it spent per second "
                  f"with everyone online and nobody talking (one heartbeat per member a "
                  f"second). 'sendmmsg': the adapter's fan-out (ptt.net.sendmmsg: a frame "
                  f"goes out in one sendmmsg call per 1,024 destinations, the sockaddr array "
                  f"built once per membership); 'sendto': PTT_NO_SENDMMSG=1, one call per "
                  f"destination. 'kernel floor': in the same minute, another process sends "
                  f"the same fan-out to as many unread sockets with prebuilt sendmmsg calls "
                  f"and no Python per datagram."),
        "machine": loadgen.machine_line(),
        "load_average": f"{load0} at the start, {loadgen.load_average()} at the end",
        "results": results,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--members", type=int, default=5_000)
    ap.add_argument("--readers", type=int, default=10, help="members that read and time frames")
    ap.add_argument("--duration", type=float, default=10.0, help="seconds of talk per way")
    ap.add_argument("--only", choices=("sendmmsg", "sendto"), default=None)
    ap.add_argument("--quick", action="store_true", help="300 members, 2 s (checks the harness)")
    args = ap.parse_args()
    ways = (True, False) if args.only is None else (args.only == "sendmmsg",)
    res = run(args.quick, None if args.quick else args.members, args.readers,
              None if args.quick else args.duration, ways)
    if not args.quick and (args.members != 5_000 or args.duration != 10.0 or args.only
                           or args.readers != 10):
        res["command"] = " ".join([".venv/bin/python", *sys.argv])
    print(loadgen.fmt_table(res["rows"]))
    for t in res["tables"]:
        print(loadgen.fmt_table(t["rows"]))
    print(json.dumps(res, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
