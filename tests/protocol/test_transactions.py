from __future__ import annotations

import pytest

from ptt.protocol.transactions import (
    RETRY_FIRST,
    RETRY_TOTAL,
    ResponseCache,
    Retransmitter,
    SeenSet,
)


def test_retransmit_schedule_backs_off_and_gives_up_under_six_seconds() -> None:
    rt: Retransmitter[int] = Retransmitter()
    rt.add(1, b"req", "server", now=0.0)
    sends = []
    expired = []
    now = 0.0
    while len(rt) and now < 10:
        now = rt.get_timer()
        assert now is not None
        resend, gone = rt.handle_timer(now)
        sends += [now for _ in resend]
        expired += gone
    assert sends[0] == RETRY_FIRST  # first retry within 100 ms
    gaps = [b - a for a, b in zip([0.0] + sends, sends)]
    assert all(g2 >= g1 - 1e-9 for g1, g2 in zip(gaps, gaps[1:-1]))  # non-decreasing backoff
    assert [e.key for e in expired] == [1]
    assert now <= RETRY_TOTAL < 6.0


def test_ack_stops_retransmission() -> None:
    rt: Retransmitter[int] = Retransmitter()
    rt.add(1, b"a", None, 0.0)
    rt.add(2, b"b", None, 0.0)
    assert rt.ack(1) and not rt.ack(1)
    resend, _ = rt.handle_timer(0.1)
    assert resend == [(b"b", None)]


def test_response_cache_answers_until_ttl() -> None:
    c: ResponseCache[tuple[str, int]] = ResponseCache(ttl=2.0)
    c.put(("a", 1), b"answer", 0.0)
    assert c.get(("a", 1), 1.9) == b"answer"
    assert c.get(("a", 2), 1.0) is None
    assert c.get(("a", 1), 2.1) is None
    c.expire(3.0)
    assert len(c) == 0


def test_a_cached_answer_put_as_a_function_is_made_at_the_first_resend_and_kept() -> None:
    """A rarely asked answer (a Login's Welcome without its folded joins) costs nothing until
    a resend asks; then it is made once and every later resend gets the same bytes."""
    made: list[int] = []

    def make() -> bytes:
        made.append(1)
        return b"answer %d" % len(made)

    c: ResponseCache[tuple[str, int]] = ResponseCache(ttl=2.0)
    c.put(("a", 1), make, 0.0)
    assert made == []
    assert c.get(("a", 1), 0.5) == b"answer 1"
    assert c.get(("a", 1), 1.0) == b"answer 1" and made == [1]
    c.put(("a", 2), make, 0.0)
    assert c.get(("a", 2), 2.1) is None and made == [1]  # expired: never made


def test_seen_set_is_bounded() -> None:
    s: SeenSet[int] = SeenSet(capacity=3)
    assert s.check_and_add(1) and not s.check_and_add(1)
    for k in (2, 3, 4):
        s.check_and_add(k)
    assert s.check_and_add(1)  # evicted, so new again


def test_resend_now_sends_a_pending_datagram_and_the_next_retry_comes_an_interval_later(
        ) -> None:
    rt: Retransmitter[int] = Retransmitter()
    rt.add(1, b"x", "peer", 0.0)
    assert rt.handle_timer(0.1)[0] == [(b"x", "peer")]  # the interval is 0.2 s from here
    assert rt.resend_now(1, 0.15) == (b"x", "peer")
    assert rt.get_timer() == pytest.approx(0.35)
    assert rt.handle_timer(0.3) == ([], [])
    assert rt.resend_now(2, 0.3) is None  # not pending
    rt.ack(1)
    assert rt.resend_now(1, 0.4) is None
    rt.add(3, b"y", "peer", 1.0)
    assert rt.resend_now(3, 1.0 + RETRY_TOTAL) is None  # its time is up


def test_the_response_cache_asks_for_a_timer_just_after_its_oldest_entry_ends() -> None:
    c: ResponseCache[tuple[str, int]] = ResponseCache(ttl=2.0)
    assert c.get_timer() is None
    c.put(("a", 1), b"answer", 0.0)
    c.put(("a", 2), lambda: b"made", 1.0)
    at = c.get_timer()
    assert at is not None and 2.0 < at < 2.001
    c.expire(at)
    assert len(c) == 1 and c.get(("a", 2), at) == b"made"
