"""The renewer's rule for a silent event loop (ptt.protocol.loop_silence): a loop that waited for
a CPU keeps its lease, one that ran or slept through the same silence loses it, and the ceiling
lets any loop's lease go."""

from __future__ import annotations

import pytest

from ptt.errors import ConfigError
from ptt.protocol.loop_silence import CEILING_TTLS, LIMIT_TTLS, LoopSilence, Silence

TTL = 1.0


def _signed(at: float = 100.0, waited: float = 5.0) -> LoopSilence:
    rule = LoopSilence()
    rule.sign(at, waited)
    return rule


def test_a_loop_that_signed_within_a_ttl_is_running() -> None:
    rule = _signed()
    assert rule.judge(100.0 + TTL, 5.0, TTL) is Silence.RUNNING


def test_a_loop_blocked_past_the_limit_is_wedged_and_one_under_it_late() -> None:
    rule = _signed()
    # blocked: no wait for a CPU meanwhile, so all of the silence is charged
    assert rule.judge(100.0 + LIMIT_TTLS * TTL - 0.01, 5.0, TTL) is Silence.LATE
    assert rule.judge(100.0 + LIMIT_TTLS * TTL + 0.01, 5.0, TTL) is Silence.WEDGED


def test_the_starved_survivors_silence_keeps_the_lease() -> None:
    """3.4 s without a timer at load 12 on 2 cores, most of it runnable and not scheduled
    (docs/cluster.md, the 100,000-client failover): the old wall-clock rule withheld at 3 s."""
    rule = _signed()
    now, waited = 100.0 + 3.4, 5.0 + 2.8
    assert rule.charged(now, waited) == pytest.approx(0.6)
    assert rule.judge(now, waited, TTL) is Silence.LATE


def test_waiting_for_a_cpu_delays_the_verdict_by_exactly_the_wait() -> None:
    rule = _signed()
    wait = 1.5
    assert rule.judge(100.0 + LIMIT_TTLS + wait - 0.01, 5.0 + wait, TTL) is Silence.LATE
    assert rule.judge(100.0 + LIMIT_TTLS + wait + 0.01, 5.0 + wait, TTL) is Silence.WEDGED


def test_the_ceiling_ends_any_silence_however_long_the_wait() -> None:
    rule = _signed()
    # a loop spinning for ever on a machine that gives it a sliver of a CPU
    just_under = 100.0 + CEILING_TTLS * TTL - 0.01
    assert rule.judge(just_under, 5.0 + CEILING_TTLS, TTL) is Silence.LATE
    assert rule.judge(just_under + 0.02, 5.0 + CEILING_TTLS, TTL) is Silence.WEDGED


def test_a_wait_that_went_backwards_excuses_nothing() -> None:
    """A thread that ended takes its wait out of the process's sum: never a negative excuse."""
    rule = _signed(waited=5.0)
    assert rule.charged(103.5, 4.0) == pytest.approx(3.5)
    assert rule.judge(103.5, 4.0, TTL) is Silence.WEDGED


def test_a_new_sign_starts_the_silence_again() -> None:
    rule = _signed()
    rule.sign(103.0, 5.0)
    assert rule.judge(103.5, 5.0, TTL) is Silence.RUNNING
    assert rule.silent(103.5) == pytest.approx(0.5)


def test_the_limits_scale_with_the_lease_ttl() -> None:
    rule = _signed()
    ttl = 2.0
    assert rule.judge(100.0 + LIMIT_TTLS * ttl - 0.01, 5.0, ttl) is Silence.LATE
    assert rule.judge(100.0 + LIMIT_TTLS * ttl + 0.01, 5.0, ttl) is Silence.WEDGED


def test_a_limit_above_its_ceiling_is_refused() -> None:
    with pytest.raises(ConfigError, match="at most its ceiling"):
        LoopSilence(limit_ttls=5.0, ceiling_ttls=4.0)
    with pytest.raises(ConfigError, match="> 0"):
        LoopSilence(limit_ttls=0.0)
