"""espeak-ng speech samples."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ptt.audio.codec import SAMPLE_RATE
from ptt.audio.samples import SHORT_TEXT, make_speech_wav
from ptt.audio.wav import read_wav, wav_info
from ptt.errors import AudioError
from tests.audio.helpers import samples


def test_make_speech_wav(tmp_path: Path) -> None:
    path = make_speech_wav(tmp_path / "s.wav", SHORT_TEXT)
    info = wav_info(path)
    assert (info.rate, info.channels, info.bits) == (SAMPLE_RATE, 1, 16)
    assert 2.0 < info.duration < 8.0
    x = samples(read_wav(path))
    assert np.sqrt(np.mean(x**2)) > 500  # speech, not silence
    again = make_speech_wav(tmp_path / "t.wav", SHORT_TEXT)
    assert read_wav(again) == read_wav(path)  # deterministic
    assert wav_info(make_speech_wav(tmp_path / "u.wav", "Hello.", rate=8000)).rate == 8000


def test_speech_fixture(speech: bytes) -> None:
    assert 15 < len(speech) / 2 / SAMPLE_RATE < 40


def test_missing_tools_are_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(AudioError, match="espeak-ng is not installed"):
        make_speech_wav(tmp_path / "s.wav")


def test_tool_failure_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(AudioError, match="sox failed"):
        make_speech_wav(tmp_path / "no" / "dir" / "s.wav", "Hi.")
