"""A userspace UDP impairment proxy between ptt clients and a server (``tc netem`` is not here).

Clients talk to the proxy's listening address instead of the server's. Each client address gets its
own upstream socket, so the server still sees one distinct address per client, and every datagram
in each direction goes through a seeded :class:`ptt.media.impair.Channel` that decides whether it
is lost (random or Gilbert-Elliott bursts), when it arrives (delay, jitter, reordering) and whether
it arrives twice. Control and voice datagrams (voice starts with ``V``, 0x56) have separate
settings, and each (client, direction, kind) has its own channel, so a bursty loss model keeps
per-path state like a real link would::

    cfg = ProxyConfig(server=("127.0.0.1", 7700),
                      up=Direction(control=Impairment(loss=0.2)),      # client -> server
                      down=Direction(control=Impairment(loss=0.2)))    # server -> client
    async with ImpairmentProxy(cfg) as proxy:
        conn = Connection(proxy.address, "ann", token)                # instead of the server
        proxy.blackout(10.0)        # every client loses its network for 10 s
        proxy.blackout(6.0, way=Way.DOWN)  # nothing comes back for 6 s; the servers still hear
        proxy.rebind()              # every client's NAT mapping moves to a new port
        proxy.counters.up.control   # Counts(received=..., forwarded=..., lost=..., ...)

By hand: ``python -m ptt.faults.proxy --help`` (see :mod:`ptt.faults.cli`).
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any

from ptt.media.impair import (
    BernoulliLoss,
    Channel,
    ConstantDelay,
    DelayModel,
    GilbertElliott,
    LossModel,
    NoLoss,
    UniformDelay,
)
from ptt.wire.voice import VOICE_MAGIC

__all__ = ["Impairment", "Direction", "ProxyConfig", "Counts", "DirectionCounts",
           "ProxyCounters", "ImpairmentProxy", "Way", "Kind"]

log = logging.getLogger("ptt.faults")

Addr = tuple[str, int]

FLOW_IDLE_TIMEOUT = 120.0  # forget a client's upstream socket after this long without traffic
SWEEP_INTERVAL = 10.0
RECV_BATCH = 64  # datagrams read per readiness callback, so one busy socket cannot starve others
RCVBUF = 1 << 20  # voice bursts from many talkers must not overflow the proxy's own sockets


class Way(Enum):
    """Which way a datagram travels."""

    UP = "up"  # client -> server
    DOWN = "down"  # server -> client


class Kind(Enum):
    CONTROL = "control"
    VOICE = "voice"


@dataclass(frozen=True, slots=True)
class Impairment:
    """What one path does to datagrams. Times in seconds; all zero is a perfect path.

    ``loss`` is the mean loss fraction; with ``burst`` above 1 it comes in Gilbert-Elliott bursts of
    that mean length (in datagrams), otherwise losses are independent. Each datagram is delayed
    ``delay`` plus a uniform ``jitter`` in [0, jitter); ``reorder`` is the chance of holding one
    back an extra ``reorder_delay``; ``duplicate`` the chance of a second copy.
    """

    loss: float = 0.0
    burst: float = 1.0
    delay: float = 0.0
    jitter: float = 0.0
    reorder: float = 0.0
    reorder_delay: float = 0.045
    duplicate: float = 0.0

    def __post_init__(self) -> None:
        for name in ("loss", "reorder", "duplicate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name}={getattr(self, name)} outside 0..1")
        if self.burst < 1.0:
            raise ValueError(f"burst={self.burst}: a burst is at least one datagram")
        if min(self.delay, self.jitter, self.reorder_delay) < 0:
            raise ValueError("delays cannot be negative")

    def channel(self, rng: random.Random) -> Channel:
        """A fresh channel (fresh burst state) deciding this path's fate with ``rng``."""
        loss: LossModel
        if self.loss <= 0.0:
            loss = NoLoss()
        elif self.loss >= 1.0:
            loss = BernoulliLoss(1.0)
        elif self.burst > 1.0:
            loss = GilbertElliott.from_mean(self.loss, self.burst)
        else:
            loss = BernoulliLoss(self.loss)
        delay: DelayModel = (UniformDelay(self.delay, self.jitter) if self.jitter
                             else ConstantDelay(self.delay))
        return Channel(rng, loss=loss, delay=delay, reorder=self.reorder,
                       reorder_delay=self.reorder_delay, duplicate=self.duplicate)


@dataclass(frozen=True, slots=True)
class Direction:
    """Impairments of one direction, for control and for voice datagrams separately."""

    control: Impairment = Impairment()
    voice: Impairment = Impairment()

    @classmethod
    def both(cls, impairment: Impairment) -> Direction:
        return cls(impairment, impairment)

    def of(self, kind: Kind) -> Impairment:
        return self.control if kind is Kind.CONTROL else self.voice


@dataclass(frozen=True, slots=True)
class ProxyConfig:
    """Where to listen, where the server is, and what each direction does."""

    server: Addr
    listen: Addr = ("127.0.0.1", 0)
    up: Direction = Direction()
    down: Direction = Direction()
    seed: int = 1


@dataclass(slots=True)
class Counts:
    received: int = 0
    forwarded: int = 0  # copies sent on, duplicates included
    lost: int = 0  # dropped by the loss model
    blacked_out: int = 0  # dropped by a blackout (at arrival or while in flight)
    duplicated: int = 0


@dataclass(slots=True)
class DirectionCounts:
    control: Counts = field(default_factory=Counts)
    voice: Counts = field(default_factory=Counts)

    def of(self, kind: Kind) -> Counts:
        return self.control if kind is Kind.CONTROL else self.voice


@dataclass(slots=True)
class ProxyCounters:
    up: DirectionCounts = field(default_factory=DirectionCounts)
    down: DirectionCounts = field(default_factory=DirectionCounts)
    clients: int = 0  # client addresses seen (upstream sockets opened)

    def of(self, way: Way) -> DirectionCounts:
        return self.up if way is Way.UP else self.down


class _Flow:
    """One client: its address, its upstream socket and its four channels."""

    def __init__(self, client: Addr, sock: socket.socket, channels: dict[tuple[Way, Kind], Channel],
                 now: float) -> None:
        self.client = client
        self.sock = sock
        self.channels = channels
        self.last_seen = now


class _Listener(asyncio.DatagramProtocol):
    def __init__(self, proxy: ImpairmentProxy) -> None:
        self.proxy = proxy

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.proxy._from_client(data, addr[:2])

    def error_received(self, exc: Exception) -> None:
        log.debug("proxy listen socket: %s", exc)  # a client went away (ICMP unreachable)


class ImpairmentProxy:
    """The asyncio proxy. ``start()`` binds, ``close()`` stops; also an async context manager.

    Change impairments while running with :meth:`configure`; cut clients off with
    :meth:`blackout`; read :attr:`counters`.
    """

    def __init__(self, config: ProxyConfig) -> None:
        self.config = config
        self.counters = ProxyCounters()
        self._rng = random.Random(config.seed)
        self._flows: dict[Addr, _Flow] = {}
        self._transport: asyncio.DatagramTransport | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # loop time until which datagrams going one way are dropped: every client's (None)
        # or one client address's
        self._blackout: dict[tuple[Addr | None, Way], float] = {}
        self._sweeper: asyncio.TimerHandle | None = None
        # called for every datagram received, once its fate is drawn: (loop time of its
        # arrival, way, kind, the datagram, whether it is dropped); what benchmarks use to
        # measure the bit rate on the wire and to see which datagrams a seed drops
        self.tap: Callable[[float, Way, Kind, bytes, bool], None] | None = None

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._transport, _ = await self._loop.create_datagram_endpoint(
            lambda: _Listener(self), local_addr=self.config.listen)
        sock = self._transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
        self._sweeper = self._loop.call_later(SWEEP_INTERVAL, self._sweep)
        log.info("impairment proxy on %s:%d -> %s:%d", *self.address, *self.config.server)

    @property
    def address(self) -> Addr:
        """Where clients should send (the bound listening address)."""
        if self._transport is None:
            return self.config.listen
        host, port = self._transport.get_extra_info("sockname")[:2]
        return host, port

    def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for flow in self._flows.values():
            self._drop_flow(flow)
        self._flows.clear()
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    async def __aenter__(self) -> ImpairmentProxy:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    # --- controls -----------------------------------------------------------------------------

    def configure(self, up: Direction | None = None, down: Direction | None = None) -> None:
        """Replace the impairments of one or both directions; existing clients too."""
        self.config = replace(self.config, up=up or self.config.up, down=down or self.config.down)
        for flow in self._flows.values():
            flow.channels = self._channels()

    def blackout(self, seconds: float, client: Addr | None = None,
                 way: Way | None = None) -> None:
        """Drop everything to and from ``client`` (every client if None) for ``seconds``,
        datagrams already in flight included: the client has lost its network. With ``way``,
        only what travels that way: ``Way.DOWN`` leaves the server hearing a client that hears
        nothing back (a half-dead link, a firewall dropping one way)."""
        until = self._now() + seconds
        for w in (Way if way is None else (way,)):
            self._blackout[(client, w)] = until

    def blacked_out(self, client: Addr | None = None, way: Way | None = None) -> bool:
        """Is ``client`` (every client if None) cut off ``way`` (either way if None)?"""
        if not self._blackout:  # asked of every datagram: most of the time there is none
            return False
        now = self._now()
        return any(now < self._blackout.get((c, w), 0.0)
                   for c in {None, client} for w in (Way if way is None else (way,)))

    @property
    def clients(self) -> list[Addr]:
        """Client addresses with an upstream socket, in the order they were first seen."""
        return list(self._flows)

    def rebind(self, client: Addr | None = None) -> int:
        """Give ``client`` (every client if None) a new upstream socket, as a NAT that drops a
        mapping and makes another: the server sees the client's datagrams come from a new
        port, and what it sends to the old one is lost. Returns how many flows moved."""
        moved = 0
        for addr in ([client] if client is not None else list(self._flows)):
            old = self._flows.pop(addr, None)
            if old is None:
                continue
            flow = self._flow(addr)
            if flow is None:
                self._flows[addr] = old
                continue
            flow.channels, flow.last_seen = old.channels, old.last_seen
            self.counters.clients -= 1  # the same client, seen before
            self._drop_flow(old)
            moved += 1
        return moved

    def upstream_address(self, client: Addr) -> Addr:
        """The address the server sees for ``client``."""
        host, port = self._flows[client].sock.getsockname()[:2]
        return host, port

    # --- forwarding ---------------------------------------------------------------------------

    def _now(self) -> float:
        return self._loop.time() if self._loop is not None else 0.0

    def _channels(self) -> dict[tuple[Way, Kind], Channel]:
        # each path draws from its own generator seeded from the proxy's, so a run is repeatable
        # for a given order of first datagrams, and paths do not shift each other's draws
        cfg = self.config
        return {(way, kind): (cfg.up if way is Way.UP else cfg.down).of(kind).channel(
                    random.Random(self._rng.getrandbits(64)))
                for way in Way for kind in Kind}

    def _flow(self, client: Addr) -> _Flow | None:
        flow = self._flows.get(client)
        if flow is not None:
            return flow
        assert self._loop is not None
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
            sock.bind((self.config.listen[0], 0))
            sock.connect(self.config.server)
        except OSError as exc:
            sock.close()
            log.warning("cannot open an upstream socket for %s:%d: %s", *client, exc)
            return None
        flow = _Flow(client, sock, self._channels(), self._now())
        self._flows[client] = flow
        self.counters.clients += 1
        self._loop.add_reader(sock.fileno(), self._from_server, flow)
        return flow

    def _drop_flow(self, flow: _Flow) -> None:
        if self._loop is not None:
            self._loop.remove_reader(flow.sock.fileno())
        flow.sock.close()

    def _sweep(self) -> None:
        now = self._now()
        for addr, flow in list(self._flows.items()):
            if now - flow.last_seen > FLOW_IDLE_TIMEOUT:
                self._drop_flow(flow)
                del self._flows[addr]
        for key in [k for k, t in self._blackout.items() if t <= now]:
            del self._blackout[key]
        assert self._loop is not None
        self._sweeper = self._loop.call_later(SWEEP_INTERVAL, self._sweep)

    def _from_client(self, data: bytes, client: Addr) -> None:
        flow = self._flow(client)
        if flow is not None:
            flow.last_seen = self._now()
            self._pass(flow, Way.UP, data)

    def _from_server(self, flow: _Flow) -> None:
        for _ in range(RECV_BATCH):
            try:
                data = flow.sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue  # ICMP refused: the server is down or restarting; keep the flow
            self._pass(flow, Way.DOWN, data)

    def _pass(self, flow: _Flow, way: Way, data: bytes) -> None:
        kind = Kind.VOICE if data and data[0] == VOICE_MAGIC else Kind.CONTROL
        counts = self.counters.of(way).of(kind)
        counts.received += 1
        now = self._now()
        if self.blacked_out(flow.client, way):
            counts.blacked_out += 1
            if self.tap is not None:
                self.tap(now, way, kind, data, True)
            return
        arrivals = flow.channels[(way, kind)].transmit(now)
        if self.tap is not None:
            self.tap(now, way, kind, data, not arrivals)
        if not arrivals:
            counts.lost += 1
            return
        counts.duplicated += len(arrivals) - 1
        assert self._loop is not None
        for at in arrivals:
            if at <= now:
                self._deliver(flow, way, data, counts)
            else:
                self._loop.call_at(at, self._deliver, flow, way, data, counts)

    def _deliver(self, flow: _Flow, way: Way, data: bytes, counts: Counts) -> None:
        if self.blacked_out(flow.client, way):  # lost in flight when the network went away
            counts.blacked_out += 1
            return
        try:
            if way is Way.UP:
                if flow.sock.fileno() < 0:
                    return  # the flow was closed while this copy was delayed
                flow.sock.send(data)
            elif self._transport is not None:
                self._transport.sendto(data, flow.client)
            else:
                return
        except OSError:
            return  # a full buffer or the server is down: a loss the network would have made
        counts.forwarded += 1


def _main() -> None:
    from ptt.faults.cli import main  # the command line imports this module

    main()


if __name__ == "__main__":
    _main()
