"""The sliding replay window against a model that remembers everything (hypothesis)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ptt.crypto.replay import MAX_SEQ, ReplayWindow


def test_in_order_then_duplicates_refused() -> None:
    w = ReplayWindow(8)
    for seq in range(20):
        assert w.accept(seq)
        assert not w.accept(seq)
    assert w.top == 19


def test_reordering_inside_the_window_is_accepted_once() -> None:
    w = ReplayWindow(8)
    assert w.accept(10)
    for seq in (3, 9, 5, 4):  # 3..10 are inside a window of 8 below 10
        assert w.accept(seq)
        assert not w.accept(seq)
    assert not w.check(2)  # 10 - 2 = 8: too old to tell, refused


def test_a_jump_wider_than_the_window_forgets_the_old_bits() -> None:
    w = ReplayWindow(16)
    for seq in range(5):
        w.accept(seq)
    assert w.accept(1_000_000)
    assert not w.check(4)  # far below now
    assert w.check(1_000_000 - 15) and not w.check(1_000_000 - 16)


def test_check_changes_nothing_and_commit_refuses_a_replay() -> None:
    w = ReplayWindow()
    assert w.check(7) and w.check(7)
    w.commit(7)
    with pytest.raises(ValueError):
        w.commit(7)
    assert not w.check(-1) and not w.check(MAX_SEQ + 1) and w.check(MAX_SEQ)


def test_memory_is_bounded_by_the_window_size() -> None:
    w = ReplayWindow(1024)
    for seq in range(0, 200_000, 3):
        w.accept(seq)
    assert w._bits.bit_length() <= 1024


@settings(max_examples=300, deadline=None)
@given(size=st.sampled_from([1, 2, 7, 64, 1024]),
       seqs=st.lists(st.one_of(st.integers(0, 3000), st.integers(0, MAX_SEQ)), max_size=300))
def test_matches_a_model_that_never_forgets(size: int, seqs: list[int]) -> None:
    """Never accepts a number twice; accepts every new number within the window; refuses exactly
    the numbers at or beyond ``size`` below the highest accepted."""
    w = ReplayWindow(size)
    seen: set[int] = set()
    top = -1
    for seq in seqs:
        expected = seq not in seen and (seq > top or top - seq < size)
        assert w.accept(seq) == expected, (seq, top)
        if expected:
            seen.add(seq)
            top = max(top, seq)
        assert w.top == top
