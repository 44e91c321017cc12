"""Abuse limits: token buckets with bounded memory, size ceilings, no amplification on the real
message encoder."""

from __future__ import annotations

import msgpack
import pytest

from ptt.protocol import messages as m
from ptt.protocol.auth import MAX_ITERATIONS, MAX_SALT_SIZE, NONCE_SIZE
from ptt.protocol.limits import (
    MAX_KEEPALIVE_DATAGRAM,
    MAX_SEALED_DATAGRAM,
    MAX_UNAUTH_DATAGRAM,
    MIN_HELLO_SIZE,
    RateLimiter,
    RateLimits,
    answer_fits,
    max_size,
    padding_needed,
    size_ok,
)
from ptt.protocol.messages import encode_message
from ptt.wire.voice import MAX_VOICE_DATAGRAM

U64 = 2**64 - 1


def test_bucket_allows_a_burst_then_the_rate() -> None:
    lim = RateLimiter(RateLimits(rate=2.0, burst=4.0))
    assert [lim.allow("a", 0.0) for _ in range(6)] == [True] * 4 + [False] * 2
    assert lim.allow("a", 0.5) and not lim.allow("a", 0.5)  # 2/s refills one in 0.5 s
    assert lim.allow("b", 0.5)  # other addresses are not charged
    assert [lim.allow("a", 100.0) for _ in range(5)] == [True] * 4 + [False]  # capped at burst


def test_memory_is_bounded_with_lru_eviction() -> None:
    lim = RateLimiter(RateLimits(rate=1.0, burst=1.0, max_addrs=100, global_rate=1e9,
                                 global_burst=1e9))
    for i in range(10_000):
        lim.allow(("10.0.0.1", i), float(i) * 1e-6)
    assert len(lim) == 100
    lim.allow(("10.0.0.1", 9_950), 0.02)  # recently used: kept, and its bucket is empty
    assert not lim.allow(("10.0.0.1", 9_950), 0.02)
    lim.forget(("10.0.0.1", 9_950))
    assert len(lim) == 99


def test_refilled_buckets_are_forgotten_so_a_spray_of_sources_does_not_pile_up() -> None:
    # 100 new sources a second, each seen once: only those heard in the last burst/rate seconds
    # (4 s here) stay in the table, far below max_addrs.
    lim = RateLimiter(RateLimits(rate=2.0, burst=8.0, global_rate=1e9, global_burst=1e9))
    for i in range(20_000):
        lim.allow(("127.0.0.9", i), i / 100)
    assert len(lim) <= 4 * 100 + 2
    # a source that comes back within the window is still charged
    for _ in range(8):
        assert lim.allow("back", 300.0)
    assert not lim.allow("back", 300.1)


def test_the_aggregate_bucket_bounds_a_swarm_of_addresses() -> None:
    lim = RateLimiter(RateLimits(rate=1, burst=1, max_addrs=10, global_rate=10, global_burst=50))
    allowed = sum(lim.allow(("spoofed", i), 0.0) for i in range(1000))
    assert allowed == 50
    assert sum(lim.allow(("spoofed", i), 1.0) for i in range(1000, 2000)) == 10


def test_invalid_limits_are_refused() -> None:
    with pytest.raises(ValueError):
        RateLimiter(RateLimits(rate=0))


def test_size_ceilings_by_kind() -> None:
    assert max_size(b"V" + bytes(30)) == MAX_VOICE_DATAGRAM
    assert max_size(b"S" + bytes(30)) == MAX_SEALED_DATAGRAM
    assert max_size(b"K" + bytes(30)) == MAX_KEEPALIVE_DATAGRAM < MAX_UNAUTH_DATAGRAM
    assert max_size(b"\x95") == MAX_UNAUTH_DATAGRAM
    assert not size_ok(b"") and size_ok(b"\x95")
    assert not size_ok(b"\x95" + bytes(MAX_UNAUTH_DATAGRAM))
    assert not size_ok(b"V" + bytes(MAX_VOICE_DATAGRAM))
    login = encode_message(m.Login(U64, "a" * 100, bytes(16), bytes(16), bytes(32)))
    assert size_ok(login)  # a Login with a long name still fits the unauthenticated ceiling


def test_the_largest_challenge_fits_in_a_padded_hello() -> None:
    worst = encode_message(m.Challenge(U64, bytes(NONCE_SIZE), bytes(MAX_SALT_SIZE),
                                       MAX_ITERATIONS))
    assert len(worst) <= MIN_HELLO_SIZE
    assert answer_fits(MIN_HELLO_SIZE, worst)


def test_padding_a_hello_with_an_empty_bytes_field_reaches_the_target() -> None:
    for user in ("a", "bob", "x" * 60):
        fields = [m.PROTOCOL_VERSION, int(m.MsgType.HELLO), 1, user, bytes(NONCE_SIZE)]
        unpadded = msgpack.packb([*fields, b""], use_bin_type=True)
        n = padding_needed(len(unpadded))
        padded = msgpack.packb([*fields, bytes(n)], use_bin_type=True)
        assert len(padded) == max(MIN_HELLO_SIZE, len(unpadded))
    with pytest.raises(ValueError):
        padding_needed(0, 300)


def test_today_some_answers_amplify_which_the_rule_catches() -> None:
    """The integration must pad Hello and send NO_SESSION only when it fits."""
    hello = encode_message(m.Hello(1, "bob", bytes(NONCE_SIZE)))
    challenge = encode_message(m.Challenge(1, bytes(16), bytes(16), 50_000))
    assert not answer_fits(hello, challenge)
    heartbeat = encode_message(m.Heartbeat(1, 5))
    no_session = encode_message(m.Error(1, m.ErrorCode.NO_SESSION, "no session: log in again"))
    assert not answer_fits(heartbeat, no_session)
    login = encode_message(m.Login(1, "bob", bytes(16), bytes(16), bytes(32)))
    failed = encode_message(m.Error(1, m.ErrorCode.AUTH_FAILED, "login failed: wrong user or token"))
    assert answer_fits(login, failed)


def test_a_flood_from_a_few_networks_cannot_spend_the_budget_of_the_rest() -> None:
    """One /24 takes at most its prefix bucket (an eighth of the aggregate by default): a flood
    spoofed from four networks, each source port a new one, leaves budget for a newcomer."""
    lim = RateLimiter(RateLimits())
    granted = sum(lim.allow((f"127.77.{k % 4}.{k % 250 + 1}", 1024 + k), 0.0)
                  for k in range(20_000))
    assert granted == 4 * RateLimits().prefix_burst  # half the aggregate burst, no more
    assert lim.has_budget(0.0, "127.66.0.1") and lim.allow(("127.66.0.1", 5000), 0.0)
    assert not lim.has_budget(0.0, "127.77.2.9")  # the flooding networks have none left
    assert lim.has_budget(0.0)  # nor has the aggregate run out
    # a flood over more networks than that is bounded by the aggregate alone
    lim = RateLimiter(RateLimits())
    granted = sum(lim.allow((f"10.{k % 64}.0.1", 1024 + k), 0.0) for k in range(20_000))
    assert granted == RateLimits().global_burst
    assert not lim.allow(("127.66.0.1", 5000), 0.0)


def test_network_prefixes() -> None:
    from ptt.protocol.limits import network_prefix

    assert network_prefix("192.0.2.77") == "192.0.2"
    assert network_prefix("::ffff:192.0.2.77") == "::ffff:192.0.2"
    assert network_prefix("2001:db8:aa:1::5") == "2001:db8:aa"


def test_without_a_prefix_share_one_network_may_take_the_whole_aggregate() -> None:
    """The known hosts' limits (ptt.protocol.server_gate): thousands of clients behind one NAT
    address come back at once after a restart, at the aggregate's pace."""
    lim = RateLimiter(RateLimits().unshared())
    granted = sum(lim.allow(("198.51.100.7", 1024 + k), 0.0) for k in range(10_000))
    assert granted == RateLimits().global_burst
