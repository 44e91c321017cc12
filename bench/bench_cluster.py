"""The cross-node cost of a cluster: floor access and voice latency through three
``ptt server --cluster`` nodes over NATS, against one plain ``ptt server`` in the same run.

    .venv/bin/python bench/bench_cluster.py            # 300 floor cycles, 10 s of voice
    .venv/bin/python bench/bench_cluster.py --quick    # 40 cycles, 2 s
    PYTHONPATH=TREE_A .venv/bin/python bench/bench_cluster.py --node-path TREE_B
                                # the clients from TREE_A's ptt, the servers from TREE_B's

Layout: the group is homed on node c; the talker logs in to node a, the listener to node b, so a
floor request crosses a -> c and its answer c -> a, and a voice frame crosses a -> b once. The
single server has the same talker and listener on itself. Every process runs on this machine,
on loopback; the NATS server is started here (ptt.cluster.engines) and stopped by PID.

* floor access: the talker's ``FloorRequest`` sent -> its ``FloorStateChanged`` to talking
  received (a request, then a release, then the idle news at the listener and 30 ms, in turn);
* voice: a 20 ms frame sent by the talker (its send time in the payload, a plain group) -> the
  same frame received by the listener; "added" is the cluster's percentile minus the single
  server's;
* bus: nats-py publish -> subscriber, and request/reply, in one process (what node-to-node
  messages cost before ptt touches them);
* the machine's floor, in the same run through the same NATS server (``bench_bus_floor``'s
  paths, one round trip of each in the pause after every cluster floor cycle, so both see the
  same moment of the machine): a floor request's hops with nothing but nats-py in each
  process (``nats``: client -> a -> NATS -> c -> NATS -> a -> client; ``peer``: the same hops
  on the peer plane the nodes now use for it, client -> a -> UDP -> c -> UDP -> a -> client),
  and a voice frame's
  crossing against one UDP relay (``udp1``): on the media plane the nodes use
  (``udp2``: client -> a -> UDP -> b -> client, the voice floor), and through NATS (``nats1``:
  client -> a -> NATS -> b -> client, the way voice crossed before the media plane; kept beside
  it).
  Each cluster figure is reported beside its floor, as the difference (ptt's own cost on the
  way) and the ratio, and each cycle against its own floor round trip (the median ratio): on
  a machine too busy to show the absolute targets, the ratio to the floor measured in the
  same moments is what compares from run to run.
* the targets against the machine's floor (``machine_floor``, whose docstring defines the
  scale): in the same pause after every floor cycle (once the nodes have sent the cycle's bus
  copies, ``MACHINE_AT``), and halfway between voice frames (in
  both voice bursts, the single server's and the cluster's, one primitive a frame in turn),
  a train of UDP round trips between two processes and of NATS publishes -> subscriber
  (``machine_floor.train``: its warm samples are the floor, its first, cold one is printed
  beside); each target is printed raw and scaled by (that floor now / the issue's figure of
  it), with met / not met against both. The floor a target is scaled by is
  the primitive its path took in this run (the nodes' logs say: the peer port is UDP, else
  NATS).

The clients are sans-I/O ``ClientCore``s on blocking UDP sockets driven by one select loop in
this process; the clock is ``time.monotonic`` throughout. The bench is bounded: each phase has
a deadline, and every process started here is stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import select
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_bus_floor  # noqa: E402
import machine_floor  # noqa: E402
from echo_floor import SO_TIMESTAMPNS, kernel_time  # noqa: E402
from loadgen import load_average, machine_line, percentiles  # noqa: E402

from ptt.cluster import engines  # noqa: E402
from ptt.protocol import auth  # noqa: E402
from ptt.protocol import client as cl  # noqa: E402
from ptt.protocol.cluster_routing import BUS_COPY_DELAY  # noqa: E402
from ptt.protocol.messages import Role  # noqa: E402
from ptt.server.store import Store  # noqa: E402
from ptt.wire.voice import VoiceHeader, add_mac, encode_voice, is_voice, peek_frame  # noqa: E402

PTT = str(Path(sys.executable).with_name("ptt"))
GROUP = "bench"
NODES = ("a", "b", "c")
HOME = "c"
FRAME = 0.02
PAUSE = 0.03  # s between a floor cycle's idle news and the next request
# issue #17's targets (ms): p50, p99
ACCESS_TARGET = (2.0, 10.0)  # cross-node floor access
VOICE_TARGET = (0.5, 3.0)  # what crossing nodes adds to a voice frame's latency
MachineProbe = machine_floor.UdpRoundTrip | machine_floor.NatsPublish
# s after a floor cycle's idle news that its machine floor trains start: after the bus copies
# of the cycle's news (BUS_COPY_DELAY after each), inside PAUSE
MACHINE_AT = BUS_COPY_DELAY + 0.002


def _directory(db: Path) -> dict[str, str]:
    """Talker and listener in one plain relay group; returns their tokens."""
    store = Store(db)
    tokens = {}
    for name in ("talker", "listener"):
        token = secrets.token_urlsafe(24)
        creds = auth.make_credentials(token, secrets.token_bytes(16), auth.MIN_ITERATIONS)
        store.add_user(name, Role.VOLUNTEER, creds.salt, creds.iterations, creds.verifier)
        tokens[name] = token
    store.create_group(GROUP, max_talk=600.0, mode="relay", encrypted=False)
    for name in tokens:
        store.add_member(GROUP, name)
    # made here, so every copy holds the same: the nodes' shared secret (their peer key's)
    store.secret("decoy")
    store.close()
    return tokens


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _server(db: Path, port: int, cluster: Path | None, extra: tuple[str, ...] = (),
            command: tuple[str, ...] = (PTT,), node_path: str | None = None
            ) -> subprocess.Popen[bytes]:
    """``ptt server`` on ``db`` (``command``: how ``ptt`` is run, e.g. under a profiler;
    ``node_path``: its ``PYTHONPATH``, so the servers' code can differ from this process's,
    else this process's own)."""
    log = db.with_suffix(".log")
    args = [*command, "server", "--db", str(db), "--host", "127.0.0.1", "--port", str(port), *extra]
    if cluster is not None:
        args += ["--cluster", str(cluster)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PTT_")}
    env["HOME"] = str(db.parent)
    if node_path is not None:
        env["PYTHONPATH"] = node_path
    with open(log, "wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env,
                                stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while b"listening" not in log.read_bytes():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"server did not start: {log.read_text()}")
        time.sleep(0.05)
    return proc


def start_server(db: Path, cluster: Path | None,
                 node_path: str | None = None) -> tuple[subprocess.Popen[bytes], int]:
    """``_server`` on a free port, and the port: a port another process took between the
    choice and the bind (others' runs share this machine) is chosen again, up to 5 times."""
    for attempt in range(5):
        port = _free_udp_port()
        try:
            return _server(db, port, cluster, node_path=node_path), port
        except RuntimeError as exc:
            if "already in use" not in str(exc) or attempt == 4:
                raise
    raise AssertionError("unreachable")


def start_nodes(root: Path, seed: Path, nats_url: str, names: Iterable[str],
                procs: list[subprocess.Popen[bytes]],
                node_path: str | None = None) -> dict[str, tuple[str, int]]:
    """One server per name, each on its own copy of ``seed`` under ``root/<name>``: those in
    ``NODES`` as nodes of the cluster over ``nats_url`` (the group homed on ``HOME``), any
    other a plain server (``node_path``: their ``PYTHONPATH``, ``_server``). Each started is
    appended to ``procs`` (for ``stop_servers``) as it starts; returns their addresses by name."""
    addr = {}
    for name in names:
        d = root / name
        d.mkdir()
        shutil.copy(seed, d / "ptt.db")
        cluster = None
        if name in NODES:
            cluster = d / "cluster.toml"
            cluster.write_text(f'node = "{name}"\nnodes = {json.dumps(list(NODES))}\n'
                               f'nats = ["{nats_url}"]\n[homes]\n{GROUP} = "{HOME}"\n')
        proc, port = start_server(d / "ptt.db", cluster, node_path)
        procs.append(proc)
        addr[name] = ("127.0.0.1", port)
    return addr


def stop_servers(procs: Iterable[subprocess.Popen[bytes]]) -> None:
    """SIGTERM to every ``_server`` still running, all at once, then wait for each; one that
    has not stopped within 10 s is killed."""
    procs = list(procs)
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)


class _Client:
    """``kernel_ts``: each datagram's kernel receive time (SO_TIMESTAMPNS) is kept beside what
    it brought, ``kernel_events`` and ``kernel_voice`` (on ``time.monotonic``'s scale), so a
    latency can be taken without this process's own wake-up and reading."""

    def __init__(self, user: str, token: str, server: tuple[str, int],
                 kernel_ts: bool = False) -> None:
        self.core = cl.ClientCore(user, token, os.urandom)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.kernel_ts = kernel_ts
        if kernel_ts:
            self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.server = server
        self.events: list[tuple[float, Any]] = []
        self.voice: list[tuple[float, bytes]] = []
        self.kernel_events: list[tuple[float, Any]] = []
        self.kernel_voice: list[tuple[float, bytes]] = []

    def flush(self) -> None:
        for data in self.core.datagrams_to_send():
            self.sock.sendto(data, self.server)

    def read(self, now: float) -> None:
        kernel = 0.0
        while True:
            try:
                if self.kernel_ts:
                    data, anc, _, _ = self.sock.recvmsg(65536, 64)
                    # on time.monotonic's scale: the two clocks read side by side give the offset
                    kernel = kernel_time(anc) - (time.time() - time.monotonic())
                else:
                    data = self.sock.recv(65536)
            except BlockingIOError:
                return
            if is_voice(data):
                self.voice.append((time.monotonic(), data))
                if self.kernel_ts:
                    self.kernel_voice.append((kernel, data))
                continue
            self.core.receive_datagram(data, now)
            evs = self.core.events()
            self.events += [(now, ev) for ev in evs]
            if self.kernel_ts:
                self.kernel_events += [(kernel, ev) for ev in evs]


class _Loop:
    def __init__(self, clients: list[_Client]) -> None:
        self.clients = clients

    def step(self, wait: float) -> None:
        for c in self.clients:
            c.flush()
        timers = [t for t in (c.core.get_timer() for c in self.clients) if t is not None]
        now = time.monotonic()
        if timers:
            wait = max(0.0, min(wait, min(timers) - now))
        ready, _, _ = select.select([c.sock for c in self.clients], [], [], wait)
        now = time.monotonic()
        for c in self.clients:
            if c.sock in ready:
                c.read(now)
            t = c.core.get_timer()
            if t is not None and t <= now:
                c.core.handle_timer(now)
            c.events += [(now, ev) for ev in c.core.events()]
            c.flush()

    def until(self, cond: Any, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not cond():
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out waiting for {what}")
            self.step(0.01)


def _state(c: _Client) -> cl.Participation:
    return c.core.participation(GROUP)


def _measure(talker: _Client, listener: _Client, cycles: int, voice_seconds: float,
             probes: dict[str, bench_bus_floor.Probe] | None = None,
             machine: dict[str, MachineProbe] | None = None) -> dict[str, Any]:
    """Floor cycles, then a burst of voice. ``probes``: one round trip through each after
    every floor cycle (in its pause), so each cycle has its floor of the same moment.
    ``machine``: a ``machine_floor.train`` of each after every floor cycle, and of one of them
    in turn halfway between voice frames (``"machine"`` in the result: by window, "access" or
    "voice", then by probe, the cold and the warm samples)."""
    loop = _Loop([talker, listener])
    now = time.monotonic()
    for c in (talker, listener):
        c.core.connect(now)
        c.core.join(GROUP, now)
    loop.until(lambda: all(GROUP in c.core.groups and c.core.groups[GROUP].state is not None
                           for c in (talker, listener)), 20, "logins and joins")
    loop.until(lambda: False if time.monotonic() < now + 1.0 else True, 5, "settling")
    access = []
    access_kernel = []
    floor: dict[str, list[float | None]] = {kind: [] for kind in probes or {}}
    mach: dict[str, dict[str, dict[str, list[float]]]] = {
        window: {kind: {"cold": [], "warm": []} for kind in machine or {}}
        for window in ("access", "voice")}

    def sample(window: str, kind: str) -> None:
        assert machine is not None
        cold, warm = machine_floor.train(machine[kind])
        if cold is not None:
            mach[window][kind]["cold"].append(cold)
        mach[window][kind]["warm"] += warm

    for _ in range(cycles):
        talker.events.clear()
        talker.kernel_events.clear()
        t0 = time.monotonic()
        talker.core.request_floor(GROUP, t0)
        talker.flush()
        loop.until(lambda: _state(talker) is cl.Participation.HAS_PERMISSION, 10, "a grant")
        granted = next(t for t, ev in talker.events if isinstance(ev, cl.FloorStateChanged)
                       and ev.state is cl.Participation.HAS_PERMISSION)
        access.append((granted - t0) * 1000)
        access_kernel += [(t - t0) * 1000 for t, ev in talker.kernel_events
                          if isinstance(ev, cl.FloorStateChanged)
                          and ev.state is cl.Participation.HAS_PERMISSION][:1]
        talker.core.release_floor(GROUP, time.monotonic())
        loop.until(lambda: listener.core.groups[GROUP].talker is None
                   and _state(talker) is cl.Participation.NO_PERMISSION, 10, "the idle floor")
        idle = time.monotonic()
        pause = idle + PAUSE  # requests are paced by people, not back to back
        for kind, probe in (probes or {}).items():
            floor[kind].append(probe.once())
        if machine:  # once the nodes sent the cycle's bus copies: the machine, not ptt's tail
            while time.monotonic() < idle + MACHINE_AT:
                loop.step(idle + MACHINE_AT - time.monotonic())
            for kind in machine:
                sample("access", kind)
        while time.monotonic() < pause:
            loop.step(pause - time.monotonic())
    # voice: one burst of paced frames, each carrying its send time
    talker.core.request_floor(GROUP, time.monotonic())
    loop.until(lambda: _state(talker) is cl.Participation.HAS_PERMISSION, 10, "a grant")
    route = talker.core.talk_route(GROUP)
    assert route is not None
    listener.voice.clear()
    listener.kernel_voice.clear()
    frames = int(voice_seconds / FRAME)
    start = time.monotonic()
    for seq in range(frames):
        while time.monotonic() < start + seq * FRAME:
            loop.step(start + seq * FRAME - time.monotonic())
        sent = time.monotonic()
        frame = encode_voice(VoiceHeader(*route, seq, 0), struct.pack("!d", sent) + bytes(60))
        talker.sock.sendto(add_mac(talker.core.voice_key, frame), talker.server)
        if machine:  # halfway to the next frame, this one heard by then
            half = start + (seq + 0.5) * FRAME
            while time.monotonic() < half:
                loop.step(half - time.monotonic())
            kinds = sorted(machine)
            sample("voice", kinds[seq % len(kinds)])
    end = time.monotonic() + 0.5
    while time.monotonic() < end:
        loop.step(0.05)
    def latencies(heard: list[tuple[float, bytes]]) -> list[float]:
        out = []
        for received, data in heard:
            if peek_frame(data)[2] == route[2]:
                header = 22  # ptt.wire.voice: the fixed header before the payload
                (sent,) = struct.unpack_from("!d", data, header)
                out.append((received - sent) * 1000)
        return out
    latency = latencies(listener.voice)
    talker.core.release_floor(GROUP, time.monotonic())
    loop.until(lambda: _state(talker) is cl.Participation.NO_PERMISSION, 10, "the release")
    for c in (talker, listener):
        c.sock.close()
    return {"access": access, "voice": latency, "frames": frames, "floor": floor,
            "machine": mach, "access_kernel": access_kernel,
            "voice_kernel": latencies(listener.kernel_voice)}


async def _bus_latency(url: str, count: int) -> dict[str, Any]:
    """nats-py request/reply round trips (us), in one process (publish -> subscriber is the
    machine floor's, interleaved with the cycles)."""
    import nats

    nc = await nats.connect(url)

    async def echo(msg: Any) -> None:
        await msg.respond(msg.data)

    await nc.subscribe("bench.req", cb=echo)
    await nc.flush()
    rr = []
    for _ in range(count):
        t0 = time.monotonic()
        await nc.request("bench.req", b"x", timeout=2)
        rr.append(time.monotonic() - t0)
    await nc.close()
    return {"request": [x * 1e6 for x in rr]}


def _row(name: str, r: dict[str, Any]) -> dict[str, Any]:
    a, v = percentiles(r["access"]), percentiles(r["voice"])
    row = {"setup": name, "floor cycles": len(r["access"]),
           "floor access p50 ms": round(a["p50"], 3), "floor access p99 ms": round(a["p99"], 3),
           "voice frames heard": f"{len(r['voice'])}/{r['frames']}",
           "voice p50 ms": round(v["p50"], 3), "voice p99 ms": round(v["p99"], 3)}
    if r["access_kernel"] and r["voice_kernel"]:
        ak, vk = percentiles(r["access_kernel"]), percentiles(r["voice_kernel"])
        row |= {"floor access p50 ms (kernel ts)": round(ak["p50"], 3),
                "voice p50 ms (kernel ts)": round(vk["p50"], 3)}
    return row


def _against(measured: dict[str, float], floor: dict[str, float]) -> str:
    """``measured`` beside ``floor`` (p50 and p99, ms): each, their difference and ratio."""
    out = []
    for q in ("p50", "p99"):
        m, f = measured[q], floor[q]
        ratio = f"{m / f:.2f}x" if f > 0 else "-"
        out.append(f"{q} {m:.3f} vs {f:.3f} ms: {m - f:+.3f} ms, {ratio}")
    return "; ".join(out)


def run(quick: bool = False, node_path: str | None = None) -> dict[str, Any]:
    cycles, seconds = (40, 2.0) if quick else (300, 10.0)
    load_before = load_average()
    with tempfile.TemporaryDirectory(prefix="ptt-bench-cluster-") as tmp:
        root = Path(tmp)
        seed = root / "seed.db"
        tokens = _directory(seed)
        nats_engine = engines.start_nats(root / "nats")
        procs: list[subprocess.Popen[bytes]] = []
        try:
            addr = start_nodes(root, seed, nats_engine.url, (*NODES, "single"), procs,
                               node_path)
            machine: dict[str, MachineProbe] = {}
            probes: dict[str, bench_bus_floor.Probe] = {}
            try:
                machine["udp"] = machine_floor.UdpRoundTrip()
                machine["nats"] = machine_floor.NatsPublish(nats_engine.url)
                single = _measure(_Client("talker", tokens["talker"], addr["single"], True),
                                  _Client("listener", tokens["listener"], addr["single"], True),
                                  cycles, seconds, machine=machine)
                for kind in ("nats", "peer", "udp1", "udp2", "nats1"):
                    probes[kind] = bench_bus_floor.Probe(kind, nats_engine.url)
                cross = _measure(_Client("talker", tokens["talker"], addr["a"], True),
                                 _Client("listener", tokens["listener"], addr["b"], True),
                                 cycles, seconds, probes, machine)
            finally:
                for probe in (*probes.values(), *machine.values()):
                    probe.close()
            bus = asyncio.run(_bus_latency(nats_engine.url, 1000 if not quick else 200))
            # the listener's node says when voice first comes on its peer port, the home when
            # floor messages do (ptt.cluster.node)
            path = ("peer port (UDP)" if b"voice from node a comes on the peer port" in
                    (root / "b" / "ptt.log").read_bytes() else "bus (NATS)")
            floor_path = ("peer port (UDP)" if b"floor messages from node a come on the peer "
                          b"port" in (root / HOME / "ptt.log").read_bytes() else "bus (NATS)")
        finally:
            stop_servers(procs)
            nats_engine.stop()
    vs, vc = percentiles(single["voice"]), percentiles(cross["voice"])
    req = percentiles(bus["request"])
    ac = percentiles(cross["access"])
    added = {q: vc[q] - vs[q] for q in ("p50", "p99")}
    trips = cross["floor"]
    floor = {kind: percentiles([t for t in ts if t is not None]) for kind, ts in trips.items()}
    floor_added = {q: floor["udp2"][q] - floor["udp1"][q] for q in ("p50", "p99")}
    nats_added = {q: floor["nats1"][q] - floor["udp1"][q] for q in ("p50", "p99")}
    # each cycle against the floor round trip right after it
    ratios = [a / f for a, f in zip(cross["access"], trips["nats"], strict=True) if f]
    peer_ratios = [a / f for a, f in zip(cross["access"], trips["peer"], strict=True) if f]
    # the machine's floor: the access window's (the cluster's floor cycles) and the voice
    # window's (both voice bursts, as "added" is of both)
    access_floor = cross["machine"]["access"]
    voice_floor = {kind: {how: single["machine"]["voice"][kind][how]
                          + cross["machine"]["voice"][kind][how] for how in ("cold", "warm")}
                   for kind in cross["machine"]["voice"]}
    verdicts = []
    for what, measured, target, samples, prim in (
            ("cross-node floor access", ac, ACCESS_TARGET, access_floor, floor_path),
            ("cross-node voice added", added, VOICE_TARGET, voice_floor, path)):
        kind = machine_floor.rests_on(prim)
        now = percentiles(samples[kind]["warm"])
        for q, t, ref in zip(("p50", "p99"), target, machine_floor.ISSUE_FLOOR[kind],
                             strict=True):
            assert ref is not None
            verdicts.append(machine_floor.scale(f"{what} {q} (on {kind})", measured[q], t,
                                                now[q], ref))

    def floor_line(samples: dict[str, dict[str, list[float]]]) -> str:
        out = []
        for kind, got in samples.items():
            c, w = percentiles(got["cold"]), percentiles(got["warm"])
            ref = machine_floor.ISSUE_FLOOR[kind]
            out.append(f"{kind} warm {w['p50'] * 1000:.0f} / {w['p99'] * 1000:.0f} "
                       f"({len(got['warm'])}), cold {c['p50'] * 1000:.0f} / "
                       f"{c['p99'] * 1000:.0f} ({len(got['cold'])}); issue "
                       f"{ref[0] * 1000:.0f} / {(ref[1] or 0) * 1000:.0f}")
        return "; ".join(out)
    return {
        "title": "Cluster: cross-node floor access and voice, against a single server",
        "command": ".venv/bin/python bench/bench_cluster.py",
        "target": "cross-node floor access p50 <= 2 ms, p99 <= 10 ms; cross-node voice adds "
                  "p50 <= 0.5 ms, p99 <= 3 ms (issue #17)",
        "rows": [_row("single server (talker and listener on it)", single),
                 _row("cluster: talker on a, listener on b, home c", cross)],
        "voice added p50 ms": round(added["p50"], 3),
        "voice added p99 ms": round(added["p99"], 3),
        "cross-node voice went by": path,
        "cross-node floor went by": floor_path,
        "floor access against the floor (nats round trip)": _against(ac, floor["nats"]),
        "floor access / its cycle's floor round trip, median": f"{statistics.median(ratios):.2f}x",
        "floor access against the peer floor (peer round trip)": _against(ac, floor["peer"]),
        "floor access / its cycle's peer round trip, median":
            f"{statistics.median(peer_ratios):.2f}x",
        "voice added against the floor (udp2 - udp1)": _against(added, floor_added),
        "NATS voice floor (nats1 - udp1) p50 / p99 ms": f"{nats_added['p50']:.3f} / "
                                                         f"{nats_added['p99']:.3f}",
        "floor paths p50 / p99 ms": ", ".join(f"{k} {v['p50']:.3f} / {v['p99']:.3f}"
                                               for k, v in floor.items()),
        "machine floor in the floor cycles p50 / p99 us (samples)": floor_line(access_floor),
        "machine floor in the voice bursts p50 / p99 us (samples)": floor_line(voice_floor),
        "tables": [{"title": "The targets against the machine's floor (bench/machine_floor.py)",
                    "rows": [v.row() for v in verdicts]}],
        "NATS request/reply p50/p99 us": f"{req['p50']:.0f} / {req['p99']:.0f}",
        "load_average": f"{load_before} at the start, {load_average()} at the end",
        "notes": "Three `ptt server --cluster` processes and one plain `ptt server`, one NATS "
                 "server, the clients in the bench process: all on this 2-core machine, on "
                 "loopback. Floor access: request sent -> grant event at the talker, then "
                 "release, wait for the idle floor at the listener and 30 ms more, in turn. Voice: 20 ms frames of a plain "
                 "relay group carrying their send time; p50/p99 of send -> receive at the "
                 "listener. Added: cluster percentile minus the single server's, same run. "
                 "Against the floor: bench_bus_floor's paths through the same NATS server, "
                 "one round trip of each after every cluster floor cycle (nats: the floor "
                 "request's hops; udp2 - udp1: what a voice frame's crossing on the nodes' "
                 "media plane adds, with nats1 - udp1 beside it, the same through NATS), as the "
                 "difference and the ratio; the median ratio pairs each cycle with its own. "
                 "The targets against the machine's floor: bench/machine_floor.py's scale, "
                 "its trains taken in the same pauses (and halfway between voice frames).",
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes")
    parser.add_argument("--node-path", metavar="TREE",
                        help="PYTHONPATH of the servers (the three nodes and the single one), "
                             "so their code and the bench's clients' can come from two trees")
    args = parser.parse_args()
    res = run(args.quick, args.node_path)
    for row in res["rows"]:
        print(json.dumps(row))
    for k, v in res.items():
        if k not in ("rows", "notes", "title", "command", "target", "tables"):
            print(f"{k}: {v}")
    for table in res["tables"]:
        print(f"{table['title']}:")
        for row in table["rows"]:
            print(json.dumps(row))
    print(machine_line())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
