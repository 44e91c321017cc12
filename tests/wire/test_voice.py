"""The voice header's peek helpers agree with the full decode, for clear, MAC'd and sealed frames."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ptt.crypto.voice import VoiceCipher, VoiceKey
from ptt.errors import ProtocolError
from ptt.wire.voice import (
    HEADER_SIZE,
    KEY_ID_AT,
    SEQ_AT,
    VoiceFlags,
    VoiceHeader,
    add_mac,
    decode_voice,
    encode_voice,
    header_with_seq,
    is_probe,
    is_voice,
    pack_header,
    peek_flags,
    peek_frame,
    peek_group,
    peek_key_id,
    peek_route,
    peek_seq,
    sealed_body,
    split_signature,
    strip_mac,
    unpack_header,
    unsigned_header,
)

U32 = st.integers(0, 2**32 - 1)
FLAGS = st.sampled_from([VoiceFlags.NONE, VoiceFlags.END_OF_BURST, VoiceFlags.PROBE,
                         VoiceFlags.END_OF_BURST | VoiceFlags.PROBE])
headers = st.builds(VoiceHeader, U32, U32, U32, st.integers(0, 2**16 - 1), U32, FLAGS)
payloads = st.binary(max_size=200)


@settings(max_examples=300, deadline=None)
@given(headers, payloads)
def test_peeks_agree_with_the_full_decode(header: VoiceHeader, payload: bytes) -> None:
    data = encode_voice(header, payload)
    decoded, body = decode_voice(data)
    assert (decoded, body) == (header, payload)
    assert is_voice(data)
    assert peek_route(data) == (decoded.group_id, decoded.sender, decoded.burst_id)
    assert peek_frame(data) == (*peek_route(data), decoded.seq)
    assert peek_group(data) == decoded.group_id
    assert peek_seq(data) == decoded.seq
    assert peek_flags(data) == int(decoded.flags)
    assert is_probe(data) == bool(decoded.flags & VoiceFlags.PROBE)
    assert peek_key_id(data) == 0
    assert unpack_header(data) == (decoded, 0)
    assert pack_header(header) == data[:HEADER_SIZE]


@settings(max_examples=200, deadline=None)
@given(headers, payloads, st.binary(min_size=32, max_size=32))
def test_peeks_read_the_same_through_the_session_mac(header: VoiceHeader, payload: bytes,
                                                     key: bytes) -> None:
    data = encode_voice(header, payload)
    sent = add_mac(key, data)
    assert peek_route(sent) == peek_route(data)
    assert (peek_group(sent), peek_seq(sent)) == (header.group_id, header.seq)
    assert peek_flags(sent) == int(header.flags | VoiceFlags.AUTH)
    assert is_probe(sent) == is_probe(data)
    assert decode_voice(sent) == (header, payload)
    assert strip_mac(sent) == data


@settings(max_examples=100, deadline=None)
@given(headers, st.integers(0, 2**16 - 1))
def test_the_probe_echo_is_the_header_with_another_seq(header: VoiceHeader, seq: int) -> None:
    data = add_mac(b"k" * 32, encode_voice(header, b"payload"))
    echo = header_with_seq(data, seq)
    assert len(echo) == HEADER_SIZE
    h, _ = decode_voice(echo)
    assert h == VoiceHeader(header.group_id, header.sender, header.burst_id, seq,
                            header.timestamp, header.flags)
    assert peek_flags(echo) == peek_flags(data)  # AUTH stays as it was: the caller's bytes


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2**16 - 1), U32, U32, st.integers(0, 2**16 - 1), st.binary(max_size=100),
       st.booleans())
def test_peeks_agree_with_a_sealed_frames_open(epoch: int, sender: int, burst: int, seq: int,
                                               payload: bytes, signed: bool) -> None:
    key = VoiceKey(77, epoch, os.urandom(32))
    cipher = VoiceCipher(key)
    flags = VoiceFlags.SIGNED if signed else VoiceFlags.NONE
    frame = cipher.seal(VoiceHeader(77, sender, burst, seq, 960, flags), payload)
    if signed:
        frame += b"s" * 64
    header, opened = cipher.open(frame)
    assert opened == payload
    assert peek_key_id(frame) == key.key_id == frame[KEY_ID_AT]
    assert peek_route(frame) == (header.group_id, header.sender, header.burst_id)
    assert peek_seq(frame) == header.seq
    assert peek_flags(frame) == int(header.flags)
    assert unpack_header(frame) == (header, key.key_id)
    assert len(sealed_body(frame)) == len(payload) + 16
    assert unsigned_header(frame)[2] == int(header.flags) & ~VoiceFlags.SIGNED
    assert (split_signature(frame) is not None) == signed


def test_peeks_refuse_a_datagram_shorter_than_a_header() -> None:
    short = encode_voice(VoiceHeader(1, 2, 3, 4, 5), b"")[:HEADER_SIZE - 1]
    for peek in (peek_group, peek_seq, peek_key_id, peek_route, peek_frame, unpack_header):
        with pytest.raises(ProtocolError):
            peek(short)
    with pytest.raises(ProtocolError):
        header_with_seq(short, 1)
    assert peek_flags(b"V\x01") is None and not is_probe(b"V\x01")
    assert peek_flags(short) == 0 and short[SEQ_AT:SEQ_AT + 2] == b"\x00\x04"


def test_voice_header_round_trip_and_route() -> None:
    h = VoiceHeader(group_id=3, sender=0xFFFFFFFE, burst_id=77, seq=65535, timestamp=2**32 - 1,
                    flags=VoiceFlags.END_OF_BURST)
    data = encode_voice(h, b"opus")
    assert is_voice(data)
    assert decode_voice(data) == (h, b"opus")
    assert peek_route(data) == (3, 0xFFFFFFFE, 77)


@pytest.mark.parametrize("data", [b"V", b"V\x01" + b"\x00" * 10, b"V\x09" + b"\x00" * 30,
                                  b"V\x01" + b"\x00" * 2000])
def test_malformed_voice_raises_protocol_error(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode_voice(data)
    with pytest.raises(ProtocolError):
        peek_route(data)
