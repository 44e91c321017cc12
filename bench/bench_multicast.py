"""Server CPU for one group of 200 listeners: multicast versus relay.

Everything runs inside a network namespace made for the benchmark (``unshare -n``, lo up,
224.0.0.0/4 routed to lo), so the multicast stays there. A real PttServer runs in its own process
(``loadgen.ServerProc``); 200 listeners (``loadgen.ClientPool``, one process, every one logged in,
joined and heartbeating) and a talker (this process) are real clients. One group in ``auto`` mode:

- relay: the listeners stay relay members; the talker sends each 20 ms frame to the server, which
  sends it on to all 200;
- multicast: each listener joins the group's address (its own socket, as on its own laptop) and
  asks for the multicast path; the talker sends each frame to the group address; the server only
  hears it once (for the floor's silence timer) and sends nothing.

Server CPU = the server process's CPU time over the talk window; ``idle`` is the same over an
equal window just before, with the same clients connected and nobody talking.

    .venv/bin/python bench/bench_multicast.py           # 200 listeners, 10 s per mode
    .venv/bin/python bench/bench_multicast.py --quick   # 50 listeners, 2 s
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(ROOT))

import loadgen  # noqa: E402

from ptt.net.multicast import (  # noqa: E402
    MulticastOptions,
    check_multicast,
    open_member_socket,
    open_sender_socket,
)
from ptt.protocol import client as cl  # noqa: E402
from ptt.protocol.messages import VOICE_PATH_OP  # noqa: E402
from ptt.wire.voice import VoiceFlags, VoiceHeader, add_mac, encode_voice  # noqa: E402
from tests.net.netns import netns_command, netns_unavailable  # noqa: E402

GROUP = "g"
PAYLOAD = 80  # bytes after the 22-byte header: a ~100-byte datagram, like 24 kbit/s Opus
FRAME = 0.020


# --- listeners (a forked process) ----------------------------------------------------------------


def _listeners_main(conn: Any, server: tuple[str, int], clients: list[tuple[str, str, list[str]]],
                    multicast: bool) -> None:
    loadgen._raise_fd_limit(2 * len(clients))
    pool = loadgen.ClientPool(server)
    for user, token, groups in clients:
        pool.add(user, token, groups)
    pool.login_all(120)
    received = [0] * len(clients)
    confirmed: set[int] = set()

    def on_events(i: int, evs: list[Any], t_recv: float, t_kernel: float) -> None:
        for ev in evs:
            if isinstance(ev, cl.AdminResult) and (ev.result or {}).get("multicast") is True:
                confirmed.add(i)

    def on_voice(i: int, data: bytes, t_ns: int) -> None:
        if not data[2] & VoiceFlags.PROBE:  # not the server's holder notice
            received[i] += 1

    pool.on_events, pool.on_voice = on_events, on_voice
    socks = []
    if multicast:
        state = pool.cores[0].groups[GROUP].state
        assert state is not None and state.mcast_addr is not None
        iface = check_multicast(state.mcast_addr, MulticastOptions())
        for i, core in enumerate(pool.cores):
            s = open_member_socket(state.mcast_addr, state.mcast_port, iface)
            socks.append(s)

            def read(i: int = i, s: socket.socket = s) -> None:
                for _ in range(64):
                    try:
                        s.recv(2048)
                    except BlockingIOError:
                        return
                    received[i] += 1

            pool.extra_fds[s.fileno()] = read
            pool.ep.register(s.fileno(), 1)  # EPOLLIN
            core.admin(VOICE_PATH_OP, {"group": GROUP, "multicast": True}, time.monotonic())
            pool.flush(i)
        pool.run(time.monotonic() + 30, lambda: len(confirmed) == len(clients))
    conn.send(("ready", {"multicast": len(confirmed)}))
    stop = False

    def on_command() -> None:
        nonlocal stop
        cmd, _ = conn.recv()
        if cmd == "count":
            conn.send(("ok", {"received": received}))
        else:
            stop = True

    pool.extra_fds[conn.fileno()] = on_command
    pool.ep.register(conn.fileno(), 1)
    pool.run(time.monotonic() + 3600, lambda: stop)
    pool.close_all()
    for s in socks:
        s.close()
    conn.send(("ok", None))


# --- the talker (this process) ---------------------------------------------------------------------


class _Talker:
    def __init__(self, server: tuple[str, int], token: str, multicast: bool) -> None:
        self.pool = loadgen.ClientPool(server)
        self.pool.add("talker", token, [GROUP])
        self.pool.login_all(30)
        self.core = self.pool.cores[0]
        self.tx: socket.socket | None = None
        self.dest: tuple[str, int] | None = None
        if multicast:
            state = self.core.groups[GROUP].state
            assert state is not None and state.mcast_addr is not None
            self.dest = (state.mcast_addr, state.mcast_port)
            self.tx = open_sender_socket(check_multicast(self.dest[0], MulticastOptions()), 1)
            ok: list[bool] = []
            self.pool.on_events = lambda i, evs, *_: ok.extend(
                (e.result or {}).get("multicast") is True for e in evs
                if isinstance(e, cl.AdminResult))
            self.core.admin(VOICE_PATH_OP, {"group": GROUP, "multicast": True}, time.monotonic())
            self.pool.flush(0)
            self.pool.run(time.monotonic() + 5, lambda: bool(ok))
            assert ok == [True], "the server refused the multicast path"

    def idle(self, seconds: float) -> None:
        self.pool.run(time.monotonic() + seconds)

    def talk(self, seconds: float) -> int:
        core, pool = self.core, self.pool
        core.request_floor(GROUP, time.monotonic())
        pool.flush(0)
        pool.run(time.monotonic() + 5,
                 lambda: core.participation(GROUP) is cl.Participation.HAS_PERMISSION)
        route = core.talk_route(GROUP)
        assert route is not None, "floor not granted"
        gid, sid, burst = route
        t0 = time.monotonic()
        n = 0
        while True:
            at = t0 + n * FRAME
            if at >= t0 + seconds:
                break
            pool.run(at)
            stamp = loadgen.STAMP.pack(time.monotonic_ns())
            data = add_mac(core.voice_key, encode_voice(VoiceHeader(gid, sid, burst, n, n * 320),
                                                        stamp + bytes(PAYLOAD - len(stamp))))
            if self.tx is not None:
                self.tx.sendto(data, self.dest)  # type: ignore[arg-type]
            else:
                pool.socks[0].send(data)
            n += 1
        core.release_floor(GROUP, time.monotonic())
        pool.flush(0)
        pool.run(time.monotonic() + 0.2)
        return n

    def close(self) -> None:
        self.pool.close_all()
        if self.tx is not None:
            self.tx.close()


def measure(server: loadgen.ServerProc, tokens: dict[str, str], users: list[str],
            multicast: bool, seconds: float) -> dict[str, Any]:
    clients = [(u, tokens[u], [GROUP]) for u in users]
    lp = loadgen._Proc(_listeners_main, server.address, clients, multicast)
    talker = None
    try:
        ready = lp.recv(180)
        talker = _Talker(server.address, tokens["talker"], multicast)
        talker.idle(0.5)
        b0 = server.stats()
        talker.idle(seconds)
        b1 = server.stats()
        sent = talker.talk(seconds)
        s1 = server.stats()
        time.sleep(0.1)
        received = lp.call("count", timeout=30)["received"]
    finally:
        if talker is not None:
            talker.close()
        lp.stop()
    idle = loadgen.cpu_between(b0, b1)
    busy = loadgen.cpu_between(b1, s1)
    net_cpu = max(0.0, busy["cpu"] - idle["cpu"] * busy["wall"] / idle["wall"])
    out_dgrams = busy["voice_out"] + busy["multicast_out"]
    return {
        "path": "multicast" if multicast else "relay",
        "listeners": len(users),
        "on multicast": ready["multicast"],
        "frames sent": sent,
        "server datagrams out": out_dgrams,
        "server CPU %": round(100 * busy["cpu"] / busy["wall"], 2),
        "idle CPU %": round(100 * idle["cpu"] / idle["wall"], 2),
        "net CPU us/frame": round(1e6 * net_cpu / sent, 1),
        "min received": min(received),
        "delivered %": round(100 * sum(received) / (sent * len(users)), 2),
    }


def inner(listeners: list[int], seconds: float) -> dict[str, Any]:
    server = loadgen.ServerProc()
    try:
        users = [f"l{i}" for i in range(max(listeners))]
        tokens = server.provision({GROUP: ["talker", *users]})
        rows = [measure(server, tokens, users[:n], mc, seconds)
                for n in listeners for mc in (False, True)]
    finally:
        server.stop()
    return {"rows": rows}


def run(quick: bool = False) -> dict[str, Any]:
    listeners, seconds = ([1, 50], 2.0) if quick else ([1, 200], 10.0)
    result: dict[str, Any] = {
        "title": f"Multicast versus relay: server CPU for one group of {listeners[-1]} listeners",
        "command": "python bench/bench_multicast.py" + (" --quick" if quick else ""),
        "target": "multicast: no per-listener server cost (0 datagrams out)",
    }
    reason = netns_unavailable()
    if reason is not None:
        result["notes"] = f"not run: {reason}"
        return result
    argv = [sys.executable, str(Path(__file__).resolve()), "--inner",
            "--listeners", ",".join(map(str, listeners)), "--seconds", str(seconds)]
    import subprocess
    res = subprocess.run(netns_command(argv), cwd=ROOT, capture_output=True, text=True,
                         timeout=600 + 4 * seconds, check=False,
                         env=dict(os.environ, PYTHONUNBUFFERED="1"))
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("{")]
    if res.returncode != 0 or not lines:
        raise RuntimeError(f"bench_multicast failed: {res.stdout[-2000:]}{res.stderr[-3000:]}")
    result.update(json.loads(lines[-1]))
    result["machine"] = loadgen.machine_line()
    result["notes"] = (
        "Inside an `unshare -n` namespace on loopback: server, 1 talker process and 1 process "
        "with all listeners share the machine's cores. Frames are 102-byte datagrams every 20 "
        "ms. 'net CPU us/frame' = server CPU over the talk window minus the idle rate, per frame "
        "sent by the talker. The 1-listener rows show the fixed cost of receiving one frame "
        "(an event-loop wake-up on this machine); relay adds a sendto per listener, multicast "
        "adds nothing: the server receives each frame once on the group address (floor silence "
        "timer, bridging) and sends nothing, the copies to the listeners are made by the kernel "
        "(on a LAN: by the switches).")
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--listeners", default="1,200", help="comma-separated group sizes")
    ap.add_argument("--seconds", type=float, default=10.0)
    args = ap.parse_args()
    if args.inner:  # already inside the namespace
        sizes = [int(n) for n in args.listeners.split(",")]
        print(json.dumps(inner(sizes, args.seconds)), flush=True)
        return
    print(json.dumps(run(args.quick), indent=2))


if __name__ == "__main__":
    main()
