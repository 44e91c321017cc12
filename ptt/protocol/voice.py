"""The voice datagram header: fixed binary, so the relay reads it without msgpack.

::

    0      1      2      3      4              8              12             16     18            22
    +------+------+------+------+--------------+--------------+--------------+------+--------------+---
    | 'V'  | ver  |flags | rsvd | group_id u32 | sender   u32 | burst_id u32 |seq16 | timestamp u32| payload
    +------+------+------+------+--------------+--------------+--------------+------+--------------+---

``sender`` is the talker's session id, ``seq`` counts frames within a burst (wrapping at 2**16),
``timestamp`` counts samples at the codec rate from the burst's start. The payload belongs to the
media layer (``ptt.media.packet``): the primary Opus frame plus optional redundant earlier frames.
The relay forwards the datagram unchanged after checking group, sender and burst.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntFlag

from ptt.errors import ProtocolError
from ptt.protocol.wire import VOICE_MAGIC

VOICE_VERSION = 1
HEADER = struct.Struct("!BBBxIIIHI")
HEADER_SIZE = HEADER.size  # 22
MAX_VOICE_DATAGRAM = 1_400


class VoiceFlags(IntFlag):
    NONE = 0
    END_OF_BURST = 1  # the talker's last frame of this burst
    PROBE = 2  # a multicast reachability probe, no audio
    ENCRYPTED = 4  # payload is AEAD ciphertext


@dataclass(frozen=True, slots=True)
class VoiceHeader:
    group_id: int
    sender: int
    burst_id: int
    seq: int
    timestamp: int
    flags: VoiceFlags = VoiceFlags.NONE


def encode_voice(header: VoiceHeader, payload: bytes) -> bytes:
    """One voice datagram: header then payload."""
    return (
        HEADER.pack(
            VOICE_MAGIC,
            VOICE_VERSION,
            int(header.flags),
            header.group_id,
            header.sender,
            header.burst_id,
            header.seq & 0xFFFF,
            header.timestamp & 0xFFFFFFFF,
        )
        + payload
    )


def decode_voice(data: bytes) -> tuple[VoiceHeader, bytes]:
    """Split a voice datagram into header and payload; ProtocolError if malformed."""
    if len(data) < HEADER_SIZE:
        raise ProtocolError(f"voice datagram too short ({len(data)} bytes)")
    if len(data) > MAX_VOICE_DATAGRAM:
        raise ProtocolError(f"voice datagram too large ({len(data)} bytes)")
    magic, version, flags, group_id, sender, burst_id, seq, ts = HEADER.unpack_from(data)
    if magic != VOICE_MAGIC:
        raise ProtocolError("not a voice datagram")
    if version != VOICE_VERSION:
        raise ProtocolError(f"unsupported voice version {version}")
    return (
        VoiceHeader(group_id, sender, burst_id, seq, ts, VoiceFlags(flags & 0x7)),
        bytes(data[HEADER_SIZE:]),
    )


def peek_route(data: bytes) -> tuple[int, int, int]:
    """(group_id, sender, burst_id) of a voice datagram, for the relay's hot path."""
    if len(data) < HEADER_SIZE or len(data) > MAX_VOICE_DATAGRAM or data[1] != VOICE_VERSION:
        raise ProtocolError("malformed voice datagram")
    _, _, _, group_id, sender, burst_id, _, _ = HEADER.unpack_from(data)
    return group_id, sender, burst_id
