"""WAV files in and out.

:func:`read_wav` reads any PCM WAV (8-bit unsigned, 16/24/32-bit integer, 32/64-bit float, plain or
WAVE_FORMAT_EXTENSIBLE, any number of channels, any rate) and returns ptt's format: 16-bit mono at
:data:`~ptt.audio.codec.SAMPLE_RATE`, channels averaged and the rate converted by
:mod:`ptt.audio.resample`. Anything else is an ``AudioError("not a PCM WAV file: ...")``. Python's
``wave`` module is not used for reading: in 3.11 it rejects WAVE_FORMAT_EXTENSIBLE, which sox and
most editors write for 24-bit or multi-channel files.

:class:`WavSource` serves a file as frames, :class:`WavSink` writes frames to a 16-bit mono file.
"""

from __future__ import annotations

import os
import struct
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Self

import numpy as np

from ptt.audio.codec import FRAME_BYTES, SAMPLE_RATE
from ptt.audio.levels import audible
from ptt.audio.resample import resample, to_int16
from ptt.audio.streams import Pacer
from ptt.errors import AudioError

WAVE_FORMAT_PCM = 0x0001
WAVE_FORMAT_IEEE_FLOAT = 0x0003
WAVE_FORMAT_EXTENSIBLE = 0xFFFE
_GUID_TAIL = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"  # KSDATAFORMAT_SUBTYPE_*


class WavInfo:
    """What a WAV file's ``fmt`` chunk says."""

    __slots__ = ("bits", "channels", "frames", "is_float", "rate")

    def __init__(self, rate: int, channels: int, bits: int, is_float: bool, frames: int) -> None:
        self.rate, self.channels, self.bits = rate, channels, bits
        self.is_float, self.frames = is_float, frames

    @property
    def duration(self) -> float:
        return self.frames / self.rate

    def __repr__(self) -> str:
        kind = "float" if self.is_float else "int"
        return f"WavInfo({self.rate} Hz, {self.channels} ch, {self.bits}-bit {kind}, {self.frames})"


def _bad(path: str | os.PathLike[str], why: str) -> AudioError:
    return AudioError(f"not a PCM WAV file: {os.fspath(path)} ({why})")


def _parse(path: str | os.PathLike[str]) -> tuple[WavInfo, bytes]:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise AudioError(f"cannot read WAV file {os.fspath(path)}: {exc.strerror or exc}") from exc
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise _bad(path, "no RIFF/WAVE header")
    pos, fmt, body = 12, None, None
    while pos + 8 <= len(data):
        cid, size = data[pos : pos + 4], struct.unpack_from("<I", data, pos + 4)[0]
        start = pos + 8
        end = min(start + size, len(data))  # tolerate streaming writers' oversized lengths
        if cid == b"fmt ":
            fmt = data[start:end]
        elif cid == b"data":
            body = data[start:end]
            if fmt is not None:
                break
        pos = start + size + (size & 1)
    if fmt is None or len(fmt) < 16:
        raise _bad(path, "no fmt chunk")
    if body is None:
        raise _bad(path, "no data chunk")
    tag, channels, rate, _, block, bits = struct.unpack_from("<HHIIHH", fmt)
    if tag == WAVE_FORMAT_EXTENSIBLE:
        if len(fmt) < 40 or fmt[26:40] != _GUID_TAIL:
            raise _bad(path, "unknown WAVE_FORMAT_EXTENSIBLE sub-format")
        tag = struct.unpack_from("<H", fmt, 24)[0]
    if tag == WAVE_FORMAT_PCM:
        is_float = False
        if bits not in (8, 16, 24, 32):
            raise _bad(path, f"{bits}-bit integer samples are not supported")
    elif tag == WAVE_FORMAT_IEEE_FLOAT:
        is_float = True
        if bits not in (32, 64):
            raise _bad(path, f"{bits}-bit float samples are not supported")
    else:
        raise _bad(path, f"compressed format 0x{tag:04x}")
    if channels < 1 or rate < 1:
        raise _bad(path, f"{channels} channels at {rate} Hz")
    width = bits // 8
    if block != width * channels:
        raise _bad(path, f"block size {block} does not match {channels} x {bits}-bit samples")
    frames = len(body) // block
    return WavInfo(rate, channels, bits, is_float, frames), body[: frames * block]


def wav_info(path: str | os.PathLike[str]) -> WavInfo:
    """The format of a WAV file (AudioError if it is not a PCM WAV)."""
    return _parse(path)[0]


def _to_float(info: WavInfo, body: bytes) -> np.ndarray:
    """Samples scaled to int16 range, shape (frames, channels), float64."""
    if info.is_float:
        x = np.frombuffer(body, dtype="<f4" if info.bits == 32 else "<f8").astype(np.float64)
        x = x * 32768.0
    elif info.bits == 8:
        x = (np.frombuffer(body, dtype=np.uint8).astype(np.float64) - 128.0) * 256.0
    elif info.bits == 16:
        x = np.frombuffer(body, dtype="<i2").astype(np.float64)
    elif info.bits == 24:
        b = np.frombuffer(body, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        v = np.where(v >= 1 << 23, v - (1 << 24), v)
        x = v.astype(np.float64) / 256.0
    else:
        x = np.frombuffer(body, dtype="<i4").astype(np.float64) / 65536.0
    return x.reshape(-1, info.channels)


def read_wav(path: str | os.PathLike[str], rate: int = SAMPLE_RATE) -> bytes:
    """The file as 16-bit little-endian mono PCM at ``rate`` Hz."""
    info, body = _parse(path)
    mono = _to_float(info, body).mean(axis=1)
    if info.rate != rate:
        mono = resample(mono, info.rate, rate)
    return to_int16(mono).tobytes()


def write_wav(path: str | os.PathLike[str], pcm: bytes, rate: int = SAMPLE_RATE) -> None:
    """Write 16-bit mono PCM as a WAV file."""
    with WavSink(path, rate) as sink:
        sink.write(pcm)


def iter_frames(pcm: bytes, frame_bytes: int = FRAME_BYTES) -> Iterator[bytes]:
    """Consecutive ``frame_bytes`` chunks of ``pcm``; the last one is padded with silence."""
    for i in range(0, len(pcm), frame_bytes):
        chunk = pcm[i : i + frame_bytes]
        if len(chunk) < frame_bytes:
            chunk = chunk + bytes(frame_bytes - len(chunk))
        yield chunk


def split_frames(pcm: bytes, frame_bytes: int = FRAME_BYTES) -> list[bytes]:
    return list(iter_frames(pcm, frame_bytes))


class WavSource:
    """A WAV file as a :class:`~ptt.audio.streams.FrameSource`, optionally paced at real time.

    The whole file is read and converted when the source is made, so format errors surface at once.
    """

    def __init__(
        self, path: str | os.PathLike[str], realtime: bool = False, loop: bool = False
    ) -> None:
        self.path = os.fspath(path)
        self.pcm = read_wav(path)
        self.frames = split_frames(self.pcm)
        self._i = 0
        self._loop = loop
        self._pacer = Pacer() if realtime else None
        self._closed = False

    def __len__(self) -> int:
        return len(self.frames)

    def require_audio(self) -> WavSource:
        """AudioError "no audio in FILE" for an empty or silent file (nothing to page with)."""
        if not self.frames or not audible(self.pcm):
            what = "it is empty" if not self.frames else "it is silent"
            raise AudioError(f"no audio in {self.path} ({what}): nothing to send")
        return self

    async def read(self) -> bytes | None:
        if self._closed or not self.frames:
            return None
        if self._i >= len(self.frames):
            if not self._loop:
                return None
            self._i = 0
        frame = self.frames[self._i]
        self._i += 1
        if self._pacer:
            await self._pacer.tick()
        return frame

    def close(self) -> None:
        self._closed = True


class WavSink:
    """Writes frames (or any 16-bit mono PCM) to a WAV file; a :class:`FrameSink`."""

    def __init__(self, path: str | os.PathLike[str], rate: int = SAMPLE_RATE) -> None:
        self.path = os.fspath(path)
        self.rate = rate
        self.frames = 0
        try:
            self._file = open(self.path, "wb")  # noqa: SIM115
        except OSError as exc:
            raise AudioError(f"cannot write WAV file {self.path}: {exc.strerror or exc}") from exc
        self._w = wave.open(self._file, "wb")  # noqa: SIM115
        self._w.setnchannels(1)
        self._w.setsampwidth(2)
        self._w.setframerate(rate)
        self._closed = False

    def write(self, frame: bytes) -> None:
        if self._closed:
            raise AudioError(f"WAV file {self.path} is already closed")
        if len(frame) % 2:
            raise AudioError(f"16-bit PCM has an even number of bytes, got {len(frame)}")
        try:
            self._w.writeframes(frame)
        except OSError as exc:
            raise AudioError(f"cannot write WAV file {self.path}: {exc.strerror or exc}") from exc
        self.frames += 1

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            try:
                self._w.close()
                self._file.close()
            except OSError as exc:
                raise AudioError(f"cannot finish WAV file {self.path}: {exc}") from exc

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
