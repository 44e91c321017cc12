"""Decoding recordings to WAV at their original timing, and reading them back for replay.

* :func:`export_wav` decodes a session (a group directory, or one file, ptt's or e.g. ``opusenc``'s)
  into one WAV: each burst at its offset from the session start, silence between bursts (gaps
  can be capped with ``max_gap``), overlapping bursts mixed. It returns who talked when
  (:func:`format_timeline` prints it).
* :func:`replay_bursts` yields what a replayer sends: per burst, its packets exactly as stored with
  their times from the burst start, and whether the file's parameters force a conversion
  (:func:`check_params`): ptt sends one 20 ms mono frame per datagram, so a file with other
  packet durations, several channels or a multistream mapping is decoded and re-encoded
  (:func:`decode_burst` gives the PCM), and any other file is replayed byte for byte.

Decoding uses :class:`ptt.audio.codec.OpusDecoder` (mono, 20 ms packets: everything ptt records and
what ``opusenc`` writes by default). Packets of other durations (``opusenc --framesize 60``, CELT
2.5-10 ms) need a decoder that accepts any duration, which the codec module does not offer, so
:class:`_AnyDurationDecoder` calls libopus through ``opuslib_next`` for those bursts only.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ptt.audio.codec import FRAME_MS, SAMPLE_RATE, SUPPORTED_RATES, OpusDecoder
from ptt.errors import AudioError, RecordingError
from ptt.record.catalog import Burst, Session, _clock, load
from ptt.record.events import utc_iso
from ptt.record.opusfile import (
    GRANULE_RATE,
    OpusStream,
    frame_count,
    packet_channels,
)

PTT_FRAME_SAMPLES = GRANULE_RATE * FRAME_MS // 1000  # 960


# -- parameters -------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class StreamParams:
    """What a stream's headers and packets say about its format."""

    channels: int  # OpusHead channel count
    input_rate: int  # OpusHead input sample rate (informational; 0 = unknown)
    mapping_family: int
    stream_count: int
    packet_ms: tuple[float, ...]  # distinct packet durations, lost frames excluded
    frames_per_packet: tuple[int, ...]
    coded_channels: tuple[int, ...]  # 1 and/or 2: mono or stereo packets
    pre_skip: int


@dataclass(frozen=True, slots=True)
class Compatibility:
    """Whether packets can be sent as they are: ``reasons`` force a conversion, ``notes`` do not."""

    reasons: tuple[str, ...]
    notes: tuple[str, ...]

    @property
    def needs_conversion(self) -> bool:
        return bool(self.reasons)


def stream_params(stream: OpusStream) -> StreamParams:
    durations: set[float] = set()
    counts: set[int] = set()
    channels: set[int] = set()
    for p in stream.packets:
        if p.is_lost:
            continue
        durations.add(p.samples * 1000 / GRANULE_RATE)
        counts.add(frame_count(p.data))
        channels.add(packet_channels(p.data))
    head = stream.head
    return StreamParams(
        head.channels,
        head.input_rate,
        head.mapping_family,
        head.stream_count,
        tuple(sorted(durations)),
        tuple(sorted(counts)),
        tuple(sorted(channels)),
        head.pre_skip,
    )


def check_params(
    params: StreamParams, *, frame_ms: int = FRAME_MS, sample_rate: int = SAMPLE_RATE
) -> Compatibility:
    """Compare a stream with what ptt sends (mono, one ``frame_ms`` frame per packet).

    The input sample rate alone never forces a conversion: Opus packets decode at any rate, so a
    48 kHz-source file plays in a 16 kHz group unchanged (it only costs more bits); it is noted.
    """
    reasons, notes = [], []
    if params.stream_count != 1:
        reasons.append(f"{params.stream_count} Opus streams (multichannel mapping), ptt sends one")
    if params.channels != 1 or 2 in params.coded_channels:
        reasons.append(f"{params.channels} channels, ptt sends mono")
    odd = [ms for ms in params.packet_ms if ms != frame_ms]
    if odd:
        shown = ", ".join(f"{ms:g}" for ms in params.packet_ms)
        reasons.append(f"packets of {shown} ms, ptt sends {frame_ms} ms")
    elif any(n != 1 for n in params.frames_per_packet):
        reasons.append("several frames per packet, ptt sends one")
    if params.input_rate and params.input_rate != sample_rate:
        notes.append(f"input sample rate {params.input_rate} Hz, ptt encodes at {sample_rate} Hz")
    return Compatibility(tuple(reasons), tuple(notes))


# -- decoding ---------------------------------------------------------------------------------------
class _AnyDurationDecoder:
    """libopus through opuslib_next for packets the 20 ms codec wrapper refuses (see module doc)."""

    def __init__(self, sample_rate: int) -> None:
        try:
            import opuslib_next  # type: ignore[import-untyped]

            self._dec = opuslib_next.Decoder(sample_rate, 1)
            self._error: type[Exception] = opuslib_next.OpusError
        except Exception as exc:  # a missing libopus raises a bare Exception
            raise AudioError(f"the Opus codec is not available ({exc})") from exc
        self.rate = sample_rate

    def decode(self, packet: bytes, samples48: int) -> bytes:
        n = samples48 * self.rate // GRANULE_RATE
        try:
            return bytes(self._dec.decode(packet, n))
        except self._error as exc:
            raise AudioError(f"Opus decoding failed: {exc}") from exc

    def conceal(self, samples48: int) -> bytes:
        step = GRANULE_RATE // 400  # PLC works in multiples of 2.5 ms
        n = -(-samples48 // step) * step * self.rate // GRANULE_RATE
        try:
            return bytes(self._dec.decode(b"", n))
        except self._error as exc:
            raise AudioError(f"Opus concealment failed: {exc}") from exc


def decode_stream(stream: OpusStream, sample_rate: int = SAMPLE_RATE) -> bytes:
    """16-bit mono PCM of a stream: pre-skip dropped, end trimming applied, losses concealed."""
    if sample_rate not in SUPPORTED_RATES:
        raise RecordingError(f"cannot decode Opus at {sample_rate} Hz")
    if stream.head.stream_count != 1:
        raise RecordingError(
            f"cannot decode a {stream.head.channels}-channel multistream Opus recording"
        )
    ptt_sized = all(p.is_hole or p.samples == PTT_FRAME_SAMPLES for p in stream.packets)
    chunks: list[bytes] = []
    if ptt_sized:
        dec = OpusDecoder(sample_rate)
        for p in stream.packets:
            if p.is_hole:
                frames = -(-p.samples // PTT_FRAME_SAMPLES)
                hole = b"".join(dec.conceal() for _ in range(frames))
                chunks.append(hole[: 2 * (p.samples * sample_rate // GRANULE_RATE)])
            else:
                chunks.append(dec.decode(p.data))
    else:
        anydec = _AnyDurationDecoder(sample_rate)
        for p in stream.packets:
            if p.is_hole:
                hole = anydec.conceal(p.samples)
                chunks.append(hole[: 2 * (p.samples * sample_rate // GRANULE_RATE)])
            else:
                chunks.append(anydec.decode(p.data, p.samples))
    pcm = b"".join(chunks)
    # granule scale -> sample_rate: skip from pre-skip (or a later first sample), stop at the end
    first = max(stream.start_granule, stream.head.pre_skip) - stream.start_granule
    last = stream.end_granule - stream.start_granule
    a = first * sample_rate // GRANULE_RATE
    b = max(a, last * sample_rate // GRANULE_RATE)
    return pcm[2 * a : 2 * b]


def decode_burst(burst: Burst, sample_rate: int = SAMPLE_RATE) -> bytes:
    return decode_stream(burst.stream, sample_rate)


# -- export -----------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class TimelineEntry:
    """One burst in an exported WAV: where it is in the file and when it really happened."""

    at: float  # seconds from the start of the WAV
    duration: float
    talker: str
    burst_id: int | None
    start: float | None  # wall time, if known
    file: str
    complete: bool


@dataclass(slots=True)
class ExportResult:
    path: Path
    sample_rate: int
    duration: float
    timeline: list[TimelineEntry]
    problems: list[str]


def _placements(session: Session, max_gap: float | None) -> list[float]:
    """WAV offsets per burst: the recorded offsets, with silences longer than max_gap shortened."""
    if max_gap is None:
        return [b.offset for b in session.bursts]
    out, shift, end = [], 0.0, None
    for b in session.bursts:
        if end is not None and b.offset - end > max_gap:
            shift += b.offset - end - max_gap
        out.append(b.offset - shift)
        end = b.end if end is None else max(end, b.end)
    return out


def export_wav(
    source: str | os.PathLike[str] | Session,
    out: str | os.PathLike[str],
    *,
    sample_rate: int = SAMPLE_RATE,
    max_gap: float | None = None,
) -> ExportResult:
    """Decode a session (group directory or file) into one WAV at its original timing."""
    # imported here: numpy costs ~0.12 s of CPU to import, and every `ptt server` loads this
    # module (the recording package) without ever exporting
    import numpy as np

    from ptt.audio.wav import write_wav

    session = source if isinstance(source, Session) else load(source)
    problems = session.all_problems()
    placed = _placements(session, max_gap)
    pieces: list[tuple[int, np.ndarray]] = []
    timeline = []
    for burst, at in zip(session.bursts, placed, strict=True):
        try:
            pcm = decode_burst(burst, sample_rate)
        except (RecordingError, AudioError) as exc:
            problems.append(f"{burst.path}: cannot decode {burst.label}: {exc}")
            continue
        # decoded sample 0 is granule max(start, pre-skip); granule pre-skip + base plays at `at`
        s = burst.stream
        lead = max(s.start_granule, s.head.pre_skip) - s.head.pre_skip - burst.base_granule
        first = round((at + max(0, lead) / GRANULE_RATE) * sample_rate)
        samples = np.frombuffer(pcm, dtype="<i2")
        pieces.append((first, samples))
        timeline.append(
            TimelineEntry(
                at,
                len(samples) / sample_rate,
                burst.talker or "unknown",
                burst.burst_id,
                burst.start,
                burst.path.name,
                burst.complete,
            )
        )
    total = max((first + len(s) for first, s in pieces), default=0)
    mix = np.zeros(total, dtype=np.int32)
    for first, samples in pieces:
        mix[first : first + len(samples)] += samples
    pcm = np.clip(mix, -32768, 32767).astype("<i2").tobytes()
    write_wav(out, pcm, sample_rate)
    return ExportResult(Path(out), sample_rate, total / sample_rate, timeline, problems)


def format_timeline(result: ExportResult) -> str:
    """Who talked when, one line per burst, for ``ptt export``."""
    lines = []
    for e in result.timeline:
        when = f"  {utc_iso(e.start)}" if e.start is not None else ""
        burst = f" burst {e.burst_id}" if e.burst_id is not None else ""
        cut = "  (cut short)" if not e.complete else ""
        lines.append(f"{_clock(e.at):>10}  {_clock(e.duration):>9}  {e.talker}{burst}{when}{cut}")
    return "\n".join(lines)


# -- replay -----------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class TimedPacket:
    """A packet to send ``at`` seconds after its burst starts. ``data`` is b"" for a hole."""

    at: float
    duration: float
    data: bytes
    lost: bool  # no coded audio (lost frame, DTX, hole): a sender may skip it, keeping the timing


@dataclass(frozen=True, slots=True)
class ReplayBurst:
    burst: Burst
    offset: float  # seconds from the session start (after max_gap capping)
    packets: tuple[TimedPacket, ...]
    params: StreamParams
    compatibility: Compatibility

    @property
    def talker(self) -> str | None:
        return self.burst.talker

    @property
    def duration(self) -> float:
        return self.burst.span

    def pcm(self, sample_rate: int = SAMPLE_RATE) -> bytes:
        """Decoded audio, for the replayer to re-encode when ``compatibility`` says so."""
        return decode_burst(self.burst, sample_rate)


def timed_packets(stream: OpusStream, base: int | None = None) -> list[TimedPacket]:
    """The stream's packets with times from ``base`` (default: its first packet)."""
    base = stream.start_granule if base is None else base
    return [
        TimedPacket((p.start - base) / GRANULE_RATE, p.samples / GRANULE_RATE, p.data, p.is_lost)
        for p in stream.packets
    ]


def replay_bursts(
    source: str | os.PathLike[str] | Session,
    *,
    max_gap: float | None = None,
    frame_ms: int = FRAME_MS,
    sample_rate: int = SAMPLE_RATE,
) -> Iterator[ReplayBurst]:
    """The bursts of a session in order, with packets and times for a replayer.

    Damaged files yield their readable part (see ``Session.all_problems()`` for what was lost).
    """
    session = source if isinstance(source, Session) else load(source)
    for burst, at in zip(session.bursts, _placements(session, max_gap), strict=True):
        params = stream_params(burst.stream)
        yield ReplayBurst(
            burst,
            at,
            tuple(timed_packets(burst.stream, burst.base_granule)),
            params,
            check_params(params, frame_ms=frame_ms, sample_rate=sample_rate),
        )


__all__ = [
    "Compatibility",
    "ExportResult",
    "ReplayBurst",
    "StreamParams",
    "TimedPacket",
    "TimelineEntry",
    "check_params",
    "decode_burst",
    "decode_stream",
    "export_wav",
    "format_timeline",
    "replay_bursts",
    "stream_params",
    "timed_packets",
]
