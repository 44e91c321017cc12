"""Shared audio fixtures.

``pulse_server`` starts a private headless PulseAudio (null sink ``ptt_null`` at 16 kHz mono, its
monitor the default source) once per session and points this process at it (``PULSE_SERVER``), so
PortAudio's ``pulse``/``default`` devices give real, real-time paced streams. It skips only when
PulseAudio cannot start here. Tests in other directories reuse it by importing it into their own
conftest.py::

    from tests.audio.conftest import pulse_server  # noqa: F401
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ptt.audio.codec import SAMPLE_RATE
from ptt.audio.pulse import PulseServer, start_pulse, stop_pulse
from ptt.audio.samples import SHORT_TEXT, speech_pcm
from ptt.errors import AudioError


@pytest.fixture(scope="session")
def pulse_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PulseServer]:
    root = tmp_path_factory.mktemp("pulse")
    try:
        server = start_pulse(root)
    except AudioError as exc:
        pytest.skip(f"PulseAudio cannot start here, so the real device path is not tested: {exc}")
    try:
        with server.activated():
            yield server
    finally:
        stop_pulse(server)


@pytest.fixture(scope="session")
def speech() -> bytes:
    """About 25 s of espeak-ng speech, 16-bit mono at SAMPLE_RATE."""
    return speech_pcm(rate=SAMPLE_RATE)


@pytest.fixture(scope="session")
def short_speech() -> bytes:
    """About 3.5 s of espeak-ng speech."""
    return speech_pcm(SHORT_TEXT, rate=SAMPLE_RATE)
