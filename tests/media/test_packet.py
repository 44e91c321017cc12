from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ptt.errors import ProtocolError
from ptt.media.packet import (
    MAX_FRAME_BYTES,
    MAX_OFFSET,
    VoicePayload,
    encode_payload,
    parse_payload,
)

frames = st.binary(min_size=1, max_size=MAX_FRAME_BYTES)
copies = st.dictionaries(st.integers(1, MAX_OFFSET), frames, max_size=MAX_OFFSET).map(
    lambda d: tuple(sorted(d.items()))
)


def test_bare_frame_costs_one_byte() -> None:
    assert encode_payload(VoicePayload(b"opus")) == b"\x00opus"


def test_layout_mask_lengths_then_copies_then_primary() -> None:
    data = encode_payload(VoicePayload(b"PPP", ((1, b"aa"), (3, b"b" * 200))))
    assert data == bytes([0b101, 2, 0x80, 200]) + b"aa" + b"b" * 200 + b"PPP"


def test_redundant_frame_by_offset() -> None:
    p = VoicePayload(b"s", ((1, b"s-1"), (3, b"s-3")))
    assert p.redundant_frame(1) == b"s-1"
    assert p.redundant_frame(2) is None
    assert p.redundant_frame(3) == b"s-3"
    assert p.span == 3
    assert VoicePayload(b"s").span == 0


@given(frames, copies)
def test_round_trip(primary: bytes, redundancy: tuple[tuple[int, bytes], ...]) -> None:
    payload = VoicePayload(primary, redundancy)
    assert parse_payload(encode_payload(payload)) == payload


@given(st.binary(max_size=300))
def test_arbitrary_bytes_parse_or_raise_protocol_error(data: bytes) -> None:
    try:
        payload = parse_payload(data)
    except ProtocolError:
        return
    assert encode_payload(payload) == data


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"", "empty"),
        (b"\x00", "no primary"),
        (b"\x01", "truncated in its length"),
        (b"\x01\x81", "two-byte length"),
        (b"\x01\x00opus", "out of range"),
        (b"\x01\x85\x00" + b"x" * 1300, "out of range"),
        (b"\x01\x05abc", "shorter than"),
        (b"\x80\x03abc", "no primary"),
        (b"\x03\x01\x01ab", "no primary"),
        (b"\xff" + b"\x01" * 7, "truncated in its length"),
        (b"\x00" + b"x" * (MAX_FRAME_BYTES + 1), "too large"),
    ],
)
def test_malformed_payloads(data: bytes, why: str) -> None:
    with pytest.raises(ProtocolError, match=why):
        parse_payload(data)


@pytest.mark.parametrize(
    "payload",
    [
        VoicePayload(b""),
        VoicePayload(b"x", ((1, b""),)),
        VoicePayload(b"x" * (MAX_FRAME_BYTES + 1)),
        VoicePayload(b"x", ((0, b"y"),)),
        VoicePayload(b"x", ((MAX_OFFSET + 1, b"y"),)),
        VoicePayload(b"x", ((2, b"y"), (1, b"z"))),
        VoicePayload(b"x", ((2, b"y"), (2, b"z"))),
    ],
)
def test_encode_rejects_bad_payloads(payload: VoicePayload) -> None:
    with pytest.raises(ValueError):
        encode_payload(payload)
