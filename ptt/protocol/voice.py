"""The voice datagram header: fixed binary, so the relay reads it without msgpack.

::

    0      1      2      3      4              8              12             16     18            22
    +------+------+------+------+--------------+--------------+--------------+------+--------------+---
    | 'V'  | ver  |flags | rsvd | group_id u32 | sender   u32 | burst_id u32 |seq16 | timestamp u32| payload
    +------+------+------+------+--------------+--------------+--------------+------+--------------+---

``sender`` is the talker's session id, ``seq`` counts frames within a burst (wrapping at 2**16),
``timestamp`` counts samples at the codec rate from the burst's start. The payload belongs to the
media layer (``ptt.media.packet``): the primary Opus frame plus optional redundant earlier frames.

**Session MAC.** Every voice datagram a client sends (frames and multicast probes) carries, with
the AUTH flag set, an 8-byte trailer: keyed BLAKE2s of everything before it, under a key derived
from the sender's session key (:func:`voice_mac_key`), which only that client and the server hold.
The server checks it (:func:`open_mac`) before the floor check, so neither a host that never
logged in nor a member naming another's session id (from a spoofed address, or on the multicast
address) gets a frame relayed or bridged, and forwards the datagram without it (AUTH cleared):
listeners get exactly the bytes the talker made, which for an ENCRYPTED frame are the AEAD's
associated data. Multicast listeners hear talkers directly and cannot check the trailer: they
drop it (:func:`strip_mac`). Members share the group key, so in an encrypted group every frame
also carries the talker's own signature (SIGNED, ``ptt.crypto.voice``), which multicast
listeners check against the floor holder's key; see docs/security.md.

::

    header (22) | payload | SIG64 (only with SIGNED) | MAC8 (only with AUTH: BLAKE2s-64(voice
    key, everything before it))
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass
from enum import IntFlag

from ptt.errors import ProtocolError
from ptt.protocol.wire import VOICE_MAGIC

VOICE_VERSION = 1
HEADER = struct.Struct("!BBBxIIIHI")
HEADER_SIZE = HEADER.size  # 22
MAX_VOICE_DATAGRAM = 1_400
MAC_SIZE = 8
SIGNATURE_SIZE = 64  # a talker's Ed25519 signature (SIGNED; ptt.crypto.voice)
FLAGS_AT = 2  # the flags byte's offset
_VOICE_MAC_INFO = b"ptt-voice-mac-v1"
_blake2s = hashlib.blake2s
_compare = hmac.compare_digest


class VoiceFlags(IntFlag):
    NONE = 0
    END_OF_BURST = 1  # the talker's last frame of this burst
    PROBE = 2  # a multicast reachability probe, no audio
    ENCRYPTED = 4  # payload is AEAD ciphertext
    AUTH = 8  # a session MAC trailer follows the payload (client to server only)
    SIGNED = 16  # the talker's Ed25519 signature follows the payload (ptt.crypto.voice)


_AUTH = int(VoiceFlags.AUTH)  # plain ints on the hot path: IntFlag arithmetic costs ~1 us
_NOT_AUTH = 0xFF & ~_AUTH
_SIGNED = int(VoiceFlags.SIGNED)
_NOT_SIGNED = 0xFF & ~_SIGNED

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
        bytes(data[HEADER_SIZE:len(data) - MAC_SIZE if flags & VoiceFlags.AUTH else None]),
    )


def peek_route(data: bytes) -> tuple[int, int, int]:
    """(group_id, sender, burst_id) of a voice datagram, for the relay's hot path."""
    if len(data) < HEADER_SIZE or len(data) > MAX_VOICE_DATAGRAM or data[1] != VOICE_VERSION:
        raise ProtocolError("malformed voice datagram")
    _, _, _, group_id, sender, burst_id, _, _ = HEADER.unpack_from(data)
    return group_id, sender, burst_id


# --- the session MAC ------------------------------------------------------------------------------


def voice_mac_key(session_key: bytes) -> bytes:
    """The sender's voice MAC key, from the session key both ends of a login derive."""
    return hmac.digest(session_key, _VOICE_MAC_INFO, "sha256")


def add_mac(key: bytes, datagram: bytes) -> bytes:
    """The datagram as its client sends it: AUTH set, the MAC appended."""
    body = bytearray(datagram)
    body[FLAGS_AT] |= _AUTH
    body += _blake2s(body, digest_size=MAC_SIZE, key=key).digest()
    return bytes(body)


def open_mac(key: bytes, datagram: bytes) -> bytes | None:
    """The datagram without its MAC and AUTH flag if the MAC is right under ``key``, else None
    (no AUTH flag, too short, or a wrong MAC): what the server forwards."""
    n = len(datagram) - MAC_SIZE
    if n < HEADER_SIZE or not datagram[FLAGS_AT] & _AUTH or not key:
        return None
    body = bytearray(datagram[:n])
    if not _compare(_blake2s(body, digest_size=MAC_SIZE, key=key).digest(), datagram[n:]):
        return None
    body[FLAGS_AT] &= _NOT_AUTH
    return bytes(body)


def strip_signature(datagram: bytes) -> bytes:
    """A signed frame as the relay hands it to its unicast members, who have the server's word
    for the sender (it checked the session MAC) and no use for the talker's signature: without
    it, and with SIGNED cleared (the flag is not in the frame's associated data, so the frame
    still opens). Anything else as it is. Multicast listeners get the signed frame."""
    if not datagram[FLAGS_AT] & _SIGNED or len(datagram) < HEADER_SIZE + SIGNATURE_SIZE:
        return datagram
    body = bytearray(datagram[:-SIGNATURE_SIZE])
    body[FLAGS_AT] &= _NOT_SIGNED
    return bytes(body)


def strip_mac(datagram: bytes) -> bytes:
    """A datagram heard straight from a talker (multicast), without the MAC a listener cannot
    check: the bytes the talker made."""
    if len(datagram) < HEADER_SIZE + MAC_SIZE or not datagram[FLAGS_AT] & _AUTH:
        return datagram
    body = bytearray(datagram[:-MAC_SIZE])
    body[FLAGS_AT] &= _NOT_AUTH
    return bytes(body)
