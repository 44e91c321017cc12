"""bench/bench_floor_path.py runs its cross-node floor cycle on the real cores and wire: every
turn is timed each cycle and the profile names the functions of each turn."""

from __future__ import annotations

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import bench_floor_path  # noqa: E402


def test_every_turn_of_the_cycle_is_timed_and_profiled() -> None:
    timed = bench_floor_path.measure(5, cold=True)
    assert set(timed) == set(bench_floor_path.TURNS)
    for turn, seconds in timed.items():
        assert len(seconds) == 5, turn
        assert all(0 < s < 0.5 for s in seconds), (turn, seconds)
    listing = bench_floor_path.profile(3, top=40)
    assert "receive_datagram" in listing["a request"]
    assert "_on_input" in listing["c decide"]
    assert "_on_news" in listing["a answer"]
    assert "route_voice" in listing["a frame"]
    assert "receive_voice" in listing["b frame"]
