"""WAV reading (any PCM layout, resampled), writing, framing, and clean errors for bad files."""

from __future__ import annotations

import asyncio
import shutil
import struct
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from ptt.audio.codec import FRAME_BYTES, SAMPLE_RATE
from ptt.audio.wav import (
    WavSink,
    WavSource,
    iter_frames,
    read_wav,
    split_frames,
    wav_info,
    write_wav,
)
from ptt.errors import AudioError
from tests.audio.helpers import samples

PCM_GUID = b"\x01\x00\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
FLOAT_GUID = b"\x03\x00" + PCM_GUID[2:]


def make_wav(
    path: Path,
    data: bytes,
    rate: int,
    channels: int,
    bits: int,
    tag: int = 1,
    extensible: bool = False,
    extra_chunks: bytes = b"",
) -> Path:
    block = channels * bits // 8
    if extensible:
        guid = FLOAT_GUID if tag == 3 else PCM_GUID
        fmt = struct.pack("<HHIIHH", 0xFFFE, channels, rate, rate * block, block, bits)
        fmt += struct.pack("<HHI", 22, bits, 0) + guid
    else:
        fmt = struct.pack("<HHIIHH", tag, channels, rate, rate * block, block, bits)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + extra_chunks
    body += b"data" + struct.pack("<I", len(data)) + data + (b"\0" if len(data) % 2 else b"")
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    return path


def sine(freq: float, seconds: float, rate: int, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return amp * np.sin(2 * np.pi * freq * t)  # -1..1


def dominant_freq(x: np.ndarray, rate: int) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spec) * rate / len(x))


def test_write_read_round_trip_is_exact(tmp_path: Path) -> None:
    pcm = (sine(440, 0.5, SAMPLE_RATE) * 32767).astype("<i2").tobytes()
    path = tmp_path / "a.wav"
    write_wav(path, pcm)
    assert read_wav(path) == pcm
    info = wav_info(path)
    assert (info.rate, info.channels, info.bits, info.is_float) == (SAMPLE_RATE, 1, 16, False)
    assert info.duration == pytest.approx(0.5)


def _ref16(x: np.ndarray) -> np.ndarray:
    return x * 32768


@pytest.mark.parametrize(
    ("bits", "tag", "extensible", "encode"),
    [
        (8, 1, False, lambda x: (np.round(x * 127) + 128).astype(np.uint8).tobytes()),
        (16, 1, False, lambda x: np.round(x * 32767).astype("<i2").tobytes()),
        (
            24,
            1,
            True,
            lambda x: b"".join(
                int(v).to_bytes(3, "little", signed=True) for v in np.round(x * 8388607)
            ),
        ),
        (32, 1, False, lambda x: np.round(x * 2147483647).astype("<i4").tobytes()),
        (32, 3, False, lambda x: x.astype("<f4").tobytes()),
        (64, 3, True, lambda x: x.astype("<f8").tobytes()),
    ],
)
def test_reads_every_pcm_layout(
    tmp_path: Path, bits: int, tag: int, extensible: bool, encode
) -> None:  # type: ignore[no-untyped-def]
    x = sine(1000, 0.2, SAMPLE_RATE)
    path = make_wav(tmp_path / "x.wav", encode(x), SAMPLE_RATE, 1, bits, tag, extensible)
    got = samples(read_wav(path))
    tolerance = 300 if bits == 8 else 2
    assert len(got) == len(x)
    assert np.max(np.abs(got - _ref16(x))) <= tolerance


def test_stereo_is_averaged_to_mono(tmp_path: Path) -> None:
    left = np.round(sine(500, 0.1, SAMPLE_RATE) * 32767).astype("<i2")
    right = np.zeros_like(left)
    inter = np.stack([left, right], axis=1).ravel().astype("<i2").tobytes()
    path = make_wav(tmp_path / "s.wav", inter, SAMPLE_RATE, 2, 16)
    got = samples(read_wav(path))
    assert np.max(np.abs(got - left / 2)) <= 1


@pytest.mark.parametrize("rate", [8_000, 22_050, 44_100, 48_000])
def test_other_rates_are_resampled(tmp_path: Path, rate: int) -> None:
    x = sine(1000, 1.0, rate)
    path = make_wav(tmp_path / "r.wav", np.round(x * 32767).astype("<i2").tobytes(), rate, 1, 16)
    got = samples(read_wav(path))
    assert abs(len(got) - SAMPLE_RATE) <= 1
    assert dominant_freq(got, SAMPLE_RATE) == pytest.approx(1000, abs=2)
    # amplitude kept (away from the zero-padded edges)
    mid = got[800:-800]
    assert np.sqrt(np.mean(mid**2)) == pytest.approx(0.5 * 32767 / np.sqrt(2), rel=0.01)
    # and the waveform lines up with an ideal 16 kHz sine
    ideal = _ref16(sine(1000, 1.0, SAMPLE_RATE))[: len(got)] * 32767 / 32768
    assert np.max(np.abs(mid - ideal[800:-800])) < 60


def test_downsampling_rejects_aliases(tmp_path: Path) -> None:
    # 11 kHz at 48 kHz would fold to 5 kHz at 16 kHz without an anti-alias filter
    x = sine(11_000, 0.5, 48_000)
    path = make_wav(tmp_path / "a.wav", np.round(x * 32767).astype("<i2").tobytes(), 48_000, 1, 16)
    got = samples(read_wav(path))[400:-400]
    assert np.sqrt(np.mean(got**2)) < 1e-3 * 0.5 * 32767 / np.sqrt(2)  # below -60 dB


@pytest.mark.skipif(shutil.which("sox") is None, reason="sox is not installed")
def test_reads_a_sox_24bit_stereo_44k_file(tmp_path: Path) -> None:
    path = tmp_path / "sox.wav"
    subprocess.run(
        [
            "sox",
            "-n",
            "-r",
            "44100",
            "-c",
            "2",
            "-b",
            "24",
            str(path),
            "synth",
            "0.5",
            "sine",
            "700",
        ],
        check=True,
    )
    info = wav_info(path)
    assert (info.rate, info.channels, info.bits) == (44_100, 2, 24)
    got = samples(read_wav(path))
    assert dominant_freq(got, SAMPLE_RATE) == pytest.approx(700, abs=3)


def test_skips_unknown_chunks_and_odd_padding(tmp_path: Path) -> None:
    pcm = np.arange(-50, 51, dtype="<i2").tobytes()
    extra = b"LIST" + struct.pack("<I", 3) + b"abc\0"  # odd size, padded
    path = make_wav(tmp_path / "c.wav", pcm, SAMPLE_RATE, 1, 16, extra_chunks=extra)
    assert read_wav(path) == pcm


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"", "RIFF"),
        (b"hello, this is a text file, not audio at all", "RIFF"),
        (b"RIFF\x10\x00\x00\x00WAVEfmt ", "fmt"),
        (b"RIFF\x04\x00\x00\x00WAVE", "fmt"),
    ],
)
def test_bad_files_raise_a_clear_error(tmp_path: Path, content: bytes, why: str) -> None:
    path = tmp_path / "bad.wav"
    path.write_bytes(content)
    with pytest.raises(AudioError, match=f"not a PCM WAV file: .*bad.wav.*{why}"):
        read_wav(path)


def test_compressed_and_odd_formats_are_refused(tmp_path: Path) -> None:
    alaw = make_wav(tmp_path / "alaw.wav", bytes(100), 8000, 1, 8, tag=6)
    with pytest.raises(AudioError, match="not a PCM WAV file.*compressed format 0x0006"):
        read_wav(alaw)
    f16 = make_wav(tmp_path / "f16.wav", bytes(100), 8000, 1, 16, tag=3)
    with pytest.raises(AudioError, match="16-bit float"):
        read_wav(f16)
    i12 = make_wav(tmp_path / "i12.wav", bytes(100), 8000, 1, 12)
    with pytest.raises(AudioError, match="not a PCM WAV file"):
        read_wav(i12)
    no_data = tmp_path / "nodata.wav"
    fmt = struct.pack("<HHIIHH", 1, 1, 8000, 16000, 2, 16)
    no_data.write_bytes(b"RIFF" + struct.pack("<I", 28) + b"WAVEfmt " + struct.pack("<I", 16) + fmt)
    with pytest.raises(AudioError, match="no data chunk"):
        read_wav(no_data)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(AudioError, match="cannot read WAV file"):
        read_wav(tmp_path / "nope.wav")


def test_truncated_data_is_tolerated(tmp_path: Path) -> None:
    pcm = np.arange(100, dtype="<i2").tobytes()
    path = make_wav(tmp_path / "t.wav", pcm, SAMPLE_RATE, 1, 16)
    raw = path.read_bytes()
    path.write_bytes(raw[:-11])  # a writer that died: size field says more than there is
    got = read_wav(path)
    assert got == pcm[: len(got)] and len(got) == len(pcm) - 12


def test_frames_are_padded() -> None:
    pcm = bytes(range(256)) * 6  # 1536 bytes = 2.4 frames
    frames = split_frames(pcm)
    assert [len(f) for f in frames] == [FRAME_BYTES] * 3
    assert b"".join(frames)[: len(pcm)] == pcm
    assert frames[-1][len(pcm) - 2 * FRAME_BYTES :] == bytes(3 * FRAME_BYTES - len(pcm))
    assert list(iter_frames(b"")) == []


def test_wav_source_and_sink(tmp_path: Path) -> None:
    pcm = np.arange(-1000, 1000, dtype="<i2").tobytes() * 3  # 12000 bytes
    src_path = tmp_path / "in.wav"
    write_wav(src_path, pcm)

    async def main() -> list[bytes]:
        src = WavSource(src_path)
        assert len(src) == -(-len(pcm) // FRAME_BYTES)
        out = []
        with WavSink(tmp_path / "out.wav") as sink:
            while (frame := await src.read()) is not None:
                sink.write(frame)
                out.append(frame)
            assert sink.frames == len(out)
        assert await src.read() is None
        return out

    frames = asyncio.run(main())
    assert b"".join(frames)[: len(pcm)] == pcm
    assert read_wav(tmp_path / "out.wav") == b"".join(frames)


def test_wav_source_realtime_and_loop(tmp_path: Path) -> None:
    write_wav(tmp_path / "in.wav", bytes(3 * FRAME_BYTES))

    async def main() -> float:
        src = WavSource(tmp_path / "in.wav", realtime=True, loop=True)
        t0 = time.monotonic()
        for _ in range(15):
            assert await src.read() is not None
        elapsed = time.monotonic() - t0
        src.close()
        assert await src.read() is None
        return elapsed

    elapsed = asyncio.run(main())
    assert 0.25 <= elapsed < 0.6  # 15 frames paced at 20 ms (the first is immediate)


def test_sink_errors(tmp_path: Path) -> None:
    with pytest.raises(AudioError, match="cannot write WAV file"):
        WavSink(tmp_path / "no" / "such" / "dir.wav")
    sink = WavSink(tmp_path / "x.wav")
    with pytest.raises(AudioError, match="even number"):
        sink.write(b"abc")
    sink.close()
    with pytest.raises(AudioError, match="closed"):
        sink.write(bytes(FRAME_BYTES))
