"""Ogg pages (RFC 3533): a pure writer and a reader that survives damage.

A page is::

    0       4   5     6               14          18          22      26    27
    +-------+---+-----+---------------+-----------+-----------+-------+-----+-------------+------
    | OggS  |ver|flags| granule  i64  | serial u32| seq   u32 | CRC   |nsegs| lacing[n]   | body
    +-------+---+-----+---------------+-----------+-----------+-------+-----+-------------+------

all little-endian. ``flags``: 1 = the first segment continues a packet from the previous page,
2 = first page of a logical stream (BOS), 4 = last page (EOS). A packet of L bytes is laced as
L // 255 values of 255 then one value L % 255 (so a multiple of 255 ends with a 0); a lacing value
below 255 ends a packet. The granule position is the codec's position after the last packet that
*ends* on the page, or -1 when none does. The CRC is CRC-32 with polynomial 0x04c11db7, initial
value 0, no bit reflection and no final XOR, computed over the whole page with the CRC field zeroed.

Reading: :func:`read_pages` yields pages and raises :class:`OggError` at the first damaged spot
(truncated page, CRC mismatch, garbage) after yielding everything before it. :func:`scan_pages`
yields :class:`Damage` records instead of raising and resynchronises on the next valid page, as
RFC 3533 intends; the Opus layer uses it to keep whatever is still readable.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from ptt.errors import RecordingError

CAPTURE = b"OggS"
HEADER = struct.Struct("<4sBBqIIIB")  # capture, version, flags, granule, serial, seq, crc, nsegs
HEADER_SIZE = HEADER.size  # 27
MAX_SEGMENTS = 255
MAX_BODY = MAX_SEGMENTS * 255  # 65025
NO_GRANULE = -1  # no packet ends on this page

FLAG_CONTINUED = 0x01
FLAG_BOS = 0x02
FLAG_EOS = 0x04


class OggError(RecordingError):
    """A damaged or unreadable Ogg page; ``offset`` is where it starts in the file."""

    def __init__(self, message: str, offset: int, reason: str = "damaged") -> None:
        super().__init__(message)
        self.offset = offset
        self.reason = reason  # "truncated", "crc", "garbage", "version"


# -- CRC ------------------------------------------------------------------------------------------
# Ogg's CRC is the unreflected twin of zlib's CRC-32 (same polynomial). Reflecting every input byte,
# running zlib's reflected CRC without its pre/post inversion and reflecting the 32-bit result gives
# the Ogg value, at C speed; tests check it against a bit-by-bit implementation.
_REFLECT8 = bytes(int(f"{b:08b}"[::-1], 2) for b in range(256))


def _reflect32(x: int) -> int:
    return int(f"{x:032b}"[::-1], 2)


def crc32_ogg(data: bytes | bytearray | memoryview) -> int:
    """The Ogg page checksum of ``data`` (CRC field already zeroed)."""
    raw = zlib.crc32(bytes(data).translate(_REFLECT8), 0xFFFFFFFF) ^ 0xFFFFFFFF
    return _reflect32(raw)


# -- pages ----------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Page:
    """One Ogg page as read or written. ``offset``/``size`` locate it in its file (reading only)."""

    serial: int
    sequence: int
    granule: int
    flags: int
    lacing: bytes
    body: bytes
    offset: int = 0

    @property
    def continued(self) -> bool:
        return bool(self.flags & FLAG_CONTINUED)

    @property
    def bos(self) -> bool:
        return bool(self.flags & FLAG_BOS)

    @property
    def eos(self) -> bool:
        return bool(self.flags & FLAG_EOS)

    @property
    def size(self) -> int:
        return HEADER_SIZE + len(self.lacing) + len(self.body)

    @property
    def end(self) -> int:
        return self.offset + self.size

    def segments(self) -> list[tuple[bytes, bool]]:
        """The packet pieces on this page, each with whether it completes its packet.

        The first piece continues a packet from an earlier page when :attr:`continued` is set;
        a last piece with ``False`` continues on the next page.
        """
        pieces: list[tuple[bytes, bool]] = []
        start = pos = 0
        for value in self.lacing:
            pos += value
            if value < 255:
                pieces.append((self.body[start:pos], True))
                start = pos
        if start < len(self.body) or (self.lacing and self.lacing[-1] == 255):
            pieces.append((self.body[start:pos], False))
        return pieces

    def to_bytes(self) -> bytes:
        return encode_page(
            self.serial, self.sequence, self.granule, self.flags, self.lacing, self.body
        )


def encode_page(
    serial: int, sequence: int, granule: int, flags: int, lacing: bytes, body: bytes
) -> bytes:
    """Serialise one page, computing its CRC."""
    if len(lacing) > MAX_SEGMENTS:
        raise ValueError(f"an Ogg page holds at most {MAX_SEGMENTS} segments, not {len(lacing)}")
    if sum(lacing) != len(body):
        raise ValueError("Ogg lacing values do not add up to the body length")
    header = HEADER.pack(
        CAPTURE, 0, flags, granule, serial & 0xFFFFFFFF, sequence & 0xFFFFFFFF, 0, len(lacing)
    )
    page = bytearray(header + lacing + body)
    struct.pack_into("<I", page, 22, crc32_ogg(page))
    return bytes(page)


def lace(length: int) -> bytes:
    """Lacing values for one whole packet of ``length`` bytes."""
    return b"\xff" * (length // 255) + bytes([length % 255])


class OggStreamWriter:
    """Lays packets out in pages for one logical stream; pure (returns bytes, writes nothing).

    Call :meth:`pages` with the packets to put out now; each call produces whole pages that end on a
    packet boundary, so every call's output can be written and flushed on its own. The first call
    produces the BOS page; pass ``eos=True`` on the last call (with or without packets).
    """

    def __init__(self, serial: int) -> None:
        self.serial = serial & 0xFFFFFFFF
        self.sequence = 0
        self.granule = 0
        self.finished = False

    def pages(
        self, packets: Sequence[tuple[bytes, int]], *, eos: bool = False, flush_each: bool = False
    ) -> bytes:
        """Pages holding ``packets``, given as ``(data, granule after this packet)``.

        A packet longer than one page spans several, with the continuation flag set. With
        ``flush_each`` every packet starts a new page (Ogg Opus wants its two headers alone).
        """
        if self.finished:
            raise RecordingError("Ogg stream already ended (EOS written)")
        out = bytearray()
        lacing = bytearray()
        body = bytearray()
        granule = NO_GRANULE
        continued = False

        def emit(last: bool) -> None:
            nonlocal lacing, body, granule, continued
            flags = FLAG_CONTINUED if continued else 0
            continued = False
            if self.sequence == 0:
                flags |= FLAG_BOS
            if last and eos:
                flags |= FLAG_EOS
            out.extend(
                encode_page(self.serial, self.sequence, granule, flags, bytes(lacing), bytes(body))
            )
            self.sequence += 1
            lacing, body, granule = bytearray(), bytearray(), NO_GRANULE

        for index, (data, packet_granule) in enumerate(packets):
            values = lace(len(data))
            pos = 0
            for n, value in enumerate(values):
                if len(lacing) == MAX_SEGMENTS:
                    emit(last=False)
                    continued = n > 0  # the next page starts inside this packet
                lacing.append(value)
                body.extend(data[pos : pos + value])
                pos += value
            granule = packet_granule
            self.granule = packet_granule
            if flush_each and index < len(packets) - 1:
                emit(last=False)
        if lacing or eos or self.sequence == 0:
            if not lacing:
                granule = NO_GRANULE  # nothing ends here; opusinfo warns about anything else
            emit(last=True)
        if eos:
            self.finished = True
        return bytes(out)


# -- reading --------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Damage:
    """A stretch of the file that holds no valid page: ``[offset, end)`` and why."""

    offset: int
    end: int
    reason: str
    message: str

    def error(self) -> OggError:
        return OggError(self.message, self.offset, self.reason)


def parse_page(data: bytes | memoryview, offset: int = 0) -> Page:
    """The page starting at ``offset``; :class:`OggError` if it is absent, truncated or corrupt."""
    view = memoryview(data)
    available = len(view) - offset
    if available < HEADER_SIZE:
        if bytes(view[offset : offset + 4]) == CAPTURE[: min(4, available)]:
            raise OggError(
                f"truncated Ogg page at byte {offset}: only {available} bytes of its "
                f"{HEADER_SIZE}-byte header are present",
                offset,
                "truncated",
            )
        raise OggError(f"no Ogg page at byte {offset} (trailing garbage)", offset, "garbage")
    capture, version, flags, granule, serial, seq, crc, nsegs = HEADER.unpack_from(view, offset)
    if capture != CAPTURE:
        raise OggError(
            f"no Ogg page at byte {offset} (expected 'OggS', found {bytes(capture)!r})",
            offset,
            "garbage",
        )
    if version != 0:
        raise OggError(
            f"unsupported Ogg page version {version} at byte {offset}", offset, "version"
        )
    lacing_end = offset + HEADER_SIZE + nsegs
    if len(view) < lacing_end:
        raise OggError(
            f"truncated Ogg page at byte {offset}: its segment table is cut off",
            offset,
            "truncated",
        )
    lacing = bytes(view[offset + HEADER_SIZE : lacing_end])
    size = HEADER_SIZE + nsegs + sum(lacing)
    if available < size:
        raise OggError(
            f"truncated Ogg page at byte {offset}: the page is {size} bytes long but the file "
            f"ends after {available}",
            offset,
            "truncated",
        )
    page = bytearray(view[offset : offset + size])
    page[22:26] = b"\0\0\0\0"
    computed = crc32_ogg(page)
    if computed != crc:
        raise OggError(
            f"corrupted Ogg page at byte {offset} (stream {serial:#010x}, page {seq}): CRC "
            f"mismatch, stored {crc:#010x}, computed {computed:#010x}",
            offset,
            "crc",
        )
    body = bytes(view[lacing_end : offset + size])
    return Page(serial, seq, granule, flags, lacing, body, offset)


def read_pages(data: bytes, start: int = 0) -> Iterator[Page]:
    """Every page of ``data`` in order; raises :class:`OggError` at the first damaged spot.

    Everything before the damage has been yielded by then, so a caller may catch the error and
    keep what it got.
    """
    offset = start
    while offset < len(data):
        page = parse_page(data, offset)
        yield page
        offset = page.end


def scan_pages(data: bytes, start: int = 0) -> Iterator[Page | Damage]:
    """Every valid page of ``data``, with a :class:`Damage` record for each unreadable stretch.

    After damage the scan resumes at the next capture pattern that starts a valid page.
    """
    offset = start
    while offset < len(data):
        try:
            page = parse_page(data, offset)
        except OggError as err:
            resume = _resync(data, offset + 1)
            message = str(err)
            if resume < len(data):
                message += f"; reading resumes at byte {resume}"
            else:
                message += "; nothing after it can be read"
            yield Damage(offset, resume, err.reason, message)
            offset = resume
            continue
        yield page
        offset = page.end


def _resync(data: bytes, offset: int) -> int:
    while True:
        found = data.find(CAPTURE, offset)
        if found < 0:
            return len(data)
        try:
            parse_page(data, found)
        except OggError:
            offset = found + 1
            continue
        return found


def packets_from_pages(pages: Iterable[Page]) -> Iterator[tuple[int, bytes]]:
    """Whole packets ``(serial, data)`` from undamaged pages of any number of logical streams."""
    partial: dict[int, bytearray] = {}
    for page in pages:
        for piece, complete in page.segments():
            buf = partial.setdefault(page.serial, bytearray())
            buf.extend(piece)
            if complete:
                yield page.serial, bytes(buf)
                buf.clear()


def read_file(path: str) -> bytes:
    """The bytes of a recording, with OS errors turned into :class:`RecordingError`."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise RecordingError(f"cannot read {path}: {exc.strerror or exc}") from exc
