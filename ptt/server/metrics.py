"""Prometheus metrics of a running :class:`~ptt.server.app.PttServer` (``ptt server --metrics``).

Attached from outside, like the recording: ``attach_metrics(server, host, port)`` after
``server.start()`` hooks ``server.listeners`` and serves ``GET /metrics`` on its own TCP socket
until the server closes. Each endpoint has a private ``CollectorRegistry``, so one process may run
several servers (the tests do).

Two sources, so that nothing is counted twice:

* What the server already counts (``server.counters``, ``server.core``) is read at scrape time by
  a collector: clients online, groups, queue lengths, datagrams and voice packets in and out.
* What it does not count by cause is counted here from its events: grants, denials, revokes and
  burst ends by cause, malformed datagrams and refused voice by reason, sessions, and the floor
  timings.

Floor timings, and what they measure. The core decides a request while handling its datagram, so
the request (``FloorRequested``) and its answer (``Granted``/``Queued``/``Denied``) carry the same
``now``: the moment the adapter took the datagram from the socket. The listener runs after the
adapter handed the answer to the socket, so ``loop.time() - now`` there is the server's own
latency for the request: decode, floor decision, encode and send (plus any datagrams handled in
the same loop turn). That is ``ptt_floor_access_seconds``; it excludes the network and the
kernel's socket queue. A request that waits in the queue has a second figure,
``ptt_floor_queue_wait_seconds``: from its arrival to its grant from the queue.

Serving is done on the event loop (``asyncio.start_server``), not in prometheus_client's HTTP
thread: a scrape reads the live ``core.groups`` and ``counters.drop_reasons`` dicts, which only
the loop may touch while they change.

Metric names (all ``ptt_``): see :data:`METRICS`.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from ptt.errors import NetError
from ptt.names import format_hostport, parse_hostport, parse_port
from ptt.protocol import floor as fl
from ptt.protocol.cluster_peers import REFUSALS as PEER_REFUSALS
from ptt.protocol.server import (
    Dropped,
    FloorEvent,
    FloorRequested,
    ServerEvent,
    SessionEnded,
    SessionStarted,
)
from ptt.protocol.server_floor import END_TO_REVOKE

if TYPE_CHECKING:
    from ptt.server.app import PttServer

log = logging.getLogger("ptt.metrics")

DEFAULT_HOST = "127.0.0.1"  # metrics say who is online: loopback unless the operator asks
REQUEST_TIMEOUT = 5.0  # a scraper that opens a connection and says nothing is dropped
MAX_REQUEST_BYTES = 8192
# the decision takes microseconds; a busy loop turn or a GC pause shows in the upper buckets
ACCESS_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                  0.5, 1.0)
# a queued request waits for talkers ahead of it: up to max_talk (30 s) each
QUEUE_WAIT_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)

# Dropped reasons are free text that may quote what the peer sent: map them to a fixed label set
# (first matching prefix wins), so a hostile peer cannot grow the series.
VOICE_DROPS = (
    ("malformed voice datagram", "malformed"),
    ("voice from an unknown session or group", "unknown_sender"),
    ("multicast voice from an unknown session or group", "unknown_sender"),
)
DATAGRAM_DROPS = (
    ("malformed", "malformed"),
    ("datagram too large", "too_large"),
    ("empty datagram", "empty"),
    ("unsupported protocol version", "bad_version"),
    ("unknown message type", "unknown_type"),
    ("datagram is not", "malformed"),
    ("not a control message", "malformed"),
    ("receiver report", "receiver_report"),
    ("receipt for a burst", "receipt"),
    # a cluster node's peer port (ptt.cluster.node): forged, replayed, unknown, malformed
    *((f"peer_{r}", f"peer_{r}") for r in PEER_REFUSALS),
)

METRICS = {
    "ptt_clients_online": "gauge: sessions logged in",
    "ptt_groups": "gauge: groups (one-to-one calls not included)",
    "ptt_calls": "gauge: one-to-one call groups",
    "ptt_floor_queue_length{group}": "gauge: requests waiting for a group's floor",
    "ptt_datagrams_in_total": "counter: datagrams received on the server's socket",
    "ptt_datagrams_shed_total{reason}": "counter: plain datagrams the reader dropped unparsed "
                                        "(rate_limit, backlog_full, repeated, stale)",
    "ptt_datagrams_late_total": "counter: plain datagrams the reader served past LOGIN_TRY "
                                "(a Login answering the node's notice, its client resending)",
    "ptt_datagrams_dropped_total{reason}": "counter: datagrams dropped as malformed or unknown",
    "ptt_voice_in_total{path}": "counter: voice frames accepted (relay, multicast)",
    "ptt_voice_out_total{path}": "counter: voice datagrams sent (relay: per listener, "
                                 "multicast: per group send)",
    "ptt_voice_dropped_total{reason}": "counter: voice refused (not_holder, unknown_sender, "
                                       "malformed, send_failed)",
    "ptt_floor_requests_total{priority}": "counter: floor requests",
    "ptt_floor_grants_total{priority,queued}": "counter: floor grants",
    "ptt_floor_queued_total": "counter: requests queued",
    "ptt_floor_denials_total{cause}": "counter: floor denials",
    "ptt_floor_revokes_total{cause}": "counter: FloorRevoked sent to holders",
    "ptt_floor_bursts_ended_total{reason}": "counter: bursts ended",
    "ptt_sessions_started_total": "counter: logins",
    "ptt_sessions_ended_total{reason}": "counter: sessions ended",
    "ptt_floor_access_seconds{result}": "histogram: request arrival to answer sent",
    "ptt_floor_queue_wait_seconds": "histogram: request arrival to grant from the queue",
}


def parse_metrics_address(text: str) -> tuple[str, int]:
    """``HOST:PORT``, ``[IPv6]:PORT`` or a bare ``PORT`` (then on loopback) to ``(host, port)``.

    ValidationError when it is none of these. Port 0 picks a free port (see
    :attr:`MetricsEndpoint.address`)."""
    text = text.strip()
    if text.isdigit():
        return DEFAULT_HOST, parse_port(text, allow_zero=True)
    host, port = parse_hostport(text, allow_zero=True)
    return host, port


def _label(reason: str, table: tuple[tuple[str, str], ...]) -> str | None:
    for prefix, label in table:
        if reason.startswith(prefix):
            return label
    return None


class _StateCollector(Collector):
    """Reads the server's own counters and state at scrape time (on the loop)."""

    def __init__(self, server: PttServer) -> None:
        self.server = server

    def collect(self) -> Iterator[Metric]:
        core, c = self.server.core, self.server.counters
        yield GaugeMetricFamily("ptt_clients_online", "Sessions logged in", len(core.sessions))
        groups = [g for g in core.groups.values() if not g.private]
        yield GaugeMetricFamily("ptt_groups", "Groups (one-to-one calls not included)",
                                len(groups))
        yield GaugeMetricFamily("ptt_calls", "One-to-one call groups",
                                len(core.groups) - len(groups))
        # calls are left out: one series per pair of users would grow without bound
        queue = GaugeMetricFamily("ptt_floor_queue_length",
                                  "Requests waiting in the floor queue", labels=["group"])
        for g in groups:
            if g.name in core.floors:
                queue.add_metric([g.name], len(core.floors.floor(g.name).queue))
        yield queue
        by_reason = self.server.shed()
        yield CounterMetricFamily("ptt_datagrams_in", "Datagrams received on the server socket",
                                  c.datagrams_in + sum(by_reason.values()))
        shed = CounterMetricFamily("ptt_datagrams_shed", "Plain datagrams the reader dropped "
                                   "unparsed", labels=["reason"])
        for reason, count in by_reason.items():
            shed.add_metric([reason], count)
        yield shed
        yield CounterMetricFamily("ptt_datagrams_late", "Plain datagrams the reader served past "
                                  "LOGIN_TRY: a Login answering the node's notice, its client "
                                  "resending", self.server.served_late())
        vin = CounterMetricFamily("ptt_voice_in", "Voice frames accepted", labels=["path"])
        vin.add_metric(["relay"], c.voice_in)
        vin.add_metric(["multicast"], c.multicast_in)
        yield vin
        vout = CounterMetricFamily("ptt_voice_out", "Voice datagrams sent: relay per listener, "
                                   "multicast once per frame for the group", labels=["path"])
        vout.add_metric(["relay"], c.voice_out)
        vout.add_metric(["multicast"], c.multicast_out)
        yield vout

    def describe(self) -> Iterator[Metric]:
        return iter(())  # collected live: nothing to check at registration


class ServerMetrics:
    """The event side: counters and histograms fed by ``server.listeners``.

    ``clock`` is the loop's clock (the same as the events' ``now``); tests may pass their own.
    """

    def __init__(self, server: PttServer, registry: CollectorRegistry,
                 clock: Callable[[], float]) -> None:
        self.server = server
        self.clock = clock
        r = registry
        self.requests = Counter("ptt_floor_requests", "Floor requests", ["priority"], registry=r)
        self.grants = Counter("ptt_floor_grants", "Floor grants", ["priority", "queued"],
                              registry=r)
        self.queued = Counter("ptt_floor_queued", "Floor requests queued", registry=r)
        self.denials = Counter("ptt_floor_denials", "Floor denials", ["cause"], registry=r)
        self.revokes = Counter("ptt_floor_revokes", "FloorRevoked sent to holders", ["cause"],
                               registry=r)
        self.ended = Counter("ptt_floor_bursts_ended", "Bursts ended", ["reason"], registry=r)
        self.dropped = Counter("ptt_datagrams_dropped", "Datagrams dropped as malformed or from "
                               "unknown senders", ["reason"], registry=r)
        self.started = Counter("ptt_sessions_started", "Logins", registry=r)
        self.ended_sessions = Counter("ptt_sessions_ended", "Sessions ended", ["reason"],
                                      registry=r)
        self.access = Histogram("ptt_floor_access_seconds", "Server latency of a floor request: "
                                "datagram taken from the socket to answer handed to it",
                                ["result"], buckets=ACCESS_BUCKETS, registry=r)
        self.queue_wait = Histogram("ptt_floor_queue_wait_seconds", "Floor request arrival to "
                                    "grant from the queue", buckets=QUEUE_WAIT_BUCKETS,
                                    registry=r)
        # exported with the refusals the adapter counts, by _VoiceDropCollector
        self._voice_bad = {"malformed": 0, "unknown_sender": 0}
        self._refused_seen = 0
        self._pending: dict[tuple[str, str], float] = {}  # (group, user) -> request's now
        self._waiting: dict[tuple[str, str], float] = {}  # queued: (group, user) -> request's now
        registry.register(_VoiceDropCollector(self))

    # -- the listener -----------------------------------------------------------------------
    def on_event(self, ev: ServerEvent, now: float) -> None:
        if isinstance(ev, FloorEvent):
            self._floor(ev.event, now)
        elif isinstance(ev, FloorRequested):
            self.requests.labels(ev.priority.name.lower()).inc()
            self._pending[(ev.group, ev.user)] = now
        elif isinstance(ev, Dropped):
            voice = _label(ev.reason, VOICE_DROPS)
            if voice is not None:
                self._voice_bad[voice] += 1
            self.dropped.labels(voice or _label(ev.reason, DATAGRAM_DROPS) or "other").inc()
        elif isinstance(ev, SessionStarted):
            self.started.inc()
        elif isinstance(ev, SessionEnded):
            self.ended_sessions.labels(ev.reason).inc()
            self._forget_user(ev.user)

    def _floor(self, ev: object, now: float) -> None:
        if isinstance(ev, fl.Granted):
            self.grants.labels(ev.priority.name.lower(), str(ev.from_queue).lower()).inc()
            key = (ev.group, ev.user)
            if key in self._pending:
                self._decided(key, "granted")
            elif ev.from_queue and key in self._waiting:
                self.queue_wait.observe(max(0.0, now - self._waiting.pop(key)))
        elif isinstance(ev, fl.Queued):
            self.queued.inc()
            key = (ev.group, ev.user)
            if key in self._pending:
                self._waiting[key] = self._decided(key, "queued")
        elif isinstance(ev, fl.Denied):
            self.denials.labels(ev.cause.name.lower()).inc()
            if (ev.group, ev.user) in self._pending:
                self._decided((ev.group, ev.user), "denied")
        elif isinstance(ev, fl.Revoked):
            self.revokes.labels(ev.cause.name.lower()).inc()
        elif isinstance(ev, fl.BurstEnded):
            self.ended.labels(ev.reason.value).inc()
            cause = END_TO_REVOKE.get(ev.reason)
            if cause is not None:
                self.revokes.labels(cause.name.lower()).inc()
        elif isinstance(ev, fl.QueueChanged):
            # whoever left the queue without a grant (released, lost, removed) waits no more
            queue = set(ev.queue)
            for key in [k for k in self._waiting if k[0] == ev.group and k[1] not in queue]:
                del self._waiting[key]

    def _decided(self, key: tuple[str, str], result: str) -> float:
        """Observe the request's server latency; returns when it arrived."""
        arrived = self._pending.pop(key)
        self.access.labels(result).observe(max(0.0, self.clock() - arrived))
        return arrived

    def _forget_user(self, user: str) -> None:
        for table in (self._pending, self._waiting):
            for key in [k for k in table if k[1] == user]:
                del table[key]

    # -- voice refused ------------------------------------------------------------------------
    def voice_dropped(self) -> dict[str, int]:
        """Refused voice by reason. ``not_holder``: voice for a burst that is not the current
        holder's. It is exact when the core counts it (``core.voice_refused``); otherwise it is
        the adapter's ``voice_dropped`` less what is accounted for elsewhere, kept from going
        down (a bad multicast probe is dropped without counting as voice, so it may be low).
        ``send_failed``: relay sends the socket refused (``counters.voice_send_failed``)."""
        c = self.server.counters
        failed = c.voice_send_failed
        exact = getattr(self.server.core, "voice_refused", None)
        if isinstance(exact, int):
            refused = exact
        else:
            derived = c.voice_dropped - sum(self._voice_bad.values()) - failed
            refused = self._refused_seen = max(self._refused_seen, derived)
        return {"not_holder": refused, **self._voice_bad, "send_failed": failed}


class _VoiceDropCollector(Collector):
    def __init__(self, metrics: ServerMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        m = CounterMetricFamily("ptt_voice_dropped", "Voice refused by the relay",
                                labels=["reason"])
        for reason, n in self.metrics.voice_dropped().items():
            m.add_metric([reason], n)
        yield m

    def describe(self) -> Iterator[Metric]:
        return iter(())


class MetricsEndpoint:
    """A server's metrics and the HTTP endpoint that serves them (``GET /metrics``)."""

    def __init__(self, server: PttServer, clock: Callable[[], float] | None = None) -> None:
        self.server = server
        self.registry = CollectorRegistry(auto_describe=False)
        loop_clock = clock or asyncio.get_running_loop().time
        self.metrics = ServerMetrics(server, self.registry, loop_clock)
        self.registry.register(_StateCollector(server))
        self._sock: socket.socket | None = None
        self._starting: asyncio.Task[asyncio.Server] | None = None
        self.closer: asyncio.Task[None] | None = None

    @property
    def address(self) -> tuple[str, int]:
        """Where it listens (the real port when asked for 0)."""
        assert self._sock is not None, "not started"
        host, port = self._sock.getsockname()[:2]
        return host, port

    @property
    def url(self) -> str:
        return f"http://{format_hostport(*self.address)}/metrics"

    def render(self) -> bytes:
        """The exposition text, as a scrape gets it."""
        return generate_latest(self.registry)

    def start(self, host: str = DEFAULT_HOST, port: int = 0) -> None:
        """Bind now (NetError if the address cannot be had), then serve on the running loop
        and hook the server's events. Synchronous, so a ``ready`` callback can call it: a
        scraper that connects before the loop accepts waits in the listen backlog."""
        try:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            self._sock = socket.create_server((host, port), family=family)
        except OSError as exc:
            raise NetError(f"cannot serve metrics on {format_hostport(host, port)}: "
                           f"{exc.strerror or exc}") from None
        self._sock.setblocking(False)
        self._starting = asyncio.get_running_loop().create_task(
            asyncio.start_server(self._serve, sock=self._sock))
        self.server.listeners.append(self.metrics.on_event)
        log.info("metrics on %s", self.url)

    async def wait_serving(self) -> None:
        """Until the loop accepts connections (they queue in the backlog before)."""
        if self._starting is not None:
            await self._starting

    def close(self) -> None:
        """Unhook and stop listening (a scrape under way finishes)."""
        if self.metrics.on_event in self.server.listeners:
            self.server.listeners.remove(self.metrics.on_event)
        if self._starting is not None and not self._starting.done():
            self._starting.cancel()
        elif self._starting is not None and not self._starting.cancelled() \
                and self._starting.exception() is None:
            self._starting.result().close()
        self._starting = None
        if self._sock is not None:
            self._sock.close()  # asyncio.Server.close does not close a socket passed in
            self._sock = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), REQUEST_TIMEOUT)
            status, body = self._answer(head)
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            writer.close()
            return
        reason = {200: "OK", 404: "Not Found", 405: "Method Not Allowed"}[status]
        ctype = CONTENT_TYPE_LATEST if status == 200 else "text/plain; charset=utf-8"
        method = head.split(b" ", 1)[0]
        writer.write(f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\n"
                     f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode())
        if method != b"HEAD":
            writer.write(body)
        try:
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    def _answer(self, head: bytes) -> tuple[int, bytes]:
        if len(head) > MAX_REQUEST_BYTES:
            return 404, b"request too large\n"
        parts = head.split(b"\r\n", 1)[0].split(b" ")
        if len(parts) != 3:
            return 404, b"not found\n"
        method, target = parts[0], parts[1].split(b"?", 1)[0]
        if target not in (b"/metrics", b"/"):
            return 404, b"not found: try /metrics\n"
        if method not in (b"GET", b"HEAD"):
            return 405, b"GET only\n"
        return 200, self.render()


def attach_metrics(server: PttServer, host: str = DEFAULT_HOST, port: int = 0
                   ) -> MetricsEndpoint:
    """Serve ``server``'s metrics on ``host:port`` until it closes. Call after ``server.start()``
    with the loop running; NetError if the address cannot be bound."""
    endpoint = MetricsEndpoint(server)
    endpoint.start(host, port)

    async def close_when_done() -> None:
        try:
            await server.wait_closed()
        finally:  # also when asyncio.run cancels this task at shutdown
            endpoint.close()

    endpoint.closer = asyncio.get_running_loop().create_task(close_when_done())
    return endpoint


__all__ = ["METRICS", "MetricsEndpoint", "ServerMetrics", "attach_metrics",
           "parse_metrics_address"]
