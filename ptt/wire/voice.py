"""The voice datagram: a fixed binary header, so the relay reads it without msgpack.

::

    0      1      2      3      4              8              12             16     18            22
    +------+------+------+------+--------------+--------------+--------------+------+--------------+---
    | 'V'  | ver  |flags |key id| group_id u32 | sender   u32 | burst_id u32 |seq16 | timestamp u32| payload
    +------+------+------+------+--------------+--------------+--------------+------+--------------+---

``sender`` is the talker's session id, ``seq`` counts frames within a burst (wrapping at 2**16),
``timestamp`` counts samples at the codec rate from the burst's start. Byte 3 is zero in a clear
frame; an ENCRYPTED frame carries there the low byte of its key's epoch (``ptt.crypto.voice``).
The payload belongs to the media layer (``ptt.media.packet``): the primary Opus frame plus
optional redundant earlier frames.

This module is the only one that knows where a field sits: everything else packs with
:func:`encode_voice`, splits with :func:`decode_voice`, and on the hot paths (relay, multicast,
recording) reads single fields with the ``peek_*`` helpers, which cost one ``unpack_from``.

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

VOICE_MAGIC = 0x56  # "V": a positive fixint, never the first byte of a msgpack array
VOICE_VERSION = 1
HEADER = struct.Struct("!BBBBIIIHI")
HEADER_SIZE = HEADER.size  # 22
MAX_VOICE_DATAGRAM = 1_400
MAC_SIZE = 8
SIGNATURE_SIZE = 64  # a talker's Ed25519 signature (SIGNED; ptt.crypto.voice)
FLAGS_AT = 2  # the offsets, for tests that check the layout itself
KEY_ID_AT = 3
GROUP_AT = 4
SEQ_AT = 16
# the seq of a PROBE-flagged header says what it is (no payload): a member's multicast probe ...
PROBE_SEQ = 0
ECHO_SEQ = 1  # ... the server's echo of it (to the group) ...
HOLDER_SEQ = 2  # ... and the server's holder notice (unicast to a multicast member)
_U32 = struct.Struct("!I")
_U16 = struct.Struct("!H")
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
_PROBE = int(VoiceFlags.PROBE)


@dataclass(frozen=True, slots=True)
class VoiceHeader:
    group_id: int
    sender: int
    burst_id: int
    seq: int
    timestamp: int
    flags: VoiceFlags = VoiceFlags.NONE


def pack_header(header: VoiceHeader, key_id: int = 0) -> bytes:
    """The 22 header bytes of ``header`` (seq and timestamp wrapped to their widths)."""
    return HEADER.pack(VOICE_MAGIC, VOICE_VERSION, int(header.flags), key_id, header.group_id,
                       header.sender, header.burst_id, header.seq & 0xFFFF,
                       header.timestamp & 0xFFFFFFFF)


def encode_voice(header: VoiceHeader, payload: bytes) -> bytes:
    """One voice datagram: header then payload."""
    return pack_header(header) + payload


def unpack_header(data: bytes) -> tuple[VoiceHeader, int]:
    """The header of a datagram, with every flag bit kept, and its key id; ProtocolError for one
    shorter than a header or of another magic or version. No upper bound: the caller's rule."""
    if len(data) < HEADER_SIZE:
        raise _short(data)
    magic, version, flags, key_id, group_id, sender, burst_id, seq, ts = HEADER.unpack_from(data)
    if magic != VOICE_MAGIC:
        raise ProtocolError("not a voice datagram")
    if version != VOICE_VERSION:
        raise ProtocolError(f"unsupported voice version {version}")
    return VoiceHeader(group_id, sender, burst_id, seq, ts, VoiceFlags(flags)), key_id


def decode_voice(data: bytes) -> tuple[VoiceHeader, bytes]:
    """Split a voice datagram into header and payload; ProtocolError if malformed."""
    if len(data) < HEADER_SIZE:
        raise ProtocolError(f"voice datagram too short ({len(data)} bytes)")
    if len(data) > MAX_VOICE_DATAGRAM:
        raise ProtocolError(f"voice datagram too large ({len(data)} bytes)")
    magic, version, flags, _, group_id, sender, burst_id, seq, ts = HEADER.unpack_from(data)
    if magic != VOICE_MAGIC:
        raise ProtocolError("not a voice datagram")
    if version != VOICE_VERSION:
        raise ProtocolError(f"unsupported voice version {version}")
    return (
        VoiceHeader(group_id, sender, burst_id, seq, ts, VoiceFlags(flags & 0x7)),
        bytes(data[HEADER_SIZE:len(data) - MAC_SIZE if flags & VoiceFlags.AUTH else None]),
    )


def sealed_body(data: bytes) -> bytes:
    """What follows the header, less the talker's signature when SIGNED is set: for a sealed
    frame (no session MAC), the ciphertext and its tag."""
    end = len(data) - SIGNATURE_SIZE if data[FLAGS_AT] & _SIGNED else len(data)
    return bytes(data[HEADER_SIZE:end])


# --- peeks: one field without a full decode, for the hot paths -----------------------------------


def is_voice(data: bytes) -> bool:
    """True when ``data`` is a voice datagram rather than a control message."""
    return len(data) > 0 and data[0] == VOICE_MAGIC


def peek_route(data: bytes) -> tuple[int, int, int]:
    """(group_id, sender, burst_id) of a voice datagram, for the relay's hot path."""
    if len(data) < HEADER_SIZE or len(data) > MAX_VOICE_DATAGRAM or data[1] != VOICE_VERSION:
        raise ProtocolError("malformed voice datagram")
    _, _, _, _, group_id, sender, burst_id, _, _ = HEADER.unpack_from(data)
    return group_id, sender, burst_id


def peek_frame(data: bytes) -> tuple[int, int, int, int]:
    """(group_id, sender, burst_id, seq) of a voice datagram in one unpack: the relay's route
    and the frame count it keeps per burst."""
    if len(data) < HEADER_SIZE or len(data) > MAX_VOICE_DATAGRAM or data[1] != VOICE_VERSION:
        raise ProtocolError("malformed voice datagram")
    _, _, _, _, group_id, sender, burst_id, seq, _ = HEADER.unpack_from(data)
    return group_id, sender, burst_id, seq


def _short(data: bytes) -> ProtocolError:
    return ProtocolError(f"voice datagram too short ({len(data)} bytes)")


def peek_group(data: bytes) -> int:
    """The group id of a voice datagram; ProtocolError if it is shorter than a header."""
    if len(data) < HEADER_SIZE:
        raise _short(data)
    return int(_U32.unpack_from(data, GROUP_AT)[0])


def peek_seq(data: bytes) -> int:
    """The sequence number of a voice datagram; ProtocolError if it is shorter than a header."""
    if len(data) < HEADER_SIZE:
        raise _short(data)
    return int(_U16.unpack_from(data, SEQ_AT)[0])


def peek_key_id(data: bytes) -> int:
    """The key id of a voice datagram (0 for a clear one); ProtocolError if shorter than a
    header."""
    if len(data) < HEADER_SIZE:
        raise _short(data)
    return data[KEY_ID_AT]


def peek_flags(data: bytes) -> int | None:
    """The flags byte as a plain int (test it against ``VoiceFlags`` members), or None for a
    datagram too short to carry one."""
    return data[FLAGS_AT] if len(data) > FLAGS_AT else None


def is_probe(data: bytes) -> bool:
    """True for a datagram whose flags say PROBE (probes, echoes, holder notices)."""
    return len(data) > FLAGS_AT and bool(data[FLAGS_AT] & _PROBE)


def header_with_seq(data: bytes, seq: int) -> bytes:
    """The datagram's header alone, with ``seq`` in place of its own: the server's echo of a
    probe."""
    if len(data) < HEADER_SIZE:
        raise _short(data)
    return bytes(data[:SEQ_AT]) + _U16.pack(seq & 0xFFFF) + bytes(data[SEQ_AT + 2:HEADER_SIZE])


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


def strip_mac(datagram: bytes) -> bytes:
    """A datagram heard straight from a talker (multicast), without the MAC a listener cannot
    check: the bytes the talker made."""
    if len(datagram) < HEADER_SIZE + MAC_SIZE or not datagram[FLAGS_AT] & _AUTH:
        return datagram
    body = bytearray(datagram[:-MAC_SIZE])
    body[FLAGS_AT] &= _NOT_AUTH
    return bytes(body)


# --- the talker signature's place -----------------------------------------------------------------


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


def unsigned_header(data: bytes) -> bytes:
    """The datagram's header with SIGNED cleared: a sealed frame's associated data, so that the
    relay may drop the signature (:func:`strip_signature`) and the frame still opens."""
    head = bytearray(data[:HEADER_SIZE])
    head[FLAGS_AT] &= _NOT_SIGNED
    return bytes(head)


def split_signature(datagram: bytes) -> tuple[bytes, bytes] | None:
    """(signed part, signature) of a frame with SIGNED set that is long enough to carry one,
    else None."""
    n = len(datagram) - SIGNATURE_SIZE
    if n < HEADER_SIZE or not datagram[FLAGS_AT] & _SIGNED:
        return None
    return bytes(datagram[:n]), bytes(datagram[n:])
