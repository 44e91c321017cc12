"""The peer datagram (ptt.wire.peer): voice and floor messages between cluster nodes, its layout
and its tag."""

from __future__ import annotations

import hashlib

import pytest

from ptt.errors import ProtocolError
from ptt.wire.peer import (
    CONTROL,
    MAX_PEER_DATAGRAM,
    PEER_MAGIC,
    TAG_SIZE,
    VOICE,
    ForgedDatagram,
    PeerDatagram,
    fits,
    key_check,
    open_datagram,
    peer_key,
    seal,
)
from ptt.wire.voice import VoiceHeader, encode_voice

KEY = peer_key(b"s" * 32)
FRAME = encode_voice(VoiceHeader(7, 3, 9, 41, 960), bytes(range(80)))


def test_a_sealed_frame_opens_to_its_fields() -> None:
    data = seal(KEY, "node-a", 2**63 - 1, 12345, FRAME)
    assert open_datagram(KEY, data) == PeerDatagram("node-a", 2**63 - 1, 12345, FRAME)


def test_the_layout_byte_by_byte() -> None:
    data = seal(KEY, "b", 0x0102030405060708, 0x1112131415161718, FRAME)
    assert data[0] == PEER_MAGIC == ord("P")
    assert data[1] == 2  # version
    assert data[2] == VOICE == 1  # kind
    assert data[3] == 1 and data[4:5] == b"b"  # the node id, its length first
    assert data[5:13] == bytes(range(1, 9))  # epoch, big-endian
    assert data[13:21] == bytes(range(0x11, 0x19))  # counter
    assert data[21:-TAG_SIZE] == FRAME
    assert len(data) == 21 + len(FRAME) + TAG_SIZE


def test_a_control_message_is_its_own_kind_under_the_tag() -> None:
    message = b"\x9c\x02\x02 a cluster message"
    data = seal(KEY, "b", 7, 9, message, CONTROL)
    assert data[2] == CONTROL == 2
    assert open_datagram(KEY, data) == PeerDatagram("b", 7, 9, message, CONTROL)
    relabelled = bytearray(data)
    relabelled[2] = VOICE  # the kind is under the tag: a voice datagram cannot be made of it
    with pytest.raises(ForgedDatagram):
        open_datagram(KEY, bytes(relabelled))
    with pytest.raises(ProtocolError):
        seal(KEY, "b", 7, 9, message, 3)


def test_what_fits_in_one_datagram() -> None:
    room = MAX_PEER_DATAGRAM - 21 - TAG_SIZE  # a one-byte node id's
    assert fits("b", bytes(room)) and not fits("b", bytes(room + 1))
    assert len(seal(KEY, "b", 1, 1, bytes(room), CONTROL)) == MAX_PEER_DATAGRAM


def test_a_forged_or_altered_datagram_is_refused_as_forged() -> None:
    data = bytearray(seal(KEY, "a", 5, 1, FRAME))
    with pytest.raises(ForgedDatagram):
        open_datagram(peer_key(b"t" * 32), bytes(data))  # another cluster's key
    for at in (4, 6, 16, 26, len(data) - 1):  # node id, epoch, counter, frame, tag
        altered = bytearray(data)
        altered[at] ^= 0x01
        with pytest.raises(ForgedDatagram):
            open_datagram(KEY, bytes(altered))


@pytest.mark.parametrize("data", [
    b"", b"P", bytes(36), b"X" + seal(KEY, "a", 1, 1, FRAME)[1:],  # too short, another magic
    b"P\x01" + seal(KEY, "a", 1, 1, FRAME)[2:],  # another version
    b"P\x02\x03" + seal(KEY, "a", 1, 1, FRAME)[3:],  # an unknown kind
    b"P\x02\x01\x00" + bytes(40),  # an empty node id
    b"P\x02\x01\xff" + bytes(40),  # a node id longer than the datagram
    bytes([PEER_MAGIC, 2, 1, 1]) + b"a" + bytes(MAX_PEER_DATAGRAM),  # too long
], ids=["empty", "one", "zeros", "magic", "version", "kind", "no-id", "long-id",
        "too-long"])
def test_what_is_not_a_peer_datagram_is_one_clear_error(data: bytes) -> None:
    with pytest.raises(ProtocolError) as info:
        open_datagram(KEY, data)
    assert type(info.value) is ProtocolError  # malformed, not forged


def test_a_node_id_not_utf8_under_a_right_tag_is_malformed() -> None:
    body = bytes([PEER_MAGIC, 2, 1, 1, 0xFF]) + bytes(16) + FRAME
    data = body + hashlib.blake2s(body, digest_size=TAG_SIZE, key=KEY).digest()
    with pytest.raises(ProtocolError, match="UTF-8"):
        open_datagram(KEY, data)


def test_the_key_and_its_check_depend_on_the_secret_alone() -> None:
    assert peer_key(b"s" * 32) == KEY and len(KEY) == 32
    assert peer_key(b"t" * 32) != KEY
    assert KEY != b"s" * 32  # derived, not the secret itself
    assert key_check(KEY) == key_check(peer_key(b"s" * 32)) != key_check(peer_key(b"t" * 32))
    assert 0 <= key_check(KEY) < 2**56
    with pytest.raises(ProtocolError):
        peer_key(b"")
    with pytest.raises(ProtocolError):
        seal(KEY, "", 1, 1, FRAME)
