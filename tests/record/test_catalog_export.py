"""Listing sessions, exporting to WAV at the original timing, reading bursts for replay."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest

from ptt.errors import RecordingError
from ptt.record.catalog import format_sessions, load, scan
from ptt.record.export import check_params, export_wav, format_timeline, replay_bursts
from ptt.record.ogg import read_pages
from ptt.record.recorder import Recorder
from tests.record.conftest import T0, need, run

RATE = 16_000


def make_session(root: Path, packets: list[bytes]) -> Path:
    """ops: alice talks 1 s at T0, bob 0.6 s at T0 + 3 s; fire: carol 0.4 s at T0 + 1."""
    rec = Recorder(root)
    for group, talker, burst, start, n in (
        ("ops", "alice", 1, T0, 50),
        ("ops", "bob", 2, T0 + 3, 30),
        ("fire", "carol", 1, T0 + 1, 20),
    ):
        rec.event(group, "floor_grant", start - 0.01, user=talker, burst=burst)
        rec.burst_started(group, talker, burst, start, first_seq=0)
        for i in range(n):
            rec.frame(group, burst, i, packets[i], start + i * 0.02)
        rec.burst_ended(group, burst, start + n * 0.02)
    rec.close(T0 + 10)
    return root


def read_wav(path: Path, rate: int = RATE) -> np.ndarray:
    with wave.open(str(path)) as w:
        assert w.getframerate() == rate and w.getnchannels() == 1
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(float)


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x**2))) if len(x) else 0.0


def test_sessions_are_listed(tmp_path: Path, packets) -> None:
    root = make_session(tmp_path / "rec", packets)
    sessions = {s.group: s for s in scan(root)}
    assert set(sessions) == {"ops", "fire"}
    ops = sessions["ops"]
    assert ops.start == T0 and ops.talkers == ["alice", "bob"] and len(ops.bursts) == 2
    assert ops.duration == pytest.approx(3.6) and ops.talk_time == pytest.approx(1.6)
    assert [b.offset for b in ops.bursts] == [0, 3] and ops.event_count == 8
    assert ops.all_problems() == [] and ops.complete
    table = format_sessions(list(sessions.values()), verbose=True)
    assert "ops" in table and "2024-05-01T12:00:00.000Z" in table and "alice, bob" in table
    assert "+0:03.000" in table and "b2-bob.opus" in table
    assert [s.group for s in scan(root / "ops")] == ["ops"]
    with pytest.raises(RecordingError, match=r"several sessions \(fire, ops\)"):
        load(root)
    with pytest.raises(RecordingError, match="no such file"):
        scan(root / "nothing")


def test_export_places_bursts_at_their_original_times(tmp_path: Path, packets) -> None:
    root = make_session(tmp_path / "rec", packets)
    result = export_wav(root / "ops", tmp_path / "ops.wav")
    pcm = read_wav(tmp_path / "ops.wav")
    assert result.duration == pytest.approx(3.6 - 0.0065, abs=0.001)
    assert len(pcm) == round(result.duration * RATE)
    assert rms(pcm[: RATE // 2]) > 300  # alice speaking
    assert rms(pcm[int(1.05 * RATE) : int(2.95 * RATE)]) == 0  # silence between the bursts
    assert rms(pcm[int(3.05 * RATE) : int(3.5 * RATE)]) > 300  # bob
    assert [(e.talker, e.at) for e in result.timeline] == [("alice", 0.0), ("bob", 3.0)]
    text = format_timeline(result)
    assert "alice burst 1  2024-05-01T12:00:00.000Z" in text
    assert "0:03.000" in text and "bob burst 2  2024-05-01T12:00:03.000Z" in text

    capped = export_wav(root / "ops", tmp_path / "capped.wav", max_gap=0.5)
    assert [e.at for e in capped.timeline] == [0.0, pytest.approx(1.5)]


def test_export_matches_opusdec(tmp_path: Path, packets) -> None:
    root = make_session(tmp_path / "rec", packets)
    (path,) = (root / "ops").glob("*alice.opus")
    # at 48 kHz neither side resamples, so the same libopus gives the same samples
    ours = export_wav(path, tmp_path / "ours.wav", sample_rate=48_000).path
    ref = tmp_path / "ref.wav"
    opusdec = run(need("opusdec"), "--quiet", "--no-dither", "--rate", "48000", path, ref)
    assert opusdec.returncode == 0
    assert np.array_equal(read_wav(ours, 48_000), read_wav(ref, 48_000))


def test_replay_reader_gives_packets_bit_for_bit_with_times(tmp_path: Path, packets) -> None:
    root = make_session(tmp_path / "rec", packets)
    bursts = list(replay_bursts(root / "ops"))
    assert [(b.talker, b.offset) for b in bursts] == [("alice", 0.0), ("bob", 3.0)]
    first = bursts[0]
    assert [p.data for p in first.packets] == packets[:50]
    assert [p.at for p in first.packets] == pytest.approx([i * 0.02 for i in range(50)])
    assert not first.compatibility.needs_conversion and first.compatibility.notes == ()
    assert first.duration == pytest.approx(1.0)
    assert len(first.pcm()) == round((1.0 - 0.0065) * RATE) * 2


def damage(root: Path) -> tuple[Path, Path]:
    """Truncate alice's file in the middle of a page and flip one byte of bob's."""
    alice = next((root / "ops").glob("*alice.opus"))
    bob = next((root / "ops").glob("*bob.opus"))
    data = alice.read_bytes()
    pages = list(read_pages(data))
    alice.write_bytes(data[: pages[6].offset + 30])  # 4 audio pages (20 frames) survive
    raw = bytearray(bob.read_bytes())
    raw[list(read_pages(bytes(raw)))[3].offset + 40] ^= 0xFF
    bob.write_bytes(bytes(raw))
    return alice, bob


def test_damaged_recordings_are_listed_exported_and_replayable(tmp_path: Path, packets) -> None:
    root = make_session(tmp_path / "rec", packets)
    alice, bob = damage(root)
    (ops,) = [s for s in scan(root) if s.group == "ops"]
    problems = ops.all_problems()
    assert any(str(alice) in p and "truncated Ogg page at byte" in p for p in problems)
    assert any(str(bob) in p and "CRC mismatch" in p for p in problems)
    assert len(ops.bursts) == 2 and not ops.complete
    assert ops.bursts[0].span == pytest.approx(0.4) and ops.bursts[1].span == pytest.approx(0.6)
    table = format_sessions([ops], verbose=True)
    assert "[incomplete]" in table and "truncated Ogg page" in table and "CRC mismatch" in table

    result = export_wav(root / "ops", tmp_path / "damaged.wav")
    assert [e.talker for e in result.timeline] == ["alice", "bob"]
    assert result.timeline[1].at == 3.0 and not result.timeline[0].complete
    assert any("truncated" in p for p in result.problems)
    pcm = read_wav(tmp_path / "damaged.wav")
    assert rms(pcm[int(3.5 * RATE) : int(3.55 * RATE)]) > 0  # bob after the lost page

    alice_burst, bob_burst = replay_bursts(root / "ops")
    assert [p.data for p in alice_burst.packets] == packets[:20]
    holes = [p for p in bob_burst.packets if p.data == b""]
    assert len(holes) == 1 and holes[0].lost and holes[0].at == pytest.approx(0.1)
    assert holes[0].duration == pytest.approx(0.1)
    kept = [p.data for p in bob_burst.packets if p.data]
    assert kept == packets[:5] + packets[10:30]


def test_an_opusenc_file_is_read_and_its_parameters_detected(tmp_path: Path, espeak_wav) -> None:
    mono = tmp_path / "mono.opus"
    assert run(need("opusenc"), "--quiet", espeak_wav, mono).returncode == 0
    (session,) = scan(mono)
    assert session.group == "mono" and session.talkers == ["unknown"]
    assert session.all_problems() == []
    (burst,) = replay_bursts(mono)
    p = burst.params
    assert (p.channels, p.input_rate, p.packet_ms, p.frames_per_packet) == (1, 22050, (20.0,), (1,))
    assert not burst.compatibility.needs_conversion  # 20 ms mono: sent as it is
    assert burst.compatibility.notes == ("input sample rate 22050 Hz, ptt encodes at 16000 Hz",)

    stereo_wav = tmp_path / "stereo.wav"
    assert run(need("sox"), espeak_wav, "-c", "2", "-r", "48000", stereo_wav).returncode == 0
    odd = tmp_path / "stereo60.opus"
    assert run(need("opusenc"), "--quiet", "--framesize", "60", stereo_wav, odd).returncode == 0
    (burst,) = replay_bursts(odd)
    assert burst.params.channels == 2 and 60.0 in burst.params.packet_ms  # the last is shorter
    assert burst.compatibility.needs_conversion
    reasons = burst.compatibility.reasons
    assert reasons[0] == "2 channels, ptt sends mono" and "ptt sends 20 ms" in reasons[1]
    ours = export_wav(odd, tmp_path / "odd.wav")  # decodable although not ptt-shaped
    ref = tmp_path / "odd_ref.wav"
    assert run(need("opusdec"), "--quiet", "--rate", str(RATE), odd, ref).returncode == 0
    with wave.open(str(ref)) as w:  # opusdec keeps both channels; we downmix
        ref_frames = w.getnframes()
    assert len(read_wav(ours.path)) == ref_frames == len(burst.pcm()) // 2


def test_parameter_checks() -> None:
    from ptt.record.export import StreamParams

    ptt_like = StreamParams(1, 16000, 0, 1, (20.0,), (1,), (1,), 312)
    assert not check_params(ptt_like).needs_conversion and check_params(ptt_like).notes == ()
    two_frames = StreamParams(1, 16000, 0, 1, (20.0,), (2,), (1,), 312)
    assert check_params(two_frames).reasons == ("several frames per packet, ptt sends one",)
    surround = StreamParams(6, 48000, 1, 4, (20.0,), (1,), (1, 2), 312)
    assert len(check_params(surround).reasons) == 2


def test_a_lost_first_page_keeps_the_rest_at_its_true_time(tmp_path: Path, packets) -> None:
    root = make_session(tmp_path / "rec", packets)
    alice = next((root / "ops").glob("*alice.opus"))
    raw = bytearray(alice.read_bytes())
    raw[list(read_pages(bytes(raw)))[2].offset + 40] ^= 0xFF  # the first audio page (frames 0-4)
    alice.write_bytes(bytes(raw))
    (burst, _) = replay_bursts(root / "ops")
    assert burst.packets[0].at == pytest.approx(0.1) and burst.packets[0].data == packets[5]
    assert burst.duration == pytest.approx(1.0)
    result = export_wav(root / "ops", tmp_path / "x.wav")
    pcm = read_wav(tmp_path / "x.wav")
    start = int((0.1 - 0.0065) * RATE)  # the first surviving sample plays at 100 ms - pre-skip
    assert rms(pcm[:start]) == 0 and rms(pcm[start : start + 800]) > 0
    assert result.timeline[1].at == 3.0
