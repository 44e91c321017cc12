"""How much of a NATS hop is nats-py's own dispatch, and how much is the server's.

One hop of the cluster's floor round trip is: a node writes ``PUB`` to nats-server, the server
writes ``MSG`` to the subscriber's socket, the subscriber's event loop wakes, nats-py reads and
parses, then hands the message to ptt. This bench times that hop with the same sender and four
receivers in a process of their own, each answering by UDP to the sender (one clock):

* ``udp``: no NATS at all, the sender's datagram straight to the receiver (the wake-up floor of
  one hop between two processes);
* ``raw``: the receiver's own asyncio ``Protocol`` on a TCP connection to nats-server (``SUB``,
  then each ``MSG`` parsed by hand in ``data_received``): the server's hop with no client
  library;
* ``future``: nats-py, the subscription made with its ``future`` parameter, as ``ptt.cluster.bus``
  does (each message set as the future's result in nats-py's read loop, no task of its own);
* ``cb``: nats-py with a callback (``subscribe(cb=...)``), the usual way: a per-subscription
  queue and a task that takes each message from it, one more loop turn per message.

The sender writes ``PUB`` on a raw socket of its own (the same bytes for every NATS path), one
message at a time, ``PAUSE`` s apart, and times send -> the receiver's UDP answer.
``raw - udp`` is the server's part of a hop, ``future - raw`` nats-py's read loop and parser,
``cb - future`` the per-subscription queue and task the bus avoids.

    .venv/bin/python bench/bench_nats_dispatch.py            # 1,000 round trips per path
    .venv/bin/python bench/bench_nats_dispatch.py --count 200

Everything talks to 127.0.0.1; nats-server is started here and stopped by PID, each receiver is a
child process stopped by its handle and bounded in time.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import socket
import struct
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import loadgen  # noqa: E402
from bench_bus_floor import loadgen_port  # noqa: E402

PAUSE = 0.01  # s between round trips: each hop starts from an idle receiver, as a floor request's
LIFETIME = 300.0  # s a receiver lives at most
PATHS = ("udp", "raw", "future", "cb")
_CTX = mp.get_context("fork")


def _receiver(kind: str, url: str, subject: str, port: int, answer: int) -> None:
    """Each message (or datagram, for ``udp``) on ``port`` / ``subject`` -> UDP to ``answer``."""
    out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    to = ("127.0.0.1", answer)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        if kind == "udp":
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind(("127.0.0.1", port))
            sock.setblocking(False)

            def on_read() -> None:
                try:
                    out.sendto(sock.recv(2048), to)
                except BlockingIOError:
                    pass

            loop.add_reader(sock.fileno(), on_read)
        elif kind == "raw":
            host, nport = url.removeprefix("nats://").rsplit(":", 1)

            class Raw(asyncio.Protocol):
                def __init__(self) -> None:
                    self.buf = b""

                def connection_made(self, transport: Any) -> None:
                    self.t = transport

                def data_received(self, data: bytes) -> None:
                    self.buf += data
                    while True:
                        end = self.buf.find(b"\r\n")
                        if end < 0:
                            return
                        line = self.buf[:end]
                        if line.startswith(b"MSG "):
                            size = int(line.rsplit(b" ", 1)[1])
                            if len(self.buf) < end + 2 + size + 2:
                                return
                            out.sendto(self.buf[end + 2:end + 2 + size], to)
                            self.buf = self.buf[end + 2 + size + 2:]
                        else:
                            if line == b"PING":
                                self.t.write(b"PONG\r\n")
                            self.buf = self.buf[end + 2:]

            transport, _ = await loop.create_connection(Raw, host, int(nport))
            transport.write(b'CONNECT {"verbose":false,"pedantic":false}\r\n'
                            + f"SUB {subject} 1\r\n".encode() + b"PING\r\n")
        else:
            import nats

            nc = await nats.connect(url)
            if kind == "cb":
                async def cb(msg: Any) -> None:
                    out.sendto(msg.data, to)
                await nc.subscribe(subject, cb=cb)
            else:
                class Deliver:  # what ptt.cluster.bus._Deliver is
                    def cancelled(self) -> bool:
                        return False

                    def set_result(self, msg: Any) -> None:
                        out.sendto(msg.data, to)
                await nc.subscribe(subject, future=Deliver())  # type: ignore[arg-type]
            await nc.flush()
        await asyncio.sleep(LIFETIME)

    asyncio.run(main())


def measure(kind: str, url: str, count: int) -> list[float]:
    back = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    back.bind(("127.0.0.1", 0))
    back.settimeout(2.0)
    port = loadgen_port()
    subject = f"dispatch.{kind}.{port}"
    proc = _CTX.Process(target=_receiver, args=(kind, url, subject, port, back.getsockname()[1]),
                        daemon=True)
    proc.start()
    pub = None
    try:
        time.sleep(1.0)  # connected and subscribed
        if kind != "udp":
            host, nport = url.removeprefix("nats://").rsplit(":", 1)
            pub = socket.create_connection((host, int(nport)))
            pub.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            pub.sendall(b'CONNECT {"verbose":false,"pedantic":false}\r\n')
        out: list[float] = []
        k = 0
        lost = 0
        while len(out) < count + 20:  # the first 20 warm the path up
            k += 1
            data = struct.pack("!Q", k) + bytes(40)
            t0 = time.monotonic()
            if pub is None:
                back.sendto(data, ("127.0.0.1", port))
            else:
                pub.sendall(b"PUB %s %d\r\n%s\r\n" % (subject.encode(), len(data), data))
            try:
                while struct.unpack_from("!Q", back.recv(2048))[0] != k:
                    pass
                out.append((time.monotonic() - t0) * 1000)
            except TimeoutError:
                lost += 1
                if lost > 10:
                    raise RuntimeError(f"{kind}: more than 10 round trips lost") from None
            time.sleep(PAUSE)
        return out[20:]
    finally:
        if pub is not None:
            pub.close()
        back.close()
        proc.terminate()  # our own child, by its handle
        proc.join(5)


def run(count: int) -> dict[str, Any]:
    from ptt.cluster import engines

    load_before = loadgen.load_average()
    res: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="ptt-nats-dispatch-") as tmp:
        nats_engine = engines.start_nats(Path(tmp) / "nats")
        try:
            for kind in PATHS:
                res[kind] = loadgen.percentiles(measure(kind, nats_engine.url, count))
        finally:
            nats_engine.stop()
    rows = [{"path": k, "round trips": count, "p50 ms": round(v["p50"], 3),
             "p99 ms": round(v["p99"], 3)} for k, v in res.items()]
    parts = {"server's hop (raw - udp)": ("raw", "udp"),
             "nats-py's read loop and parse (future - raw)": ("future", "raw"),
             "the callback's queue and task (cb - future)": ("cb", "future")}
    return {"rows": rows,
            "parts p50 ms": {name: round(res[a]["p50"] - res[b]["p50"], 3)
                             for name, (a, b) in parts.items()},
            "load_average": f"{load_before} at the start, {loadgen.load_average()} at the end"}


def _count(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number from 1, not {text!r}")
    return int(text)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=_count, default=1000, help="round trips per path")
    res = run(ap.parse_args().count)
    print(loadgen.fmt_table(res["rows"]))
    for name, ms in res["parts p50 ms"].items():
        print(f"{name}: {ms:+.3f} ms")
    print(f"load average: {res['load_average']}; {loadgen.machine_line()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
