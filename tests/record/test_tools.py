"""Recordings checked by independent tools: opusinfo, opusdec, ffprobe, ffmpeg; and a SIGKILL."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import wave
from pathlib import Path

import pytest

from ptt.record.events import read_events
from ptt.record.opusfile import read_opus
from ptt.record.recorder import Recorder
from tests.record.conftest import T0, need, run

FRAME = 0.02
ONE_FRAME = 0.020


def wav_seconds(path: Path) -> float:
    with wave.open(str(path)) as w:
        return w.getnframes() / w.getframerate()


def record(tmp_path: Path, packets: list[bytes], order: list[int]) -> tuple[Path, float]:
    """Record one burst; returns its file and the talk time (sequence span x 20 ms)."""
    rec = Recorder(tmp_path / "rec")
    path = rec.burst_started("ops", "alice", 3, T0, first_seq=0)
    for k, i in enumerate(order):
        rec.frame("ops", 3, i, packets[i], T0 + k * FRAME)
        rec.tick(T0 + k * FRAME)
    rec.burst_ended("ops", 3, T0 + len(order) * FRAME)
    rec.close()
    return path, (max(order) + 1) * FRAME


def check_with_tools(path: Path, talk_time: float, tmp_path: Path) -> None:
    info = run(need("opusinfo"), path)
    assert info.returncode == 0, info.stdout + info.stderr
    assert "WARNING" not in info.stdout + info.stderr and "ERROR" not in info.stdout
    assert "Channels: 1" in info.stdout and "Pre-skip: 312" in info.stdout
    assert "TALKER=alice" in info.stdout and "GROUP=ops" in info.stdout
    m = re.search(r"Playback length: (\d+)m:([\d.]+)s", info.stdout)
    assert m and abs(int(m[1]) * 60 + float(m[2]) - talk_time) <= ONE_FRAME

    out = tmp_path / "opusdec.wav"
    dec = run(need("opusdec"), "--quiet", path, out)
    assert dec.returncode == 0, dec.stderr
    assert abs(wav_seconds(out) - talk_time) <= ONE_FRAME

    probe = run(
        need("ffprobe"),
        "-v",
        "error",
        "-show_entries",
        "stream=codec_name,channels",
        "-show_entries",
        "format=duration",
        "-of",
        "default=nw=1",
        path,
    )
    assert probe.returncode == 0, probe.stderr
    assert "codec_name=opus" in probe.stdout and "channels=1" in probe.stdout
    m = re.search(r"duration=([\d.]+)", probe.stdout)
    assert m and abs(float(m[1]) - talk_time) <= ONE_FRAME

    ff_out = tmp_path / "ffmpeg.wav"
    ff = run(need("ffmpeg"), "-v", "error", "-y", "-i", path, ff_out)
    assert ff.returncode == 0 and not ff.stderr.strip(), ff.stderr
    assert abs(wav_seconds(ff_out) - talk_time) <= ONE_FRAME


def test_a_recorded_burst_passes_opusinfo_opusdec_and_ffmpeg(tmp_path: Path, packets) -> None:
    path, talk_time = record(tmp_path, packets, list(range(len(packets))))
    check_with_tools(path, talk_time, tmp_path)


def test_a_burst_with_lost_and_reordered_frames_keeps_its_length(tmp_path: Path, packets) -> None:
    order = [i for i in range(len(packets)) if i % 17 != 5]
    order[40], order[41] = order[41], order[40]
    path, talk_time = record(tmp_path, packets, order)
    check_with_tools(path, talk_time, tmp_path)


WRITER = """
import sys, time
from ptt.record.recorder import Recorder
out, packets_file = sys.argv[1], sys.argv[2]
data = open(packets_file, "rb").read()
packets, pos = [], 0
while pos < len(data):
    n = int.from_bytes(data[pos:pos + 2], "big"); packets.append(data[pos + 2:pos + 2 + n]); pos += 2 + n
rec = Recorder(out)
start = time.time()
rec.event("ops", "floor_grant", start, user="alice", burst=5)
rec.burst_started("ops", "alice", 5, start, first_seq=0)
for seq, packet in enumerate(packets):
    now = time.time()
    rec.frame("ops", 5, seq, packet, now)
    rec.tick(now)
    print(seq, flush=True)
    time.sleep(0.02)
rec.close(time.time())
"""


@pytest.mark.slow
def test_a_writer_killed_mid_burst_leaves_a_playable_file(tmp_path: Path, packets) -> None:
    need("opusdec")
    blob = tmp_path / "packets.bin"
    blob.write_bytes(b"".join(len(p).to_bytes(2, "big") + p for p in packets))
    out = tmp_path / "rec"
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(out), str(blob)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        fed = -1
        deadline = time.monotonic() + 30
        while fed < 63 and time.monotonic() < deadline:  # 1.28 s of talk, mid-page
            fed = int(proc.stdout.readline())
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        for line in proc.stdout:  # it may have run ahead of our reading before the kill
            fed = int(line)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    (path,) = (out / "ops").glob("*.opus")

    opus = read_opus(path)
    assert opus.ok and not opus.complete  # no damage, just no EOS page
    stored = opus.streams[0].packets
    assert [p.data for p in stored] == packets[: len(stored)]
    # frames still held (at most a page's worth minus one, with the reorder slack) are lost
    assert fed + 1 - 5 <= len(stored) <= fed + 1

    wav = tmp_path / "killed.wav"
    dec = run(need("opusdec"), "--quiet", path, wav)
    assert dec.returncode == 0, dec.stderr
    assert abs(wav_seconds(wav) - (len(stored) * 0.02 - 312 / 48000)) < 0.001
    info = run(need("opusinfo"), path)  # exits 1 on its only warning, the missing EOS page
    warnings = [line for line in info.stdout.splitlines() if "WARNING" in line]
    assert len(warnings) == 1 and "EOS not set" in warnings[0], info.stdout
    assert "Playback length: 0m:01." in info.stdout

    log = read_events(out / "ops" / "events.jsonl")
    assert [e.kind for e in log.events] == ["recorder_start", "floor_grant", "burst_start"]
    assert log.problems == []
