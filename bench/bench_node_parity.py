"""The Python a cluster node runs per datagram that a single server does not, counted.

One process, one event loop, real UDP on 127.0.0.1: a ``PttServer`` alone (*single*), and a
``PttServer`` with its ``ClusterNode`` (*node*: node ``A`` of ``A, B, C``, every group homed on
it, every member logged in to it, its peer port bound; NATS is not started: nothing is for the
other nodes, and what the routing gives the bus stays queued). Three clients (real
``ClientCore``, a socket each) are members of one group: ann talks, bob and cat listen. Each
counted turn is the server's read of one datagram as the event loop would run it
(``PttServer._read_ready``: the reader's batch of one, the core, the cluster's hooks, the send,
the timer re-armed), the datagram put on the server's socket just before. Both servers run in
the same loop, their turns interleaved:

* ``heartbeat``: ann's sealed Heartbeat, answered;
* ``frame``: a voice frame of ann's burst, relayed to bob and cat;
* ``request``: ann's FloorRequest, granted (the answer to ann, the news to bob and cat);
* ``release``: ann's FloorRelease, answered;
* ``empty``: a turn of the server with nothing to do (``PttServer.transmit``: after a bus
  message that gave nothing, or a timer with nothing due).

Counts: every Python and C function call ``cProfile`` sees, per turn, over ``--turns`` turns of
each kind (the same from run to run within a call or so a turn: what else falls in a frame's
turn varies), and the node's extra by function. Times (``perf_counter`` around each turn, no
profiler) are medians and vary with the machine: run them under the bench lock.

    .venv/bin/python bench/bench_node_parity.py                  # 400 turns of each kind
    .venv/bin/python bench/bench_node_parity.py --turns 200 --top 20
    .venv/bin/python bench/bench_node_parity.py --json           # the figures as JSON
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import logging
import os
import pstats
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from ptt.cluster.config import ClusterConfig  # noqa: E402
from ptt.cluster.node import ClusterNode  # noqa: E402
from ptt.config import ServerConfig  # noqa: E402
from ptt.protocol import client as cl  # noqa: E402
from ptt.server.app import PttServer  # noqa: E402
from ptt.wire.voice import VoiceHeader, add_mac, encode_voice  # noqa: E402

KINDS = ("heartbeat", "frame", "request", "release", "empty")
MODES = ("single", "node")
GROUP = "ops"
USERS = ("ann", "bob", "cat")
WAIT = 5.0  # s for a login or a grant at most


class Client:
    """A real ``ClientCore`` on a socket of its own; the bench moves its datagrams."""

    def __init__(self, user: str, token: str, server: tuple[str, int]) -> None:
        self.core = cl.ClientCore(user, token, os.urandom, f"bench/{user}")
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.server = server

    def send(self) -> None:
        for data in self.core.datagrams_to_send():
            self.sock.sendto(data, self.server)

    def take(self) -> bytes:
        """The datagram the client made last (the bench puts it on the wire itself); any
        before it sent now."""
        *before, data = self.core.datagrams_to_send()
        for d in before:
            self.sock.sendto(d, self.server)
        return data

    def pump(self, now: float) -> None:
        while True:
            try:
                data = self.sock.recv(4096)
            except BlockingIOError:
                break
            self.core.receive_datagram(data, now)
        self.core.events()


async def _until(what: Callable[[], bool], clients: list[Client], why: str) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + WAIT
    while not what():
        if loop.time() > end:
            raise RuntimeError(f"bench_node_parity: {why} did not happen within {WAIT} s")
        await asyncio.sleep(0.002)
        for c in clients:
            c.pump(loop.time())
            c.send()


async def run(mode: str, turns: int, profiled: bool) -> dict[str, Any]:
    """Each kind of turn ``turns`` times on a fresh server; per kind the counts (profiled) or
    the times."""
    loop = asyncio.get_running_loop()
    with tempfile.TemporaryDirectory() as tmp:
        server = PttServer(ServerConfig(host="127.0.0.1", port=0, db=Path(tmp) / "ptt.db",
                                        record_dir=Path(tmp) / "rec"), iterations=1000)
        await server.start()
        node: ClusterNode | None = None
        clients: list[Client] = []
        try:
            assert server.admin is not None and server._reader is not None
            server._reader.budget = 30.0  # one batch is the one datagram, whatever the load
            now = loop.time()
            tokens = {u: server.admin.create_user(u, "volunteer")[1] for u in USERS}
            server.admin.execute("group.create", {"name": GROUP}, now)
            server.admin.execute("group.add", {"name": GROUP, "users": list(USERS)}, now)
            if mode == "node":
                node = ClusterNode(server, ClusterConfig(
                    node="A", nodes=("A", "B", "C"), nats=("nats://127.0.0.1:1",),
                    homes={GROUP: "A"}, steer=False, peer=("127.0.0.1", 0)))
                node._open_peer_port()
                server.cluster = node
                node.routing.start(now)
                node.flush(now)
                server.rearm()
            clients = [Client(u, tokens[u], server.address) for u in USERS]
            ann = clients[0]
            for c in clients:
                c.core.connect(loop.time())
                c.send()
            await _until(lambda: all(c.core.conn is cl.ConnState.CONNECTED for c in clients),
                         clients, "the logins")
            for c in clients:
                c.core.join(GROUP, loop.time())
                c.send()
            await _until(lambda: all(c.core.groups.get(GROUP) is not None
                                     and c.core.groups[GROUP].state is not None
                                     for c in clients), clients, "the joins")
            return await _turns(server, ann, clients, turns, profiled)
        finally:
            server.cluster = None
            for c in clients:
                c.sock.close()
            if node is not None and node._peer_sock is not None:
                loop.remove_reader(node._peer_sock.fileno())
                node._peer_sock.close()
            server.close()


async def both(turns: int, profiled: bool) -> dict[str, dict[str, Any]]:
    """The single server and the node side by side in one loop, their turns interleaved (each
    turn runs alone, between the other's): both see the same machine at the same moments."""
    got = await asyncio.gather(*(run(m, turns, profiled) for m in MODES))
    return dict(zip(MODES, got, strict=True))


async def _turns(server: PttServer, ann: Client, clients: list[Client], turns: int,
                 profiled: bool) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    profs = {k: cProfile.Profile() for k in KINDS}
    times: dict[str, list[float]] = {k: [] for k in KINDS}
    clock = time.perf_counter

    def turn(kind: str, data: bytes | None, counted: bool) -> None:
        if data is not None:
            ann.sock.sendto(data, server.address)  # on loopback: in the server's socket now
        call = server._read_ready if data is not None else (
            lambda: server.transmit(loop.time()))
        if not counted:
            call()
        elif profiled:
            profs[kind].enable()
            call()
            profs[kind].disable()
        else:
            t = clock()
            call()
            times[kind].append(clock() - t)

    async def settle() -> None:
        """The answers read and the clients' own datagrams handled by the server: its
        socket empty before the next counted turn."""
        for _ in range(2):
            await asyncio.sleep(0.001)
            for c in clients:
                c.pump(loop.time())
                c.send()
        await asyncio.sleep(0.001)

    core = ann.core

    async def floor_turn(kind: str, ask: Callable[[float], None], until: cl.Participation,
                         counted: bool) -> None:
        """ann's request or release, its answer awaited."""
        ask(loop.time())
        turn(kind, ann.take(), counted)
        await _until(lambda: core.participation(GROUP) is until, clients, f"the {kind}")

    seq = 0
    for i in range(turns + 10):  # the first ten fill the caches; not counted
        counted = i >= 10
        core._send_heartbeat(loop.time())
        turn("heartbeat", ann.take(), counted)
        await settle()
        await floor_turn("request", lambda now: core.request_floor(GROUP, now),
                         cl.Participation.HAS_PERMISSION, counted)
        route = core.talk_route(GROUP)
        assert route is not None
        for _ in range(3):
            seq += 1
            turn("frame", add_mac(core.voice_key, encode_voice(VoiceHeader(*route, seq, 0),
                                                               b"\0" * 60)), counted)
            await settle()
        await floor_turn("release", lambda now: core.release_floor(GROUP, now),
                         cl.Participation.NO_PERMISSION, counted)
        turn("empty", None, counted)
        await settle()
    if not profiled:
        return {k: {"p50_us": statistics.median(v) * 1e6, "n": len(v)} for k, v in times.items()}
    out: dict[str, Any] = {}
    for k, p in profs.items():
        stats = pstats.Stats(p).stats  # type: ignore[attr-defined]
        n = turns * (3 if k == "frame" else 1)
        by_func: dict[str, float] = {}
        for (file, line, func), (_, nc, _, _, _) in stats.items():
            if func in ("enable", "disable") and not line:
                continue
            where = f"{Path(file).name}:{func}" if line else func
            by_func[where] = by_func.get(where, 0.0) + nc / n
        out[k] = {"calls": sum(by_func.values()), "by_func": by_func}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    ap.add_argument("--no-times", action="store_true",
                    help="counts only (the times want the bench lock)")
    ap.add_argument("--turns", type=int, default=400, help="turns of each kind (400)")
    ap.add_argument("--top", type=int, default=25, help="functions of the node's extra (25)")
    args = ap.parse_args()
    if min(args.turns, args.top) < 1:
        ap.error("--turns and --top are at least 1")
    # the servers' start-up lines; after the options are read, so a --help in a test's
    # process leaves that process's logging as it was
    logging.disable(logging.WARNING)
    try:
        counts = asyncio.run(both(args.turns, True))
        times = {} if args.no_times else asyncio.run(both(args.turns, False))
    except (RuntimeError, OSError) as exc:
        print(f"bench_node_parity: {exc}", file=sys.stderr)
        return 1
    result: dict[str, Any] = {}
    for k in KINDS:
        s, n = counts["single"][k], counts["node"][k]
        extra = {f: n["by_func"].get(f, 0.0) - s["by_func"].get(f, 0.0)
                 for f in set(n["by_func"]) | set(s["by_func"])}
        result[k] = {"single_calls": round(s["calls"], 2), "node_calls": round(n["calls"], 2),
                     "extra_calls": round(n["calls"] - s["calls"], 2),
                     "extra_by_func": {f: round(v, 2) for f, v in sorted(
                         extra.items(), key=lambda kv: -abs(kv[1]))[:args.top]
                         if abs(v) >= 0.005}}
        if times:
            result[k]["single_p50_us"] = round(times["single"][k]["p50_us"], 2)
            result[k]["node_p50_us"] = round(times["node"][k]["p50_us"], 2)
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    print(f"{'turn':10s} {'single calls':>12s} {'node calls':>11s} {'extra':>7s}"
          + ("" if not times else f" {'single us':>10s} {'node us':>8s}")
          + f"   (per turn; {args.turns} turns, frames x3)")
    for k in KINDS:
        r = result[k]
        print(f"{k:10s} {r['single_calls']:12.1f} {r['node_calls']:11.1f} "
              f"{r['extra_calls']:7.1f}" + ("" if not times else
                                            f" {r['single_p50_us']:10.1f} {r['node_p50_us']:8.1f}"))
    for k in KINDS:
        print(f"\n=== the node's extra calls per {k} turn ===")
        for f, v in result[k]["extra_by_func"].items():
            print(f"{v:8.2f}  {f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
