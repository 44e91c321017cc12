"""The impairment proxy on real loopback sockets, against a UDP echo server."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from ptt.faults.cli import build_directions
from ptt.faults.proxy import Direction, Impairment, ImpairmentProxy, Kind, ProxyConfig, Way

VOICE = b"V" + bytes(40)
CONTROL = b"\x93\x01\x02\x03"  # a msgpack array, like every control datagram


class _Echo(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.peers: set[tuple[str, int]] = set()
        self.received = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.peers.add(addr)
        self.received += 1
        assert self.transport is not None
        self.transport.sendto(data, addr)


@asynccontextmanager
async def echo_behind_proxy(up: Direction = Direction(), down: Direction = Direction(),
                            seed: int = 1) -> AsyncIterator[tuple[ImpairmentProxy, _Echo]]:
    loop = asyncio.get_running_loop()
    transport, echo = await loop.create_datagram_endpoint(_Echo, local_addr=("127.0.0.1", 0))
    server = transport.get_extra_info("sockname")
    try:
        async with ImpairmentProxy(ProxyConfig(server=server, up=up, down=down, seed=seed)) as p:
            yield p, echo
    finally:
        transport.close()


def _client() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.setblocking(False)
    return s


async def _send_and_collect(sock: socket.socket, to: tuple[str, int], datagrams: list[bytes],
                            settle: float = 0.15) -> list[bytes]:
    got: list[bytes] = []
    loop = asyncio.get_running_loop()
    loop.add_reader(sock.fileno(), lambda: got.append(sock.recv(2048)))
    try:
        for i, d in enumerate(datagrams):
            sock.sendto(d, to)
            # let the proxy and the echo keep up, so no socket buffer overflows (no hidden loss)
            await asyncio.sleep(0.001 if i % 20 == 19 else 0)
        await asyncio.sleep(settle)
    finally:
        loop.remove_reader(sock.fileno())
    return got


def test_clean_proxy_forwards_both_ways_with_one_upstream_address_per_client() -> None:
    async def main() -> None:
        async with echo_behind_proxy() as (proxy, echo):
            a, b = _client(), _client()
            with a, b:
                got_a = await _send_and_collect(a, proxy.address, [b"\x93a%d" % i for i in range(50)])
                got_b = await _send_and_collect(b, proxy.address, [VOICE] * 20)
            assert got_a == [b"\x93a%d" % i for i in range(50)]  # in order, none lost
            assert got_b == [VOICE] * 20
            assert len(echo.peers) == 2  # the server sees two distinct clients
            assert echo.peers == {proxy.upstream_address(c) for c in proxy.clients}
            c = proxy.counters
            assert (c.up.control.received, c.up.control.forwarded) == (50, 50)
            assert (c.down.voice.received, c.down.voice.forwarded) == (20, 20)
            assert c.clients == 2

    asyncio.run(main())


def test_loss_applies_per_direction_and_kind_at_the_configured_rate() -> None:
    async def main() -> None:
        up = Direction(control=Impairment(loss=0.3), voice=Impairment())
        async with echo_behind_proxy(up=up, seed=5) as (proxy, echo):
            with _client() as s:
                mixed = [CONTROL, VOICE] * 600
                got = await _send_and_collect(s, proxy.address, mixed)
            c = proxy.counters
            assert c.up.voice.lost == 0 and c.up.voice.forwarded == 600
            assert c.up.control.lost + c.up.control.forwarded == 600
            assert 0.24 < c.up.control.lost / 600 < 0.36  # 0.3 +- ~4 sigma
            assert c.down.control.lost == 0
            assert got.count(VOICE) == 600 and got.count(CONTROL) == c.up.control.forwarded

    asyncio.run(main())


def test_bursty_loss_comes_in_runs() -> None:
    async def main() -> None:
        down = Direction.both(Impairment(loss=0.2, burst=5.0))
        async with echo_behind_proxy(down=down, seed=3) as (proxy, _):
            with _client() as s:
                sent = [b"\x93%04d" % i for i in range(1500)]
                got = set(await _send_and_collect(s, proxy.address, sent))
        lost = [d not in got for d in sent]
        runs, run = [], 0
        for x in lost:
            if x:
                run += 1
            elif run:
                runs.append(run)
                run = 0
        assert 0.14 < sum(lost) / len(sent) < 0.27
        assert 3.0 < sum(runs) / len(runs) < 7.5  # mean burst ~5 datagrams, not ~1.25

    asyncio.run(main())


def test_the_tap_sees_each_datagrams_fate_and_a_seed_drops_the_same_ones_every_run() -> None:
    # what `python -m ptt.faults.proxy --fates` writes: a lone client's n-th voice datagram on
    # a path meets the same fate in every run with the same seed, whatever the timing
    async def one_run() -> list[int]:
        down = Direction(voice=Impairment(loss=0.1, burst=3.0))
        seen: list[tuple[Way, Kind, bytes, bool]] = []
        async with echo_behind_proxy(down=down, seed=2) as (proxy, _):
            proxy.tap = lambda now, way, kind, data, dropped: seen.append(
                (way, kind, data, dropped))
            with _client() as s:
                sent = [b"V%04d" % i for i in range(400)]
                got = set(await _send_and_collect(s, proxy.address, sent))
        down_fates = [(data, dropped) for way, kind, data, dropped in seen
                      if way is Way.DOWN and kind is Kind.VOICE]
        assert [d for d, _ in down_fates] == sent  # every datagram, once, in order
        assert {d for d, dropped in down_fates if dropped} == set(sent) - got
        assert not any(dropped for way, _, _, dropped in seen if way is Way.UP)
        return [i for i, (_, dropped) in enumerate(down_fates) if dropped]

    first, second = asyncio.run(one_run()), asyncio.run(one_run())
    assert first == second and 10 < len(first) < 80


def test_delay_jitter_reordering_and_duplication() -> None:
    async def main() -> None:
        up = Direction.both(Impairment(delay=0.030, jitter=0.010, duplicate=0.2,
                                       reorder=0.2, reorder_delay=0.02))
        async with echo_behind_proxy(up=up, seed=9) as (proxy, _):
            with _client() as s:
                loop = asyncio.get_running_loop()
                t0 = loop.time()
                first: list[float] = []
                got: list[bytes] = []

                def on_read() -> None:
                    got.append(s.recv(2048))
                    if not first:
                        first.append(loop.time() - t0)

                loop.add_reader(s.fileno(), on_read)
                sent = [b"\x93%03d" % i for i in range(300)]
                for d in sent:
                    s.sendto(d, proxy.address)
                    await asyncio.sleep(0.001)
                await asyncio.sleep(0.2)
                loop.remove_reader(s.fileno())
        assert first and first[0] >= 0.029  # nothing arrives before the base delay
        c = proxy.counters.up.control
        assert 30 < c.duplicated < 90 and len(got) == 300 + c.duplicated
        assert set(got) == set(sent)
        order = list(dict.fromkeys(got))
        assert order != sent  # overtaking happened
        inversions = sum(1 for x, y in zip(order, order[1:]) if x > y)
        assert inversions >= 20

    asyncio.run(main())


def test_blackout_drops_everything_then_heals() -> None:
    async def main() -> None:
        async with echo_behind_proxy() as (proxy, echo):
            with _client() as s:
                assert len(await _send_and_collect(s, proxy.address, [CONTROL] * 5)) == 5
                proxy.blackout(0.4)
                assert proxy.blacked_out()
                during = await _send_and_collect(s, proxy.address, [CONTROL, VOICE] * 5,
                                                 settle=0.1)
                await asyncio.sleep(0.35)
                assert not proxy.blacked_out()
                after = await _send_and_collect(s, proxy.address, [CONTROL] * 5)
            assert during == [] and len(after) == 5
            assert proxy.counters.up.control.blacked_out == 5
            assert proxy.counters.up.voice.blacked_out == 5
            assert echo.received == 10

    asyncio.run(main())


def test_blackout_of_one_client_spares_the_others() -> None:
    async def main() -> None:
        async with echo_behind_proxy() as (proxy, _):
            a, b = _client(), _client()
            with a, b:
                await _send_and_collect(a, proxy.address, [CONTROL])
                proxy.blackout(5.0, client=a.getsockname())
                got_a = await _send_and_collect(a, proxy.address, [CONTROL] * 3, settle=0.1)
                got_b = await _send_and_collect(b, proxy.address, [CONTROL] * 3, settle=0.1)
            assert got_a == [] and len(got_b) == 3

    asyncio.run(main())


def test_a_downstream_blackout_lets_the_server_hear_a_client_that_hears_nothing() -> None:
    async def main() -> None:
        async with echo_behind_proxy() as (proxy, echo):
            a, b = _client(), _client()
            with a, b:
                await _send_and_collect(a, proxy.address, [CONTROL])
                proxy.blackout(5.0, way=Way.DOWN)
                assert proxy.blacked_out(way=Way.DOWN) and not proxy.blacked_out(way=Way.UP)
                got = await _send_and_collect(a, proxy.address, [CONTROL, VOICE] * 3, settle=0.1)
                proxy.blackout(5.0, client=b.getsockname(), way=Way.UP)
                got_b = await _send_and_collect(b, proxy.address, [CONTROL] * 3, settle=0.1)
            # a's six reached the echo server, whose answers were dropped; b sent none on
            assert got == [] and got_b == [] and echo.received == 7
            assert proxy.counters.up.control.blacked_out == 3
            assert proxy.counters.down.control.blacked_out == 3
            assert proxy.counters.down.voice.blacked_out == 3

    asyncio.run(main())


def test_delayed_datagrams_in_flight_are_lost_when_the_blackout_starts() -> None:
    async def main() -> None:
        async with echo_behind_proxy(up=Direction.both(Impairment(delay=0.2))) as (proxy, echo):
            with _client() as s:
                s.sendto(CONTROL, proxy.address)
                await asyncio.sleep(0.05)
                proxy.blackout(0.3)
                await asyncio.sleep(0.3)
            assert echo.received == 0 and proxy.counters.up.control.blacked_out == 1

    asyncio.run(main())


def test_configure_changes_impairments_of_running_flows() -> None:
    async def main() -> None:
        async with echo_behind_proxy() as (proxy, _):
            with _client() as s:
                assert len(await _send_and_collect(s, proxy.address, [CONTROL] * 10)) == 10
                proxy.configure(up=Direction(control=Impairment(loss=1.0)))
                assert await _send_and_collect(s, proxy.address, [CONTROL] * 10) == []
                assert len(await _send_and_collect(s, proxy.address, [VOICE] * 10)) == 10

    asyncio.run(main())


def test_command_line_scopes_most_specific_wins() -> None:
    up, down = build_directions({"loss": ("0.2", "voice=0.05", "down.voice=0.1"),
                                 "jitter": ("20ms",), "burst": ("voice=3",)})
    assert up.control == Impairment(loss=0.2, jitter=0.02)
    assert up.voice == Impairment(loss=0.05, jitter=0.02, burst=3.0)
    assert down.voice == Impairment(loss=0.1, jitter=0.02, burst=3.0)
    assert down.control.loss == 0.2
    assert up.of(Kind.VOICE) is up.voice and Way.UP.value == "up"


@pytest.mark.parametrize("bad", [{"loss": ("1.5",)}, {"loss": ("sideways=0.1",)},
                                 {"delay": ("soon",)}, {"burst": ("0.5",)}])
def test_command_line_rejects_bad_values(bad: dict[str, tuple[str, ...]]) -> None:
    import click
    with pytest.raises(click.BadParameter):
        build_directions(bad)
