"""Smoke test of bench/bench_voice_quality.py's harness on a few seconds of speech: the
simulation runs the real path and PESQ scores come out sane. Targets are not checked here."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("pesq")
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import bench_voice_quality as bench  # noqa: E402

from ptt.audio.samples import SHORT_TEXT, speech_pcm  # noqa: E402


@pytest.fixture(scope="module")
def frames() -> list[bytes]:
    return bench.split(speech_pcm(SHORT_TEXT))


def condition(name: str) -> bench.Condition:
    return next(c for c in bench.CONDITIONS if c.name == name)


def test_clean_path_scores_like_the_codec(frames: list[bytes]) -> None:
    played, kbps, stats, delay = bench.simulate(frames, bench.RECORD, condition("clean"), 1)
    assert stats["lost"] == 0 and stats["played_received"] == len(frames)
    assert bench.score(b"".join(frames), played) > 4.0
    assert 30 < kbps < 130
    assert 15 < delay < 60


def test_copies_beat_concealment_under_loss(frames: list[bytes]) -> None:
    ref = b"".join(frames)
    cond = condition("random 10%")
    plc = bench.Config("plc", redundancy=0)
    copies = bench.Config("k2", redundancy=2)
    p_plc, *_ = bench.simulate(frames, plc, cond, 3)
    p_copies, _, stats, _ = bench.simulate(frames, copies, cond, 3)
    assert stats["recovered_redundancy"] > 0
    assert bench.score(ref, p_copies) > bench.score(ref, p_plc) + 0.5


def test_alignment_removes_a_delay() -> None:
    import numpy as np

    rng = np.random.default_rng(1)
    ref = rng.normal(size=4000)
    played = np.concatenate([np.zeros(123), ref, np.zeros(50)])
    assert np.allclose(bench.align(ref, played), ref)
