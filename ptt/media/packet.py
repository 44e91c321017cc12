"""The voice payload: one primary Opus frame plus copies of up to 8 earlier frames.

This is the bytes after the voice header (``ptt.wire.voice``). Like RFC 2198 redundancy on
desk-phone paging, a packet repeats earlier frames verbatim, so a loss is repaired with an exact
copy a few packets later rather than an approximation. Which earlier frames ride along is a bit
mask of offsets: bit ``i`` set means frame ``seq - (i + 1)`` is included. Offsets need not be
consecutive: ``(1, 3)`` costs two copies like ``(1, 2)`` and repairs the same share of random
losses, but also every loss burst of up to three packets (a copy three packets on survives it).

::

    0        1                           1+L
    +--------+----------- ... -----------+---------- ... ---------+------------ ... ---+
    | offset | length of each copy,      | the copies, in the     | primary frame       |
    | mask   | smallest offset first     | same order             | (rest of payload)   |
    +--------+----------- ... -----------+---------- ... ---------+------------ ... ---+

A length is one byte below 128, else two bytes big-endian with the top bit set. The primary's
length is what remains, as in RFC 2198, so a packet without copies costs one byte over the bare
Opus frame. Every frame holds 1..1275 bytes: an Opus packet is never empty.
"""

from __future__ import annotations

from dataclasses import dataclass

from ptt.errors import ProtocolError

__all__ = ["MAX_OFFSET", "MAX_FRAME_BYTES", "VoicePayload", "encode_payload", "parse_payload"]

MAX_OFFSET = 8  # how far back a copy can reach: one bit of the mask per offset
MAX_FRAME_BYTES = 1_275  # the largest Opus frame (RFC 6716 section 3.4)
_LONG = 0x80


@dataclass(frozen=True, slots=True)
class VoicePayload:
    """One primary frame and ``(offset, frame)`` copies of earlier ones, offsets ascending."""

    primary: bytes
    redundancy: tuple[tuple[int, bytes], ...] = ()

    def redundant_frame(self, offset: int) -> bytes | None:
        """The copy of frame ``seq - offset`` carried here, or None."""
        for o, frame in self.redundancy:
            if o == offset:
                return frame
        return None

    @property
    def span(self) -> int:
        """The largest offset carried (0 without copies)."""
        return self.redundancy[-1][0] if self.redundancy else 0


def encode_payload(payload: VoicePayload) -> bytes:
    """Serialise ``payload``; ValueError for an empty or oversized frame or a bad offset."""
    mask = 0
    lengths = bytearray()
    previous = 0
    for offset, frame in payload.redundancy:
        if not previous < offset <= MAX_OFFSET:
            raise ValueError(f"offsets must ascend within 1..{MAX_OFFSET}, got {offset}")
        previous = offset
        mask |= 1 << (offset - 1)
        _check_frame(frame)
        n = len(frame)
        lengths += bytes((n,)) if n < _LONG else bytes((_LONG | (n >> 8), n & 0xFF))
    _check_frame(payload.primary)
    return b"".join((bytes((mask,)), lengths, *(f for _, f in payload.redundancy),
                     payload.primary))


def parse_payload(data: bytes) -> VoicePayload:
    """Parse the bytes after the voice header; ProtocolError on anything malformed."""
    if not data:
        raise ProtocolError("empty voice payload")
    mask = data[0]
    offsets = [i + 1 for i in range(MAX_OFFSET) if mask >> i & 1]
    pos = 1
    lengths = []
    for _ in offsets:
        if pos >= len(data):
            raise ProtocolError("voice payload truncated in its length table")
        n = data[pos]
        pos += 1
        if n & _LONG:
            if pos >= len(data):
                raise ProtocolError("voice payload truncated in a two-byte length")
            n = ((n & 0x7F) << 8) | data[pos]
            pos += 1
        if n == 0 or n > MAX_FRAME_BYTES:
            raise ProtocolError(f"redundant frame length {n} out of range")
        lengths.append(n)
    copies = []
    for offset, n in zip(offsets, lengths, strict=True):
        if pos + n > len(data):
            raise ProtocolError("voice payload shorter than its redundant frames")
        copies.append((offset, bytes(data[pos : pos + n])))
        pos += n
    primary = bytes(data[pos:])
    if not primary:
        raise ProtocolError("voice payload has no primary frame")
    if len(primary) > MAX_FRAME_BYTES:
        raise ProtocolError(f"primary frame of {len(primary)} bytes is too large")
    return VoicePayload(primary, tuple(copies))


def _check_frame(frame: bytes) -> None:
    if not 0 < len(frame) <= MAX_FRAME_BYTES:
        raise ValueError(f"an Opus frame holds 1..{MAX_FRAME_BYTES} bytes, got {len(frame)}")
