"""Voice needs its sender's session MAC, on the relay and on the multicast bridge, sans-I/O.

Without it, a host that never logged in, or a listen-only member, sent frames naming the holder's
session that the server relayed or bridged (and a member's forged encrypted frame opened as the
holder's: members share the group key); an anonymous probe was echoed to the group at full size.
"""

from __future__ import annotations

import time

from ptt.wire.voice import (
    HEADER_SIZE,
    MAC_SIZE,
    VoiceFlags,
    VoiceHeader,
    add_mac,
    decode_voice,
    encode_voice,
    open_mac,
    strip_mac,
    voice_mac_key,
)
from tests.net.test_bridge_core import MCAST, frame, go_multicast, lan, take_floor


def bare(net, user: str, seq: int = 0, flags: VoiceFlags = VoiceFlags.NONE,  # type: ignore[no-untyped-def]
         size: int = 0) -> bytes:
    c = net.clients[user]
    route = c.talk_route("g")
    b = route[2] if route else 99
    return encode_voice(VoiceHeader(1, net.clients[user].session_id, b, seq, seq * 320, flags),
                        b"\x01" * size if size else b"\x01\x02")  # frame()'s payload


def test_the_mac_round_trip_gives_back_the_talkers_bytes() -> None:
    key = voice_mac_key(b"k" * 32)
    data = encode_voice(VoiceHeader(1, 2, 3, 4, 5, VoiceFlags.ENCRYPTED | VoiceFlags.END_OF_BURST),
                        b"payload")
    sent = add_mac(key, data)
    assert len(sent) == len(data) + MAC_SIZE and sent[2] & VoiceFlags.AUTH
    assert open_mac(key, sent) == data == strip_mac(sent)
    assert decode_voice(sent) == decode_voice(data)  # the trailer is not payload
    assert open_mac(voice_mac_key(b"j" * 32), sent) is None
    assert open_mac(key, data) is None  # no MAC at all
    flipped = bytearray(sent)
    flipped[HEADER_SIZE] ^= 1
    assert open_mac(key, bytes(flipped)) is None


def test_the_relay_forwards_only_frames_with_the_holders_mac_and_strips_it() -> None:
    net = lan(mode="relay")
    take_floor(net, "ann")
    ann = net.addrs["ann"]
    # from the holder's own address, with the holder's session id: without a MAC, with bob's
    # MAC (a member forging the holder's frame), with a MAC over other bytes: all dropped
    assert net.server.route_voice(bare(net, "ann"), ann, net.now) is None
    forged = add_mac(net.clients["bob"].voice_key, bare(net, "ann"))
    assert net.server.route_voice(forged, ann, net.now) is None
    assert net.server.route_voice(bare(net, "ann") + b"\x00" * 8, ann, net.now) is None
    good = frame(net, "ann")
    assert set(net.server.route_voice(good, ann, net.now) or ()) == {net.addrs["bob"],
                                                                      net.addrs["cat"]}
    assert net.server.relayed == bare(net, "ann")  # forwarded as the talker made it


def test_the_bridge_takes_only_frames_with_the_holders_mac() -> None:
    net = lan()
    go_multicast(net, "ann")
    take_floor(net, "ann")
    anywhere = ("127.0.0.1", 5)
    assert net.server.receive_multicast(bare(net, "ann"), anywhere, net.now) is None
    forged = add_mac(net.clients["cat"].voice_key, bare(net, "ann"))
    assert net.server.receive_multicast(forged, anywhere, net.now) is None
    assert net.server.receive_multicast(frame(net, "ann"), anywhere, net.now) == (
        net.addrs["bob"], net.addrs["cat"])
    assert net.server.relayed == bare(net, "ann")


def test_a_probe_is_echoed_only_with_its_mac_and_only_as_a_header() -> None:
    net = lan()
    anon = bare(net, "bob", 0, VoiceFlags.PROBE, size=1_370)  # the 1,392-byte probe
    assert net.server.receive_multicast(anon, ("127.0.0.1", 5), net.now) is None
    assert net.server.datagrams_to_send() == []
    signed = add_mac(net.clients["bob"].voice_key, anon)
    assert net.server.receive_multicast(signed, ("127.0.0.1", 5), net.now) is None
    out = net.server.datagrams_to_send()
    assert len(out) == 1 and out[0][1] == MCAST and len(out[0][0]) == HEADER_SIZE


def test_the_mac_check_costs_a_few_microseconds() -> None:
    """The figure for docs/benchmarks.md is bench/bench_voice_auth.py's; this only guards
    against a check an order of magnitude slower than a forwarded packet (~10 us)."""
    key = voice_mac_key(b"k" * 32)
    sent = add_mac(key, encode_voice(VoiceHeader(1, 2, 3, 4, 5), b"\x01" * 160))
    n = 20_000
    t0 = time.perf_counter()
    for _ in range(n):
        open_mac(key, sent)
    per = (time.perf_counter() - t0) / n
    assert per < 20e-6, per


def test_a_frame_without_the_mac_from_elsewhere_draws_no_path_check() -> None:
    """Only the holder's MAC'd frame from a new address makes the server ask there (NAT
    rebinding); a spoofer naming the holder's session gets nothing sent anywhere."""
    net = lan(mode="relay")
    take_floor(net, "ann")
    net.server.datagrams_to_send()
    assert net.server.route_voice(bare(net, "ann", size=60), ("10.9.9.9", 9), net.now) is None
    assert net.server.datagrams_to_send() == []
    signed = add_mac(net.clients["ann"].voice_key, bare(net, "ann", 1, size=60))
    assert net.server.route_voice(signed, ("10.9.9.9", 9), net.now) is None
    assert [a for _, a in net.server.datagrams_to_send()] == [("10.9.9.9", 9)]
