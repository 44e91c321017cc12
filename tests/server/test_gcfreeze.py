"""The collector policy alone: when the adapter freezes, thaws or leaves the collector be."""

from __future__ import annotations

from ptt.server.gcfreeze import GC_CHECK_EVERY, GC_THAW_EVERY, FreezePolicy, GcStep


def test_freezes_again_only_after_growth_of_a_tenth_and_a_hundred() -> None:
    p = FreezePolicy(now=0.0)
    p.frozen(0)
    assert p.check(GC_CHECK_EVERY, 99) is GcStep.KEEP
    assert p.check(2 * GC_CHECK_EVERY, 100) is GcStep.FREEZE  # 100 more than at the freeze
    p.frozen(100)
    p.frozen(5_000)
    assert p.check(3 * GC_CHECK_EVERY, 5_499) is GcStep.KEEP
    assert p.check(4 * GC_CHECK_EVERY, 5_500) is GcStep.FREEZE  # a tenth more


def test_thaws_once_every_thaw_period_whatever_the_sessions() -> None:
    p = FreezePolicy(now=100.0)
    p.frozen(10)
    assert p.check(100.0 + GC_THAW_EVERY - 1.0, 10) is GcStep.KEEP
    assert p.check(100.0 + GC_THAW_EVERY, 10_000) is GcStep.THAW
    assert p.check(100.0 + GC_THAW_EVERY + GC_CHECK_EVERY, 10) is GcStep.KEEP  # counted anew
    assert p.check(100.0 + 2 * GC_THAW_EVERY, 10) is GcStep.THAW
