"""ptt's CPU on each node turn of a cross-node floor request and of a relayed voice frame, in one
process: the sans-I/O part of what ``trace_cluster_legs.py`` times on the nodes.

The topology of ``bench_cluster``: three ``ServerCore``s with their ``ClusterRouting``s and peer
planes (``tests/protocol/clustersim.py``, real sealing and wire, a virtual clock, no socket),
the talker on A, the listener on B, their plain group homed on C. Each floor cycle the talker's
real ``ClientCore`` seals a request, and the datagrams it causes are handed from turn to turn
as the nodes' sockets would hand them; the rest of the cycle (the listener's news, the bus
copies, the release) runs in the simulator, untimed. A turn is what a node does between its
read and its ``sendto`` (``ptt.cluster.node``: the input, then the routing's flush and the
outputs taken):

* ``a request``: A's core opens the client's sealed FloorRequest, decodes it, the FloorInput is
  made, sealed and taken for the peer port;
* ``c decide``: C's plane opens the FloorInput, the routing decides, its FloorNews is sealed to
  A and B (and queued for the bus);
* ``a answer``: A's plane opens the news, the routing applies it, the answer is sealed to the
  talker;
* ``a frame``: A's core checks a voice frame's MAC, relays it, seals it once for B's peer port;
* ``b frame``: B's plane opens it, the routing finds its listeners (to the fan-out's call).

Three passes: *warm* (the cycles back to back, each turn timed once a cycle by
``time.perf_counter``; the turn mutates state, so each loop is a fresh cycle, not one call
repeated), *cold* (the same after writing a byte in every cache line of 8 MB of other memory
before each turn: the data caches of a process that slept while others ran; the code stays
warmer than on the nodes), and *profile* (``cProfile`` around each turn, its top functions by
own time).

    .venv/bin/python bench/bench_floor_path.py                 # 2000 cycles, all passes
    .venv/bin/python bench/bench_floor_path.py --cycles 300 --top 12
    .venv/bin/python bench/bench_floor_path.py --json          # the medians as JSON
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from ptt.protocol.client import Participation  # noqa: E402
from ptt.protocol.cluster_routing import ClusterRouting  # noqa: E402
from ptt.protocol.server import ServerCore  # noqa: E402
from ptt.wire.voice import VoiceHeader, add_mac, encode_voice  # noqa: E402
from tests.protocol.clustersim import bench_layout  # noqa: E402

TURNS = ("a request", "c decide", "a answer", "a frame", "b frame")
EVICT_BYTES = 8 << 20
GROUP = "g"
Addr = tuple[str, int]
Out = tuple[list[tuple[Addr, bytes]], list[tuple[str, bytes]], list[tuple[bytes, Addr]]]


def _take(core: ServerCore, routing: ClusterRouting, now: float) -> Out:
    """The end of a node's turn (``ClusterNode.flush`` and the server's transmit): the
    routing's floor messages sealed for the peer port, the bus's, the core's datagrams and
    events taken."""
    routing.flush(now)
    plane = routing.datagrams_to_send()
    bus = routing.messages_to_send()
    core.events()
    return plane, bus, core.datagrams_to_send()


class Path3:
    """The three nodes, set up to the point where the talker may request the floor."""

    def __init__(self) -> None:
        sim = self.sim = bench_layout(planes=True, settle=2.0)
        self.peer_of = {r.peers.addr: n for n, r in sim.routing.items()  # type: ignore[union-attr]
                        }
        self.evict = bytearray(EVICT_BYTES)

    def _touch(self) -> None:
        self.evict[::64] = bytes(EVICT_BYTES // 64)

    def _hand(self, node: str, out: Out) -> None:
        """What a turn sent that no timed turn takes: to the simulator's wires."""
        sim = self.sim
        plane, bus, datagrams = out
        by_addr = {a: u for u, a in sim.addrs.items()}
        for data, addr in datagrams:
            sim._push("client", by_addr[addr], data, sim.delay)
        for addr, data in plane:
            sim._to_plane(node, self.peer_of[addr], data)
        for dest, data in bus:
            sim._to_bus(node, dest, data)

    def cycle(self, timed: dict[str, list[float]], cold: bool,
              around: Callable[[str], None] | None = None,
              after: Callable[[str], None] | None = None) -> None:
        """One floor cycle with a frame; each turn's seconds appended to ``timed``."""
        sim = self.sim
        clock = time.perf_counter
        ann = sim.clients["ann"]
        ca, ra, rb = sim.cores["A"], sim.routing["A"], sim.routing["B"]
        pa, pb = ra.peers, rb.peers
        assert pa is not None and pb is not None
        addr = sim.addrs["ann"]
        now = sim.now
        ann.request_floor(GROUP, now)
        (request,) = ann.datagrams_to_send()

        def turn(name: str, fn: Callable[[], Out]) -> Out:
            if cold:
                self._touch()
            if around is not None:
                around(name)
            t = clock()
            out = fn()
            timed.setdefault(name, []).append(clock() - t)
            if after is not None:
                after(name)
            return out

        def a_request() -> Out:
            ca.receive_datagram(request, addr, now)
            return _take(ca, ra, now)

        def floor_in(node: str, data: bytes) -> Callable[[], Out]:
            """A floor message on ``node``'s peer port: opened, routed, the turn's end."""
            core, routing = sim.cores[node], sim.routing[node]
            plane = routing.peers
            assert plane is not None

            def fn() -> Out:
                got = plane.accept(data, now)
                assert got is not None
                routing.receive(got.frame, now, plane=True)
                return _take(core, routing, now)
            return fn

        def onward(node: str, out: Out, to: str) -> bytes:
            """The one peer datagram ``out`` has for ``to``; the rest to the simulator."""
            (data,) = [d for a, d in out[0] if self.peer_of[a] == to]
            self._hand(node, ([x for x in out[0] if self.peer_of[x[0]] != to], out[1], out[2]))
            return data

        out = turn("a request", a_request)
        out = turn("c decide", floor_in("C", onward("A", out, "C")))
        out = turn("a answer", floor_in("A", onward("C", out, "A")))
        self._hand("A", out)
        sim.run_until(now + 0.03)
        if ann.participation(GROUP) is not Participation.HAS_PERMISSION:
            raise RuntimeError("the request was not granted")

        route = ann.talk_route(GROUP)
        assert route is not None
        sim.send_voice()  # the burst's first frame (its ALIVE to the home) untimed
        sim.run_until(sim.now + 0.02)
        now = sim.now
        frame = add_mac(ann.voice_key, encode_voice(VoiceHeader(*route, 1, 0), b"\0" * 60))
        sealed: list[bytes] = []

        def a_frame() -> Out:
            targets = ca.receive_datagram(frame, addr, now)
            assert targets is not None
            relayed = ca.relayed
            nodes = ra.voice_nodes(route[0])
            assert nodes == ("B",), nodes
            sealed.append(pa.seal(relayed))
            if ra.has_output:
                return _take(ca, ra, now)
            return [], [], []

        out = turn("a frame", a_frame)
        self._hand("A", out)
        fanned: list[tuple[Addr, ...]] = []

        def b_frame() -> Out:
            got = pb.accept(sealed[0], now)
            assert got is not None
            fanned.append(rb.receive_voice(got.frame, now))
            return [], [], []

        turn("b frame", b_frame)
        if fanned[0] != (sim.addrs["bob"],):
            raise RuntimeError(f"the frame reached {fanned[0]}, not the listener")
        sim.run_until(now + 0.02)
        ann.release_floor(GROUP, sim.now)
        sim.run_until(sim.now + 0.06)


def measure(cycles: int, cold: bool) -> dict[str, list[float]]:
    path = Path3()
    timed: dict[str, list[float]] = {}
    for _ in range(min(20, cycles)):  # the first cycles fill the caches of names and keys
        path.cycle({}, cold)
    for _ in range(cycles):
        path.cycle(timed, cold)
    return timed


def profile(cycles: int, top: int) -> dict[str, str]:
    path = Path3()
    profs = {t: cProfile.Profile() for t in TURNS}
    for _ in range(min(20, cycles)):
        path.cycle({}, False)
    for _ in range(cycles):
        path.cycle({}, False, around=lambda t: profs[t].enable(),
                   after=lambda t: profs[t].disable())
    out = {}
    root = str(Path(__file__).resolve().parent.parent) + "/"
    for t, p in profs.items():
        stats = pstats.Stats(p).stats  # type: ignore[attr-defined]
        rows = sorted(stats.items(), key=lambda kv: -kv[1][2])[:top]
        calls = sum(v[1] for v in stats.values()) / cycles
        lines = [f"{calls:.1f} function calls a turn (the turn's own closure and "
                 "perf_counter among them)",
                 f"{'calls':>6s} {'own us':>7s} {'cum us':>7s}  function (per cycle)"]
        for (file, line, func), (_, nc, tt, ct, _) in rows:
            where = f"{file.replace(root, '')}:{line}({func})" if line else func
            lines.append(f"{nc / cycles:6.1f} {tt / cycles * 1e6:7.2f} {ct / cycles * 1e6:7.2f}"
                         f"  {where}")
        out[t] = "\n".join(lines)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cycles", type=int, default=2000, help="floor cycles a pass (2000)")
    ap.add_argument("--top", type=int, default=15, help="functions listed a turn (15)")
    ap.add_argument("--no-profile", action="store_true", help="skip the cProfile pass")
    ap.add_argument("--json", action="store_true", help="print the medians as JSON")
    args = ap.parse_args()
    if args.cycles < 1 or args.top < 1:
        print("bench_floor_path: --cycles and --top at least 1", file=sys.stderr)
        return 2
    warm = measure(args.cycles, cold=False)
    cold = measure(max(1, args.cycles // 4), cold=True)
    result = {t: {"warm_p50_us": statistics.median(warm[t]) * 1e6,
                  "cold_p50_us": statistics.median(cold[t]) * 1e6} for t in TURNS}
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    print(f"{'turn':12s} {'warm p50 us':>12s} {'cold p50 us':>12s}   "
          f"(warm n {args.cycles}, cold n {max(1, args.cycles // 4)})")
    for t in TURNS:
        r = result[t]
        print(f"{t:12s} {r['warm_p50_us']:12.1f} {r['cold_p50_us']:12.1f}")
    floor = ("a request", "c decide", "a answer")
    print(f"{'floor sum':12s} {sum(result[t]['warm_p50_us'] for t in floor):12.1f} "
          f"{sum(result[t]['cold_p50_us'] for t in floor):12.1f}")
    voice = ("a frame", "b frame")
    print(f"{'frame sum':12s} {sum(result[t]['warm_p50_us'] for t in voice):12.1f} "
          f"{sum(result[t]['cold_p50_us'] for t in voice):12.1f}")
    if not args.no_profile:
        for t, text in profile(max(1, args.cycles // 4), args.top).items():
            print(f"\n=== profile: {t} ===")
            print(text.strip())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
