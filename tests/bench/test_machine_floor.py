"""bench/machine_floor.py: issue #17's targets scaled by the machine's floor measured now."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import machine_floor  # noqa: E402


def test_a_machine_slower_than_the_issues_loosens_the_target_by_as_much() -> None:
    v = machine_floor.scale("floor access p50", 2.5, 2.0, 0.05, 0.025)
    assert v.factor == pytest.approx(2.0)
    assert v.scaled == pytest.approx(4.0)
    assert (v.raw_met, v.scaled_met) == (False, True)
    assert v.line() == ("floor access p50 2.500 ms: raw target 2 ms NOT met; scaled 4.000 ms "
                        "(floor 0.050 / issue 0.025 = 2.00x) met")


def test_a_machine_faster_than_the_issues_tightens_it() -> None:
    v = machine_floor.scale("voice added p50", 0.4, 0.5, 0.0125, 0.025)
    assert v.scaled == pytest.approx(0.25)
    assert (v.raw_met, v.scaled_met) == (True, False)
    row = v.row()
    assert (row["raw"], row["scaled"], row["factor"]) == ("met", "not met", 0.5)


def test_met_at_the_target_itself_and_a_client_never_back_meets_neither() -> None:
    ref = machine_floor.failover_floor_ref(5000)
    at = machine_floor.scale("95% back", 3.0, 3.0, 1.41, ref, "s", "quiet")
    assert (at.raw_met, at.scaled_met) == (True, True)
    assert at.line().endswith("(floor 1.410 / quiet 1.410 = 1.00x) met")
    never = machine_floor.scale("all back", math.inf, 5.0, 9.0, ref, "s", "quiet")
    assert (never.raw_met, never.scaled_met) == (False, False)


def test_the_failover_reference_is_in_proportion_to_the_clients_moved() -> None:
    assert machine_floor.failover_floor_ref(2500) == pytest.approx(0.705)
    v = machine_floor.scale("95% back", 3.2, 3.0, 1.41, machine_floor.failover_floor_ref(2500),
                            "s", "quiet")
    assert v.scaled == pytest.approx(6.0) and (v.raw_met, v.scaled_met) == (False, True)


def test_a_reference_floor_of_nothing_is_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        machine_floor.scale("x", 1.0, 2.0, 0.1, 0.0)


def test_the_floor_is_the_primitive_the_path_took() -> None:
    assert machine_floor.rests_on("peer port (UDP)") == "udp"
    assert machine_floor.rests_on("bus (NATS)") == "nats"
    assert set(machine_floor.ISSUE_FLOOR) >= {"udp", "nats"}


def test_a_udp_train_between_two_processes() -> None:
    probe = machine_floor.UdpRoundTrip()
    try:
        cold, warm = machine_floor.train(probe)
    finally:
        probe.close()
    assert cold is not None and 0 < cold < 1000
    assert len(warm) == machine_floor.TRAIN - 2 and all(0 < t < 1000 for t in warm)
    assert not probe.procs[0].is_alive()
