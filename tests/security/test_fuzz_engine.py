"""The datagram mutation engine: seeded and reproducible, bounded sizes, every mutation reachable,
forgeries that carry the real targets, and the server's own parsers never raise on its output."""

from __future__ import annotations

import hashlib
import struct

import msgpack
import pytest

from ptt.errors import ProtocolError
from ptt.faults.fuzz import (
    MAX_DATAGRAM,
    SEALED_HEADER,
    VOICE_HEADER,
    FuzzConfig,
    Fuzzer,
    Mutation,
    Targets,
    classify,
)
from ptt.protocol import messages as m
from ptt.protocol.messages import decode_message, encode_message
from ptt.wire.voice import VoiceHeader, decode_voice, encode_voice

TARGETS = Targets(group_ids=(7, 9), session_ids=(0xDEADBEEF,), burst_ids=(3,),
                  users=("ann",), groups=("volunteers",))
CORPUS = [
    encode_message(m.Hello(1, "ann", bytes(16))),
    encode_message(m.Join(2, 0xDEADBEEF, "volunteers")),
    encode_message(m.FloorRequest(3, 0xDEADBEEF, "volunteers")),
    encode_message(m.Heartbeat(4, 0xDEADBEEF)),
    encode_voice(VoiceHeader(7, 0xDEADBEEF, 3, 1, 320), b"\x01" * 60),
    b"S\x01" + (0xDEADBEEF).to_bytes(4, "big") + (5).to_bytes(8, "big") + bytes(40),
]


def digest(f: Fuzzer, n: int) -> str:
    h = hashlib.sha256()
    for kind, data in f.take(n):
        h.update(kind.value.encode() + len(data).to_bytes(4, "big") + data)
    return h.hexdigest()


def test_same_seed_same_stream_other_seed_other_stream() -> None:
    a = digest(Fuzzer(CORPUS, TARGETS, seed=42), 3_000)
    b = digest(Fuzzer(CORPUS, TARGETS, seed=42), 3_000)
    c = digest(Fuzzer(CORPUS, TARGETS, seed=43), 3_000)
    assert a == b
    assert a != c


def test_sizes_bounded_and_every_mutation_made() -> None:
    cfg = FuzzConfig(max_size=1_500, large=65_000,
                     weights={k: 1.0 for k in Mutation})  # even mix: each kind is reached
    f = Fuzzer(CORPUS, TARGETS, seed=1, config=cfg)
    sizes = {k: [] for k in Mutation}
    for kind, data in f.take(6_000):
        assert isinstance(data, bytes)
        assert len(data) <= 65_000
        sizes[kind].append(len(data))
    assert all(f.counts[k] > 0 for k in Mutation), f.counts
    assert sum(f.counts.values()) == 6_000
    assert max(sizes[Mutation.RANDOM]) <= 1_500
    assert 0 in sizes[Mutation.RANDOM]  # the empty datagram is in the mix
    assert min(sizes[Mutation.RANDOM_LARGE]) >= 1_500
    assert max(sizes[Mutation.RANDOM_LARGE]) > 30_000
    assert MAX_DATAGRAM <= 65_507  # IPv4's UDP ceiling: every datagram can be sent


def test_default_mix_is_mostly_small_with_a_few_large() -> None:
    f = Fuzzer(CORPUS, TARGETS, seed=2)
    lens = [len(d) for _, d in f.take(20_000)]
    # mostly up to an Ethernet frame; forgeries and deep nests a little over; "a few" up to 65,000
    assert sum(n > 1_600 for n in lens) < len(lens) * 0.03
    assert 0 < sum(n > 16_000 for n in lens) < 50
    assert max(lens) <= MAX_DATAGRAM
    kinds = {classify(bytes(d)) for _, d in Fuzzer(CORPUS, TARGETS, seed=2).take(2_000)}
    assert kinds == {"voice", "sealed", "control", "other"}


def test_forgeries_name_the_real_targets() -> None:
    def only(k: Mutation) -> FuzzConfig:
        return FuzzConfig(weights={k: 1.0})

    voice = [d for _, d in Fuzzer([], TARGETS, 3, only(Mutation.VOICE)).take(2_000)
             if len(d) >= VOICE_HEADER.size]
    routes = [VOICE_HEADER.unpack_from(d)[4:7] for d in voice]
    real = [r for r in routes if r == (7, 0xDEADBEEF, 3) or r == (9, 0xDEADBEEF, 3)]
    assert len(real) > len(routes) * 0.1  # group, sender and burst all real, often
    sealed = [d for _, d in Fuzzer([], TARGETS, 4, only(Mutation.SEALED)).take(2_000)]
    assert {d[0] for d in sealed} == {0x53, 0x4B}  # requests and keepalives, both forged
    sids = [SEALED_HEADER.unpack_from(d)[2] for d in sealed]
    assert 0.4 < sids.count(0xDEADBEEF) / len(sids) < 0.8  # real and random session ids
    control = [d for _, d in Fuzzer(CORPUS, TARGETS, 5, only(Mutation.CONTROL)).take(2_000)]
    decoded = 0
    for d in control:
        items = msgpack.unpackb(d, raw=False, strict_map_key=False)
        assert isinstance(items, list)
        try:
            decode_message(d)
            decoded += 1
        except ProtocolError:
            pass
    assert decoded > 20  # some forgeries are well-formed messages, so they reach the dispatcher


def test_nesting_goes_deeper_than_msgpack_allows() -> None:
    f = Fuzzer([], TARGETS, 6, FuzzConfig(weights={Mutation.NESTING: 1.0}, max_depth=4_000))
    depths = [d.count(b"\x91") + d.count(b"\x81\xa1k") for _, d in f.take(300)]
    assert max(depths) > 1_024  # beyond msgpack's unpack stack


def test_server_parsers_answer_every_fuzz_datagram_with_protocol_error_or_a_value() -> None:
    """The sans-I/O parsers the server runs first never raise anything but ProtocolError."""
    f = Fuzzer(CORPUS, TARGETS, seed=7, config=FuzzConfig(large=4_000))
    for _, data in f.take(20_000):
        try:
            if classify(data) == "voice":
                decode_voice(data)
            else:
                decode_message(data)
        except ProtocolError:
            pass


def test_empty_corpus_still_works_and_bad_configs_refused() -> None:
    f = Fuzzer([], Targets(), seed=0)
    assert sum(1 for _ in f.take(2_000)) == 2_000
    with pytest.raises(ValueError):
        FuzzConfig(max_size=2_000, large=1_000)
    with pytest.raises(ValueError):
        FuzzConfig(weights={Mutation.RANDOM: 0.0})
    with pytest.raises(ValueError):
        FuzzConfig(large=70_000)
    assert struct.calcsize("!BBBBIIIHI") == 22
