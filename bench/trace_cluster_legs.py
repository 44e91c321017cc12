"""Where a cross-node floor request and a voice frame spend their time, leg by leg.

``bench_cluster``'s layout (talker on node a, listener on node b, the group homed on c, one NATS
server), its floor cycles and its burst of voice, with every node started with
``bench/trace_cluster/`` on ``PYTHONPATH``: each node notes monotonic timestamps where the
request and the frame pass (its ``sitecustomize``), and this process notes when the client sent
and got them. The legs, p50 and p90 over the cycles (ms):

    client -> a -> a's core -> Bus.send -> NATS socket -> (nats-server) -> c's read -> c's bus
    callback -> c's decision and FloorNews -> Bus.send -> socket -> (nats-server) -> a's read ->
    a's callback -> the answer sent -> the grant at the client

and for a frame: talker -> a -> Bus.send -> socket -> b's read -> b's callback -> b's fan-out ->
the listener.

    .venv/bin/python bench/trace_cluster_legs.py                  # 150 cycles, 3 s of voice
    .venv/bin/python bench/trace_cluster_legs.py --cycles 50 --voice 1
    .venv/bin/python bench/trace_cluster_legs.py --profile /tmp/prof   # and cProfile each node
    PYTHONPATH=/tmp/before .venv/bin/python bench/trace_cluster_legs.py  # other code's nodes

The wrappers cost a few microseconds each, inside the legs they time. Every process started here
is stopped by PID at the end (``bench_cluster.stop_servers``, the NATS engine).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import struct
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_cluster as bc  # noqa: E402
from loadgen import load_average, machine_line  # noqa: E402

from ptt.cluster import engines  # noqa: E402
from ptt.protocol import client as cl  # noqa: E402

HOOKS = Path(__file__).resolve().parent / "trace_cluster"
Trace = list[tuple[float, str, str]]

FLOOR_LEGS = [
    ("client -> a (the client seals, UDP, a wakes)", "t0", "a_rd"),
    ("a: the request through the core to Bus.send", "a_rd", "a_send"),
    ("a: Bus.send -> NATS socket", "a_send", "a_wire"),
    ("NATS a -> c (nats-server, c wakes)", "a_wire", "c_read"),
    ("c: nats-py's read -> the bus callback", "c_read", "c_recv"),
    ("c: decode, floor decision, FloorNews to Bus.send", "c_recv", "c_send"),
    ("c: Bus.send -> NATS socket", "c_send", "c_wire"),
    ("NATS c -> a (nats-server, a wakes)", "c_wire", "a_read"),
    ("a: nats-py's read -> the bus callback", "a_read", "a_recv"),
    ("a: decode, apply the news, the answer sent", "a_recv", "a_out"),
    ("a -> client grant (UDP, the client wakes, opens it)", "a_out", "grant"),
]
# the same path in finer pieces, and each node's turn after its message left (the tails overlap
# the next legs: CPU a woken process competes with on two cores)
FLOOR_FINE = [
    ("a: the reader's take (recv, sort) to the core", "a_rd", "a_core"),
    ("a: the core (open, parse, the request to the routing)", "a_core", "a_core_end"),
    ("a: the core's turn to Bus.send (flush, encode)", "a_core_end", "a_send"),
    ("c: decode, floor decision, FloorNews encoded (routing)", "c_recv", "c_rt_end"),
    ("c: the routing's return to Bus.send", "c_rt_end", "c_send"),
    ("a: decode, apply the news (routing)", "a_recv", "a_rt_end"),
    ("a: the routing's return to the answer's send", "a_rt_end", "a_out"),
    ("tail a: after the request left, to the turn's end", "a_send", "a_rd_end"),
    ("tail c: after the news left, to the callback's end", "c_send", "c_done"),
    ("tail a: after the answer's send began, to the callback's end", "a_out", "a_done"),
    ("CPU a: the core", "a_core#cpu", "a_core_end#cpu"),
    ("CPU a: the core's return to the turn's end (the request sent)", "a_core_end#cpu",
     "a_rd_end#cpu"),
    ("CPU c: the routing (decode, decision, news)", "c_rt#cpu", "c_rt_end#cpu"),
    ("CPU c: the routing's return to the callback's end (the news sent)", "c_rt_end#cpu",
     "c_done#cpu"),
    ("CPU a: the routing (decode, the news applied)", "a_rt#cpu", "a_rt_end#cpu"),
    ("CPU c: the routing's start to the news made", "c_rt#cpu", "c_news#cpu"),
    ("CPU c: of it, the home's own clients' floor events", "c_fe#cpu", "c_fe_end#cpu"),
    ("CPU c: the news made to the routing's end", "c_news#cpu", "c_rt_end#cpu"),
    ("CPU a: the routing's start to the answer sealed", "a_rt#cpu", "a_answer#cpu"),
    ("CPU a: the answer sealed to the routing's end", "a_answer#cpu", "a_rt_end#cpu"),
    ("CPU a: the answer's send to the callback's end", "a_out#cpu", "a_done#cpu"),
]
# the same request on the peer plane (the nodes' floor messages by UDP, ptt.wire.peer)
PEER_LEGS = [
    ("client -> a (the client seals, UDP, a wakes)", "t0", "a_rd"),
    ("a: the reader's take (recv, sort) to the core", "a_rd", "a_core"),
    ("a: the core (open, parse, the request to the routing)", "a_core", "a_core_end"),
    ("a: the core's return to the request's sendto", "a_core_end", "a_psend"),
    ("UDP a -> c (c wakes)", "a_psend", "c_prd"),
    ("c: the wake-up to the datagram's turn", "c_prd", "c_prx"),
    ("c: the datagram opened (tag, replay) to the routing", "c_prx", "c_rt"),
    ("c: decode, floor decision, FloorNews sealed (routing)", "c_rt", "c_rt_end"),
    ("c: the routing's return to the news's sendto", "c_rt_end", "c_psend"),
    ("UDP c -> a (a wakes)", "c_psend", "a_prd"),
    ("a: the wake-up to the datagram's turn", "a_prd", "a_prx"),
    ("a: the datagram opened (tag, replay) to the routing", "a_prx", "a_rt"),
    ("a: decode, apply the news, the answer sealed (routing)", "a_rt", "a_rt_end"),
    ("a: the routing's return to the answer's send", "a_rt_end", "a_out"),
    ("a -> client grant (UDP, the client wakes, opens it)", "a_out", "grant"),
    ("tail a: after the request left, to the turn's end", "a_psend", "a_rd_end"),
    ("CPU tail a: after the request left, to the turn's end", "a_psend#cpu", "a_rd_end#cpu"),
    ("tail c: after the news left, to the datagram's turn's end", "c_psend", "c_prx_end"),
    ("tail a: after the answer's send began, to the datagram's turn's end", "a_out",
     "a_prx_end"),
    ("CPU a: the core", "a_core#cpu", "a_core_end#cpu"),
    ("CPU a: the core's return to the request's sendto", "a_core_end#cpu", "a_psend#cpu"),
    ("CPU c: the datagram's turn to the routing", "c_prx#cpu", "c_rt#cpu"),
    ("CPU c: the routing (decode, decision, news)", "c_rt#cpu", "c_rt_end#cpu"),
    ("CPU c: of it, the home's own clients' floor events", "c_fe#cpu", "c_fe_end#cpu"),
    ("CPU c: the routing's start to the news made", "c_rt#cpu", "c_news#cpu"),
    ("CPU c: the routing's return to the news's sendto", "c_rt_end#cpu", "c_psend#cpu"),
    ("CPU a: the datagram's turn to the routing", "a_prx#cpu", "a_rt#cpu"),
    ("CPU a: the routing (decode, the news applied)", "a_rt#cpu", "a_rt_end#cpu"),
    ("CPU a: the routing's start to the answer sealed", "a_rt#cpu", "a_answer#cpu"),
    ("CPU a: the routing's return to the answer's send", "a_rt_end#cpu", "a_out#cpu"),
    ("CPU a: the answer's send to the datagram's turn's end", "a_out#cpu", "a_prx_end#cpu"),
]
VOICE_FINE = [
    ("a: the reader's take to the core", "a_rd", "a_core"),
    ("a: the core (MAC check, relay)", "a_core", "a_core_end"),
    ("a: the core's return to Bus.send", "a_core_end", "a_send"),
    ("tail a: after the frame left, to the turn's end", "a_send", "a_rd_end"),
    ("tail b: after the fan-out began, to the callback's end", "b_fan", "b_done"),
    ("CPU a: the core (MAC check, relay)", "a_core#cpu", "a_core_end#cpu"),
    ("CPU a: the core's return to the turn's end (the frame sent)", "a_core_end#cpu",
     "a_rd_end#cpu"),
    ("CPU b: the fan-out to the callback's end", "b_fan#cpu", "b_done#cpu"),
]
VOICE_LEGS = [
    ("talker -> a (UDP, a wakes)", "sent", "a_rd"),
    ("a: MAC check, relay, to Bus.send", "a_rd", "a_send"),
    ("a: Bus.send -> NATS socket", "a_send", "a_wire"),
    ("NATS a -> b (nats-server, b wakes)", "a_wire", "b_read"),
    ("b: nats-py's read -> the bus callback", "b_read", "b_recv"),
    ("b: to its fan-out", "b_recv", "b_fan"),
    ("b -> listener (UDP, the client wakes)", "b_fan", "heard"),
]


def _first(trace: Trace, tag: str, after: float, before: float, info: str = "") -> float | None:
    for t, g, i in trace:
        if after <= t <= before and g == tag and i.startswith(info):
            return t
    return None


def _cpu(p: dict[str, float | None], trace: Trace, key: str, tag: str, after: float,
         before: float) -> None:
    """``p[key]``: the first ``tag`` in the window, ``p[key + "#cpu"]``: its CPU time."""
    for t, g, i in trace:
        if after <= t <= before and g == tag:
            p[key], p[key + "#cpu"] = t, float(i)
            return
    p[key] = None


def _send(trace: Trace, to: str, after: float, before: float) -> tuple[float, float] | None:
    """(Bus.send, on the socket) of the first message to ``to`` in the window."""
    for t, g, i in trace:
        if after <= t <= before and g == "bus_send" and i.startswith(to):
            if i.endswith(":direct"):
                return t, t
            wire = _first(trace, "nats_write", t, before)
            return (t, wire) if wire is not None else None
    return None


def _floor_points(nodes: dict[str, Trace], t0: float, end: float) -> dict[str, float] | None:
    a, c = nodes["a"], nodes["c"]
    p: dict[str, float | None] = {"t0": t0, "grant": end, "a_rd": _first(a, "rd", t0, end)}
    out = _send(a, "c:m1", t0, end)  # FloorInput (type 1) to the home
    back = _send(c, "a:m2", t0, end)  # FloorNews (type 2) to a
    if out is None or back is None:
        return None
    p["a_send"], p["a_wire"] = out
    p["c_send"], p["c_wire"] = back
    p["c_read"] = _first(c, "nats_read", out[1], end)
    p["c_recv"] = _first(c, "bus_recv", out[1], end, "m1")
    p["a_read"] = _first(a, "nats_read", back[1], end)
    p["a_recv"] = _first(a, "bus_recv", back[1], end, "m2")
    p["a_out"] = _first(a, "send_out", p["a_recv"] or end, end)
    if all(v is not None for v in p.values()):
        _cpu(p, a, "a_core", "core_rx", t0, out[0])
        _cpu(p, a, "a_core_end", "core_rx_end", p["a_core"] or end, end)
        _cpu(p, a, "a_rd_end", "rd_end", out[0], 1e18)
        _cpu(p, c, "c_rt", "rt_rx", p["c_recv"] or end, end)  # type: ignore[arg-type]
        _cpu(p, c, "c_rt_end", "rt_rx_end", p["c_recv"] or end, end)  # type: ignore[arg-type]
        _cpu(p, c, "c_done", "bus_done", back[0], 1e18)
        _cpu(p, a, "a_rt", "rt_rx", p["a_recv"] or end, end)  # type: ignore[arg-type]
        _cpu(p, a, "a_rt_end", "rt_rx_end", p["a_recv"] or end, end)  # type: ignore[arg-type]
        _cpu(p, c, "c_news", "published", p["c_recv"] or end, end)  # type: ignore[arg-type]
        _cpu(p, c, "c_fe", "floor_events", p["c_recv"] or end, end)  # type: ignore[arg-type]
        _cpu(p, c, "c_fe_end", "floor_events_end", p["c_recv"] or end, end)  # type: ignore[arg-type]
        _cpu(p, a, "a_answer", "answered", p["a_recv"] or end, end)  # type: ignore[arg-type]
        _cpu(p, a, "a_out", "send_out", p["a_recv"] or end, end)  # type: ignore[arg-type]
        _cpu(p, a, "a_done", "bus_done", p["a_out"] or end, 1e18)  # type: ignore[arg-type]
    return None if any(v is None for v in p.values()) else p  # type: ignore[return-value]


def _peer_send(trace: Trace, to: str, after: float, before: float
               ) -> tuple[float, float] | None:
    """(when, CPU time) of the first floor datagram to ``to`` in the window."""
    for t, g, i in trace:
        if after <= t <= before and g == "peer_send" and i.startswith(to + ":"):
            return t, float(i.split(":", 1)[1])
    return None


def _peer_points(nodes: dict[str, Trace], t0: float, end: float) -> dict[str, float] | None:
    """The request's points on the peer plane (None: it went by the bus, or a point is
    missing)."""
    a, c = nodes["a"], nodes["c"]
    out = _peer_send(a, "c", t0, end)
    if out is None:
        return None
    back = _peer_send(c, "a", out[0], end)
    if back is None:
        return None
    p: dict[str, float | None] = {"t0": t0, "grant": end, "a_rd": _first(a, "rd", t0, end)}
    p["a_psend"], p["a_psend#cpu"] = out
    p["c_psend"], p["c_psend#cpu"] = back
    _cpu(p, a, "a_core", "core_rx", t0, out[0])
    _cpu(p, a, "a_core_end", "core_rx_end", p["a_core"] or end, out[0])
    _cpu(p, a, "a_rd_end", "rd_end", out[0], 1e18)
    p["c_prd"] = _first(c, "peer_rd", out[0], end)
    _cpu(p, c, "c_prx", "peer_rx", out[0], end)
    _cpu(p, c, "c_rt", "rt_rx", out[0], end)
    _cpu(p, c, "c_rt_end", "rt_rx_end", out[0], end)
    _cpu(p, c, "c_news", "published", out[0], end)
    _cpu(p, c, "c_fe", "floor_events", out[0], end)
    _cpu(p, c, "c_fe_end", "floor_events_end", out[0], end)
    _cpu(p, c, "c_prx_end", "peer_rx_end", back[0], 1e18)
    p["a_prd"] = _first(a, "peer_rd", back[0], end)
    _cpu(p, a, "a_prx", "peer_rx", back[0], end)
    _cpu(p, a, "a_rt", "rt_rx", back[0], end)
    _cpu(p, a, "a_rt_end", "rt_rx_end", back[0], end)
    _cpu(p, a, "a_answer", "answered", back[0], end)
    _cpu(p, a, "a_out", "send_out", p["a_rt_end"] or end, end)
    _cpu(p, a, "a_prx_end", "peer_rx_end", p["a_out"] or end, 1e18)
    return None if any(v is None for v in p.values()) else p  # type: ignore[return-value]


def _voice_points(nodes: dict[str, Trace], sent: float, heard: float) -> dict[str, float] | None:
    a, b = nodes["a"], nodes["b"]
    p: dict[str, float | None] = {"sent": sent, "heard": heard,
                                  "a_rd": _first(a, "rd", sent, heard)}
    out = _send(a, "b:v", sent, heard)
    if out is None:
        return None
    p["a_send"], p["a_wire"] = out
    p["b_read"] = _first(b, "nats_read", out[1], heard)
    p["b_recv"] = _first(b, "bus_recv", out[1], heard, "v")
    p["b_fan"] = _first(b, "fan_out", p["b_recv"] or heard, heard)
    if all(v is not None for v in p.values()):
        _cpu(p, a, "a_core", "core_rx", sent, out[0])
        _cpu(p, a, "a_core_end", "core_rx_end", p["a_core"] or heard, heard)
        _cpu(p, a, "a_rd_end", "rd_end", out[0], 1e18)
        _cpu(p, b, "b_fan", "fan_out", p["b_recv"] or heard, heard)  # type: ignore[arg-type]
        _cpu(p, b, "b_done", "bus_done", p["b_fan"] or heard, 1e18)  # type: ignore[arg-type]
    return None if any(v is None for v in p.values()) else p  # type: ignore[return-value]


def _q(xs: list[float], f: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * f))]


def _table(legs: list[tuple[str, str, str]], points: list[dict[str, float]]) -> list[dict[str, Any]]:
    rows = []
    for name, a, b in legs:
        xs = [(p[b] - p[a]) * 1000 for p in points]
        rows.append({"leg": name, "p50 ms": round(_q(xs, 0.5), 3), "p90 ms": round(_q(xs, 0.9), 3)})
    return rows


def run(cycles: int, voice: float, profile: Path | None = None,
        keep: Path | None = None) -> dict[str, Any]:
    requests: list[float] = []
    frames: list[float] = []
    request_floor, encode_voice = cl.ClientCore.request_floor, bc.encode_voice

    def noted_request(self: cl.ClientCore, *a: Any, **k: Any) -> Any:
        requests.append(time.monotonic())
        return request_floor(self, *a, **k)

    def noted_frame(header: Any, payload: bytes) -> bytes:
        frames.append(struct.unpack_from("!d", payload)[0])  # bench_cluster's send time
        return encode_voice(header, payload)

    load_before = load_average()
    cl.ClientCore.request_floor = noted_request  # type: ignore[method-assign]
    bc.encode_voice = noted_frame
    env = {k: os.environ.get(k) for k in ("PYTHONPATH", "TRACE_CLUSTER_DIR",
                                          "TRACE_CLUSTER_PROFILE")}
    with tempfile.TemporaryDirectory(prefix="ptt-trace-cluster-") as tmp:
        root = Path(tmp)
        traces = root / "traces"
        traces.mkdir()
        # before any given (a tree of other code to compare, its ptt/ first on the path)
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(HOOKS), env["PYTHONPATH"])
                                                   if p)
        os.environ["TRACE_CLUSTER_DIR"] = str(traces)
        if profile is not None:
            os.environ["TRACE_CLUSTER_PROFILE"] = "1"
        tokens = bc._directory(root / "seed.db")
        nats_engine = engines.start_nats(root / "nats")
        procs: list[Any] = []
        try:
            addr = bc.start_nodes(root, root / "seed.db", nats_engine.url, bc.NODES, procs)
            r = bc._measure(bc._Client("talker", tokens["talker"], addr["a"]),
                            bc._Client("listener", tokens["listener"], addr["b"]), cycles, voice)
        finally:
            for k, v in env.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
            cl.ClientCore.request_floor = request_floor  # type: ignore[method-assign]
            bc.encode_voice = encode_voice
            bc.stop_servers(procs)  # their traces are written as they exit
            nats_engine.stop()
        nodes = {n: [tuple(e) for e in json.loads((traces / f"{n}.json").read_text())]
                 for n in bc.NODES}
        if keep is not None:
            keep.mkdir(parents=True, exist_ok=True)
            for n in bc.NODES:
                shutil.copy(traces / f"{n}.json", keep / f"{n}.json")
            (keep / "client.json").write_text(json.dumps({"requests": requests,
                                                          "access_ms": r["access"]}))
        if profile is not None:
            profile.mkdir(parents=True, exist_ok=True)
            for n in bc.NODES:
                shutil.copy(traces / f"{n}.prof", profile / f"{n}.prof")
    floor = [p for t0, ms in zip(requests, r["access"]) if
             (p := _floor_points(nodes, t0, t0 + ms / 1000)) is not None]  # type: ignore[arg-type]
    peer = [p for t0, ms in zip(requests, r["access"]) if
            (p := _peer_points(nodes, t0, t0 + ms / 1000)) is not None]  # type: ignore[arg-type]
    heard = ([p for s, ms in zip(frames, r["voice"]) if
              (p := _voice_points(nodes, s, s + ms / 1000)) is not None]  # type: ignore[arg-type]
             if len(frames) == len(r["voice"]) else [])  # a frame lost: no pairing by order
    return {"floor": _table(FLOOR_LEGS, floor) if floor else [],
            "voice": _table(VOICE_LEGS, heard) if heard else [],
            "floor, finer": _table(FLOOR_FINE, floor) if floor else [],
            "voice, finer": _table(VOICE_FINE, heard) if heard else [],
            "floor, peer plane": _table(PEER_LEGS, peer) if peer else [],
            "traced": f"{len(floor)} of {len(r['access'])} requests by the bus, "
                      f"{len(peer)} on the peer plane, "
                      f"{len(heard)} of {len(r['voice'])} frames",
            "access p50 ms": round(_q(r["access"], 0.5), 3),
            "voice p50 ms": round(_q(r["voice"], 0.5), 3),
            "load_average": f"{load_before} at the start, {load_average()} at the end"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cycles", type=int, default=150, help="floor cycles (default 150)")
    ap.add_argument("--voice", type=float, default=3.0, help="seconds of voice (default 3)")
    ap.add_argument("--profile", type=Path, metavar="DIR",
                    help="also cProfile each node (start-up included: read the cumulative "
                         "times under the read and bus callbacks) into DIR/<node>.prof; the "
                         "legs are then the profiler's, slower")
    ap.add_argument("--traces", type=Path, metavar="DIR",
                    help="keep each node's raw trace in DIR/<node>.json, and the client's "
                         "request times and floor access in DIR/client.json")
    args = ap.parse_args()
    if args.cycles < 1 or args.voice < 0.1:
        print("trace_cluster_legs: --cycles at least 1, --voice at least 0.1", file=sys.stderr)
        return 2
    res = run(args.cycles, args.voice, args.profile, args.traces)
    for what in ("floor", "voice", "floor, finer", "voice, finer", "floor, peer plane"):
        for row in res[what]:
            print(f"{what:12s}  {row['leg']:60s} p50 {row['p50 ms']:7.3f}  p90 {row['p90 ms']:7.3f}")
    for k in ("traced", "access p50 ms", "voice p50 ms", "load_average"):
        print(f"{k}: {res[k]}")
    print(machine_line())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
