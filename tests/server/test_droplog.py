"""A flood of dropped datagrams is not a flood of lines: the first few of each second only."""

from __future__ import annotations

from ptt.server.droplog import DropLog


def test_at_most_the_limit_each_second_and_the_rest_counted() -> None:
    d = DropLog(per_second=5)
    allowed = [d.allow(10.0 + i * 0.01) for i in range(50)]  # 50 in half a second
    assert allowed == [True] * 5 + [False] * 45
    assert d.take_suppressed() == 45 and d.take_suppressed() == 0
    assert d.allow(11.0)  # a second after the first line: a new second
    assert [d.allow(11.1) for _ in range(5)] == [True] * 4 + [False]
    assert d.suppressed == 1


def test_the_first_drop_is_logged_whatever_the_clock_reads() -> None:
    assert DropLog(per_second=1).allow(0.0)
    assert DropLog(per_second=1).allow(-5.0)
