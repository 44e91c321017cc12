"""ServerMetrics fed events by hand: causes, bounded labels, timings, and the address option."""

from __future__ import annotations

import socket
from pathlib import Path
from types import SimpleNamespace

import pytest
from prometheus_client import CollectorRegistry

from ptt.config import ServerConfig
from ptt.errors import ValidationError
from ptt.net.reader import PriorityReader
from ptt.protocol import floor as fl
from ptt.protocol import messages as m
from ptt.protocol.server import Dropped, FloorEvent, FloorRequested, SessionEnded
from ptt.protocol.server_list import LOGIN_TRY
from ptt.server.app import Counters, PttServer
from ptt.server.metrics import ServerMetrics, _StateCollector, parse_metrics_address
from tests.net.test_reader import logins, recording, send

ADDR = ("127.0.0.1", 4000)


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def make() -> tuple[ServerMetrics, CollectorRegistry, SimpleNamespace, Clock]:
    server = SimpleNamespace(counters=Counters(), core=SimpleNamespace())
    registry = CollectorRegistry()
    clock = Clock()
    return ServerMetrics(server, registry, clock), registry, server, clock  # type: ignore[arg-type]


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    got = registry.get_sample_value(name, labels)
    return 0.0 if got is None else got


def test_revokes_match_the_floor_revoked_messages_the_core_sends() -> None:
    metrics, reg, _, _ = make()
    metrics.on_event(FloorEvent(fl.Revoked("g", "ann", 5, m.RevokeCause.MAX_TALK_TIME, 0.5)), 1)
    metrics.on_event(FloorEvent(fl.BurstEnded("g", "ann", 5, fl.EndReason.MAX_TALK)), 1.5)
    metrics.on_event(FloorEvent(fl.BurstEnded("g", "bob", 6, fl.EndReason.SILENCE)), 9)
    metrics.on_event(FloorEvent(fl.BurstEnded("g", "cat", 7, fl.EndReason.RELEASED)), 12)
    assert value(reg, "ptt_floor_revokes_total", cause="max_talk_time") == 1
    assert value(reg, "ptt_floor_revokes_total", cause="silence") == 1
    assert value(reg, "ptt_floor_bursts_ended_total", reason="max_talk") == 1
    assert value(reg, "ptt_floor_bursts_ended_total", reason="released") == 1
    assert sum(value(reg, "ptt_floor_revokes_total", cause=c.name.lower())
               for c in m.RevokeCause) == 2


def test_drop_reasons_are_a_fixed_set_whatever_the_peer_sends() -> None:
    metrics, reg, _, _ = make()
    for reason in ("unknown message type 'zz\\x00'", "datagram too large (99999 bytes)",
                   "malformed datagram: KeyError", "FloorRequest.group: expected str",
                   "malformed voice datagram", "voice from an unknown session or group",
                   "peer_forged: 60 bytes on the peer port"):
        metrics.on_event(Dropped(ADDR, reason), 1.0)
    families = {s.labels["reason"] for f in reg.collect() if f.name == "ptt_datagrams_dropped"
                for s in f.samples}
    assert families == {"unknown_type", "too_large", "malformed", "other", "unknown_sender",
                        "peer_forged"}
    assert metrics.voice_dropped()["malformed"] == 1
    assert metrics.voice_dropped()["unknown_sender"] == 1


def test_not_holder_is_exact_from_the_core_else_derived_and_never_decreasing() -> None:
    metrics, reg, server, _ = make()
    server.counters.voice_dropped = 4
    metrics.on_event(Dropped(ADDR, "malformed voice datagram"), 1.0)
    assert value(reg, "ptt_voice_dropped_total", reason="not_holder") == 3
    metrics.on_event(Dropped(ADDR, "multicast voice from an unknown session or group"), 1.0)
    # a drop the adapter did not count as voice (a probe): the counter must not go down
    assert value(reg, "ptt_voice_dropped_total", reason="not_holder") == 3
    server.core.voice_refused = 11
    server.counters.voice_send_failed = 2
    assert value(reg, "ptt_voice_dropped_total", reason="not_holder") == 11
    assert value(reg, "ptt_voice_dropped_total", reason="send_failed") == 2


def test_access_time_and_queue_wait_use_the_loop_clock() -> None:
    metrics, reg, _, clock = make()
    metrics.on_event(FloorRequested("g", "ann", m.Priority.NORMAL), 10.0)
    clock.t = 10.002  # the answer was sent 2 ms after the datagram was taken in
    metrics.on_event(FloorEvent(fl.Queued("g", "ann", 1)), 10.0)
    assert value(reg, "ptt_floor_access_seconds_sum", result="queued") == pytest.approx(0.002)
    clock.t = 14.0
    metrics.on_event(FloorEvent(fl.Granted("g", "ann", 3, m.Priority.NORMAL, 30, True)), 14.0)
    assert value(reg, "ptt_floor_queue_wait_seconds_sum") == pytest.approx(4.0)
    assert value(reg, "ptt_floor_queue_wait_seconds_bucket", le="5.0") == 1
    assert value(reg, "ptt_floor_queue_wait_seconds_bucket", le="2.5") == 0
    # a request that leaves the queue ungranted, or whose session ends, is forgotten
    metrics.on_event(FloorRequested("g", "bob", m.Priority.NORMAL), 20.0)
    metrics.on_event(FloorEvent(fl.Queued("g", "bob", 1)), 20.0)
    metrics.on_event(FloorEvent(fl.QueueChanged("g", ())), 21.0)
    metrics.on_event(FloorRequested("g", "cat", m.Priority.NORMAL), 22.0)
    metrics.on_event(SessionEnded("cat", 9, "expired"), 23.0)
    metrics.on_event(FloorEvent(fl.Granted("g", "bob", 4, m.Priority.NORMAL, 30, True)), 30.0)
    assert value(reg, "ptt_floor_queue_wait_seconds_count") == 1
    assert metrics._pending == {} and metrics._waiting == {}


def test_metrics_address_option() -> None:
    assert parse_metrics_address("9100") == ("127.0.0.1", 9100)
    assert parse_metrics_address("0.0.0.0:9100") == ("0.0.0.0", 9100)
    assert parse_metrics_address("[::1]:0") == ("::1", 0)
    for bad in ("", "host", "1.2.3.4:99999", "::1"):
        with pytest.raises(ValidationError):
            parse_metrics_address(bad)


def test_logins_the_reader_served_past_login_try_are_exported(tmp_path: Path) -> None:
    """``ptt_datagrams_late_total``: the server's reader served a Login answering its notice
    that waited past LOGIN_TRY while its client resent it (one), and dropped a login that
    waited as long unresent (``stale``, among the shed)."""
    with (socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock,
          socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client):
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        client.connect(sock.getsockname())
        _late_login(tmp_path, sock, client)


def _late_login(tmp_path: Path, sock: socket.socket, client: socket.socket) -> None:
    now = [0.0]
    order: list[bytes] = []
    first, resent, silent = logins(3)

    def slow(n: int) -> bool:
        if order[-1] == first:  # the first login took long; meanwhile one client resent
            now[0] += 2.5
            send(client, [resent])
        return True

    send(client, [first, resent, silent])
    server = PttServer(ServerConfig(host="127.0.0.1", port=0, db=tmp_path / "ptt.db",
                                    record_dir=tmp_path / "rec"))
    server._reader = PriorityReader(sock, recording(order, slow), lambda: now[0], budget=100.0,
                                    chunk=1, patient={resent, silent}.__contains__,
                                    plain_max_wait=LOGIN_TRY)
    registry = CollectorRegistry()
    registry.register(_StateCollector(server))
    assert value(registry, "ptt_datagrams_late_total") == 0
    assert server._reader.run() is False
    assert order == [first, resent]
    assert value(registry, "ptt_datagrams_late_total") == 1
    assert value(registry, "ptt_datagrams_shed_total", reason="stale") == 1
