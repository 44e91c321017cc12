"""Ogg Opus (RFC 7845): headers, a crash-safe stream writer and a damage-tolerant reader.

Layout of a stream written here::

    page 0   BOS, granule 0   OpusHead  (version 1, 1 channel, pre-skip, input rate, family 0)
    page 1   granule 0        OpusTags  (vendor "ptt", GROUP= TALKER= BURST= START= ENCODER=)
    page 2.. audio pages      a few whole Opus packets each, exactly as received
    last     EOS              the remaining packets, or none

Granule positions count 48 kHz samples whatever the codec rate, pre-skip included: a page's granule
is the position after the last packet that ends on it, so the first audio page of five 20 ms packets
says 4800. Decoders drop the first ``pre_skip`` samples (the encoder's look-ahead, 312 for libopus
at 16 kHz), so a stream of N 20 ms packets plays for N * 20 ms - 6.5 ms.

Lost frames: a writer told that a frame is missing stores a *lost-frame packet* in its slot: the TOC
byte of a neighbouring packet with no frame data (code 0; code 3 with the neighbour's frame count
and zero-length frames when it holds several). RFC 6716 decoders treat an empty frame as a lost one and
conceal it (libopus: "payloads of 1 (2 including ToC) or 0 trigger the PLC/DTX"), and its TOC gives
the slot its duration, so granule positions, durations and replay timing stay right while every
received packet is still stored byte for byte. See :func:`lost_packet`.

The reader (:func:`read_opus`) walks every page with :func:`ptt.record.ogg.scan_pages`: CRC
failures, truncation and lost pages become ``problems`` (messages naming the file, byte offset and
cause) while every readable packet is kept; a page lost in the middle leaves a *hole* (a packet
with empty ``data``) whose duration comes from the next page's granule position. Chained streams
(several links one after another) and other codecs' streams multiplexed beside Opus are handled.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Self

from ptt.errors import RecordingError
from ptt.record.ogg import Damage, OggStreamWriter, Page, read_file, scan_pages
from ptt.record.opus import (
    DEFAULT_PRE_SKIP,
    GRANULE_RATE,
    OPUS_HEAD,
    VENDOR,
    OpusHead,
    OpusTags,
    frame_count,
    frame_samples,
    is_lost_packet,
    lost_packet,
    packet_channels,
    packet_samples,
)
from ptt.record.private import open_private

__all__ = [
    "DEFAULT_PRE_SKIP",
    "GRANULE_RATE",
    "VENDOR",
    "OggOpusEncoder",
    "OpusFile",
    "OpusFileWriter",
    "OpusHead",
    "OpusPacket",
    "OpusStream",
    "OpusTags",
    "frame_count",
    "frame_samples",
    "is_lost_packet",
    "lost_packet",
    "packet_channels",
    "packet_samples",
    "parse_opus",
    "read_opus",
]


# -- writing --------------------------------------------------------------------------------------
class OggOpusEncoder:
    """Pure Ogg Opus stream builder: give it packets, get back page bytes to write.

    ``header()`` first (two pages: OpusHead alone, then OpusTags), then ``audio(packets)`` as often
    as wanted (each call returns whole pages ending on a packet boundary), then ``end()`` once.
    Packets are stored unchanged; their durations come from their TOC bytes.
    """

    def __init__(self, head: OpusHead, tags: OpusTags, serial: int) -> None:
        self.head = head
        self.tags = tags
        self._ogg = OggStreamWriter(serial)
        self.granule = 0
        self.packets = 0
        self._started = False

    @property
    def serial(self) -> int:
        return self._ogg.serial

    @property
    def finished(self) -> bool:
        return self._ogg.finished

    @property
    def samples(self) -> int:
        """48 kHz samples of audio stored so far (pre-skip included)."""
        return self.granule

    def header(self) -> bytes:
        if self._started:
            raise RecordingError("Ogg Opus headers already written")
        self._started = True
        return self._ogg.pages(
            [(self.head.to_bytes(), 0), (self.tags.to_bytes(), 0)], flush_each=True
        )

    def audio(self, packets: Sequence[bytes], *, eos: bool = False) -> bytes:
        if not self._started:
            raise RecordingError("write the Ogg Opus headers before audio")
        laid = []
        for packet in packets:
            try:
                self.granule += packet_samples(packet)
            except ValueError as exc:
                raise RecordingError(f"refusing to store an invalid Opus packet: {exc}") from exc
            laid.append((packet, self.granule))
        self.packets += len(laid)
        return self._ogg.pages(laid, eos=eos)

    def end(self) -> bytes:
        """The EOS page (empty: every packet is already on earlier pages)."""
        return self.audio([], eos=True)


class OpusFileWriter:
    """Writes one Ogg Opus stream to a file, flushing every page to the OS as it is made.

    Each :meth:`write` call becomes at least one page written with a single ``write()`` system call,
    so a process killed at any moment leaves a file that decoders play up to its last whole page.
    ``fsync=True`` also forces each page to disk (survives power loss, costs a disk flush per page).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        head: OpusHead,
        tags: OpusTags,
        *,
        serial: int | None = None,
        fsync: bool = False,
    ) -> None:
        self.path = Path(path)
        self._fsync = fsync
        if serial is None:
            serial = int.from_bytes(os.urandom(4), "little")
        self._enc = OggOpusEncoder(head, tags, serial)
        try:
            fd = open_private(self.path, os.O_WRONLY | os.O_EXCL)
            self._file: BinaryIO | None = open(fd, "wb", buffering=0)  # noqa: SIM115
        except OSError as exc:
            raise RecordingError(f"cannot create {self.path}: {exc.strerror or exc}") from exc
        try:
            self._put(self._enc.header())
        except RecordingError:  # e.g. a full disk: leave no empty file behind
            self.abandon()
            self.path.unlink(missing_ok=True)
            raise

    @property
    def granule(self) -> int:
        return self._enc.granule

    @property
    def packets(self) -> int:
        return self._enc.packets

    @property
    def closed(self) -> bool:
        return self._file is None

    def write(self, packets: Sequence[bytes]) -> None:
        """Store ``packets`` (whole Opus packets, in order) on new page(s), flushed at once."""
        if packets:
            self._put(self._enc.audio(packets))

    def close(self, last: Sequence[bytes] = ()) -> None:
        """Write ``last`` packets on the final page with the EOS flag, then close the file."""
        if self._file is None:
            return
        try:
            self._put(self._enc.audio(last, eos=True))
        finally:
            self._file.close()
            self._file = None

    def abandon(self) -> None:
        """Close without an EOS page, as a crash would (for tests and emergency shutdown)."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def _put(self, data: bytes) -> None:
        if self._file is None:
            raise RecordingError(f"{self.path} is already closed")
        try:
            view = memoryview(data)
            while view:
                n = self._file.write(view)
                view = view[n:]
            if self._fsync:
                os.fsync(self._file.fileno())
        except OSError as exc:
            raise RecordingError(f"cannot write {self.path}: {exc.strerror or exc}") from exc

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- reading --------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class OpusPacket:
    """A packet read back: ``start`` is its first sample on the stream's granule scale (48 kHz,
    pre-skip included). A *hole* (``data == b""``) stands for packets lost with a damaged page."""

    data: bytes
    start: int
    samples: int

    @property
    def is_hole(self) -> bool:
        return not self.data

    @property
    def is_lost(self) -> bool:
        """No coded audio: a hole, a lost-frame packet or a DTX frame (decoders conceal these)."""
        return is_lost_packet(self.data)


@dataclass(slots=True)
class OpusStream:
    """One logical Ogg Opus stream (one link of a chain)."""

    serial: int
    offset: int
    head: OpusHead
    tags: OpusTags = field(default_factory=lambda: OpusTags("", ()))
    packets: list[OpusPacket] = field(default_factory=list)
    start_granule: int = 0
    end_granule: int = 0
    complete: bool = False  # the EOS page was read
    problems: list[str] = field(default_factory=list)

    @property
    def samples(self) -> int:
        """Playable 48 kHz samples: what a decoder outputs after pre-skip and end trimming."""
        return max(0, self.end_granule - max(self.start_granule, self.head.pre_skip))

    @property
    def duration(self) -> float:
        """Playable duration in seconds (as opusinfo and ffprobe report it)."""
        return self.samples / GRANULE_RATE

    @property
    def audio_packets(self) -> list[OpusPacket]:
        return [p for p in self.packets if not p.is_hole]

    def tag(self, key: str) -> str | None:
        return self.tags.get(key)


@dataclass(slots=True)
class OpusFile:
    """Everything readable in an Ogg Opus file, with what went wrong where."""

    path: str
    streams: list[OpusStream] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    size: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems and all(not s.problems for s in self.streams)

    @property
    def complete(self) -> bool:
        """Every stream ended with an EOS page (a writer killed mid-burst leaves it False)."""
        return bool(self.streams) and all(s.complete for s in self.streams)

    def all_problems(self) -> list[str]:
        out = list(self.problems)
        for s in self.streams:
            out.extend(s.problems)
        return out

    def raise_for_problems(self) -> None:
        problems = self.all_problems()
        if problems:
            raise RecordingError(problems[0])


class _StreamState:
    """Reassembles one logical stream's packets and keeps its timeline."""

    def __init__(self, name: str, page: Page) -> None:
        self.name = name
        self.serial = page.serial
        self.offset = page.offset
        self.stage = 0  # 0: expect OpusHead, 1: expect OpusTags, 2: audio
        self.stream: OpusStream | None = None
        self.partial = bytearray()
        self.in_packet = False
        self.next_seq = page.sequence
        self.pos: int | None = None  # granule after the last packet placed
        self.lost_pages = False
        self.ended = False
        self.not_opus = False
        self.bad_head: str | None = None

    def problem(self, message: str) -> None:
        if self.stream is not None:
            self.stream.problems.append(message)

    def add(self, page: Page) -> None:
        """Feed one page of this stream."""
        if page.sequence != self.next_seq:
            missing = (page.sequence - self.next_seq) & 0xFFFFFFFF
            self.problem(
                f"{self.name}: {missing} page(s) of stream {self.serial:#010x} missing before "
                f"byte {page.offset} (pages {self.next_seq}..{page.sequence - 1})"
            )
            self.lost_pages = True
            self.partial.clear()
            self.in_packet = False
        self.next_seq = (page.sequence + 1) & 0xFFFFFFFF
        completed: list[bytes] = []
        for i, (piece, complete) in enumerate(page.segments()):
            if i == 0 and page.continued and not self.in_packet:
                continue  # the tail of a packet whose start was lost with an earlier page
            if i == 0 and not page.continued and self.in_packet:
                self.problem(f"{self.name}: a packet cut short before byte {page.offset}")
                self.partial.clear()
            self.partial.extend(piece)
            self.in_packet = not complete
            if complete:
                completed.append(bytes(self.partial))
                self.partial.clear()
        audio: list[bytes] = []
        for packet in completed:
            if self.stage < 2:
                self._header(packet, page)
                if self.not_opus:
                    return
            else:
                audio.append(packet)
        if audio or (self.stage == 2 and page.eos):
            self._audio(audio, page)
        if page.eos:
            self.ended = True
            if self.stream is not None:
                self.stream.complete = True

    def _header(self, packet: bytes, page: Page) -> None:
        if self.stage == 0:
            if not packet.startswith(OPUS_HEAD):
                self.not_opus = True  # another codec's stream (video, Vorbis...): not ours
                return
            try:
                head = OpusHead.parse(packet)
            except RecordingError as exc:
                self.bad_head = f"{self.name}: {exc} (byte {page.offset})"
                self.not_opus = True
                return
            self.stream = OpusStream(self.serial, self.offset, head)
            self.stage = 1
        else:
            assert self.stream is not None
            try:
                self.stream.tags = OpusTags.parse(packet)
            except RecordingError as exc:
                self.problem(f"{self.name}: {exc} at byte {page.offset}")
            self.stage = 2

    def _audio(self, packets: list[bytes], page: Page) -> None:
        stream = self.stream
        assert stream is not None
        durations = []
        for packet in packets:
            try:
                durations.append(packet_samples(packet))
            except ValueError as exc:
                self.problem(
                    f"{self.name}: invalid Opus packet on the page at byte {page.offset} ({exc})"
                )
                durations.append(0)
        total = sum(durations)
        if page.granule == -1:
            if packets:
                self.problem(
                    f"{self.name}: page at byte {page.offset} ends packets but has no granule"
                )
            return
        page_start = page.granule - total
        if self.pos is None:
            if page_start < 0:
                if not page.eos:
                    self.problem(
                        f"{self.name}: first audio page at byte {page.offset} has granule "
                        f"{page.granule}, less than its {total} samples"
                    )
                page_start = 0
            stream.start_granule = page_start
            self.pos = page_start
        elif page_start > self.pos:
            gap = page_start - self.pos
            if not self.lost_pages:
                self.problem(
                    f"{self.name}: granule jumps by {gap} samples at byte {page.offset} "
                    f"({gap / 48:g} ms) with no page missing"
                )
            stream.packets.append(OpusPacket(b"", self.pos, gap))
            self.pos = page_start
        elif page_start < self.pos and not page.eos:
            self.problem(
                f"{self.name}: granule position at byte {page.offset} is {self.pos - page_start} "
                "samples behind its packets; keeping packet timing"
            )
        self.lost_pages = False
        pos = self.pos
        for packet, n in zip(packets, durations, strict=True):
            if n:
                stream.packets.append(OpusPacket(packet, pos, n))
            pos += n
        self.pos = pos
        # An EOS granule below the packets' end trims the last samples (RFC 7845 section 4.4).
        stream.end_granule = min(pos, page.granule) if page.eos else pos
        stream.end_granule = max(stream.end_granule, stream.start_granule)


def parse_opus(data: bytes, name: str = "<bytes>") -> OpusFile:
    """Every readable Opus stream in ``data``; never raises for damage, reports it instead."""
    result = OpusFile(name, size=len(data))
    active: dict[int, _StreamState] = {}
    order: list[_StreamState] = []
    orphans: dict[int, int] = {}  # serial -> pages skipped because the stream's start was lost
    seen_any = False
    for item in scan_pages(data):
        if isinstance(item, Damage):
            message = f"{name}: {item.message}"
            if item.offset == 0 and item.reason == "garbage":
                message = f"{name}: not an Ogg file ({item.message})"
            result.problems.append(message)
            continue
        seen_any = True
        page = item
        state = active.get(page.serial)
        if state is None or (page.bos and state.ended):
            if not page.bos:
                orphans[page.serial] = orphans.get(page.serial, 0) + 1
                continue
            state = _StreamState(name, page)
            active[page.serial] = state
            order.append(state)
        state.add(page)
    for state in order:
        if state.stream is not None:
            result.streams.append(state.stream)
        elif state.bad_head:
            result.problems.append(state.bad_head)
        elif not state.not_opus:
            result.problems.append(
                f"{name}: stream {state.serial:#010x} at byte {state.offset} has no readable "
                "OpusHead"
            )
    for serial, count in orphans.items():
        result.problems.append(
            f"{name}: {count} page(s) of stream {serial:#010x} skipped: the page with its "
            "OpusHead was lost"
        )
    if seen_any and not result.streams and not result.problems:
        result.problems.append(f"{name}: no Opus stream in this Ogg file")
    if not seen_any and not data:
        result.problems.append(f"{name}: empty file")
    return result


def read_opus(path: str | os.PathLike[str], *, strict: bool = False) -> OpusFile:
    """Read an Ogg Opus file. ``strict`` raises :class:`RecordingError` on the first problem;
    otherwise problems are listed in the result and everything readable is kept."""
    name = os.fspath(path)
    result = parse_opus(read_file(name), name)
    if strict:
        result.raise_for_problems()
    return result
