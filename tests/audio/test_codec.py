"""The Opus wrapper against the real libopus, with real (espeak-ng) speech."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from ptt.audio import codec
from ptt.audio.codec import (
    DEFAULT_BITRATE,
    FRAME_BYTES,
    FRAME_SAMPLES,
    SAMPLE_RATE,
    CodecWorker,
    OpusDecoder,
    OpusEncoder,
    packet_has_fec,
)
from ptt.audio.wav import split_frames
from ptt.errors import AudioError
from tests.audio.helpers import samples


def encode_all(pcm: bytes, **kw: object) -> tuple[OpusEncoder, list[bytes]]:
    enc = OpusEncoder(**kw)  # type: ignore[arg-type]
    return enc, [enc.encode(f) for f in split_frames(pcm)]


def test_frame_constants() -> None:
    assert SAMPLE_RATE == 16_000
    assert codec.FRAME_MS == 20
    assert FRAME_SAMPLES == 320
    assert FRAME_BYTES == 640
    assert 24_000 <= DEFAULT_BITRATE <= 64_000  # in-band FEC needs >= 20-24 kbps at 16 kHz


def test_encoder_settings() -> None:
    enc = OpusEncoder()
    assert enc.fec and enc.expected_loss == 10 and enc.bitrate == DEFAULT_BITRATE
    assert enc.complexity == codec.DEFAULT_COMPLEXITY
    assert enc.lookahead == 104  # 6.5 ms at 16 kHz
    enc.set_bitrate(24_000)
    enc.set_expected_loss(20)
    enc.set_fec(False)
    enc.set_complexity(5)
    assert (enc.bitrate, enc.expected_loss, enc.fec, enc.complexity) == (24_000, 20, False, 5)


@pytest.mark.parametrize(
    "kwargs",
    [{"sample_rate": 44_100}, {"bitrate": 1_000}, {"complexity": 11}, {"expected_loss": 101}],
)
def test_encoder_rejects_bad_settings(kwargs: dict[str, int]) -> None:
    with pytest.raises(AudioError):
        OpusEncoder(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("size", [0, 1, FRAME_BYTES - 2, FRAME_BYTES + 2, 2 * FRAME_BYTES])
def test_encode_needs_exactly_one_frame(size: int) -> None:
    with pytest.raises(AudioError, match="640 bytes"):
        OpusEncoder().encode(bytes(size))


def test_encode_accepts_bytearray_and_memoryview() -> None:
    enc = OpusEncoder()
    assert enc.encode(bytearray(FRAME_BYTES))
    assert enc.encode(memoryview(bytes(FRAME_BYTES)))


def test_speech_round_trip_correlates(speech: bytes) -> None:
    enc, packets = encode_all(speech)
    dec = OpusDecoder()
    out = samples(b"".join(dec.decode(p) for p in packets))
    d = enc.lookahead
    ref = samples(speech)
    n = len(ref)
    got = out[d : d + n]
    corr = np.dot(got, ref[: len(got)]) / (np.linalg.norm(got) * np.linalg.norm(ref[: len(got)]))
    assert corr >= 0.9, corr
    # and the delay really is the lookahead: one sample either way correlates worse
    for off in (d - 1, d + 1):
        other = out[off : off + n][: len(got)]
        assert (
            np.dot(other, ref[: len(other)])
            / (np.linalg.norm(other) * np.linalg.norm(ref[: len(other)]))
            < corr
        )
    bits = sum(len(p) for p in packets) * 8 / (len(packets) * codec.FRAME_MS / 1000)
    assert 0.7 * DEFAULT_BITRATE < bits < 1.1 * DEFAULT_BITRATE


@pytest.mark.parametrize("rate", [8_000, 24_000, 48_000])
def test_other_sample_rates(rate: int) -> None:
    enc, dec = OpusEncoder(sample_rate=rate), OpusDecoder(sample_rate=rate)
    n = rate // 50
    assert enc.frame_bytes == dec.frame_bytes == 2 * n
    t = np.arange(10 * n) / rate
    pcm = (8000 * np.sin(2 * np.pi * 440 * t)).astype("<i2").tobytes()
    out = b"".join(dec.decode(enc.encode(f)) for f in split_frames(pcm, 2 * n))
    assert len(out) == len(pcm)
    with pytest.raises(AudioError):
        enc.encode(bytes(FRAME_BYTES + 2))


def test_decoder_errors() -> None:
    dec = OpusDecoder()
    with pytest.raises(AudioError, match="empty"):
        dec.decode(b"")
    with pytest.raises(AudioError, match="valid Opus|failed"):
        dec.decode(b"\xff\xff\xff")
    with pytest.raises(AudioError):
        dec.decode(None)  # type: ignore[arg-type]
    with pytest.raises(AudioError):
        OpusDecoder(sample_rate=22_050)


def test_decoder_rejects_other_frame_durations() -> None:
    import opuslib_next

    raw = opuslib_next.Encoder(SAMPLE_RATE, 1, opuslib_next.APPLICATION_VOIP)
    packet_40ms = raw.encode(bytes(2 * FRAME_BYTES), 2 * FRAME_SAMPLES)
    packet_10ms = raw.encode(bytes(FRAME_BYTES // 2), FRAME_SAMPLES // 2)
    dec = OpusDecoder()
    for packet, ms in ((packet_40ms, "40"), (packet_10ms, "10")):
        with pytest.raises(AudioError, match=f"{ms} ms packet"):
            dec.decode(packet)
        with pytest.raises(AudioError, match=f"{ms} ms packet"):
            dec.decode_fec(packet)


def test_conceal_and_reset_give_frames(speech: bytes) -> None:
    _, packets = encode_all(speech[: 50 * FRAME_BYTES])
    dec = OpusDecoder()
    for p in packets[:20]:
        dec.decode(p)
    concealed = dec.conceal()
    assert len(concealed) == FRAME_BYTES
    assert np.abs(samples(concealed)).max() > 0  # continues the speech, not silence
    dec.reset()
    assert len(dec.conceal()) == FRAME_BYTES
    assert len(OpusDecoder().conceal()) == FRAME_BYTES  # with no history: silence, no error


def test_fec_present_at_default_bitrate_absent_at_16k(speech: bytes) -> None:
    _, packets = encode_all(speech)
    assert np.mean([packet_has_fec(p) for p in packets]) > 0.7
    _, low = encode_all(speech, bitrate=16_000)
    assert not any(packet_has_fec(p) for p in low)  # libopus 1.3.1: no LBRR at 16 kbps
    _, off = encode_all(speech, fec=False)
    assert not any(packet_has_fec(p) for p in off)
    assert not packet_has_fec(b"") and not packet_has_fec(b"\x08")


def _frame_error(out: bytes, ref: np.ndarray, start: int) -> float:
    x = samples(out)
    return float(np.sum((x - ref[start : start + len(x)]) ** 2))


def test_fec_recovers_dropped_packets_better_than_plc(speech: bytes) -> None:
    """Drop isolated voiced frames; rebuild each from the next packet's FEC or by PLC, and compare
    both with the original speech at that point."""
    enc, packets = encode_all(speech)
    d = enc.lookahead
    ref = np.concatenate([np.zeros(d), samples(speech), np.zeros(FRAME_SAMPLES)])
    energy = np.array([np.sum(samples(f) ** 2) for f in split_frames(speech)])
    loud = energy > np.percentile(energy, 40)
    lost = [
        i
        for i in range(5, len(packets) - 2, 7)
        if loud[i] and loud[i - 1] and packet_has_fec(packets[i + 1])
    ]
    assert len(lost) > 50
    fec_dec, plc_dec = OpusDecoder(), OpusDecoder()
    fec_err = plc_err = signal = 0.0
    wins = 0
    lost_set = set(lost)
    for i, p in enumerate(packets):
        if i in lost_set:
            a = _frame_error(fec_dec.decode_fec(packets[i + 1]), ref, i * FRAME_SAMPLES)
            b = _frame_error(plc_dec.conceal(), ref, i * FRAME_SAMPLES)
            fec_err += a
            plc_err += b
            wins += a < b
            signal += float(np.sum(ref[i * FRAME_SAMPLES : (i + 1) * FRAME_SAMPLES] ** 2))
        else:
            fec_dec.decode(p)
            plc_dec.decode(p)
    fec_snr = 10 * np.log10(signal / fec_err)
    plc_snr = 10 * np.log10(signal / plc_err)
    print(
        f"{len(lost)} dropped frames: FEC SNR {fec_snr:.1f} dB, PLC SNR {plc_snr:.1f} dB, FEC closer {wins}"
    )
    assert fec_snr > plc_snr + 3, (fec_snr, plc_snr)
    assert wins >= 0.8 * len(lost), (wins, len(lost))


def test_decode_fec_without_fec_data_falls_back_to_concealment(speech: bytes) -> None:
    _, packets = encode_all(speech[: 30 * FRAME_BYTES], fec=False)
    dec = OpusDecoder()
    for p in packets[:10]:
        dec.decode(p)
    assert len(dec.decode_fec(packets[11])) == FRAME_BYTES
    assert len(dec.decode(packets[11])) == FRAME_BYTES


def test_codec_worker_runs_off_loop_in_order(speech: bytes) -> None:
    frames = split_frames(speech[: 100 * FRAME_BYTES])
    enc, dec = OpusEncoder(), OpusDecoder()
    ref_enc, ref_dec = OpusEncoder(), OpusDecoder()
    expected = [ref_dec.decode(ref_enc.encode(f)) for f in frames]

    async def main() -> list[bytes]:
        with CodecWorker() as worker:
            packets = await asyncio.gather(*(worker.encode(enc, f) for f in frames))
            out = [await worker.decode(dec, p) for p in packets]
            out.append(await worker.decode_fec(dec, packets[-1]))
            out.append(await worker.conceal(dec))
            with pytest.raises(AudioError):
                await worker.encode(enc, b"short")
            return out

    out = asyncio.run(main())
    assert out[:-2] == expected  # same bytes as calling directly: order was kept
    assert all(len(f) == FRAME_BYTES for f in out)


def test_per_frame_cost_does_not_block_the_loop(speech: bytes) -> None:
    """The measured cost behind the module docstring: far below a 20 ms frame."""
    frames = split_frames(speech[: 250 * FRAME_BYTES])
    enc, dec = OpusEncoder(), OpusDecoder()
    t0 = time.perf_counter()
    packets = [enc.encode(f) for f in frames]
    t1 = time.perf_counter()
    for p in packets:
        dec.decode(p)
    t2 = time.perf_counter()
    for p in packets:
        dec.decode_fec(p)
        dec.conceal()
    t3 = time.perf_counter()
    n = len(frames)
    encode_ms, decode_ms, other_ms = (
        (t1 - t0) / n * 1e3,
        (t2 - t1) / n * 1e3,
        (t3 - t2) / n / 2 * 1e3,
    )
    print(
        f"per 20 ms frame: encode {encode_ms:.3f} ms, decode {decode_ms:.3f} ms, "
        f"FEC/PLC {other_ms:.3f} ms"
    )
    assert encode_ms < 4 and decode_ms < 1 and other_ms < 1
