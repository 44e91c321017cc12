"""The machine's floor for floor-access times: a server that does nothing but answer.

The floor-access benchmark times a request through a real ptt server while thousands of clients
heartbeat. How much of that time is ptt's, and how much is this machine's (its scheduler, the
loopback path, a Python event loop waking up, other guests on the host)? This module measures
the second part in the same way: an echo server with the ptt server's adapter shape (asyncio,
``loop.add_reader``, up to 64 datagrams read per wake-up, one ``sendto`` per answer) but no
protocol at all, the same rate of heartbeat-sized datagrams from many sockets in a separate
process, and a probe process timing request -> answer at 100 requests/s, from user space and
from the kernel's receive timestamp. Whatever that probe sees, no server code on this machine
can beat.

    .venv/bin/python bench/echo_floor.py --rate 10000    # one run, printed
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import random
import socket
import struct
import time
from typing import Any

LOCALHOST = "127.0.0.1"
READ_BATCH = 64  # as ptt.server.app
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
_TS = struct.Struct("@ll")  # struct timespec
_CTX = mp.get_context("fork")
HEARTBEAT = b"S" * 40  # the size of a sealed Heartbeat
PROBE = b"P" * 60
ANSWER = b"A" * 40


def _serve(conn: Any, cpus: set[int] | None, until: float) -> None:
    if cpus:
        os.sched_setaffinity(0, cpus)

    async def main() -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((LOCALHOST, 0))
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        recvfrom, sendto = sock.recvfrom, sock.sendto

        def ready() -> None:
            for _ in range(READ_BATCH):
                try:
                    _, addr = recvfrom(2048)
                except (BlockingIOError, InterruptedError):
                    return
                try:
                    sendto(ANSWER, addr)
                except OSError:
                    pass

        loop.add_reader(sock.fileno(), ready)
        conn.send(sock.getsockname()[1])
        t0 = time.process_time()
        w0 = time.monotonic()
        await asyncio.sleep(max(0.0, until - time.time()))
        conn.send((time.process_time() - t0) / (time.monotonic() - w0))

    asyncio.run(main())


def _load(port: int, rate: float, sockets: int, cpus: set[int] | None, until: float) -> None:
    """``rate`` heartbeat-sized datagrams a second from ``sockets`` sockets, in 1 ms ticks,
    answers drained (as the load clients do)."""
    if cpus:
        os.sched_setaffinity(0, cpus)
    socks = []
    for _ in range(sockets):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setblocking(False)
        socks.append(s)
    dest = (LOCALHOST, port)
    sent = 0.0
    k = 0
    t0 = time.monotonic()
    while time.time() < until:
        time.sleep(0.001)
        due = rate * (time.monotonic() - t0)
        while sent < due:
            sent += 1
            k = (k + 1) % sockets
            try:
                socks[k].sendto(HEARTBEAT, dest)
            except OSError:
                pass
        for s in socks[k - 40 if k >= 40 else 0:k + 1]:  # drain a few answers per tick
            try:
                while True:
                    s.recv(2048)
            except OSError:
                pass
    for s in socks:
        s.close()


def _probe(port: int, rate: float, duration: float, cpus: set[int] | None) -> dict[str, list[float]]:
    if cpus:
        os.sched_setaffinity(0, cpus)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    sock.settimeout(1.0)
    user: list[float] = []
    kernel: list[float] = []
    lost = 0
    end = time.monotonic() + duration
    rng = random.Random(1)
    while time.monotonic() < end:
        t_real = time.time()
        t = time.perf_counter()
        sock.sendto(PROBE, (LOCALHOST, port))
        try:
            _, anc, _, _ = sock.recvmsg(2048, 64)
        except TimeoutError:
            lost += 1
            continue
        user.append((time.perf_counter() - t) * 1e3)
        received = kernel_time(anc)
        if received:
            kernel.append((received - t_real) * 1e3)
        time.sleep(rng.expovariate(rate))
    return {"user_ms": user, "kernel_ms": kernel, "lost": [float(lost)]}


def kernel_time(anc: list[tuple[int, int, bytes]]) -> float:
    """A datagram's receive time by the kernel (``SO_TIMESTAMPNS`` in ``recvmsg``'s ancillary
    data ``anc``; CLOCK_REALTIME, s), 0.0 without one. Here, not in loadgen, so that the floor's
    probe imports nothing of ptt."""
    for level, typ, raw in anc:
        if level == socket.SOL_SOCKET and typ == SO_TIMESTAMPNS:
            sec, ns = _TS.unpack(raw[:_TS.size])
            return float(sec + ns * 1e-9)
    return 0.0


def _pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    v = sorted(values)
    return v[min(len(v) - 1, round(p / 100 * (len(v) - 1)))]


def measure(rate: float, duration: float = 15.0, *, sockets: int = 1000, probe_rate: float = 100.0,
            own_core: bool = False, settle: float = 1.0) -> dict[str, Any]:
    """Probe an echo server for ``duration`` s while ``rate`` datagrams/s arrive from others.
    ``own_core``: the echo server alone on the first CPU, load and probe on the others."""
    cpus = sorted(os.sched_getaffinity(0))
    pin = own_core and len(cpus) > 1
    server_cpus = {cpus[0]} if pin else None
    rest = set(cpus[1:]) if pin else None
    until = time.time() + settle + duration + 1.0
    parent, child = _CTX.Pipe()
    server = _CTX.Process(target=_serve, args=(child, server_cpus, until), daemon=True)
    server.start()
    port = parent.recv()
    load = _CTX.Process(target=_load, args=(port, rate, sockets, rest, until), daemon=True)
    load.start()
    try:
        time.sleep(settle)
        if pin:
            os.sched_setaffinity(0, rest)  # type: ignore[arg-type]
        res = _probe(port, probe_rate, duration, rest)
        server_cpu = parent.recv() if parent.poll(duration + 10) else float("nan")
    finally:
        if pin:
            os.sched_setaffinity(0, set(cpus))
        for p in (load, server):
            p.join(5)
            if p.is_alive():
                p.kill()
    return {
        "datagrams_per_s": rate,
        "samples": len(res["user_ms"]),
        "lost": int(res["lost"][0]),
        "p50_ms": _pct(res["user_ms"], 50), "p99_ms": _pct(res["user_ms"], 99),
        "max_ms": max(res["user_ms"], default=float("nan")),
        "kernel_p50_ms": _pct(res["kernel_ms"], 50), "kernel_p99_ms": _pct(res["kernel_ms"], 99),
        "server_cpu_pct": 100.0 * server_cpu,
        "own_core": pin,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=10_000.0, help="background datagrams/s")
    ap.add_argument("--duration", type=float, default=15.0)
    ap.add_argument("--own-core", action="store_true")
    args = ap.parse_args()
    r = measure(args.rate, args.duration, own_core=args.own_core)
    print(", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in r.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
