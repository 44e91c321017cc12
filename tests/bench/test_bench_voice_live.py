"""Smoke test of bench/bench_voice_quality.py's real-command part: `ptt talk --wav` -> server ->
`python -m ptt.faults.proxy` -> `ptt listen --out`, one short sentence, one seed,
10 % loss on each path. The figures are checked for sanity only (CI is too noisy for the
targets)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("pesq")

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import bench_voice_quality as bench  # noqa: E402

TINY = bench.LivePlan(voices=("English (en-us)",), conditions=("random 10%",),
                      ways=("down", "up"), seeds=(1,),
                      texts={"English (en-us)": "Radio check, gate two. How do you read?"},
                      minutes=3.0)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_real_command_cells_run_end_to_end() -> None:
    res = bench.run(plan=TINY, offline=False, verbose=False)
    rows = res["rows"]
    assert [(r["lossy path"], r["condition"]) for r in rows] == [
        ("server -> listener", "random 10%"), ("talker -> server", "random 10%")]
    for r in rows:
        assert r["pipeline"] == "real commands" and r["seeds"] == 1
        assert 2.5 < r["PESQ"] <= 4.7
        # one datagram per 20 ms of speech carries a frame of Opus at the default bitrate
        assert 30 < r["kbit/s UDP payload"] < 200 and 50 < r["bytes/datagram"] < 500
        assert abs(r["heard - spoken ms (max)"]) <= 300
        # what `ptt talk` printed last about its protection ("2 copies at offsets 1,3", ...)
        assert "cop" in r["ptt talk settled on"], r["ptt talk settled on"]
    assert "real commands" in res["title"] and "ptt.faults.proxy" in res["notes"]
    assert isinstance(res["targets missed (real commands)"], str)


def _with_and_without(shim: Path, probe: str) -> list[int]:
    """``probe``'s printed integer from a Python started with ``shim`` first on its
    PYTHONPATH, then from one started without it."""
    import os
    import subprocess

    out = []
    for path in (str(shim), None):
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        if path is not None:
            env["PYTHONPATH"] = path
        done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True,
                              text=True, timeout=60, check=True)
        out.append(int(done.stdout))
    return out


def test_the_ab_switch_turns_the_runs_rate_off_in_the_talker_only() -> None:
    # --runs-bitrate off puts bench/no_runs_bitrate first on the talker's PYTHONPATH: a process
    # started so gets no least rate against runs, and one without it gets RUNS_BITRATE
    probe = ("from ptt.media.sender import RedundancyPolicy\n"
             "p = RedundancyPolicy()\n"
             "p.start(2)\n"
             f"print([p.update(0.10, 3.0) for _ in range(3)][-1].bitrate({bench.DEFAULT_BITRATE}))\n")
    assert _with_and_without(bench.NO_RUNS_BITRATE, probe) == [bench.DEFAULT_BITRATE,
                                                                 bench.RUNS_BITRATE]


def test_the_ab_switch_makes_the_start_fall_at_a_clean_first_report_in_the_talker_only() -> None:
    # --start-guess off puts bench/one_report_start first on the talker's PYTHONPATH: a process
    # started so drops its start to one copy at a first report without loss, as before
    # RedundancyPolicy.GUESS_REPORTS; one without it keeps the start through that report
    probe = ("from ptt.media.sender import START_REDUNDANCY, RedundancyPolicy\n"
             "p = RedundancyPolicy()\n"
             "p.start(START_REDUNDANCY)\n"
             "print(p.update(0.0).redundancy)\n")
    assert _with_and_without(bench.ONE_REPORT_START, probe) == [1, 2]


def test_the_before_switch_gives_the_listener_the_old_growth_against_runs() -> None:
    # --build before also puts bench/reach_two_short first: a listener started so grows two
    # frames short of the copies' reach whatever its start (REACH_JITTERS None)
    probe = "import ptt.media.jitter as j\nprint(int(j.REACH_JITTERS is None))\n"
    assert bench.REACH_TWO_SHORT in bench.BEFORE and bench.ONE_REPORT_START in bench.BEFORE
    assert _with_and_without(bench.REACH_TWO_SHORT, probe) == [1, 0]


def test_the_before_switch_gives_the_listener_the_old_run_count_across_reports() -> None:
    # --build before also puts bench/runs_per_burst first: a listener started so counts a run
    # of loss that a report falls inside in the first report only (its own loss_report)
    probe = ("from ptt.media.receiver import BurstReceiver\n"
             "print(int(BurstReceiver.loss_report.__module__ == 'sitecustomize'))\n")
    assert bench.RUNS_PER_BURST in bench.BEFORE
    assert _with_and_without(bench.RUNS_PER_BURST, probe) == [1, 0]


def _cells(*argv: str) -> dict[str, object]:
    import argparse

    ns = argparse.Namespace(voices=None, paths=None, conditions=None, text=None, seeds=None,
                            bitrate=None)
    for key, value in zip(argv[::2], argv[1::2], strict=True):
        setattr(ns, key, value)
    return bench._live_cells(ns)


def test_the_bitrate_switch_gives_the_talker_each_rate_in_turn() -> None:
    # --bitrate 28000,30000: each cell with PTT_BITRATE at each (the talker's own setting)
    assert _cells("bitrate", "28000,30000")["bitrates"] == (28_000, 30_000)
    assert bench.LivePlan().bitrates == (None,)  # without it: ptt's default, nothing set
    for bad in ("fast", "100", "28000,"):
        with pytest.raises(ValueError, match="bitrate"):
            _cells("bitrate", bad)
