"""Attacks from a live red-team run, replayed against a real ``ptt server`` process.

Each test runs the attack the way it worked (raw UDP from spoofed 127.77.x.y sources where the
attack needs it, see ``ptt.faults.spoof``) and asserts what must hold now: legitimate sessions
kept, logins served, nothing injected, nothing learned. Clients are real ``Connection``s over
loopback UDP; the server is a real process (``bench_fuzz.ServerUnderTest``).
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import random
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import bench_fuzz  # noqa: E402
import bench_login_flood  # noqa: E402

from ptt.client.connection import Connection  # noqa: E402
from ptt.faults.spoof import RawSender, attacker  # noqa: E402
from ptt.protocol import auth  # noqa: E402
from ptt.protocol import messages as m  # noqa: E402
from ptt.protocol.client import Connected, Disconnected  # noqa: E402
from ptt.protocol.limits import padding_needed  # noqa: E402
from ptt.protocol.messages import decode_message, encode_message  # noqa: E402

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="raw sockets need root")


def hello(user: str, txn: int, nonce: bytes) -> bytes:
    """A padded Hello, as a real client sends it."""
    bare = encode_message(m.Hello(txn, user, nonce))
    return encode_message(m.Hello(txn, user, nonce, bytes(padding_needed(len(bare)))))


class Flood(threading.Thread):
    """Spoofed datagrams at ``rate`` per second for ``seconds`` (bounded in count and time),
    from ``sources`` attacker addresses and random ports; ``make(k)`` is the k-th payload."""

    def __init__(self, dst: tuple[str, int], make: Callable[[int], bytes], rate: int,
                 seconds: float, sources: int = 1_000) -> None:
        super().__init__(daemon=True)
        self.dst, self.make, self.rate, self.seconds, self.sources = (dst, make, rate, seconds,
                                                                      sources)
        self.sent = 0
        self.errors = 0
        self.stop_at = 0.0

    def run(self) -> None:
        rng = random.Random(15)
        total = int(self.rate * self.seconds)
        t0 = time.monotonic()
        self.stop_at = t0 + self.seconds + 2.0  # a hard cap even if the host stalls
        with RawSender() as raw:
            k = 0
            while k < total and time.monotonic() < self.stop_at:
                due = min(total, int((time.monotonic() - t0) * self.rate) + 1)
                while k < due:
                    src = (attacker(k % self.sources), rng.randrange(1024, 65535))
                    raw.send(src, self.dst, self.make(k))
                    k += 1
                time.sleep(0.005)
            self.sent, self.errors = raw.sent, raw.errors


async def watch(conn: Connection, sink: list[str]) -> None:
    q = conn.subscribe()
    while True:
        ev = await q.get()
        if isinstance(ev, (Connected, Disconnected)):
            sink.append(f"{conn.user}: {type(ev).__name__}")


@pytest.fixture
def server(tmp_path: Path):  # type: ignore[no-untyped-def]
    s = bench_fuzz.ServerUnderTest(tmp_path)
    s.start()
    yield s
    s.stop()


# --- 1. login flood below the rate limit --------------------------------------------------------

FLOOD_RATE = 3_000  # spoofed Hellos per second: under the aggregate limit (4,000/s)
FLOOD_SECONDS = 6.0  # fills a 10,000-entry pending table within ~3 s


@pytest.mark.timeout(120)
def test_login_flood_loses_no_session_and_a_login_succeeds(server: bench_fuzz.ServerUnderTest
                                                           ) -> None:
    """Spoofed Hellos from 1,000 sources, each with a fresh nonce: a logged-in member keeps its
    session through the flood and a member logging in during it gets in within 2 s."""

    async def scenario() -> dict[str, object]:
        cred = server.credentials
        pins = server.root / "pins"
        async with Connection(server.address, cred["user"], cred["token"]) as coord:
            tokens = {u: await bench_fuzz.add_user(coord, u, pins) for u in ("ann", "bob")}
        async with Connection(server.address, "ann", tokens["ann"]) as ann:
            sid = ann.core.session_id
            events: list[str] = []
            w = asyncio.create_task(watch(ann, events))
            flood = Flood(server.address, lambda k: hello("ann" if k % 2 else f"x{k}", k,
                                                          os.urandom(16)),
                          FLOOD_RATE, FLOOD_SECONDS)
            flood.start()
            await asyncio.sleep(FLOOD_SECONDS * 0.6)  # the pending table is full by now
            t0 = time.monotonic()
            bob = Connection(server.address, "bob", tokens["bob"])
            try:
                await bob.open(timeout=10.0)
                login_s = time.monotonic() - t0
            finally:
                await bob.close()
            await asyncio.to_thread(flood.join, FLOOD_SECONDS + 5)
            await asyncio.sleep(1.5)  # heartbeats after the flood
            w.cancel()
            return {"kept": ann.core.session_id == sid and ann.connected, "events": events,
                    "login_s": login_s, "sent": flood.sent, "errors": flood.errors}

    r = asyncio.run(scenario())
    assert r["sent"] >= FLOOD_RATE * FLOOD_SECONDS * 0.9, r
    assert server.alive()
    assert r["kept"] and r["events"] == [], r
    assert r["login_s"] < 2.0, r


# A first login from a host never seen, under a flood of spoofed Hellos and Logins from a few
# networks that is three times the aggregate budget: the per-prefix budget and the reader's
# queue per prefix keep the flood's share from crowding it out (the flood comes from a process
# of its own, as in bench/bench_login_flood.py).

NEWCOMER_FLOOD_RATE = 12_000  # spoofed datagrams/s, half Hellos, half Logins: 3x the aggregate
NEWCOMER_FLOOD_SECONDS = 8.0
NEWCOMERS = 5


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_first_login_from_a_new_host_gets_through_a_spoofed_flood_within_a_second(
        server: bench_fuzz.ServerUnderTest) -> None:
    async def scenario() -> dict[str, object]:
        cred = server.credentials
        names = [f"new{k}" for k in range(NEWCOMERS)]
        async with Connection(server.address, cred["user"], cred["token"]) as coord:
            tokens = {u: await bench_fuzz.add_user(coord, u, server.root / "pins") for u in names}
        result = mp.Manager().dict()
        flood = mp.Process(target=bench_login_flood.flood,
                           args=(server.address, NEWCOMER_FLOOD_RATE, NEWCOMER_FLOOD_SECONDS,
                                 1_000, result))
        flood.start()
        await asyncio.sleep(2.0)  # the aggregate budget's burst is spent by now
        times: list[float | None] = []
        for k, u in enumerate(names):  # each from a host never seen: 127.66.k.1
            c = Connection(server.address, u, tokens[u], local=(f"127.66.{k}.1", 0))
            t0 = time.monotonic()
            try:
                await c.open(timeout=4.0)
                times.append(round(time.monotonic() - t0, 3))
            except Exception:  # noqa: BLE001 - a failed login is the finding, not an error
                times.append(None)
            finally:
                await c.close()
            await asyncio.sleep(0.3)
        await asyncio.to_thread(flood.join, NEWCOMER_FLOOD_SECONDS + 10)
        return {"times": times, "sent": int(result.get("sent", 0))}

    r = asyncio.run(scenario())
    assert r["sent"] >= NEWCOMER_FLOOD_RATE * NEWCOMER_FLOOD_SECONDS * 0.8, r  # it really ran
    assert server.alive()
    assert all(t is not None and t <= 1.0 for t in r["times"]), r  # type: ignore[attr-defined]


# --- 8. user enumeration; 9. login limits --------------------------------------------------------


def login_by_hand(sock: socket.socket, server: tuple[str, int], user: str, token: str | None
                  ) -> tuple[m.Challenge, bytes]:
    """Hello and Login over ``sock`` as a client would (a wrong proof when ``token`` is None):
    the Challenge and the raw answer to the Login (a sealed Welcome starts with 'S')."""
    nonce = os.urandom(16)
    txn = random.randrange(1, 1 << 30)
    sock.sendto(hello(user, txn, nonce), server)
    ch = decode_message(sock.recv(2048))
    assert isinstance(ch, m.Challenge), ch
    if token is None:
        login = m.Login(txn + 1, user, nonce, ch.server_nonce, os.urandom(32))
    else:
        login = auth.answer_challenge(txn + 1, m.Hello(txn, user, nonce), ch, token)
    sock.sendto(encode_message(login), server)
    return ch, sock.recv(2048)


def refusal(answer: bytes) -> str:
    msg = decode_message(answer)
    assert isinstance(msg, m.Error), msg
    return msg.message


def udp(host: str) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((host, 0))
    s.settimeout(3.0)
    return s


def add_users(server: bench_fuzz.ServerUnderTest, *names: str) -> dict[str, str]:
    async def go() -> dict[str, str]:
        cred = server.credentials
        async with Connection(server.address, cred["user"], cred["token"]) as coord:
            return {u: await bench_fuzz.add_user(coord, u, server.root / "pins") for u in names}
    return asyncio.run(go())


@pytest.mark.timeout(90)
def test_decoy_salt_of_an_unknown_name_survives_a_restart(server: bench_fuzz.ServerUnderTest
                                                          ) -> None:
    """A real user's salt never changes; an unknown name's must not either, or a restart tells
    which names are real."""
    add_users(server, "ann")
    with udp("127.0.0.1") as s:
        before = {u: login_by_hand(s, server.address, u, None)[0].salt for u in ("ann", "ghost")}
    server.stop()
    server.start()
    with udp("127.0.0.1") as s:
        after = {u: login_by_hand(s, server.address, u, None)[0].salt for u in ("ann", "ghost")}
    assert after["ann"] == before["ann"]
    assert after["ghost"] == before["ghost"]


def try_login(server: bench_fuzz.ServerUnderTest, host: str, user: str, token: str | None
              ) -> bytes:
    """One login from a fresh port on ``host`` (as a guesser would, past per-port rate limits)."""
    with udp(host) as s:
        return login_by_hand(s, server.address, user, token)[1]


@pytest.mark.timeout(90)
def test_failed_logins_back_off_per_user_and_per_host_but_never_lock_the_user_out(
        server: bench_fuzz.ServerUnderTest) -> None:
    tokens = add_users(server, "ann", "bob")
    wrong = "login failed: wrong user or token"
    # ann's own place: she logged in from here
    assert try_login(server, "127.0.0.1", "ann", tokens["ann"])[:1] == b"S"
    # someone elsewhere guesses ann's token: a few tries, then waits that double
    texts = [refusal(try_login(server, "127.0.0.5", "ann", None)) for _ in range(8)]
    assert texts[:6] == [wrong] * 6, texts  # five free, the sixth starts the wait
    assert all("too many failed logins" in t for t in texts[6:]), texts
    # the name is held back from any other new place too, right token or not
    assert "too many failed logins" in refusal(try_login(server, "127.0.0.6", "ann",
                                                         tokens["ann"]))
    # ... but not from ann's own: the guesser cannot lock her out
    assert try_login(server, "127.0.0.1", "ann", tokens["ann"])[:1] == b"S"
    # one host trying many names is held back as a host, whatever the name
    texts = [refusal(try_login(server, "127.0.0.7", f"name{k}", None)) for k in range(23)]
    assert texts[:21] == [wrong] * 21, texts
    assert all("too many failed logins" in t for t in texts[21:]), texts
    assert "too many failed logins" in refusal(try_login(server, "127.0.0.7", "bob",
                                                         tokens["bob"]))
    # and bob, from his own host, is not concerned
    assert try_login(server, "127.0.0.1", "bob", tokens["bob"])[:1] == b"S"
    # volunteers behind one NAT: bob logged in from it once, a neighbour there then fails with
    # name after name; the host backs off for names new to it, never for bob
    assert try_login(server, "127.0.0.8", "bob", tokens["bob"])[:1] == b"S"
    texts = [refusal(try_login(server, "127.0.0.8", f"other{k}", None)) for k in range(23)]
    assert all("too many failed logins" in t for t in texts[21:]), texts
    assert try_login(server, "127.0.0.8", "bob", tokens["bob"])[:1] == b"S"
    assert "too many failed logins" in refusal(try_login(server, "127.0.0.8", "ann",
                                                         tokens["ann"]))


# --- 2 and 4. voice injection -------------------------------------------------------------------


@pytest.mark.timeout(180)
def test_nothing_injected_on_the_multicast_address_is_bridged_or_echoed_large(
        tmp_path: Path) -> None:
    from tests.net.netns import require_netns, run_in_netns

    require_netns()
    r = run_in_netns("bridge_inject", {"tmp": str(tmp_path)},
                     module="tests.security.bridge_scenarios")
    assert r["granted"] == "HAS_PERMISSION", r
    assert r["heard"]["REAL"] >= 8, r  # the holder's own multicast frames are bridged
    assert r["heard"]["ANON"] == 0, r  # a host that never logged in
    assert r["heard"]["EVE!"] == 0, r  # a member naming the holder's session
    assert r["heard"]["JUNK"] == 0, r
    assert r["echo_sizes"] == [], r  # an anonymous probe draws no echo at all


async def _relay_spoof(server: bench_fuzz.ServerUnderTest) -> dict[str, object]:
    from ptt.wire.voice import VoiceFlags, VoiceHeader, add_mac, encode_voice

    cred = server.credentials
    async with Connection(server.address, cred["user"], cred["token"]) as coord:
        tokens = {u: await bench_fuzz.add_user(coord, u, server.root / "pins")
                  for u in ("ann", "bob", "eve")}
        await coord.admin("group.create", {"name": "g"})
        await coord.admin("group.add", {"name": "g", "users": ["ann", "bob", "eve"]})
    heard: dict[bytes, int] = {b"REAL": 0, b"ANON": 0, b"EVE!": 0, b"JUNK": 0}

    def on_voice(data: bytes) -> None:
        mark = bytes(data[22:26])
        if mark in heard:
            heard[mark] += 1

    async with Connection(server.address, "ann", tokens["ann"]) as ann, \
            Connection(server.address, "bob", tokens["bob"]) as bob, \
            Connection(server.address, "eve", tokens["eve"]) as eve:
        for c in (ann, bob, eve):
            await c.join("g")
        bob.on_voice = on_voice
        granted = await ann.request_floor("g")
        gid, sid, burst = ann.core.talk_route("g")  # type: ignore[misc]
        holder = ann.local_address  # the holder's address:port, spoofed below
        assert holder[0] == "127.0.0.1"

        def frame(seq: int, mark: bytes) -> bytes:
            return encode_voice(VoiceHeader(gid, sid, burst, seq, seq * 320), mark * 10)

        with RawSender() as raw:
            for k in range(20):
                raw.send(holder, server.address, frame(k, b"ANON"))
                raw.send(holder, server.address,
                         add_mac(eve.core.voice_key, frame(100 + k, b"EVE!")))
                junk = bytearray(frame(200 + k, b"JUNK") + os.urandom(8))
                junk[2] |= VoiceFlags.AUTH
                raw.send(holder, server.address, bytes(junk))
                await asyncio.sleep(0.02)
        for k in range(10):
            ann.send_voice(frame(300 + k, b"REAL"))
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.5)
    return {"granted": granted.state.name, "heard": {k.decode(): v for k, v in heard.items()}}


@pytest.mark.timeout(90)
def test_voice_from_the_holders_spoofed_address_is_not_relayed(
        server: bench_fuzz.ServerUnderTest) -> None:
    """A non-member's plain frame and another member's forged one, both from the holder's own
    address:port (raw UDP): the relay forwards neither; the holder's real frames go through."""
    r = asyncio.run(_relay_spoof(server))
    assert r["granted"] == "HAS_PERMISSION", r
    assert r["heard"]["REAL"] >= 8, r
    assert r["heard"]["ANON"] == 0 and r["heard"]["EVE!"] == 0 and r["heard"]["JUNK"] == 0, r
