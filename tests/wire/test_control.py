from __future__ import annotations

import dataclasses
import random

import msgpack
import pytest

from ptt.errors import ProtocolError
from ptt.protocol import messages as m
from ptt.protocol.messages import decode_message, encode_message
from ptt.wire.voice import is_voice

SAMPLES: list[m.Message] = [
    m.Hello(1, "alice", b"n" * 16),
    m.Challenge(2, b"s" * 16, b"salt" * 4, 50_000),
    m.Login(3, "alice", b"n" * 16, b"s" * 16, b"p" * 32),
    m.Welcome(4, 0xDEADBEEF, m.Role.COORDINATOR, 1000, 5000, ["a", "b"]),
    m.Heartbeat(5, 7),
    m.Error(6, m.ErrorCode.NOT_FOUND, "unknown group 'x'"),
    m.Joined(7, m.GroupState("g", 3, [m.MemberInfo("a", True), m.MemberInfo("b", False, True)],
                             talker="a", burst_id=9, queue=["b"], mcast_addr="239.255.0.1",
                             mcast_port=5004)),
    m.FloorRequest(8, 7, "g", m.Priority.EMERGENCY),
    m.FloorResponse(9, "g", m.FloorResult.DENIED, cause=m.DenyCause.LISTEN_ONLY),
    m.FloorRevoked(10, "g", 5, m.RevokeCause.PREEMPTED, 500),
    m.FloorTaken("g", "a", 5, m.Priority.HIGH, 30_000),
    m.Admin(11, 7, "group.create", {"name": "g", "max_talk": 20, "users": ["a"], "x": None}),
    m.AdminResponse(12, {"groups": [{"name": "g", "members": 3, "private": False}]}),
    m.IncomingCall(13, "call:a+b", "a"),
    m.GroupGone(14, "g", m.GoneReason.DELETED),
    m.PresenceBatch("g", [m.PresenceChange("a", True), m.PresenceChange("b", False)]),
]


@pytest.mark.parametrize("msg", SAMPLES, ids=lambda x: type(x).__name__)
def test_every_sample_round_trips(msg: m.Message) -> None:
    data = encode_message(msg)
    assert not is_voice(data)
    assert decode_message(data) == msg


def test_every_message_type_has_a_sample_shape_that_round_trips() -> None:
    # build a value for every field of every message type from its defaults or simple values
    for mtype, cls in m.MESSAGE_TYPES.items():
        kwargs = {}
        for f in dataclasses.fields(cls):
            if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING:
                continue
            kwargs[f.name] = _value_for(f.type)
        msg = cls(**kwargs)
        assert decode_message(encode_message(msg)) == msg, mtype


def _value_for(tp: str) -> object:
    table = {"int": 1, "str": "x", "bytes": b"\x00" * 16, "bool": True, "Role": m.Role.VOLUNTEER,
             "ErrorCode": m.ErrorCode.INVALID, "FloorResult": m.FloorResult.QUEUED,
             "RevokeCause": m.RevokeCause.SILENCE,
             "GoneReason": m.GoneReason.REMOVED, "Priority": m.Priority.HIGH,
             "list[str]": ["a"], "GroupState": m.GroupState("g", 1, []),
             "list[Receipt]": [m.Receipt("a", 49, 50)],
             "list[PresenceChange]": [m.PresenceChange("a", False)]}
    if tp in table:
        return table[tp]
    if tp.startswith("dict"):
        return {"k": "v"}
    raise AssertionError(f"no sample value for {tp}")


@pytest.mark.parametrize("data", [
    b"", b"\x00", b"\x90", msgpack.packb([2, 1]), msgpack.packb([1, 999]),
    msgpack.packb([1, 1, "txn-not-int", "u", b"n"]), msgpack.packb([1, 1, 1]),
    msgpack.packb([1, int(m.MsgType.FLOOR_REQUEST), 1, 2, "g", 7]),  # priority out of range
    msgpack.packb([True, 1, 1, "u", b"n"]), msgpack.packb({"a": 1}), b"\xc1" * 10,
    msgpack.packb([1, 1, 1, "u" * 5000, b"n"]),
])
def test_malformed_datagrams_raise_only_protocol_error(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode_message(data)


def _mutate(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.random()
        if op < 0.5 and b:
            b[rng.randrange(len(b))] = rng.randrange(256)
        elif op < 0.7 and b:
            del b[rng.randrange(len(b)):][: rng.randint(1, 8)]
        elif op < 0.9:
            b.insert(rng.randrange(len(b) + 1), rng.randrange(256))
        else:
            b += rng.randbytes(rng.randint(1, 16))
    return bytes(b)


def test_100k_random_and_mutated_datagrams_raise_only_protocol_error() -> None:
    rng = random.Random(20261122)
    seeds = [encode_message(s) for s in SAMPLES]
    decoded = errors = 0
    for i in range(100_000):
        if i % 4 == 0:
            data = rng.randbytes(rng.randint(0, 64))
        else:
            data = _mutate(rng, rng.choice(seeds))
        try:
            decode_message(data)
            decoded += 1
        except ProtocolError:
            errors += 1
    assert decoded + errors == 100_000
    assert errors > 50_000 and decoded > 100, (decoded, errors)  # both paths really exercised


def test_admin_arguments_carry_fractions_of_seconds() -> None:
    msg = m.Admin(1, 2, "group.update", {"name": "g", "max_talk": 1.5})
    back = decode_message(encode_message(msg))
    assert back == msg
    assert isinstance(back.args["max_talk"], float)
    assert isinstance(decode_message(encode_message(m.Admin(1, 2, "x", {"n": 3}))).args["n"], int)


def test_heartbeat_fast_path_agrees_with_the_generic_codec() -> None:
    from ptt.protocol.messages import decode_heartbeat, encode_heartbeat_ack

    for txn, sid in [(1, 2), (0x7FFFFFFF, 0xFFFFFFFF), (300, 70000)]:
        data = encode_message(m.Heartbeat(txn, sid))
        assert decode_heartbeat(data) == (txn, sid)
        assert encode_heartbeat_ack(txn) == encode_message(m.HeartbeatAck(txn))
        assert encode_heartbeat_ack(txn, sid) == encode_message(m.HeartbeatAck(txn, sid))
    assert decode_heartbeat(encode_message(m.Bye(1, 2))) is None
    assert decode_heartbeat(b"\x94\x01\x05\xa1x\x01") is None  # txn of the wrong type
    assert decode_heartbeat(b"\x94\x01\x05") is None  # truncated


def test_the_codec_owns_the_layout_for_any_table_of_messages() -> None:
    from ptt.wire.control import ControlCodec

    @dataclasses.dataclass(frozen=True)
    class Ping:
        txn: int
        note: str = ""

    @dataclasses.dataclass(frozen=True)
    class Beat:
        txn: int
        session_id: int

    @dataclasses.dataclass(frozen=True)
    class BeatAck:
        txn: int
        digest: int = 0

    codec: ControlCodec[object] = ControlCodec(3, {9: Ping, 4: Beat, 5: BeatAck}, 4, 5)
    data = codec.encode_message(Ping(7, "hi"))
    assert msgpack.unpackb(data) == [3, 9, 7, "hi"]
    assert codec.decode_message(data) == Ping(7, "hi")
    assert codec.decode_heartbeat(codec.encode_message(Beat(1, 2))) == (1, 2)
    assert codec.encode_heartbeat_ack(6, 8) == codec.encode_message(BeatAck(6, 8))
    assert codec.encoder_of(Ping(0, "x"))(5, "y") == codec.encode_message(Ping(5, "y"))
    for bad in (msgpack.packb([1, 9, 7]), msgpack.packb([3, 8, 7]), msgpack.packb([3, True, 7])):
        with pytest.raises(ProtocolError):
            codec.decode_message(bad)
    with pytest.raises(ProtocolError):
        codec.encode_message(m.Heartbeat(1, 2))  # not in this table


def test_a_logins_join_txns_follow_it_in_the_txn_ring() -> None:
    """The k-th join a Login carries is answered under the txn the k+1-th next_txn after the
    Login's gives, across the wrap from 2**31-1 to 1 (0 is never a txn)."""
    for login in (1, 7, 0x7FFFFFF0, 0x7FFFFFFE, 0x7FFFFFFF):
        txn = login
        for k in range(70):
            txn = m.next_txn(txn)
            assert txn != 0
            assert m.join_txn(login, k) == txn
    assert m.next_txn(0x7FFFFFFF) == 1
