"""Sound devices: selection logic, quiet PortAudio, and the real PyAudio path through a private
headless PulseAudio (null sink and its monitor)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ptt.audio import devices
from ptt.audio.codec import FRAME_BYTES, SAMPLE_RATE
from ptt.audio.devices import CaptureSource, DeviceInfo, PlaybackSink, _pick, list_devices
from ptt.audio.pulse import PulseServer, start_pulse, stop_pulse
from ptt.audio.wav import split_frames
from ptt.errors import AudioError
from tests.audio.helpers import best_alignment, samples

FAKE = [
    DeviceInfo(0, "HDA Intel PCH: ALC3246 Analog (hw:0,0)", 2, 2, 48000, "ALSA"),
    DeviceInfo(1, "HDA Intel PCH: HDMI 0 (hw:0,3)", 0, 8, 44100, "ALSA"),
    DeviceInfo(2, "USB Headset: Audio (hw:1,0)", 1, 2, 48000, "ALSA", True, False),
    DeviceInfo(3, "pulse", 32, 32, 44100, "ALSA"),
    DeviceInfo(4, "default", 32, 32, 44100, "ALSA", False, True),
]


def test_pick_by_default_index_and_name() -> None:
    assert _pick(FAKE, None, "input").index == 2
    assert _pick(FAKE, None, "output").index == 4
    assert _pick(FAKE, 0, "input").index == 0
    assert _pick(FAKE, "1", "output").index == 1
    assert _pick(FAKE, "pulse", "output").index == 3
    assert _pick(FAKE, "usb headset", "input").index == 2
    assert _pick(FAKE, "HDMI", "output").index == 1


@pytest.mark.parametrize(
    ("spec", "direction", "match"),
    [
        (1, "input", "no input channels"),
        (9, "output", "no audio device with index 9"),
        ("hw:", "output", "ambiguous"),
        ("HDMI", "input", "no audio input device matches 'HDMI'"),
    ],
)
def test_pick_errors(spec: object, direction: str, match: str) -> None:
    with pytest.raises(AudioError, match=match):
        _pick(FAKE, spec, direction)  # type: ignore[arg-type]


def test_pick_without_devices() -> None:
    with pytest.raises(AudioError, match="no audio output devices"):
        _pick([], None, "output")
    assert _pick([d for d in FAKE if d.index in (0, 3)], None, "output").name == "pulse"


def test_portaudio_is_quiet_without_a_sound_server(tmp_path: Path) -> None:
    """Out of the box PortAudio prints pages of ALSA/JACK errors; ours prints nothing."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULSE_")}
    env["PULSE_SERVER"] = f"unix:{tmp_path}/nothing-here"
    code = "from ptt.audio.devices import list_devices; print(len(list_devices()))"
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    raw = subprocess.run(  # the same probe without our handlers, for comparison
        [sys.executable, "-c", "import pyaudio; pyaudio.PyAudio().terminate()"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    print(f"raw PortAudio printed {len(raw.stderr.splitlines())} lines on stderr; ptt printed 0")


def test_capture_needs_a_loop(pulse_server: PulseServer) -> None:
    with pytest.raises(AudioError, match="event loop"):
        CaptureSource().start()


def test_lists_the_pulse_devices(pulse_server: PulseServer) -> None:
    found = {d.name: d for d in list_devices()}
    assert "pulse" in found and "default" in found
    for d in found.values():
        assert d.default_rate > 0 and d.max_input_channels > 0 and d.max_output_channels > 0
    assert any(d.default_input for d in found.values())
    assert devices.find_device("pulse", "input").name == "pulse"
    idx = found["default"].index
    assert devices.find_device(idx, "output").name == "default"
    with pytest.raises(AudioError, match="no audio output device matches"):
        devices.find_device("no such card", "output")


async def _loopback(
    frames: list[bytes], play_dev: object, cap_dev: object, device_rate: int | None
) -> tuple[np.ndarray, PlaybackSink, CaptureSource, float]:
    cap = CaptureSource(cap_dev, device_rate=device_rate)  # type: ignore[arg-type]
    play = PlaybackSink(play_dev, device_rate=device_rate)  # type: ignore[arg-type]
    recorded: list[bytes] = []
    worst_lag = 0.0

    async def recorder() -> None:
        while (frame := await cap.read()) is not None:
            assert len(frame) == FRAME_BYTES
            recorded.append(frame)

    async def heartbeat() -> None:  # proves the loop never blocks while audio runs
        nonlocal worst_lag
        loop = asyncio.get_running_loop()
        while True:
            t = loop.time()
            await asyncio.sleep(0.005)
            worst_lag = max(worst_lag, loop.time() - t - 0.005)

    cap.start()
    play.start()
    tasks = [asyncio.create_task(recorder()), asyncio.create_task(heartbeat())]
    await asyncio.sleep(0.3)
    for frame in frames:
        await play.wait_ready()
        play.write(frame)
    await play.drain()
    await asyncio.sleep(0.8)  # the sound server's own buffers
    cap.close()
    play.close()
    await tasks[0]
    tasks[1].cancel()
    return samples(b"".join(recorded)), play, cap, worst_lag


@pytest.mark.parametrize("device_rate", [None, 48_000], ids=["16k", "resampled-48k"])
def test_speech_played_is_speech_recorded(
    pulse_server: PulseServer, short_speech: bytes, device_rate: int | None
) -> None:
    """Speech through PlaybackSink into the null sink, recorded back from its monitor through
    CaptureSource: the recording matches what was played."""
    frames = split_frames(short_speech)
    t0 = time.monotonic()
    rec, play, cap, worst_lag = asyncio.run(_loopback(frames, "pulse", "default", device_rate))
    wall = time.monotonic() - t0
    ref = samples(b"".join(frames))
    assert len(rec) > len(ref)
    lag, corr = best_alignment(ref, rec)
    print(
        f"device rate {play.device_rate}: lag {lag / SAMPLE_RATE * 1000:.0f} ms, corr {corr:.4f}, "
        f"loop worst lag {worst_lag * 1000:.1f} ms, underruns {play.underruns}"
    )
    assert corr >= 0.9, corr
    if device_rate is None:
        assert play.device_rate == cap.device_rate == SAMPLE_RATE
        assert corr >= 0.99
    else:
        assert play.device_rate == cap.device_rate == device_rate
    assert wall >= len(frames) * 0.02  # really paced by the (virtual) sound card
    assert worst_lag < 0.1
    assert cap.dropped == 0


def test_chirp_loopback_and_playback_clock(pulse_server: PulseServer) -> None:
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    chirp = 8000 * np.sin(2 * np.pi * (200 * t + 1400 * t**2))  # 200 Hz -> 3 kHz in 1 s
    frames = split_frames(chirp.astype("<i2").tobytes())

    async def main() -> tuple[np.ndarray, float, float]:
        play = PlaybackSink("default")
        cap = CaptureSource("pulse", queue_frames=500)
        cap.start()
        await play.wait_ready()  # an idle sink wants frames at once
        t0 = asyncio.get_running_loop().time()
        for f in frames:
            await play.wait_ready()
            play.write(f)
        written = asyncio.get_running_loop().time() - t0
        assert play.queued_frames <= play.target_frames + 0.01
        await play.drain()
        await asyncio.sleep(0.8)
        got = []
        while cap.pending():
            got.append(await cap.read())
        cap.close()
        assert await cap.read() is None
        play.close()
        with pytest.raises(AudioError, match="closed"):
            play.write(frames[0])
        return samples(b"".join(got)), written, play.frames_played

    rec, written, played = asyncio.run(main())
    # wait_ready paced the writer at the card's rate: 50 frames ~ 1 s minus the 2-frame queue
    assert 0.8 <= written <= 1.6, written
    assert played >= len(frames)
    _, corr = best_alignment(samples(b"".join(frames)), rec)
    assert corr >= 0.99, corr


def test_playback_plays_silence_when_starved(pulse_server: PulseServer) -> None:
    async def main() -> tuple[int, int]:
        async with PlaybackSink() as play:
            await asyncio.sleep(0.3)  # nothing written: silence, not an error
            idle = play.frames_played
            play.write(bytes(FRAME_BYTES))
            await play.drain()
            await asyncio.sleep(0.1)
            return idle, play.frames_played

    idle, played = asyncio.run(main())
    assert idle == 0 and played >= 1


def test_start_and_stop_by_pid_file(tmp_path: Path) -> None:
    try:
        server = start_pulse(tmp_path / "p2", sink="second", rate=48_000, settle=0)
    except AudioError as exc:
        pytest.skip(f"PulseAudio cannot start here: {exc}")
    try:
        pid = int(server.pid_file.read_text())
        keeper = int(server.keeper_pid_file.read_text())
        os.kill(pid, 0)
        os.kill(keeper, 0)
        assert "second" in server.pactl("list", "short", "sinks")
        assert server.pactl("get-default-source").strip() == "second.monitor"
    finally:
        stop_pulse(tmp_path / "p2")  # by path, as another process would
    for p in (pid, keeper):
        with pytest.raises(ProcessLookupError):
            os.kill(p, 0)
