"""Shared fixtures for the recording tests: real speech, real Opus packets, independent tools.

``packets`` are libopus packets of espeak-ng speech made by ptt's own encoder, exactly what talkers
send. ``tool`` returns the path of an independent checker (opusinfo, opusdec, opusenc, ffprobe,
ffmpeg) or skips the test with the Debian package to install (``make deps`` installs them all).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from ptt.audio.codec import FRAME_BYTES, SAMPLE_RATE, OpusEncoder
from ptt.audio.samples import SHORT_TEXT, make_speech_wav, speech_pcm
from ptt.errors import AudioError

TOOLS = {
    "opusinfo": "opus-tools",
    "opusdec": "opus-tools",
    "opusenc": "opus-tools",
    "ffprobe": "ffmpeg",
    "ffmpeg": "ffmpeg",
}
T0 = 1_714_564_800.0  # 2024-05-01T12:00:00Z, the wall clock the tests pass in


def need(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (apt-get install {TOOLS.get(name, name)})")
    return path


@pytest.fixture
def tool() -> Callable[[str], str]:
    return need


def run(*cmd: str | Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture(scope="session")
def speech16k() -> bytes:
    """About 3.5 s of espeak-ng speech, 16-bit mono at SAMPLE_RATE."""
    try:
        return speech_pcm(SHORT_TEXT, rate=SAMPLE_RATE)
    except AudioError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def packets(speech16k: bytes) -> list[bytes]:
    """The speech as 20 ms Opus packets from ptt's encoder."""
    enc = OpusEncoder()
    n = len(speech16k) // FRAME_BYTES
    return [enc.encode(speech16k[i * FRAME_BYTES : (i + 1) * FRAME_BYTES]) for i in range(n)]


@pytest.fixture(scope="session")
def espeak_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An espeak-ng WAV at its native 22050 Hz, as a tester would feed to opusenc."""
    try:
        return make_speech_wav(tmp_path_factory.mktemp("speech") / "speech.wav", rate=22_050)
    except AudioError as exc:
        pytest.skip(str(exc))
