"""The machine's floor under a cross-node floor request: the same hops with no ptt code.

A cross-node floor request goes client -> node a (UDP) -> NATS -> home c -> NATS -> a -> client
(UDP): five process wake-ups where a single server has one. This bench sends a small datagram
around that loop with nothing but the transport in each process, paced like
``bench_cluster``'s probe (one at a time, ``PAUSE`` s apart), and times the round trip:

* ``udp``: the client, then asyncio UDP forwarders a -> n -> c -> n -> a (``add_reader``, as the
  server's adapter reads): three processes besides the client, no NATS, the wake-up floor;
* ``nats``: a and c are asyncio processes with nats-py (a publishes what the client sent to c's
  subject, c publishes it back to a's subject from its subscription callback), through a real
  ``nats-server`` started here: what the bus's library and server cost before ptt touches it;
* ``bus``: the same with ``ptt.cluster.bus.Bus`` in a and c (its ``send`` from the callbacks);
* ``peer``: client -> a -> UDP -> c -> UDP -> a -> client, two asyncio UDP forwarders: the floor
  request's hops on the nodes' peer plane (``ptt.wire.peer``), the floor of a cross-node floor
  access that goes by UDP.

A voice frame crosses once, client -> node a -> NATS -> node b -> listener, where a single
server is client -> server -> listener; the one-way paths time that crossing (the listener is
the client's own socket, so one clock serves):

* ``udp1``: one asyncio UDP forwarder that sends each datagram straight back (a single server's
  relay, the wake-up floor of voice);
* ``udp2``: two asyncio UDP forwarders, a and b: a sends what the client sent to b (the
  client's port in front), b to the client: a frame's crossing on the media plane between
  nodes (``ptt.wire.peer``) with nothing of ptt in either process, the floor of cross-node voice;
* ``nats1``: a publishes each datagram to b's subject with nats-py, b sends it to the client by
  UDP from its subscription callback: what a cross-node frame costs before ptt touches it;
* ``bus1``: the same with ``ptt.cluster.bus.Bus`` at a and b.

    .venv/bin/python bench/bench_bus_floor.py            # 1,000 round trips per path
    .venv/bin/python bench/bench_bus_floor.py --count 200

Everything talks to 127.0.0.1; each child process is bounded in time and stopped by PID.
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
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import loadgen  # noqa: E402

PAUSE = 0.03  # s between round trips, as bench_cluster's floor cycles
LIFETIME = 600.0  # s a child lives at most (bounded even if the parent vanishes)
_CTX = mp.get_context("fork")


Route = Callable[[bytes, tuple[str, int]], tuple[bytes, tuple[str, int]]]


def _serve_udp(port: int, route: Route) -> None:
    """Each datagram on ``port`` sent on as ``route(data, sender)`` says, for LIFETIME s."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", port))
    sock.setblocking(False)

    async def main() -> None:
        def on_read() -> None:
            for _ in range(64):
                try:
                    data, addr = sock.recvfrom(2048)
                except BlockingIOError:
                    return
                sock.sendto(*route(data, addr))

        asyncio.get_running_loop().add_reader(sock.fileno(), on_read)
        await asyncio.sleep(LIFETIME)

    asyncio.run(main())


def _udp_forwarder(port: int, up: int, down: int) -> None:
    """Datagrams from below go to ``up`` (0: straight back), from above to ``down`` (0: the
    client that sent the last one up)."""
    client: list[Any] = [None]

    def route(data: bytes, addr: tuple[str, int]) -> tuple[bytes, tuple[str, int]]:
        if up == 0:  # the top: straight back
            return data, addr
        if addr[1] == up:  # on the way back
            return data, client[0] if down == 0 else ("127.0.0.1", down)
        if down == 0:  # on the way up, from the client at the bottom
            client[0] = addr
        return data, ("127.0.0.1", up)

    _serve_udp(port, route)


def _udp_hop(port: int, to: int) -> None:
    """``to`` > 0 (a): each datagram to ``to`` with its sender's port in front; ``to`` == 0 (b):
    each datagram to the port in front of it, without it."""

    def route(data: bytes, addr: tuple[str, int]) -> tuple[bytes, tuple[str, int]]:
        if to:
            return struct.pack("!H", addr[1]) + data, ("127.0.0.1", to)
        return data[2:], ("127.0.0.1", struct.unpack_from("!H", data)[0])

    _serve_udp(port, route)


def _nats_end(url: str, me: str, other: str, port: int, use_bus: bool,
              oneway: bool = False, prefix: str = "floor") -> None:
    """a (``port`` > 0): client datagrams -> ``other``'s subject; its messages -> the client.
    c (``port`` == 0): each message straight back to ``other``. ``oneway``: a puts the client's
    port in front of each datagram, and the other end sends it there by UDP instead.
    ``prefix``: of the subjects, one per path, so paths running at once do not cross."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        sock = None
        client: list[Any] = [None]
        if port or oneway:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind(("127.0.0.1", port))
            sock.setblocking(False)

        def deliver(data: bytes) -> bool:
            """A message at the end of the one-way path: to the client. False elsewhere."""
            if not oneway or port:
                return False
            assert sock is not None
            sock.sendto(data[2:], ("127.0.0.1", struct.unpack_from("!H", data)[0]))
            return True

        if use_bus:
            from ptt.cluster.bus import Bus

            def on_message(data: bytes) -> None:
                if deliver(data):
                    return
                if port:
                    sock.sendto(data, client[0])
                else:
                    bus.send(other, data)

            bus = Bus(me, [url], on_message, prefix)
            await bus.start()
            send = bus.send
        else:
            import nats

            nc = await nats.connect(url)

            async def on_msg(msg: Any) -> None:
                if deliver(msg.data):
                    return
                if port:
                    sock.sendto(msg.data, client[0])
                else:
                    await nc.publish(f"{prefix}.node.{other}", msg.data)

            await nc.subscribe(f"{prefix}.node.{me}", cb=on_msg)
            await nc.flush()

            def send(node: str, data: bytes) -> None:
                loop.create_task(nc.publish(f"{prefix}.node.{node}", data))

        if port:
            def on_read() -> None:
                for _ in range(64):
                    try:
                        data, addr = sock.recvfrom(2048)
                    except BlockingIOError:
                        return
                    client[0] = addr
                    send(other, struct.pack("!H", addr[1]) + data if oneway else data)

            loop.add_reader(sock.fileno(), on_read)
        await asyncio.sleep(LIFETIME)

    asyncio.run(main())


class Probe:
    """The processes of one path (``kind``, one of ``PATHS``), started here, and a client
    socket to send a datagram around it: :meth:`once` times one round trip. ``close()`` stops
    the processes by their handles. ``bench_cluster`` interleaves these with its floor cycles,
    so the floor and the cluster see the same moment of a busy machine."""

    def __init__(self, kind: str, nats_url: str) -> None:
        ports = [loadgen_port() for _ in range(3)]
        self.port = ports[0]
        if kind == "udp":
            a, n, c = ports
            self.procs = [_CTX.Process(target=_udp_forwarder, args=(c, 0, n), daemon=True),
                          _CTX.Process(target=_udp_forwarder, args=(n, c, a), daemon=True),
                          _CTX.Process(target=_udp_forwarder, args=(a, n, 0), daemon=True)]
        elif kind == "peer":
            self.procs = [_CTX.Process(target=_udp_forwarder, args=(ports[1], 0, 0), daemon=True),
                          _CTX.Process(target=_udp_forwarder, args=(self.port, ports[1], 0),
                                       daemon=True)]
        elif kind == "udp1":
            self.procs = [_CTX.Process(target=_udp_forwarder, args=(self.port, 0, 0),
                                       daemon=True)]
        elif kind == "udp2":
            self.procs = [_CTX.Process(target=_udp_hop, args=(ports[1], 0), daemon=True),
                          _CTX.Process(target=_udp_hop, args=(self.port, ports[1]), daemon=True)]
        else:
            use_bus, oneway = kind.startswith("bus"), kind.endswith("1")
            prefix = f"floor-{kind}-{self.port}"
            self.procs = [
                _CTX.Process(target=_nats_end,
                             args=(nats_url, "c", "a", 0, use_bus, oneway, prefix), daemon=True),
                _CTX.Process(target=_nats_end,
                             args=(nats_url, "a", "c", self.port, use_bus, oneway, prefix),
                             daemon=True)]
        for p in self.procs:
            p.start()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(2.0)
        self._k = 0
        self.lost = 0
        time.sleep(1.0)  # connected and subscribed
        for _ in range(20):  # warm the path up
            self.once()

    def once(self) -> float | None:
        """One round trip in ms; None if lost (more than 10 lost: RuntimeError)."""
        self._k += 1
        k = self._k
        t0 = time.monotonic()
        self.sock.sendto(struct.pack("!Q", k) + bytes(40), ("127.0.0.1", self.port))
        try:
            while True:
                data = self.sock.recv(2048)
                if struct.unpack_from("!Q", data)[0] == k:
                    return (time.monotonic() - t0) * 1000
        except TimeoutError:
            self.lost += 1
            if self.lost > 10:
                raise RuntimeError("the path lost more than 10 round trips") from None
            return None

    def close(self) -> None:
        self.sock.close()
        for p in self.procs:
            if p.is_alive():
                p.terminate()  # our own children, by their handles
        for p in self.procs:
            p.join(5)


PATHS = ("udp", "nats", "bus", "peer", "udp1", "udp2", "nats1", "bus1")


def measure_path(kind: str, count: int, nats_url: str) -> list[float]:
    """``count`` round trips (ms) through the path ``kind``, ``PAUSE`` s apart."""
    probe = Probe(kind, nats_url)
    try:
        out = []
        while len(out) < count:
            t = probe.once()
            if t is not None:
                out.append(t)
            time.sleep(PAUSE)
        return out
    finally:
        probe.close()


def loadgen_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(count: int) -> dict[str, Any]:
    from ptt.cluster import engines

    load_before = loadgen.load_average()
    rows = []
    with tempfile.TemporaryDirectory(prefix="ptt-bus-floor-") as tmp:
        nats_engine = engines.start_nats(Path(tmp) / "nats")
        try:
            for kind in PATHS:
                p = loadgen.percentiles(measure_path(kind, count, nats_engine.url))
                rows.append({"path": kind, "round trips": count,
                             "p50 ms": round(p["p50"], 3), "p99 ms": round(p["p99"], 3),
                             "max ms": round(p["max"], 3)})
        finally:
            nats_engine.stop()
    return {"rows": rows,
            "load_average": f"{load_before} at the start, {loadgen.load_average()} at the end"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=1000, help="round trips per path")
    args = ap.parse_args()
    if args.count < 1:
        print("bench_bus_floor: --count must be at least 1", file=sys.stderr)
        return 2
    res = run(args.count)
    print(loadgen.fmt_table(res["rows"]))
    print(f"load average: {res['load_average']}; {loadgen.machine_line()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
