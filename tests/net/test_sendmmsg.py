"""The relay's fan-out on real loopback sockets: sendmmsg and its sendto fallback send the same."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from ptt.net import sendmmsg as sm

needs_mmsg = pytest.mark.skipif(not sm.available(), reason="sendmmsg is Linux-only")


def receivers(n: int, family: int = socket.AF_INET, host: str = "127.0.0.1"
              ) -> list[socket.socket]:
    out = []
    for _ in range(n):
        r = socket.socket(family, socket.SOCK_DGRAM)
        r.bind((host, 0))
        r.settimeout(2)
        out.append(r)
    return out


@pytest.fixture
def tx() -> Iterator[socket.socket]:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    yield s
    s.close()


def close(socks: list[socket.socket]) -> None:
    for s in socks:
        s.close()


@pytest.mark.parametrize("use_mmsg", [pytest.param(True, marks=needs_mmsg), False])
def test_every_destination_gets_the_frame_byte_for_byte(tx: socket.socket, use_mmsg: bool
                                                        ) -> None:
    rx = receivers(20)
    try:
        targets = tuple(r.getsockname() for r in rx)
        fan = sm.make_fanout(tx, targets, use_mmsg)
        assert isinstance(fan, sm.MmsgFanOut if use_mmsg else sm.SendtoFanOut)
        frames = [bytes([0x56, k]) + b"\x00" * 10 + bytes(range(k, k + 90)) for k in range(3)]
        for f in frames:  # NULs inside: the shared iovec takes a length, not a C string
            assert fan.send(f) == 0
        for r in rx:
            assert [r.recv(2048) for _ in frames] == frames
    finally:
        close(rx)


@needs_mmsg
def test_ipv6_destinations() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 in this build")
    try:
        rx = receivers(3, socket.AF_INET6, "::1")
    except OSError as exc:
        pytest.skip(f"no ::1 here: {exc}")
    tx6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    try:
        fan = sm.make_fanout(tx6, tuple(r.getsockname() for r in rx))
        assert isinstance(fan, sm.MmsgFanOut)
        assert fan.send(b"v6 frame") == 0
        assert [r.recv(100) for r in rx] == [b"v6 frame"] * 3
    finally:
        tx6.close()
        close(rx)


@pytest.mark.parametrize("use_mmsg", [pytest.param(True, marks=needs_mmsg), False])
def test_a_refused_destination_is_counted_and_the_rest_still_sent(tx: socket.socket,
                                                                  use_mmsg: bool) -> None:
    # the broadcast address without SO_BROADCAST: the kernel refuses that one message (EACCES)
    rx = receivers(4)
    try:
        good = [r.getsockname() for r in rx]
        bad = ("255.255.255.255", good[0][1])
        targets = (bad, good[0], good[1], bad, bad, good[2], good[3], bad)
        fan = sm.make_fanout(tx, targets, use_mmsg)
        assert fan.send(b"frame") == 4
        assert [r.recv(100) for r in rx] == [b"frame"] * 4
        for r in rx:  # exactly once each
            r.settimeout(0.05)
            with pytest.raises(TimeoutError):
                r.recv(100)
    finally:
        close(rx)


@needs_mmsg
def test_more_destinations_than_one_call_takes(tx: socket.socket, monkeypatch: pytest.MonkeyPatch
                                               ) -> None:
    monkeypatch.setattr(sm, "MAX_BATCH", 3)  # the kernel's cap is 1024; the loop is the same
    rx = receivers(8)
    try:
        fan = sm.make_fanout(tx, tuple(r.getsockname() for r in rx))
        assert fan.send(b"x" * 100) == 0
        assert [r.recv(200) for r in rx] == [b"x" * 100] * 8
    finally:
        close(rx)


def test_no_destinations_sends_nothing(tx: socket.socket) -> None:
    for use in (sm.available(), False):
        assert sm.make_fanout(tx, (), use).send(b"frame") == 0


def test_an_address_sendmmsg_cannot_encode_falls_back_to_sendto(tx: socket.socket) -> None:
    rx = receivers(1)
    try:
        # a host name: sendto resolves it, the sockaddr encoder does not
        fan = sm.make_fanout(tx, (("localhost", rx[0].getsockname()[1]),))
        assert isinstance(fan, sm.SendtoFanOut)
        assert fan.send(b"by name") == 0
        assert rx[0].recv(100) == b"by name"
    finally:
        close(rx)


def test_without_sendmmsg_the_cache_builds_sendto_fanouts(tx: socket.socket,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sm, "_SENDMMSG", None)  # a platform without it
    assert not sm.available()
    with pytest.raises(OSError):
        sm.MmsgFanOut(tx, (("127.0.0.1", 9),))
    rx = receivers(2)
    try:
        route = sm.FanOutCache(tx).get(tuple(r.getsockname() for r in rx))
        assert isinstance(route.fanout, sm.SendtoFanOut)
        assert route.send(b"portable") == 0
        assert [r.recv(100) for r in rx] == [b"portable"] * 2
    finally:
        close(rx)


def test_env_switch_forces_the_portable_path(tx: socket.socket,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PTT_NO_SENDMMSG", "1")
    assert not sm.FanOutCache(tx).use_mmsg
    monkeypatch.setenv("PTT_NO_SENDMMSG", "0")
    assert sm.FanOutCache(tx).use_mmsg == sm.available()


def test_cache_is_by_tuple_identity_and_splits_the_bridge_address(tx: socket.socket) -> None:
    mcast = ("239.1.2.3", 5000)
    cache = sm.FanOutCache(tx, split_last=lambda a: a == mcast, max_entries=2)
    a = (("127.0.0.1", 1000), ("127.0.0.1", 1001), mcast)
    b = tuple(list(a))  # noqa: C414  (equal, but another tuple object: rebuild)
    ra = cache.get(a)
    assert cache.get(a) is ra
    assert ra.extra == mcast and ra.count == 2 and ra.fanout.targets == a[:2]
    rb = cache.get(b)
    assert rb is not ra and cache.get(b) is rb and len(cache) == 2
    cache.get((("127.0.0.1", 1002),))  # over the bound: starts over, never grows past it
    assert len(cache) == 1
    assert cache.get((("127.0.0.1", 1002),)).extra is None
    cache.clear()
    assert len(cache) == 0
