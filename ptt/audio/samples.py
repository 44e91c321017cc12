"""Real speech for tests, benchmarks and the demo: espeak-ng synthesis, converted by sox.

The same commands as ``../shared/TESTING.md``::

    espeak-ng -v en-us -s 165 -w speech.wav -f sentences.txt
    sox speech.wav -r 16000 -c 1 -b 16 speech16k.wav

plus sox's ``-R`` (repeatable dither), so the same text always gives the same samples and scores
measured on them are repeatable.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from ptt.audio.codec import SAMPLE_RATE
from ptt.errors import AudioError

DEFAULT_TEXT = (
    "The quick brown fox jumps over the lazy dog. "
    "Unit seven, please report to the loading dock at gate four. "
    "Emergency crews are standing by near the north entrance. "
    "Repeat, the north entrance is now closed. "
    "Dispatch, this is team bravo, we copy your last message and are moving to the second "
    "checkpoint. Please keep the channel clear for priority traffic until further notice. "
    "Thank you, over and out."
)
SHORT_TEXT = "Unit seven, please report to the loading dock at gate four."
VOICE = "en-us"
WORDS_PER_MINUTE = 165


def _tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise AudioError(
            f"{name} is not installed; it makes the speech samples (apt-get install {package}, "
            f"or run `make deps`)"
        )
    return path


def make_speech_wav(
    path: str | os.PathLike[str],
    text: str = DEFAULT_TEXT,
    rate: int = SAMPLE_RATE,
    voice: str = VOICE,
    speed: int = WORDS_PER_MINUTE,
) -> Path:
    """Synthesize ``text`` into a 16-bit mono WAV at ``rate`` Hz; returns the path."""
    espeak = _tool("espeak-ng", "espeak-ng")
    sox = _tool("sox", "sox")
    out = Path(path)
    with tempfile.TemporaryDirectory(prefix="ptt-speech-") as tmp:
        text_file = Path(tmp, "text.txt")
        text_file.write_text(text, encoding="utf-8")
        raw = Path(tmp, "speech.wav")
        _run([espeak, "-v", voice, "-s", str(speed), "-w", str(raw), "-f", str(text_file)])
        _run([sox, "-R", str(raw), "-r", str(rate), "-c", "1", "-b", "16", str(out)])
    return out


def _run(cmd: list[str]) -> None:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise AudioError(f"{os.path.basename(cmd[0])} failed: {exc}") from exc
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise AudioError(
            f"{os.path.basename(cmd[0])} failed (exit {proc.returncode})"
            + (f": {detail[-1]}" if detail else "")
        )


def speech_pcm(text: str = DEFAULT_TEXT, rate: int = SAMPLE_RATE) -> bytes:
    """Synthesized speech as 16-bit mono PCM at ``rate`` Hz (via a temporary WAV)."""
    from ptt.audio.wav import read_wav

    with tempfile.TemporaryDirectory(prefix="ptt-speech-") as tmp:
        wav = make_speech_wav(Path(tmp, "speech.wav"), text, rate)
        return read_wav(wav, rate)
