"""Opus formats: packet TOC bytes (RFC 6716 section 3.1) and the Ogg Opus headers (RFC 7845).

Pure functions and frozen dataclasses, no I/O. Durations are in 48 kHz samples, the unit of Ogg Opus
granule positions whatever rate the codec runs at.

A *lost-frame packet* (:func:`lost_packet`) is a TOC byte with no frame data: RFC 6716 decoders treat
an empty frame as lost and conceal it (libopus: "payloads of 1 (2 including ToC) or 0 trigger the
PLC/DTX"), and the TOC still gives its duration. ptt stores one in the slot of each frame that
never arrived, so recordings keep their length and replay its timing.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ptt.errors import RecordingError

GRANULE_RATE = 48_000  # RFC 7845: granule positions and pre-skip count 48 kHz samples
DEFAULT_PRE_SKIP = 312  # libopus look-ahead, 6.5 ms (104 samples at 16 kHz)
VENDOR = "ptt"
OPUS_HEAD = b"OpusHead"
OPUS_TAGS = b"OpusTags"
MAX_PACKET_SAMPLES = 5_760  # 120 ms, the longest Opus packet

# 48 kHz samples per frame for each TOC configuration (RFC 6716 section 3.1)
_SILK = (480, 960, 1920, 2880)
_HYBRID = (480, 960)
_CELT = (120, 240, 480, 960)


# -- Opus packets ---------------------------------------------------------------------------------
def frame_samples(toc: int) -> int:
    """48 kHz samples in each frame of a packet with this TOC byte."""
    config = toc >> 3
    if config < 12:
        return _SILK[config & 3]
    if config < 16:
        return _HYBRID[config & 1]
    return _CELT[config & 3]


def frame_count(packet: bytes) -> int:
    """Frames in an Opus packet; ValueError if its TOC sequence is malformed."""
    if not packet:
        raise ValueError("empty Opus packet")
    code = packet[0] & 3
    if code == 0:
        return 1
    if code in (1, 2):
        return 2
    if len(packet) < 2:
        raise ValueError("Opus code 3 packet without its frame count byte")
    count = packet[1] & 0x3F
    if count == 0:
        raise ValueError("Opus code 3 packet with zero frames")
    return count


def packet_samples(packet: bytes) -> int:
    """Duration of an Opus packet in 48 kHz samples; ValueError if malformed or over 120 ms."""
    n = frame_count(packet) * frame_samples(packet[0])
    if n > MAX_PACKET_SAMPLES:
        raise ValueError(f"Opus packet of {n / 48:g} ms (more than 120 ms)")
    return n


def packet_channels(packet: bytes) -> int:
    return 2 if packet[0] & 0x04 else 1


def lost_packet(like: bytes) -> bytes:
    """A packet with the duration of ``like`` and no frame data: decoders conceal it as lost."""
    toc = like[0]
    count = frame_count(like)
    if count == 1:
        return bytes([toc & 0xFC])
    return bytes([(toc & 0xFC) | 3, count])  # CBR code 3: `count` frames of zero bytes


def is_lost_packet(packet: bytes) -> bool:
    """Whether a packet carries no coded audio (a lost-frame packet, or a DTX frame)."""
    if len(packet) <= 1:
        return True
    return packet[0] & 3 == 3 and len(packet) == 2 and not packet[1] & 0x80


# -- headers --------------------------------------------------------------------------------------
_HEAD = struct.Struct("<8sBBHIhB")


@dataclass(frozen=True, slots=True)
class OpusHead:
    """The identification header. ``input_rate`` is informational (0 = unknown)."""

    channels: int = 1
    pre_skip: int = DEFAULT_PRE_SKIP
    input_rate: int = 16_000
    output_gain: int = 0  # Q7.8 dB
    mapping_family: int = 0
    stream_count: int = 1
    coupled_count: int = 0
    mapping: bytes = b""
    version: int = 1

    def to_bytes(self) -> bytes:
        out = _HEAD.pack(
            OPUS_HEAD,
            self.version,
            self.channels,
            self.pre_skip,
            self.input_rate,
            self.output_gain,
            self.mapping_family,
        )
        if self.mapping_family != 0:
            out += bytes([self.stream_count, self.coupled_count]) + self.mapping
        return out

    @classmethod
    def parse(cls, data: bytes) -> OpusHead:
        if len(data) < _HEAD.size or not data.startswith(OPUS_HEAD):
            raise RecordingError("not an OpusHead packet")
        _, version, channels, pre_skip, rate, gain, family = _HEAD.unpack_from(data)
        if version >> 4 != 0:
            raise RecordingError(f"unsupported Ogg Opus version {version}")
        if channels == 0:
            raise RecordingError("OpusHead declares zero channels")
        streams, coupled, mapping = 1, int(channels == 2), b""
        if family != 0:
            if len(data) < _HEAD.size + 2 + channels:
                raise RecordingError("OpusHead channel mapping table is cut off")
            streams, coupled = data[_HEAD.size], data[_HEAD.size + 1]
            mapping = data[_HEAD.size + 2 : _HEAD.size + 2 + channels]
        elif channels > 2:
            raise RecordingError(f"OpusHead mapping family 0 with {channels} channels")
        return cls(channels, pre_skip, rate, gain, family, streams, coupled, mapping, version)


@dataclass(frozen=True, slots=True)
class OpusTags:
    """The comment header: a vendor string and ``KEY=value`` comments (keys case-insensitive)."""

    vendor: str = VENDOR
    comments: tuple[tuple[str, str], ...] = ()

    def get(self, key: str, default: str | None = None) -> str | None:
        key = key.upper()
        for k, v in self.comments:
            if k.upper() == key:
                return v
        return default

    def to_bytes(self) -> bytes:
        vendor = self.vendor.encode()
        parts = [OPUS_TAGS, struct.pack("<I", len(vendor)), vendor]
        parts.append(struct.pack("<I", len(self.comments)))
        for key, value in self.comments:
            if not key or "=" in key or not key.isascii():
                raise RecordingError(f"invalid Opus comment key {key!r}")
            text = f"{key}={value}".encode()
            parts += [struct.pack("<I", len(text)), text]
        return b"".join(parts)

    @classmethod
    def parse(cls, data: bytes) -> OpusTags:
        if not data.startswith(OPUS_TAGS):
            raise RecordingError("not an OpusTags packet")
        try:
            pos = 8
            (n,) = struct.unpack_from("<I", data, pos)
            vendor = data[pos + 4 : pos + 4 + n]
            if len(vendor) != n:
                raise struct.error("vendor string cut off")
            pos += 4 + n
            (count,) = struct.unpack_from("<I", data, pos)
            pos += 4
            comments = []
            for _ in range(count):
                (n,) = struct.unpack_from("<I", data, pos)
                raw = data[pos + 4 : pos + 4 + n]
                if len(raw) != n:
                    raise struct.error("comment cut off")
                pos += 4 + n
                key, _, value = raw.decode("utf-8", "replace").partition("=")
                comments.append((key, value))
        except struct.error as exc:
            raise RecordingError(f"malformed OpusTags header ({exc})") from exc
        return cls(vendor.decode("utf-8", "replace"), tuple(comments))
