"""Voice relay: server CPU time per forwarded packet, and receive latency, on loopback.

A real server runs in its own process. One talker (its own process) takes the floor of a group and
sends a 102-byte voice datagram every 20 ms (22-byte header + 80-byte payload that starts with the
send time, CLOCK_MONOTONIC ns); 1, 10, 50 and 200 listeners (another process, all logged in, joined
and heartbeating) record receive time minus send time. Server CPU per forwarded packet = the server
process's CPU time over the talk window / packets it forwarded. ``net`` subtracts the CPU the same
server spent per second with the same clients connected and nobody talking (heartbeats, timers),
measured just before. A second table runs several talkers in different groups at once, so the
per-packet figure is not dominated by the cost of waking up for each incoming packet.
Target: <= 5 us per forwarded packet (murmurd measured here at 6.5-8.5 us, p50 0.85 ms at 200).
The biggest one-talker run and the loaded run are repeated with frames sealed by ptt.crypto.voice
(the relay does not open them: its cost must not grow). Each plain run is followed by its kernel
floor: the same fan-out sent by one prebuilt ``sendmmsg`` per frame, no Python per packet.

    .venv/bin/python bench/bench_relay.py           # 1, 10, 50, 200 listeners, 10 s each, + load
    .venv/bin/python bench/bench_relay.py --quick   # 1 and 10 listeners, 1 s (checks the harness)
"""

from __future__ import annotations

import argparse
import array
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import loadgen  # noqa: E402

LISTENERS = (1, 10, 50, 200)
LOADED = (10, 50)  # (talkers in as many groups, listeners per group) for the high-rate run
PAYLOAD = 80  # bytes after the 22-byte voice header: a ~100-byte datagram, like 24 kbps Opus


def _plan(configs: list[tuple[int, int]]) -> dict[str, list[str]]:
    """Groups for each (talkers, listeners) config: group 'c{c}-{k}', talker first."""
    groups: dict[str, list[str]] = {}
    for c, (talkers, listeners) in enumerate(configs):
        for k in range(talkers):
            groups[f"c{c}-{k}"] = [f"t{c}-{k}"] + [f"l{c}-{k}-{j}" for j in range(listeners)]
    return groups


def measure(server: loadgen.ServerProc, tokens: dict[str, str], groups: dict[str, list[str]],
            c: int, talkers: int, listeners: int, duration: float, baseline: float,
            listener_procs: int = 1, sealed: bool = False, floor: bool = False
            ) -> dict[str, Any]:
    names = [g for g in groups if g.startswith(f"c{c}-")]
    talk = [(groups[g][0], tokens[groups[g][0]], [g]) for g in names]
    listen = [(u, tokens[u], [g]) for g in names for u in groups[g][1:]]
    procs: list[loadgen.WorkerProc] = []
    try:
        lps = [loadgen.WorkerProc(server.address, listen[k::listener_procs])
               for k in range(listener_procs)]
        tp = loadgen.WorkerProc(server.address, talk)
        procs = [*lps, tp]
        for p in procs:
            p.wait_ready()
        for lp in lps:
            lp.call("listen")
        time.sleep(0.3)
        b0 = server.stats()
        time.sleep(baseline)  # everyone connected and heartbeating, nobody talking
        b1 = server.stats()
        tp.call("grab", {"payload": PAYLOAD, "sealed": sealed}, timeout=10)
        s0 = server.stats()
        talked = tp.call("talk", {"duration": duration}, timeout=duration + 20)
        sent = talked["sent"]
        time.sleep(0.05)  # the last frames reach the listeners
        s1 = server.stats()
        tp.call("release", timeout=10)
        lres = [lp.call("listen_done", timeout=30) for lp in lps]
        fl = _kernel_floor(lps, names, groups, listeners, duration) if floor else None
    finally:
        for p in procs:
            p.stop()
    idle = loadgen.cpu_between(b0, b1)
    d = loadgen.cpu_between(s0, s1)
    lat = array.array("q")
    for r in lres:
        lat.frombytes(r["lat_ns"])
    if sealed:
        lat.extend(loadgen.sealed_latencies(talked["send_keys"], talked["send_ns"], lres))
    received = sum(r["received"] for r in lres)
    pct = loadgen.percentiles(x / 1e6 for x in lat)
    forwarded = d["voice_out"]
    idle_rate = idle["cpu"] / idle["wall"]
    per_pkt = d["cpu"] / forwarded * 1e6 if forwarded else float("nan")
    net = (d["cpu"] - idle_rate * d["wall"]) / forwarded * 1e6 if forwarded else float("nan")
    return {
        "talkers": talkers,
        "listeners": listeners,
        "sealed": sealed,
        "datagram_bytes": 22 + PAYLOAD + (16 if sealed else 0),
        "packets_in": d["voice_in"],
        "forwarded": forwarded,
        "forwarded_per_s": forwarded / d["wall"],
        "cpu_us_per_packet": per_pkt,
        "net_cpu_us_per_packet": net,
        "server_cpu_pct": 100 * d["cpu"] / d["wall"],
        "idle_cpu_pct": 100 * idle_rate,
        "latency_p50_ms": pct["p50"],
        "latency_p99_ms": pct["p99"],
        "latency_max_ms": pct["max"],
        "loss_pct": 100 * (1 - received / (sent * listeners)) if sent else float("nan"),
        "dropped": d["voice_dropped"] + d["dropped"],
        "floor_us_per_packet": fl["us_per_packet"] if fl else float("nan"),
        "floor_latency_p50_ms": fl["latency_p50_ms"] if fl else float("nan"),
        "floor_latency_p99_ms": fl["latency_p99_ms"] if fl else float("nan"),
        "floor_loss_pct": fl["loss_pct"] if fl else float("nan"),
    }


def _kernel_floor(lps: list[loadgen.WorkerProc], names: list[str], groups: dict[str, list[str]],
                  listeners: int, duration: float) -> dict[str, float]:
    """The same fan-out with no Python per packet: one prebuilt sendmmsg per talker every 20 ms,
    from another process, to as many sockets in the listeners' processes (drained there: the
    clients' own sockets are connected to the server and take nothing else)."""
    where: dict[str, tuple[str, int]] = {}
    everyone = [u for g in names for u in groups[g][1:]]
    for k, lp in enumerate(lps):  # the listener split of measure(): one sink per listener
        mine = everyone[k::len(lps)]
        where.update(zip(mine, lp.call("sinks", len(mine))))
    fanouts = [[where[u] for u in groups[g][1:]] for g in names]
    for lp in lps:
        lp.call("listen")  # fresh counts
    sender = loadgen.FloorSender(fanouts, PAYLOAD)
    try:
        r = sender.measure(duration)
    finally:
        sender.stop()
    time.sleep(0.05)
    lres = [lp.call("listen_done", timeout=30) for lp in lps]
    lat = array.array("q")
    for x in lres:
        lat.frombytes(x["lat_ns"])
    pct = loadgen.percentiles(v / 1e6 for v in lat)
    received = sum(x["received"] for x in lres)
    return {"us_per_packet": r["cpu"] / r["datagrams"] * 1e6 if r["datagrams"] else float("nan"),
            "latency_p50_ms": pct["p50"], "latency_p99_ms": pct["p99"],
            "loss_pct": 100 * (1 - received / r["datagrams"]) if r["datagrams"] else float("nan")}


ROW_KEYS = {
    "talkers": "talkers", "listeners": "listeners / talker",
    "datagram_bytes": "frame bytes", "forwarded_per_s": "forwarded/s",
    "cpu_us_per_packet": "server CPU us/packet", "net_cpu_us_per_packet": "net of idle us/packet",
    "server_cpu_pct": "server CPU %",
    "latency_p50_ms": "latency p50 ms",
    "latency_p99_ms": "latency p99 ms", "latency_max_ms": "latency max ms",
    "loss_pct": "loss %",
    "floor_us_per_packet": "kernel floor us/packet",
}


def run(quick: bool = False, listeners: tuple[int, ...] | None = None,
        loaded: tuple[int, int] | None = None, duration: float | None = None,
        floor: bool = True) -> dict[str, Any]:
    sizes = listeners or ((1, 10) if quick else LISTENERS)
    load = loaded or ((4, 10) if quick else LOADED)
    duration = duration or (1.0 if quick else 10.0)
    baseline = 0.5 if quick else 3.0
    # the biggest one-talker run and the loaded run again with sealed (end-to-end) frames
    configs = [(1, n) for n in sizes] + [load]
    plain = len(configs)
    configs += [(1, max(sizes)), load]
    load0 = loadgen.load_average()
    server = loadgen.ServerProc()
    results = []
    try:
        groups = _plan(configs)
        tokens = server.provision(groups)
        for c, (t, n) in enumerate(configs):
            lprocs = 1 if t * n <= 300 else 2
            results.append(measure(server, tokens, groups, c, t, n, duration, baseline, lprocs,
                                   sealed=c >= plain, floor=floor and c < plain))
    finally:
        server.stop()
    single, loaded_r = results[:plain - 1], results[plain - 1]
    sealed_single, sealed_loaded = results[plain], results[plain + 1]
    rows = [{label: r[k] for k, label in ROW_KEYS.items()} for r in results]
    cmd = ".venv/bin/python bench/bench_relay.py" + (" --quick" if quick else "")
    best = min(r["cpu_us_per_packet"] for r in results[:plain])
    big = next(r for r in single if r["listeners"] == max(sizes))
    return {
        "title": "Voice relay: server CPU per forwarded packet and receive latency",
        "command": cmd,
        "target": "<= 5 us of server CPU per forwarded packet (murmurd here: 6.5-8.5 us; "
                  "p50 0.85 ms, p99 4.7 ms at 200 listeners); sealed frames cost the relay "
                  "no more than plain ones",
        "rows": rows,
        "us_per_packet_200": next((r["cpu_us_per_packet"] for r in single
                                   if r["listeners"] == 200), float("nan")),
        "net_us_per_packet_200": next((r["net_cpu_us_per_packet"] for r in single
                                       if r["listeners"] == 200), float("nan")),
        "kernel_floor_us_per_packet_200": next((r["floor_us_per_packet"] for r in single
                                                if r["listeners"] == 200), float("nan")),
        "us_per_packet_loaded": loaded_r["cpu_us_per_packet"],
        "best_us_per_packet": best,
        "sealed_us_per_packet_max": sealed_single["cpu_us_per_packet"],
        "plain_us_per_packet_max": big["cpu_us_per_packet"],
        "sealed_us_per_packet_loaded": sealed_loaded["cpu_us_per_packet"],
        "notes": (f"One talker sends a {22 + PAYLOAD}-byte datagram every 20 ms for "
                  f"{duration:g} s; the '{load[0]} talkers' rows have {load[0]} groups of "
                  f"{load[1]} listeners at once. The last two rows repeat the biggest runs with "
                  "frames sealed by ptt.crypto.voice (VoiceSealer, AES-256-GCM-SIV: ENCRYPTED "
                  "flag, 16 bytes of tag more); the relay forwards them without opening them. "
                  "The relay sends each frame with one sendmmsg to all listeners "
                  "(ptt.net.sendmmsg). 'server CPU': server process CPU time over the talk "
                  "window / packets forwarded; 'net of idle': minus the CPU the server spent "
                  "per second with the same clients connected and silent (heartbeats, timers). "
                  "'kernel floor': another process sends the same fan-out to as many sockets "
                  "in the listener processes with one prebuilt sendmmsg per frame every 20 ms "
                  "and no Python per packet, receiving nothing: its CPU per datagram is what "
                  "the kernel charges "
                  "the sender on loopback (it also delivers to the listener's socket). "
                  "Latency: listener receive time minus the send time in the payload, or for "
                  "sealed frames the talker's send log joined on (sender, seq) "
                  "(CLOCK_MONOTONIC, listeners in another process)."),
        "machine": loadgen.machine_line(),
        "load_average": f"{load0} at the start, {loadgen.load_average()} at the end",
        "results": results,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1 and 10 listeners for 1 s")
    ap.add_argument("--listeners", type=int, nargs="*", help="listener counts (one talker)")
    ap.add_argument("--loaded", type=int, nargs=2, metavar=("TALKERS", "LISTENERS"),
                    help="the high-rate run: talkers (one group each) and listeners per group")
    ap.add_argument("--duration", type=float, default=None, help="seconds of talk per run")
    ap.add_argument("--no-floor", action="store_true", help="skip the kernel floor runs")
    ap.add_argument("--json", action="store_true", help="print the result as JSON too")
    args = ap.parse_args()
    print(f"machine: {loadgen.machine_line()}")
    res = run(args.quick, tuple(args.listeners) if args.listeners else None,
              tuple(args.loaded) if args.loaded else None, args.duration, not args.no_floor)
    if args.listeners or args.loaded or args.duration or args.no_floor:
        res["command"] = " ".join([".venv/bin/python", *sys.argv])
    print(f"command: {res['command']}")
    print(loadgen.fmt_table(res["rows"]))
    print(f"target: {res['target']}")
    print("uptime:", Path("/proc/loadavg").read_text().split()[:3])
    if args.json:
        print(json.dumps(res, default=str, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
