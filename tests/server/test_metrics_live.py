"""Metrics of a real PttServer on 127.0.0.1, scraped over HTTP while real clients race for the floor."""

from __future__ import annotations

import asyncio
import socket
import tomllib
import urllib.error
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from ptt.client.connection import Connection
from ptt.client.keys import add_user
from ptt.config import ServerConfig
from ptt.protocol import floor as fl
from ptt.protocol import messages as m
from ptt.protocol.client import Participation
from ptt.protocol.server import ServerCoreConfig
from ptt.server.app import PttServer
from ptt.server.metrics import MetricsEndpoint, attach_metrics
from ptt.wire.voice import VOICE_MAGIC, VoiceHeader, encode_voice

GROUP = "ops"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(endpoint: MetricsEndpoint) -> Samples:
    """GET /metrics over HTTP (in a thread: the server answers on this loop)."""
    def get() -> tuple[str, str]:
        with urllib.request.urlopen(endpoint.url, timeout=5) as r:
            return r.headers["Content-Type"], r.read().decode()

    ctype, text = await asyncio.to_thread(get)
    assert ctype.startswith("text/plain; version=")  # the Prometheus text format
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def val(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def until(endpoint: MetricsEndpoint, name: str, at_least: float, **labels: str
                ) -> Samples:
    """Scrape until ``name{labels}`` reaches ``at_least`` (datagrams are in flight)."""
    for _ in range(100):
        s = await scrape(endpoint)
        if val(s, name, **labels) >= at_least:
            return s
        await asyncio.sleep(0.02)
    raise AssertionError(f"{name}{labels} stayed at {val(s, name, **labels)} < {at_least}")


def frame(conn: Connection, seq: int, burst: int | None = None) -> bytes:
    route = conn.core.talk_route(GROUP)
    assert route is not None
    gid, sid, current = route
    return encode_voice(VoiceHeader(gid, sid, burst or current, seq, seq * 320), b"\x01" * 40)


def test_metrics_follow_the_floor(tmp_path: Path) -> None:
    async def main() -> None:
        # a queue of one, so the third requester is denied QUEUE_FULL
        core = ServerCoreConfig(floor=fl.FloorConfig(queue_max=1))
        server = PttServer(ServerConfig(host="127.0.0.1", port=0, db=tmp_path / "ptt.db",
                                        record_dir=tmp_path / "rec"),
                           core_config=core, iterations=1000)
        await server.start()
        endpoint = attach_metrics(server, "127.0.0.1", 0)
        assert endpoint.address[0] == "127.0.0.1" and endpoint.address[1] > 0
        cred = tomllib.loads((tmp_path / "coordinator.toml").read_text())
        tokens = {}
        async with Connection(server.address, cred["user"], cred["token"]) as coord:
            for u in ("ann", "bob", "cat"):
                tokens[u] = await add_user(coord, u)
            await coord.admin("group.create", {"name": GROUP})
            await coord.admin("group.add", {"name": GROUP, "users": ["ann", "bob", "cat"]})
        s = await until(endpoint, "ptt_sessions_ended_total", 1, reason="bye")
        assert val(s, "ptt_groups") == 1 and val(s, "ptt_clients_online") == 0
        assert val(s, "ptt_floor_queue_length", group=GROUP) == 0

        async with Connection(server.address, "ann", tokens["ann"]) as ann, \
                Connection(server.address, "bob", tokens["bob"]) as bob, \
                Connection(server.address, "cat", tokens["cat"]) as cat:
            for c in (ann, bob, cat):
                await c.join(GROUP)
            assert (await ann.request_floor(GROUP)).state is Participation.HAS_PERMISSION
            assert (await bob.request_floor(GROUP)).state is Participation.QUEUED
            assert (await cat.request_floor(GROUP)).state is Participation.NO_PERMISSION
            s = await scrape(endpoint)
            assert val(s, "ptt_clients_online") == 3
            assert val(s, "ptt_sessions_started_total") == 4  # the coordinator too
            assert val(s, "ptt_floor_requests_total", priority="normal") == 3
            assert val(s, "ptt_floor_grants_total", priority="normal", queued="false") == 1
            assert val(s, "ptt_floor_queued_total") == 1
            assert val(s, "ptt_floor_denials_total", cause="queue_full") == 1
            assert val(s, "ptt_floor_queue_length", group=GROUP) == 1
            for result in ("granted", "queued", "denied"):
                assert val(s, "ptt_floor_access_seconds_count", result=result) == 1
                # the server's own latency: well under a loop turn on an idle machine
                assert 0 <= val(s, "ptt_floor_access_seconds_sum", result=result) < 0.5

            # ann talks: each frame in once, out to bob and cat
            for seq in range(5):
                ann.send_voice(frame(ann, seq))
            s = await until(endpoint, "ptt_voice_out_total", 10, path="relay")
            assert val(s, "ptt_voice_in_total", path="relay") == 5
            assert val(s, "ptt_voice_dropped_total", reason="not_holder") == 0
            old_burst = ann.core.talk_route(GROUP)[2]  # type: ignore[index]

            await asyncio.sleep(0.05)  # bob's queue wait is measurably > 0
            await ann.release_floor(GROUP)
            assert (await bob.wait_floor(GROUP, 3)).state is Participation.HAS_PERMISSION
            s = await scrape(endpoint)
            assert val(s, "ptt_floor_grants_total", priority="normal", queued="true") == 1
            assert val(s, "ptt_floor_bursts_ended_total", reason="released") == 1
            assert val(s, "ptt_floor_queue_length", group=GROUP) == 0
            assert val(s, "ptt_floor_queue_wait_seconds_count") == 1
            assert val(s, "ptt_floor_queue_wait_seconds_sum") >= 0.05

            # ann's burst is over: the relay refuses her late frames
            gid = bob.core.talk_route(GROUP)[0]  # type: ignore[index]
            for seq in range(5, 8):
                ann.send_voice(frame_for(ann, gid, old_burst, seq))
            s = await until(endpoint, "ptt_voice_dropped_total", 3, reason="not_holder")
            assert val(s, "ptt_voice_in_total", path="relay") == 5

            # junk from a stranger: a broken control datagram and a broken voice header
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as junk:
                junk.sendto(b"\x92\xc1\xc1 not msgpack", server.address)
                junk.sendto(bytes([VOICE_MAGIC, 0xEE, 0]), server.address)
            s = await until(endpoint, "ptt_voice_dropped_total", 1, reason="malformed")
            assert val(s, "ptt_datagrams_dropped_total", reason="malformed") == 2
            assert val(s, "ptt_voice_dropped_total", reason="not_holder") == 3

            # a stranger's datagram sent five times before the server reads: four are copies of
            # one still waiting, shed unparsed, and still counted as received
            before = await scrape(endpoint)
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as junk:
                for _ in range(5):
                    junk.sendto(b"\x92\xc1\xc1 sent again", server.address)
            s = await until(endpoint, "ptt_datagrams_dropped_total",
                            val(before, "ptt_datagrams_dropped_total", reason="malformed") + 1,
                            reason="malformed")
            assert val(s, "ptt_datagrams_shed_total", reason="repeated") == 4
            assert (val(s, "ptt_datagrams_in_total")
                    - val(before, "ptt_datagrams_in_total")) >= 5

            # cat pre-empts bob with an emergency call: a revoke by cause
            got = await cat.request_floor(GROUP, m.Priority.EMERGENCY)
            assert got.state in (Participation.QUEUED, Participation.HAS_PERMISSION)
            s = await until(endpoint, "ptt_floor_revokes_total", 1, cause="preempted")
            assert val(s, "ptt_floor_requests_total", priority="emergency") == 1
        s = await until(endpoint, "ptt_sessions_ended_total", 4, reason="bye")
        assert val(s, "ptt_clients_online") == 0

        url = endpoint.url
        server.close()
        await asyncio.wait_for(endpoint.closer, 2)  # type: ignore[arg-type]
        assert server.listeners == []
        try:
            await asyncio.to_thread(urllib.request.urlopen, url, timeout=2)
        except urllib.error.URLError as exc:
            assert isinstance(exc.reason, ConnectionRefusedError)
        else:
            raise AssertionError("the metrics endpoint still answers after close")

    asyncio.run(main())


def frame_for(conn: Connection, gid: int, burst: int, seq: int) -> bytes:
    """A frame of ``conn`` for ``burst``, whether or not it still holds the floor."""
    sid = conn.core.session_id
    return encode_voice(VoiceHeader(gid, sid, burst, seq, seq * 320), b"\x01" * 40)


def test_two_servers_have_their_own_registries_and_unknown_paths_are_404(tmp_path: Path
                                                                         ) -> None:
    async def main() -> None:
        servers, endpoints = [], []
        for i in range(2):
            srv = PttServer(ServerConfig(host="127.0.0.1", port=0, db=tmp_path / f"{i}.db",
                                         record_dir=tmp_path / "rec"), iterations=1000)
            await srv.start()
            servers.append(srv)
            endpoints.append(attach_metrics(srv, "127.0.0.1", 0))
        servers[0].counters.datagrams_in += 7  # only the first one's
        a, b = await scrape(endpoints[0]), await scrape(endpoints[1])
        assert val(a, "ptt_datagrams_in_total") == 7 and val(b, "ptt_datagrams_in_total") == 0
        base = endpoints[0].url.removesuffix("/metrics")
        try:
            await asyncio.to_thread(urllib.request.urlopen, base + "/nope", timeout=2)
        except urllib.error.HTTPError as exc:
            assert exc.code == 404
        else:
            raise AssertionError("/nope answered")
        for srv in servers:
            srv.close()

    asyncio.run(main())
