"""One frame length in seconds (ptt.audio.codec.FRAME_SECONDS), and the multicast defaults of the
config are those of ptt.net.multicast: each default defined once."""

from __future__ import annotations

import io
import re
import tokenize
from pathlib import Path

import ptt.audio.streams
import ptt.media.jitter
from ptt.audio.codec import FRAME_MS, FRAME_SECONDS
from ptt.config import ClientConfig, ServerConfig
from ptt.net.multicast import MulticastOptions

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted((ROOT / "ptt").rglob("*.py"))


def test_one_module_defines_the_frame_length_in_seconds() -> None:
    own = [str(p.relative_to(ROOT)) for p in SOURCES
           if re.search(r"^\s*FRAME_S(ECONDS)?\s*[:=]", p.read_text(), re.M)]
    assert own == ["ptt/audio/codec.py"]
    assert FRAME_SECONDS == FRAME_MS / 1000
    assert ptt.media.jitter.FRAME_SECONDS is FRAME_SECONDS
    assert ptt.audio.streams.FRAME_SECONDS is FRAME_SECONDS


def _frames_times_a_literal(source: str) -> list[int]:
    """Lines where code (not a string or a comment) multiplies by 0.02 written as a number."""
    tokens = [t for t in tokenize.generate_tokens(io.StringIO(source).readline)
              if t.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.COMMENT)]
    lines = []
    for i, t in enumerate(tokens):
        if t.type == tokenize.NUMBER and t.string.rstrip("0") == "0.02":
            around = {tokens[j].string for j in (i - 1, i + 1) if 0 <= j < len(tokens)}
            if "*" in around:
                lines.append(t.start[0])
    return lines


def test_no_module_multiplies_frames_by_a_written_frame_length() -> None:
    found = {str(p.relative_to(ROOT)): n for p in SOURCES
             if (n := _frames_times_a_literal(p.read_text()))}
    assert found == {}


def test_the_checker_sees_code_and_not_strings() -> None:
    assert _frames_times_a_literal('x = n * 0.02\ny = 0.020 * n\n"""n * 0.02"""\n# n * 0.02\n') \
        == [1, 2]
    assert _frames_times_a_literal("late = 0.02\n") == []


def test_the_configs_multicast_defaults_are_the_sockets() -> None:
    sockets = MulticastOptions()
    for config in (ClientConfig(), ServerConfig()):
        assert (config.multicast_interface, config.multicast_ttl) == (sockets.interface,
                                                                      sockets.ttl)
    config_py = (ROOT / "ptt" / "config.py").read_text()
    assert not re.search(r"^MULTICAST_(TTL|INTERFACE)\s*=", config_py, re.M)
