"""Per-frame voice AEAD: AES-256-GCM-SIV (RFC 8452), the header as associated data, replay."""

from __future__ import annotations

import os

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCMSIV
from hypothesis import given, settings
from hypothesis import strategies as st

from ptt.crypto.voice import (
    TAG_SIZE,
    VoiceCipher,
    VoiceKey,
    VoiceOpener,
    VoiceSealer,
)
from ptt.errors import AuthError, ProtocolError
from ptt.media.packet import VoicePayload, encode_payload, parse_payload
from ptt.wire.voice import (
    HEADER_SIZE,
    KEY_ID_AT,
    VoiceFlags,
    VoiceHeader,
    decode_voice,
    peek_key_id,
    peek_route,
)

GID = 4242


def key(epoch: int = 1) -> VoiceKey:
    return VoiceKey(GID, epoch, os.urandom(32))


def frame(seq: int, burst: int = 7, sender: int = 99, flags: VoiceFlags = VoiceFlags.NONE,
          ) -> tuple[VoiceHeader, bytes]:
    payload = encode_payload(VoicePayload(os.urandom(60), ((1, os.urandom(60)),)))
    return VoiceHeader(GID, sender, burst, seq, seq * 960, flags), payload


def opener(*keys: VoiceKey) -> VoiceOpener:
    o = VoiceOpener(GID)
    for k in keys:
        o.install(k)
    return o


def test_aes_256_gcm_siv_rfc8452_appendix_c2() -> None:
    k = bytes.fromhex("01" + "00" * 31)
    nonce = bytes.fromhex("03" + "00" * 11)
    aead = AESGCMSIV(k)
    assert aead.encrypt(nonce, b"", None).hex() == "07f5f4169bbf55a8400cd47ea6fd400f"
    assert (aead.encrypt(nonce, bytes.fromhex("0100000000000000"), None).hex()
            == "c2ef328e5c71c83b843122130f7364b761e0b97427e3df28")
    assert (aead.encrypt(nonce, bytes.fromhex("0200000000000000"), b"\x01").hex()
            == "1de22967237a813291213f267e3b452f02d01ae33e4ec854")


def test_round_trip_keeps_the_header_readable_for_the_relay() -> None:
    k = key(epoch=0x1234)
    sealer, o = VoiceSealer(k), opener(k)
    header, payload = frame(0, flags=VoiceFlags.END_OF_BURST)
    data = sealer.seal(header, payload)
    assert len(data) == HEADER_SIZE + len(payload) + TAG_SIZE
    assert peek_route(data) == (GID, 99, 7)  # the relay's hot path, unchanged
    clear, body = decode_voice(data)  # and the old parser still reads the header
    assert clear.flags == VoiceFlags.END_OF_BURST | VoiceFlags.ENCRYPTED and body != payload
    assert peek_key_id(data) == 0x34 == data[KEY_ID_AT]
    got_header, got = o.open(data)
    assert got == payload and parse_payload(got).primary
    assert (got_header.sender, got_header.burst_id, got_header.seq) == (99, 7, 0)


def test_a_non_member_can_neither_decode_nor_inject() -> None:
    k = key()
    data = VoiceSealer(k).seal(*frame(1))
    outsider = opener(VoiceKey(GID, 1, os.urandom(32)))  # right id, wrong secret
    with pytest.raises(AuthError):
        outsider.open(data)
    forged = VoiceSealer(VoiceKey(GID, 1, os.urandom(32))).seal(*frame(1, burst=8))
    member = opener(k)
    with pytest.raises(AuthError):
        member.open(forged)
    # plaintext voice is not an encrypted frame: a member never plays it in a keyed group
    header, payload = frame(2)
    from ptt.wire.voice import encode_voice
    with pytest.raises((AuthError, ProtocolError)):
        member.open(encode_voice(header, payload))


def test_every_header_field_is_authenticated() -> None:
    k = key()
    o = opener(k)
    good = VoiceSealer(k).seal(*frame(5))
    for i in range(len(good)):
        bad = bytearray(good)
        bad[i] ^= 0x01
        with pytest.raises((AuthError, ProtocolError)):
            o.open(bytes(bad))
    assert o.open(good)[0].seq == 5


def test_a_frame_cannot_be_moved_to_another_group() -> None:
    secret = os.urandom(32)
    a, b = VoiceKey(1, 1, secret), VoiceKey(2, 1, secret)
    data = bytearray(VoiceCipher(a).seal(VoiceHeader(1, 5, 6, 7, 8), b"audio"))
    data[4:8] = (2).to_bytes(4, "big")
    with pytest.raises(AuthError):
        VoiceCipher(b).open(bytes(data))


def test_replayed_frames_and_replayed_bursts_are_refused() -> None:
    k = key()
    sealer, o = VoiceSealer(k), opener(k)
    burst1 = [sealer.seal(*frame(s, burst=1)) for s in range(10)]
    for d in burst1:
        o.open(d)
    with pytest.raises(AuthError, match="replayed"):
        o.open(burst1[3])
    o.end_burst(99, 1)  # the floor moved on (FloorIdle)
    with pytest.raises(AuthError, match="ended"):
        o.open(burst1[0])
    # bursts pushed out by newer ones are ended too
    burst2 = [sealer.seal(*frame(s, burst=2)) for s in range(2)]
    o.open(burst2[0])
    for b in range(3, 8):
        o.open(sealer.seal(*frame(0, burst=b)))
    with pytest.raises(AuthError, match="ended"):
        o.open(burst2[1])  # never heard, but its burst was pushed out by four newer ones


def test_late_frames_after_end_of_burst_still_play_once() -> None:
    k = key()
    sealer, o = VoiceSealer(k), opener(k)
    frames = [sealer.seal(*frame(s, flags=VoiceFlags.END_OF_BURST if s == 4 else VoiceFlags.NONE))
              for s in range(5)]
    for i in (0, 1, 2, 4, 3):
        o.open(frames[i])
    with pytest.raises(AuthError):
        o.open(frames[3])


def test_the_talker_refuses_to_repeat_a_nonce() -> None:
    sealer = VoiceSealer(key())
    sealer.seal(*frame(0, burst=1))
    sealer.seal(*frame(1, burst=1))
    with pytest.raises(AuthError):
        sealer.seal(*frame(1, burst=1))  # seq again
    with pytest.raises(AuthError):
        sealer.seal(*frame(0x10000 - 0, burst=1))  # past 16 bits: would wrap
    sealer.seal(*frame(0, burst=2))
    with pytest.raises(AuthError, match="already sealed"):
        sealer.seal(*frame(5, burst=1))  # a hostile server handed out burst 1 again


def test_rotation_splits_bursts_not_frames() -> None:
    k1, k2 = key(1), key(2)
    sealer, o = VoiceSealer(k1), opener(k1, k2)
    first = sealer.seal(*frame(0, burst=1))
    sealer.install(k2)
    same_burst = sealer.seal(*frame(1, burst=1))
    next_burst = sealer.seal(*frame(0, burst=2))
    assert peek_key_id(first) == peek_key_id(same_burst) == 1 and peek_key_id(next_burst) == 2
    late = VoiceSealer(k1).seal(*frame(0, burst=9))
    for d in (first, same_burst, next_burst):
        o.open(d)
    with pytest.raises(AuthError):
        sealer.install(key(1))  # never back to an older epoch
    o.retire(1)
    assert o.epochs == [2]
    with pytest.raises(AuthError, match="no key"):
        o.open(late)  # after the grace period the old key opens nothing


def test_probes_stay_in_the_clear_and_oversize_is_refused() -> None:
    c = VoiceCipher(key())
    with pytest.raises(ValueError):
        c.seal(VoiceHeader(GID, 1, 1, 0, 0, VoiceFlags.PROBE), b"")
    with pytest.raises(ValueError):
        c.seal(VoiceHeader(GID, 1, 1, 0, 0), bytes(1400))
    with pytest.raises(ValueError):
        c.seal(VoiceHeader(GID + 1, 1, 1, 0, 0), b"x")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1),
                          st.integers(0, 2**16 - 1)), min_size=2, max_size=50, unique=True))
def test_distinct_frames_get_distinct_nonces(ids: list[tuple[int, int, int]]) -> None:
    c = VoiceCipher(VoiceKey(GID, 77, bytes(32)))
    assert len({c._nonce(*i) for i in ids}) == len(ids)
