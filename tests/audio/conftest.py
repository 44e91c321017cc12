"""Shared audio fixtures: speech to play. The private PulseAudio (``pulse_server``) is in
tests/conftest.py, one per test process for every directory that uses it."""

from __future__ import annotations

import pytest

from ptt.audio.codec import SAMPLE_RATE
from ptt.audio.samples import SHORT_TEXT, speech_pcm


@pytest.fixture(scope="session")
def speech() -> bytes:
    """About 25 s of espeak-ng speech, 16-bit mono at SAMPLE_RATE."""
    return speech_pcm(rate=SAMPLE_RATE)


@pytest.fixture(scope="session")
def short_speech() -> bytes:
    """About 3.5 s of espeak-ng speech."""
    return speech_pcm(SHORT_TEXT, rate=SAMPLE_RATE)
