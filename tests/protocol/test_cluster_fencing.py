"""The fencing rule an access node applies, and the lease clock a home stamps by."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ptt.errors import ValidationError
from ptt.protocol.cluster_fencing import FencingView, LeaseClock, Stamp, Verdict


def test_a_stamp_below_the_highest_seen_is_refused() -> None:
    view = FencingView()
    assert view.check(Stamp("g", 5)) is Verdict.ACCEPTED
    assert view.check(Stamp("g", 5)) is Verdict.ACCEPTED  # the same home, again
    assert view.check(Stamp("g", 9)) is Verdict.ACCEPTED  # a newer home
    assert view.check(Stamp("g", 5)) is Verdict.REFUSED  # the old home, after it
    assert view.check(Stamp("other", 1)) is Verdict.ACCEPTED  # each group on its own


def test_a_claim_seen_in_the_watch_fences_the_old_home_before_the_new_one_stamps() -> None:
    view = FencingView()
    assert view.check(Stamp("g", 5)) is Verdict.ACCEPTED
    view.learn_owner(Stamp("g", 8))
    assert view.check(Stamp("g", 5)) is Verdict.REFUSED
    view.learn_owner(Stamp("g", 6))  # an older claim read late lowers nothing
    assert view.check(Stamp("g", 7)) is Verdict.REFUSED
    assert view.check(Stamp("g", 8)) is Verdict.ACCEPTED


def test_a_fencing_number_is_a_revision() -> None:
    with pytest.raises(ValidationError, match="fencing number"):
        Stamp("g", 0)


@given(st.lists(st.tuples(st.sampled_from(["a", "b"]), st.integers(1, 50),
                          st.booleans()), max_size=60))
def test_no_stamp_below_any_claim_or_stamp_seen_before_is_ever_accepted(
        steps: list[tuple[str, int, bool]]) -> None:
    view = FencingView()
    seen: dict[str, int] = {}
    for group, fencing, is_claim in steps:
        if is_claim:
            view.learn_owner(Stamp(group, fencing))
        else:
            verdict = view.check(Stamp(group, fencing))
            assert (verdict is Verdict.ACCEPTED) == (fencing >= seen.get(group, 0))
        seen[group] = max(seen.get(group, 0), fencing)


def test_the_lease_is_counted_from_the_sending_of_the_acknowledged_renewal() -> None:
    clock = LeaseClock(ttl=1.0)
    assert not clock.valid(0.0)  # no grant yet
    clock.acknowledged(sent_at=10.0, ttl=1.0)
    assert clock.valid(10.99) and not clock.valid(11.0)
    clock.acknowledged(sent_at=10.5, ttl=1.0)
    assert clock.valid(11.4) and not clock.valid(11.5)
    clock.acknowledged(sent_at=10.2, ttl=1.0)  # a slow answer to an older renewal
    assert clock.valid(11.4)


def test_a_lease_etcd_says_is_gone_stops_stamping_at_once() -> None:
    clock = LeaseClock(ttl=1.0)
    clock.acknowledged(sent_at=10.0, ttl=1.0)
    clock.acknowledged(sent_at=10.3, ttl=0)  # etcd: no such lease
    assert not clock.valid(10.3)
    clock.acknowledged(sent_at=20.0, ttl=2.0)  # a new lease
    assert clock.valid(21.9) and clock.ttl == 2.0
    clock.lost()
    assert not clock.valid(21.0)
