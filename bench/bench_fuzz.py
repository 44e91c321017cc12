"""Fuzz a live server: a million random and mutated datagrams, no crash, no state change, flat memory.

A real ``ptt server`` process on 127.0.0.1 (with ``--metrics``, so it says how many datagrams it
received). First a real session runs through a recording UDP forwarder: the coordinator's admin
operations, two members logging in, joining, heartbeating, taking the floor, talking and leaving;
every datagram both ways is the corpus. Then :class:`ptt.faults.fuzz.Fuzzer` makes hostile
datagrams from that corpus and from what an attacker on the LAN would know (the live group id,
session ids, burst ids, names) and sends them from hundreds of sockets on several 127.0.0.x
addresses (new source ports every ``ROTATE`` datagrams), paced by the server's own received
counter so the kernel does not just drop them. Meanwhile three legitimate sessions (the
coordinator and two members) stay logged in by their heartbeats.

Checked before against after: the directory through the admin API (users, roles, groups, members,
floor holder and queue), every row of the SQLite database (read-only, from outside), the sessions
online; the server process alive, no traceback in its log, log lines bounded; the resident set
(VmRSS, sampled every ``RSS_EVERY`` s) at start, after warm-up, peak and end. After the run the
members still get the floor and a voice round trip through the relay.

    .venv/bin/python bench/bench_fuzz.py                 # 1,000,000 datagrams, 8-minute cap
    .venv/bin/python bench/bench_fuzz.py --quick         # 20,000 datagrams
    .venv/bin/python bench/bench_fuzz.py --count 200000 --seed 7 --time-cap 120

Loopback only; every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import selectors
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import loadgen  # noqa: E402

from ptt.client.connection import Connection  # noqa: E402
from ptt.faults.fuzz import Fuzzer, Targets, classify  # noqa: E402
from ptt.protocol.client import Connected, Disconnected, Participation  # noqa: E402
from ptt.wire.voice import VoiceHeader, encode_voice  # noqa: E402

PTT = str(Path(sys.executable).with_name("ptt"))
GROUP = "volunteers"
MEMBERS = ("ann", "bob")
SOURCE_IPS = tuple(f"127.0.0.{i}" for i in range(2, 10))
SOCKETS_PER_IP = 32
ROTATE = 25_000  # datagrams between new source ports: the server's per-address state must stay bounded
TICK = 0.005  # s between send batches
RATE = 12_000  # datagrams per second at most
BATCH = 400  # datagrams per tick at most
LAG_MAX = 3_000  # sent but not yet counted by the server: keeps the socket buffer from overflowing
SCRAPE_EVERY = 0.2  # s between reads of the server's received counter
RSS_EVERY = 2.0  # s between RSS samples
WARMUP_SHARE = 0.1  # RSS "after warm-up" is taken when this share of the datagrams is sent
FLAT_MIB = 4.0  # end - after warm-up: more than this is not flat
LOG_LINES_PER_S = 20  # a flood must not write a line per datagram


# --- the server process --------------------------------------------------------------------------


def _free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServerUnderTest:
    """A ``ptt -v server`` process with its metrics endpoint, its log file and its database."""

    root: Path
    port: int = field(default_factory=lambda: _free_port(socket.SOCK_DGRAM))
    metrics_port: int = field(default_factory=lambda: _free_port(socket.SOCK_STREAM))
    proc: subprocess.Popen[bytes] | None = None

    @property
    def db(self) -> Path:
        return self.root / "ptt.db"

    @property
    def log(self) -> Path:
        return self.root / "server.log"

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    def start(self, timeout: float = 20.0) -> None:
        home = self.root / "home"
        env = dict(os.environ, HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"),
                   XDG_DATA_HOME=str(home / ".local/share"), PYTHONUNBUFFERED="1")
        out = open(self.log, "wb")  # noqa: SIM115 - the child keeps it open
        self.proc = subprocess.Popen(
            [PTT, "-v", "server", "--host", "127.0.0.1", "--port", str(self.port), "--db",
             str(self.db), "--metrics", f"127.0.0.1:{self.metrics_port}"],
            stdout=out, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()}")
            if b"listening" in self.log.read_bytes():
                try:
                    self.metrics()
                    return
                except OSError:
                    pass
            time.sleep(0.05)
        raise RuntimeError(f"server did not start: {self.log.read_text()}")

    @property
    def credentials(self) -> dict[str, Any]:
        return tomllib.loads((self.root / "coordinator.toml").read_text())

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def rss_kib(self) -> dict[str, int]:
        out = {"rss": 0, "hwm": 0}
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                out["rss"] = int(line.split()[1])
            elif line.startswith("VmHWM:"):
                out["hwm"] = int(line.split()[1])
        return out

    def metrics(self) -> dict[str, float]:
        """The metrics endpoint's samples, summed over labels, by metric name."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as r:  # loopback http only
            text = r.read().decode()
        out: dict[str, float] = {}
        for line in text.splitlines():
            if not line or line.startswith("#"):
                continue
            name, _, value = line.rpartition(" ")
            out[name.split("{")[0]] = out.get(name.split("{")[0], 0.0) + float(value)
        return out

    def log_lines(self) -> list[str]:
        return self.log.read_text(errors="replace").splitlines()

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                return self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                return self.proc.wait(5)
        return self.proc.returncode


# --- the corpus: a real session through a recording forwarder ------------------------------------


class _Upstream(asyncio.DatagramProtocol):
    def __init__(self, fwd: Forwarder, client: Any) -> None:
        self.fwd, self.client = fwd, client
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.fwd.record.append(("s2c", data))
        assert self.fwd.transport is not None
        self.fwd.transport.sendto(data, self.client)


class Forwarder(asyncio.DatagramProtocol):
    """A UDP forwarder that records every datagram: one upstream socket per client address."""

    def __init__(self, server: tuple[str, int]) -> None:
        self.server = server
        self.record: list[tuple[str, bytes]] = []
        self.transport: asyncio.DatagramTransport | None = None
        self._flows: dict[Any, _Upstream] = {}
        self._pending: dict[Any, list[bytes]] = {}

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    @property
    def address(self) -> tuple[str, int]:
        assert self.transport is not None
        return self.transport.get_extra_info("sockname")[:2]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.record.append(("c2s", data))
        flow = self._flows.get(addr)
        if flow is not None and flow.transport is not None:
            flow.transport.sendto(data)
            return
        self._pending.setdefault(addr, []).append(data)
        if flow is None:
            self._flows[addr] = _Upstream(self, addr)
            asyncio.get_running_loop().create_task(self._open(addr))

    async def _open(self, addr: Any) -> None:
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(lambda: self._flows[addr],
                                            remote_addr=self.server)
        flow = self._flows[addr]
        for d in self._pending.pop(addr, []):
            assert flow.transport is not None
            flow.transport.sendto(d)

    def close(self) -> None:
        for f in self._flows.values():
            if f.transport is not None:
                f.transport.close()
        if self.transport is not None:
            self.transport.close()


async def add_user(coord: Connection, name: str, pins: Path) -> str:
    """A new volunteer's token: made by the coordinator's client (``ptt.client.keys``), which
    pins the member's identity in ``pins`` (never the real user's config directory)."""
    from ptt.client import keys

    return await keys.add_user(coord, name, pins=pins)


async def talk(conn: Connection, group: str, frames: int) -> int:
    """Send ``frames`` dummy voice frames of the current burst (the relay does not decode)."""
    sent = 0
    for seq in range(frames):
        route = conn.core.talk_route(group)
        if route is None:
            break
        gid, sid, burst = route
        conn.send_voice(encode_voice(VoiceHeader(gid, sid, burst, seq, seq * 320), b"\x01" * 60))
        sent += 1
        await asyncio.sleep(0.02)
    return sent


async def capture_corpus(server: ServerUnderTest) -> tuple[list[tuple[str, bytes]], dict[str, str]]:
    """Set the directory up through the forwarder and record every datagram of it."""
    loop = asyncio.get_running_loop()
    _, fwd = await loop.create_datagram_endpoint(lambda: Forwarder(server.address),
                                                 local_addr=("127.0.0.1", 0))
    cred = server.credentials
    tokens: dict[str, str] = {}
    try:
        async with Connection(fwd.address, cred["user"], cred["token"]) as coord:
            for u in MEMBERS:
                tokens[u] = await add_user(coord, u, server.root / "member-pins")
            await coord.admin("group.create", {"name": GROUP})
            await coord.admin("group.add", {"name": GROUP, "users": list(MEMBERS)})
            await coord.admin("user.list", {})
            await coord.admin("group.show", {"name": GROUP})
            async with Connection(fwd.address, "ann", tokens["ann"]) as ann, \
                    Connection(fwd.address, "bob", tokens["bob"]) as bob:
                await ann.join(GROUP)
                await bob.join(GROUP)
                await asyncio.sleep(1.3)  # a heartbeat each way
                got = await ann.request_floor(GROUP)
                assert got.state is Participation.HAS_PERMISSION, got
                await talk(ann, GROUP, 15)
                await ann.release_floor(GROUP)
                await bob.request_floor(GROUP)
                await talk(bob, GROUP, 5)
                await bob.release_floor(GROUP)
                await bob.leave(GROUP)
    finally:
        await asyncio.sleep(0.1)
        fwd.close()
    return fwd.record, tokens


# --- state before and after ----------------------------------------------------------------------


async def directory(coord: Connection) -> dict[str, Any]:
    """Users, roles, groups, members and floor state, as the admin API tells them."""
    users = await coord.admin("user.list", {})
    groups = await coord.admin("group.list", {})
    shown = {g["name"]: await coord.admin("group.show", {"name": g["name"]})
             for g in groups.get("groups", [])}
    return {"users": users, "groups": groups, "shown": shown}


def db_rows(db: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, sorted, read-only from outside the server."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        tables = [r[0] for r in con.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        return {t: sorted(con.execute(f'SELECT * FROM "{t}"').fetchall(), key=repr)
                for t in tables}
    finally:
        con.close()


# --- the fuzz run -------------------------------------------------------------------------------


class Swarm:
    """Fuzz sockets on several loopback addresses; answers are read back and measured."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.sel = selectors.DefaultSelector()
        self.socks: list[socket.socket] = []
        self.addresses = 0
        self.send_errors = 0
        self.answers = 0
        self.answer_bytes = 0
        self.max_answer = 0
        self.answer_kinds: dict[str, int] = {}
        self.open()

    def open(self) -> None:
        self.close()
        for ip in SOURCE_IPS:
            for _ in range(SOCKETS_PER_IP):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                s.bind((ip, 0))
                s.setblocking(False)
                self.socks.append(s)
                self.sel.register(s, selectors.EVENT_READ)
        self.addresses += len(self.socks)

    def send(self, k: int, data: bytes) -> bool:
        try:
            self.socks[k % len(self.socks)].sendto(data, self.target)
            return True
        except OSError:  # EMSGSIZE, a full buffer: counted, not retried
            self.send_errors += 1
            return False

    def drain(self) -> None:
        for key, _ in self.sel.select(0):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            for _ in range(64):
                try:
                    data = sock.recv(65_536)
                except OSError:
                    break
                self.answers += 1
                self.answer_bytes += len(data)
                self.max_answer = max(self.max_answer, len(data))
                kind = classify(data)
                self.answer_kinds[kind] = self.answer_kinds.get(kind, 0) + 1

    def close(self) -> None:
        self.drain() if self.socks else None
        for s in self.socks:
            self.sel.unregister(s)
            s.close()
        self.socks = []


@dataclass
class Progress:
    sent: int = 0
    bytes: int = 0
    received: float = 0.0
    rss: list[tuple[float, int]] = field(default_factory=list)
    warm_rss_kib: int = 0
    stalls: int = 0


async def _scrape(server: ServerUnderTest) -> dict[str, float]:
    return await asyncio.to_thread(server.metrics)


async def flood(server: ServerUnderTest, fuzzer: Fuzzer, count: int, time_cap: float,
                base_in: float) -> tuple[Progress, Swarm, float]:
    """Send up to ``count`` fuzz datagrams within ``time_cap`` seconds, paced by the server."""
    p = Progress(received=base_in)
    swarm = Swarm(server.address)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    next_scrape = next_rss = t0
    warm_at = max(1, int(count * WARMUP_SHARE))
    rotate_at = ROTATE
    per_tick = max(1, int(RATE * TICK))
    try:
        while p.sent < count and loop.time() - t0 < time_cap and server.alive():
            now = loop.time()
            if now >= next_scrape:
                p.received = (await _scrape(server)).get("ptt_datagrams_in_total", p.received)
                next_scrape = now + SCRAPE_EVERY
            if now >= next_rss:
                p.rss.append((now - t0, server.rss_kib()["rss"]))
                next_rss = now + RSS_EVERY
            if p.sent - (p.received - base_in) > LAG_MAX:
                p.stalls += 1  # the server is behind: wait for it rather than overflow its buffer
                await asyncio.sleep(SCRAPE_EVERY)
                next_scrape = 0.0
                continue
            # catch up to the rate since the start, but never more than one batch at a time
            due = min(BATCH, count - p.sent, int(RATE * (now - t0)) - p.sent + per_tick)
            for _ in range(max(0, due)):
                _, data = fuzzer.next()
                if swarm.send(p.sent, data):
                    p.bytes += len(data)
                p.sent += 1
            if p.sent >= rotate_at:
                rotate_at += ROTATE
                swarm.open()
            if not p.warm_rss_kib and p.sent >= warm_at:
                p.warm_rss_kib = server.rss_kib()["rss"]
            swarm.drain()
            await asyncio.sleep(TICK)
    finally:
        elapsed = loop.time() - t0
        await asyncio.sleep(0.5)
        swarm.close()
    return p, swarm, elapsed


async def _watch(conn: Connection, sink: list[str]) -> None:
    """Note every login and disconnect of a legitimate session during the run."""
    q = conn.subscribe()
    while True:
        ev = await q.get()
        if isinstance(ev, (Connected, Disconnected)):
            sink.append(f"{conn.user}: {type(ev).__name__}")


async def fuzz_live(count: int, time_cap: float, seed: int, root: Path) -> dict[str, Any]:
    server = ServerUnderTest(root)
    server.start()
    try:
        return await _fuzz_live(server, count, time_cap, seed)
    finally:
        server.stop()


async def _fuzz_live(server: ServerUnderTest, count: int, time_cap: float, seed: int
                     ) -> dict[str, Any]:
    rss_start = server.rss_kib()["rss"]
    record, tokens = await capture_corpus(server)
    corpus = [d for _, d in record]
    cred = server.credentials
    async with Connection(server.address, cred["user"], cred["token"]) as coord, \
            Connection(server.address, "ann", tokens["ann"]) as ann, \
            Connection(server.address, "bob", tokens["bob"]) as bob:
        state = await ann.join(GROUP)
        await bob.join(GROUP)
        sids = {c.user: c.core.session_id for c in (coord, ann, bob)}
        corpus_sids = {int.from_bytes(d[2:6], "big") for d in corpus if classify(d) == "sealed"}
        corpus_sids |= {int.from_bytes(d[8:12], "big") for d in corpus if classify(d) == "voice"}
        bursts = {int.from_bytes(d[12:16], "big") for d in corpus if classify(d) == "voice"}
        targets = Targets(group_ids=(state.group_id,),
                          session_ids=tuple(sorted(set(sids.values()) | corpus_sids)),
                          burst_ids=tuple(sorted(bursts | {b + 1 for b in bursts})),
                          users=(cred["user"], *MEMBERS), groups=(GROUP,))
        fuzzer = Fuzzer(corpus, targets, seed)
        events: list[str] = []
        watchers = [asyncio.create_task(_watch(c, events)) for c in (coord, ann, bob)]
        await asyncio.sleep(1.5)  # sessions settle; corpus sessions' last words arrive
        dir_before = await directory(coord)
        db_before = db_rows(server.db)
        m0 = await _scrape(server)
        log_before = len(server.log_lines())
        rss_ready = server.rss_kib()["rss"]

        p, swarm, elapsed = await flood(server, fuzzer, count, time_cap,
                                        m0.get("ptt_datagrams_in_total", 0.0))

        alive = server.alive()
        await asyncio.sleep(1.0)  # let the server work off its buffer; sessions heartbeat
        m1 = await _scrape(server) if alive else {}
        rss_end = server.rss_kib() if alive else {"rss": 0, "hwm": 0}
        dir_after = await directory(coord) if alive else {}
        db_after = db_rows(server.db)
        still = {c.user: c.core.session_id for c in (coord, ann, bob)}
        for w in watchers:
            w.cancel()
        # the members are still served: a floor grant round trip and relayed voice
        heard: list[bytes] = []
        bob.on_voice = heard.append
        granted = await ann.request_floor(GROUP)
        sent_voice = await talk(ann, GROUP, 10) if granted.state is (
            Participation.HAS_PERMISSION) else 0
        await asyncio.sleep(0.2)
        await ann.release_floor(GROUP)
        served = (granted.state is Participation.HAS_PERMISSION and sent_voice == 10
                  and len(heard) >= 8)

    lines = server.log_lines()
    run_lines = lines[log_before:]
    tracebacks = [ln for ln in lines if "Traceback" in ln or "Exception in callback" in ln]
    rss_samples = [r for _, r in p.rss] + [rss_end["rss"]]
    received = m1.get("ptt_datagrams_in_total", 0.0) - m0.get("ptt_datagrams_in_total", 0.0)
    warm = p.warm_rss_kib or rss_ready
    kib = 1024
    return {
        "datagrams_sent": p.sent,
        "bytes_sent": p.bytes,
        "datagrams_received_by_server": int(received),
        "received_share": received / p.sent if p.sent else 0.0,
        "send_errors": swarm.send_errors,
        "seconds": elapsed,
        "rate_per_s": p.sent / elapsed if elapsed else 0.0,
        "pacing_stalls": p.stalls,
        "source_addresses": swarm.addresses,
        "answers": swarm.answers,
        "answer_bytes": swarm.answer_bytes,
        "max_answer_bytes": swarm.max_answer,
        "answer_kinds": swarm.answer_kinds,
        "mutations": {k.value: v for k, v in fuzzer.counts.items()},
        "corpus": len(corpus),
        "corpus_kinds": {k: sum(1 for d in corpus if classify(d) == k)
                         for k in ("control", "sealed", "voice", "other")},
        "server_alive": alive,
        "tracebacks": tracebacks[:5],
        "directory_unchanged": bool(dir_before) and dir_before == dir_after,
        "db_unchanged": db_before == db_after,
        "db_rows": sum(len(v) for v in db_before.values()),
        "sessions_kept": sids == still and not events,
        "session_events": events,
        "clients_online_before": m0.get("ptt_clients_online"),
        "clients_online_after": m1.get("ptt_clients_online"),
        "dropped_by_server": int(m1.get("ptt_datagrams_dropped_total", 0.0)
                                 - m0.get("ptt_datagrams_dropped_total", 0.0)),
        "legit_served": served,
        "voice_heard": len(heard),
        "rss_start_mib": rss_start / kib,
        "rss_ready_mib": rss_ready / kib,
        "rss_warm_mib": warm / kib,
        "rss_peak_mib": max([*rss_samples, rss_end["hwm"]]) / kib,
        "rss_end_mib": rss_end["rss"] / kib,
        "rss_growth_after_warmup_mib": (rss_end["rss"] - warm) / kib,
        "rss_samples_mib": [round(r / kib, 1) for r in rss_samples],
        "log_lines_during_run": len(run_lines),
        "log_lines_allowed": int(LOG_LINES_PER_S * (elapsed + 2) + 100),
        "seed": seed,
    }


def verdict(r: dict[str, Any]) -> list[str]:
    """What failed, in words; empty when the run showed everything the issue asks."""
    bad = []
    if not r["server_alive"]:
        bad.append("the server died")
    if r["tracebacks"]:
        bad.append(f"tracebacks in the server log: {r['tracebacks'][:2]}")
    if not r["directory_unchanged"]:
        bad.append("the directory changed")
    if not r["db_unchanged"]:
        bad.append("the database changed")
    if not r["sessions_kept"]:
        bad.append(f"legitimate sessions lost or replaced: {r['session_events']}")
    if not r["legit_served"]:
        bad.append("the member was not served after the run")
    if r["rss_growth_after_warmup_mib"] > FLAT_MIB:
        bad.append(f"RSS grew {r['rss_growth_after_warmup_mib']:.1f} MiB after warm-up")
    if r["log_lines_during_run"] > r["log_lines_allowed"]:
        bad.append(f"{r['log_lines_during_run']} log lines")
    return bad


def measure(count: int, time_cap: float, seed: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="ptt-fuzz-") as tmp:
        return asyncio.run(fuzz_live(count, time_cap, seed, Path(tmp)))


def run(quick: bool = False, count: int | None = None, time_cap: float | None = None,
        seed: int = 1) -> dict[str, Any]:
    count = count or (20_000 if quick else 1_000_000)
    time_cap = time_cap or (60.0 if quick else 480.0)
    r = measure(count, time_cap, seed)
    failures = verdict(r)
    cmd = ".venv/bin/python bench/bench_fuzz.py" + (" --quick" if quick else "")
    rows = [{"mutation": k, "datagrams": v} for k, v in r["mutations"].items()]
    return {
        "title": "Fuzz run against a live server",
        "command": cmd,
        "target": ("1,000,000 random and mutated datagrams (bounded in time): no crash, no state "
                   "change, memory flat"),
        "notes": (f"A real `ptt server` on 127.0.0.1; corpus of {r['corpus']} datagrams recorded "
                  f"through a forwarder from a real session (admin, login, heartbeats, floor, "
                  f"voice); mutations by `ptt.faults.fuzz.Fuzzer` (seed {seed}) from "
                  f"{r['source_addresses']:,} source addresses on {len(SOURCE_IPS)} loopback IPs, "
                  f"paced by the server's received counter. Three legitimate sessions stay "
                  f"logged in throughout. RSS sampled every {RSS_EVERY:g} s: "
                  f"{r['rss_samples_mib']}. Verdict: "
                  + ("all checks passed." if not failures else "; ".join(failures))),
        "rows": rows,
        **{k: v for k, v in r.items()
           if isinstance(v, (int, float, bool)) and k != "seed"},
        "verdict": "all checks passed" if not failures else "; ".join(failures),
        "failures": failures,
        "machine": loadgen.machine_line(),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="20,000 datagrams")
    ap.add_argument("--count", type=int, help="datagrams to send [1,000,000]")
    ap.add_argument("--time-cap", type=float, help="seconds of sending at most [480]")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", action="store_true", help="print every figure as JSON")
    args = ap.parse_args()
    print(f"machine: {loadgen.machine_line()}")
    res = run(args.quick, args.count, args.time_cap, args.seed)
    res["command"] = " ".join([".venv/bin/python", "bench/bench_fuzz.py", *sys.argv[1:]])
    print(f"command: {res['command']}")
    print(loadgen.fmt_table(res["rows"]))
    for k, v in res.items():
        if k not in ("rows", "notes", "title", "command", "target", "machine"):
            print(f"{k}: {v}")
    print(res["notes"])
    if args.json:
        print(json.dumps(res, default=str, indent=1))
    return 0 if not res["failures"] else 1


if __name__ == "__main__":
    sys.exit(main())
