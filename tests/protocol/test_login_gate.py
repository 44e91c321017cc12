"""The login gate under attack, sans-I/O: stateless challenges, equal work for every name,
failed-login back-off (the live versions are in tests/security/test_attacks_live.py)."""

from __future__ import annotations

import hmac
import os
import random
import time
from collections import Counter
from collections.abc import Iterator

import pytest

from ptt.protocol import auth, limits
from ptt.protocol import messages as m
from ptt.protocol.messages import decode_message, encode_message
from ptt.protocol.server import ServerCore

TOKEN = "token-of-ann-0123456789abcdef"
ADDR = ("10.0.0.2", 40000)


def core() -> ServerCore:
    rng = random.Random(3)
    s = ServerCore(rng.randbytes)
    c = auth.make_credentials(TOKEN, rng.randbytes(16), auth.MIN_ITERATIONS)
    s.upsert_user("ann", m.Role.VOLUNTEER, c.salt, c.iterations, c.verifier)
    return s


def hello(user: str, nonce: bytes, txn: int = 1) -> m.Hello:
    bare = encode_message(m.Hello(txn, user, nonce))
    return m.Hello(txn, user, nonce, bytes(limits.padding_needed(len(bare))))


def challenge(s: ServerCore, user: str, nonce: bytes, now: float, addr=ADDR,
              txn: int = 1) -> m.Challenge:
    s.receive_datagram(encode_message(hello(user, nonce, txn)), addr, now)
    (data, to), = s.datagrams_to_send()
    assert to == addr
    ch = decode_message(data)
    assert isinstance(ch, m.Challenge)
    return ch


def login(s: ServerCore, user: str, token: str, now: float, addr=ADDR, txn: int = 10
          ) -> bytes:
    nonce = os.urandom(16)
    ch = challenge(s, user, nonce, now, addr, txn)
    lg = auth.answer_challenge(txn + 1, m.Hello(txn, user, nonce), ch, token)
    s.receive_datagram(encode_message(lg), addr, now)
    return s.datagrams_to_send()[-1][0]


@pytest.fixture
def hmac_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[Counter[str]]:
    """Counts every HMAC the server computes, by kind (digest, new, compare)."""
    calls: Counter[str] = Counter()
    real_digest, real_new, real_cmp = hmac.digest, hmac.new, hmac.compare_digest

    def digest(key, msg, d):  # type: ignore[no-untyped-def]
        calls["digest"] += 1
        return real_digest(key, msg, d)

    def new(key, msg=None, digestmod=""):  # type: ignore[no-untyped-def]
        calls["new"] += 1
        return real_new(key, msg, digestmod)

    def cmp(a, b):  # type: ignore[no-untyped-def]
        calls["compare"] += 1
        return real_cmp(a, b)

    monkeypatch.setattr(hmac, "digest", digest)
    monkeypatch.setattr(hmac, "new", new)
    monkeypatch.setattr(hmac, "compare_digest", cmp)
    yield calls


def test_a_known_and_an_unknown_name_cost_the_same_hmac_steps(hmac_calls: Counter[str]) -> None:
    s = core()
    work = {}
    for txn, user in ((5, "ann"), (7, "ghost")):
        hmac_calls.clear()
        nonce = os.urandom(16)
        ch = challenge(s, user, nonce, 100.0, txn=txn)
        work[f"hello {user}"] = dict(hmac_calls)
        hmac_calls.clear()
        bad = m.Login(txn + 1, user, nonce, ch.server_nonce, os.urandom(32))
        s.receive_datagram(encode_message(bad), ADDR, 100.0)
        assert decode_message(s.datagrams_to_send()[0][0]) == m.Error(
            txn + 1, m.ErrorCode.AUTH_FAILED, "login failed: wrong user or token")
        work[f"login {user}"] = dict(hmac_calls)
    assert work["hello ann"] == work["hello ghost"], work
    assert work["login ann"] == work["login ghost"], work
    assert work["login ann"]["compare"] >= 2  # the nonce and the proof both checked


def test_the_decoy_salt_follows_the_stored_secret_not_the_process() -> None:
    secret = bytes(range(32))
    salts = []
    for _ in range(2):
        s = core()  # a new process: a new random secret, until the stored one is set
        s.set_secret(secret)
        salts.append(challenge(s, "ghost", os.urandom(16), 1.0).salt)
    assert salts[0] == salts[1] == auth.decoy_salt(secret, "ghost")


def test_hellos_keep_no_state_and_cost_the_same_however_many() -> None:
    """A Hello costs the same with 10,000 logins pending: it scans none of them (a scan of them
    all took 0.7-0.9 ms)."""
    s = core()
    sources = [(f"10.1.{k // 250}.{k % 250}", 1000 + k) for k in range(20_000)]
    pkts = [encode_message(hello("ann", os.urandom(16), k)) for k in range(20_000)]
    times = []
    for start in (0, 18_000):
        t0 = time.perf_counter()
        for k in range(start, start + 2_000):
            s.receive_datagram(pkts[k], sources[k], 1.0 + k / 4_000)
        s.datagrams_to_send()
        s.events()
        times.append((time.perf_counter() - t0) / 2_000)
        if start == 0:
            for k in range(2_000, 18_000):
                s.receive_datagram(pkts[k], sources[k], 1.0 + k / 4_000)
            s.datagrams_to_send()
            s.events()
    assert not hasattr(s, "_pending_login")
    assert times[1] < times[0] * 3 + 20e-6, times  # no growth with the Hellos before


def test_a_challenge_answers_once_from_its_address_within_its_ttl() -> None:
    s = core()
    nonce = os.urandom(16)
    ch = challenge(s, "ann", nonce, 50.0)
    lg = encode_message(auth.answer_challenge(2, m.Hello(1, "ann", nonce), ch, TOKEN))
    # from another address (a nonce seen on the wire, sent from elsewhere): refused
    s.receive_datagram(lg, ("10.0.0.9", 40000), 50.5)
    assert decode_message(s.datagrams_to_send()[0][0]).code is m.ErrorCode.AUTH_FAILED
    # in time, from its address: a sealed Welcome
    s.receive_datagram(lg, ADDR, 51.0)
    assert s.datagrams_to_send()[0][0][:1] == b"S"
    # the same Login again, with a new txn (a replay not from the cache): refused
    again = encode_message(auth.answer_challenge(3, m.Hello(1, "ann", nonce), ch, TOKEN))
    s.receive_datagram(again, ADDR, 52.0)
    assert decode_message(s.datagrams_to_send()[0][0]).code is m.ErrorCode.AUTH_FAILED
    # a fresh challenge answered too late: refused
    nonce = os.urandom(16)
    ch = challenge(s, "ann", nonce, 60.0, txn=20)
    late = encode_message(auth.answer_challenge(21, m.Hello(20, "ann", nonce), ch, TOKEN))
    s.receive_datagram(late, ADDR, 60.0 + auth.LOGIN_TTL + 1.5)
    assert decode_message(s.datagrams_to_send()[0][0]).code is m.ErrorCode.AUTH_FAILED


def test_a_forged_nonce_is_refused_and_counts_against_nobody() -> None:
    s = core()
    for k in range(50):  # nobody's guess: the nonce is not ours
        forged = m.Login(k + 1, "ann", os.urandom(16), os.urandom(16), os.urandom(32))
        s.receive_datagram(encode_message(forged), ("10.0.0.9", 1000 + k), 10.0)
    s.datagrams_to_send()
    assert login(s, "ann", TOKEN, 10.5, addr=("10.0.0.9", 999))[:1] == b"S"


# --- the limiter ---------------------------------------------------------------------------------


def test_back_off_doubles_and_is_forgotten() -> None:
    lim = limits.LoginLimiter(limits.LoginLimits(user_free=2, host_free=100, first_wait=1.0,
                                                 max_wait=8.0, forget_after=100.0))
    now = 0.0
    waits = []
    for _ in range(7):
        assert lim.wait("ann", "h", now) == 0.0
        lim.failed("ann", "h", now)
        waits.append(lim.wait("ann", "h", now))
        now += waits[-1]
    assert waits == [0, 0, 1, 2, 4, 8, 8]
    assert lim.wait("ann", "h", now + 1.0) == 0.0
    lim.failed("ann", "h", now + 200.0)  # long after: starts afresh
    assert lim.wait("ann", "h", now + 200.0) == 0.0


def test_a_users_own_host_is_exempt_from_its_names_back_off_not_from_its_own() -> None:
    lim = limits.LoginLimiter(limits.LoginLimits(user_free=1, host_free=3))
    lim.succeeded("ann", "home")
    for k in range(3):
        lim.failed("ann", f"elsewhere{k}", 0.0)
    assert lim.wait("ann", "new-place", 0.0) > 0
    assert lim.wait("ann", "home", 0.0) == 0.0
    lim.failed("ann", "home", 0.0)
    lim.failed("ann", "home", 0.0)  # a guesser at ann's own host: the pair's back-off
    assert lim.wait("ann", "home", 0.0) > 0


def test_a_hosts_back_off_spares_the_names_that_logged_in_from_it() -> None:
    # volunteers behind one NAT: one of them mistyping over and over locks out only names
    # that never logged in from there (and the mistyped name itself)
    lim = limits.LoginLimiter(limits.LoginLimits(user_free=1, host_free=3))
    lim.succeeded("ann", "nat")
    for _ in range(6):
        lim.failed("bob", "nat", 0.0)
    assert lim.wait("bob", "nat", 0.0) > 0
    assert lim.wait("cat", "nat", 0.0) > 0  # never logged in from here: the host's back-off
    assert lim.wait("ann", "nat", 0.0) == 0.0
    assert lim.wait("cat", "elsewhere", 0.0) == 0.0


def test_the_tables_are_bounded() -> None:
    lim = limits.LoginLimiter(limits.LoginLimits(max_entries=100, known_hosts=2))
    for k in range(1_000):
        lim.failed(f"user{k}", f"host{k}", 0.0)
        lim.succeeded(f"user{k}", f"host{k}")
        lim.succeeded(f"user{k}", f"other{k}")
        lim.succeeded(f"user{k}", f"third{k}")
    assert all(n <= 100 for n in lim.sizes()), lim.sizes()


def test_used_nonces_are_bounded_and_refuse_when_full() -> None:
    used = auth.UsedNonces(ttl=10.0, max_used=3)
    assert all(used.add(bytes([k]) * 16, 0.0) for k in range(3))
    assert not used.add(b"x" * 16, 1.0)  # full within one TTL: refuse, never forget early
    assert used.add(b"y" * 16, 11.0) and len(used) == 1


def test_the_plain_budget_is_looked_at_without_being_spent() -> None:
    s = ServerCore(random.Random(1).randbytes)
    lim = s.config.rate_limits
    for k in range(int(lim.global_burst)):
        assert s.plain_budget(("10.2.0.1", k), 0.0)
        s.receive_datagram(b"\x91\x01", ("10.2.%d.%d" % (k // 250 % 250, k % 250), k), 0.0)
    assert not s.plain_budget(("10.3.0.1", 1), 0.0)  # the aggregate bucket is spent
    assert s.plain_budget(("10.3.0.1", 1), 1.0)  # and refills


def test_the_last_runs_hosts_are_known_at_once() -> None:
    s = core()
    assert not s.known_host(("10.0.0.7", 1))
    s.announce_restart([("10.0.0.7", 5000)], 0.0)
    assert s.known_host(("10.0.0.7", 6000))
