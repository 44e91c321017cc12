"""The keepalive cadence (ptt.protocol.keepalive): idle clients heartbeat rarely, a client whose
group gets a talker tightens at once, and the server's session timeout follows the cadence."""

from __future__ import annotations

import pytest

from ptt.crypto.channel import KEEPALIVE_MAGIC
from ptt.protocol.client import ConnState, Disconnected
from ptt.protocol.keepalive import (
    EXPIRY_GRID,
    HEARTBEAT_INTERVAL,
    IDLE_HEARTBEAT_INTERVAL,
    IDLE_SESSION_TIMEOUT,
    SESSION_TIMEOUT,
    Cadence,
)
from ptt.protocol.server import SessionEnded
from ptt.wire.voice import VoiceHeader, add_mac, encode_voice
from tests.protocol.simnet import SimNet
from tests.protocol.test_client_server import connect_all

C = Cadence()


def test_the_rule() -> None:
    assert C.interval(busy=False) == IDLE_HEARTBEAT_INTERVAL
    assert C.interval(busy=True) == HEARTBEAT_INTERVAL
    assert C.interval(busy=True, talking=True) == HEARTBEAT_INTERVAL / 4
    # idle: the idle timeout; busy: the busy timeout, but only from a datagram sent while busy
    assert C.deadline(10.0, None) == 10.0 + IDLE_SESSION_TIMEOUT
    assert C.deadline(10.0, 12.0) == 10.0 + IDLE_SESSION_TIMEOUT  # not heard since it got busy
    assert C.deadline(13.0, 12.0) == 13.0 + SESSION_TIMEOUT
    # on the busy cadence a client gives up after today's busy_timeout of silence
    assert C.given_up_at(10.0, 10.0 + HEARTBEAT_INTERVAL) == 10.0 + SESSION_TIMEOUT
    # idle: busy_timeout - busy after its first unanswered heartbeat
    assert C.given_up_at(10.0, 35.0) == 35.0 + SESSION_TIMEOUT - HEARTBEAT_INTERVAL
    assert C.problem() is None
    # the server must outwait a client that keeps asking after an unanswered idle heartbeat
    assert "must exceed" in (Cadence(1.0, 5.0, 25.0, 29.0).problem() or "")
    # an idle cadence no slower than the busy one is none: today's single cadence
    legacy = Cadence(30.0, 90.0, 25.0, 60.0)
    assert legacy.problem() is None and not legacy.relaxes
    assert legacy.interval(busy=False) == 30.0 and legacy.deadline(0.0, None) == 90.0


def _site(users: list[str]) -> tuple[SimNet, dict[str, list[float]]]:
    """A group of ``users`` logged in and joined; the times each sent a heartbeat."""
    net = SimNet(seed=3)
    for u in users:
        net.add_user(u)
    connect_all(net, {"g": users})
    beats: dict[str, list[float]] = {u: [] for u in users}
    by_addr = {net.addrs[u]: u for u in users}
    send = net._send

    def counting(dest: object, data: bytes) -> None:
        if isinstance(dest, tuple) and dest[0] == "server" and data[:1] == bytes(
                [KEEPALIVE_MAGIC]):
            beats[by_addr[dest[1]]].append(net.now)
        send(dest, data)

    net._send = counting  # type: ignore[method-assign]
    net.run_until(2.0)
    return net, beats


def _between(times: list[float], t0: float, t1: float) -> int:
    return sum(t0 <= t < t1 for t in times)


def _talk(net: SimNet, user: str, seconds: float) -> None:
    """``user`` takes the floor and sends a voice frame every 20 ms for ``seconds``."""
    c = net.clients[user]
    c.request_floor("g", net.now)
    net.run_until(net.now + 0.1)
    route = c.talk_route("g")
    assert route is not None
    end = net.now + seconds
    seq = 0
    while net.now < end:
        frame = encode_voice(VoiceHeader(*route, seq, seq * 320), b"\x00")
        net._send(("server", net.addrs[user]), add_mac(c.voice_key, frame))
        seq += 1
        net.run_until(net.now + 0.02)


def test_idle_clients_heartbeat_at_the_idle_cadence_and_stay_connected() -> None:
    net, beats = _site(["ann", "bob", "cat"])
    t0 = net.now
    net.run_until(t0 + 4 * IDLE_HEARTBEAT_INTERVAL)
    for u, c in net.clients.items():
        assert c.conn is ConnState.CONNECTED
        n = _between(beats[u], t0, net.now)
        assert 3 <= n <= 5, (u, beats[u])  # one per idle interval, not one a second
    assert not [e for e in net.server_events if isinstance(e, SessionEnded)]
    assert len(net.server.sessions) == 3


def test_a_listener_tightens_when_its_group_gets_a_talker_and_relaxes_after() -> None:
    net, beats = _site(["ann", "bob"])
    net.run_until(net.now + IDLE_HEARTBEAT_INTERVAL)  # bob on the idle cadence
    bob = net.clients["bob"]
    assert bob.heartbeat_interval() == IDLE_HEARTBEAT_INTERVAL
    t_taken = net.now
    _talk(net, "ann", 6.0)
    assert bob.busy() and bob.heartbeat_interval() == HEARTBEAT_INTERVAL
    during = [t for t in beats["bob"] if t >= t_taken]
    # the first within a busy interval of the floor news, then one a second
    assert during and during[0] - t_taken <= HEARTBEAT_INTERVAL + 0.1, during
    assert len(during) >= 5, during
    net.clients["ann"].release_floor("g", net.now)
    net.run_until(net.now + 2.0)
    assert not bob.busy() and bob.heartbeat_interval() == IDLE_HEARTBEAT_INTERVAL
    t_idle = net.now
    net.run_until(t_idle + 2 * IDLE_HEARTBEAT_INTERVAL)
    assert _between(beats["bob"], t_idle, net.now) <= 3
    assert bob.conn is ConnState.CONNECTED


def _cut(net: SimNet, user: str) -> None:
    """Nothing reaches ``user`` any more and nothing comes from it (it vanished)."""
    addr = net.addrs[user]
    send = net._send

    def cut(dest: object, data: bytes) -> None:
        if dest != user and not (isinstance(dest, tuple) and dest[1] == addr):
            send(dest, data)

    net._send = cut  # type: ignore[method-assign]


def _watch(net: SimNet) -> tuple[list[tuple[float, SessionEnded]],
                                list[tuple[float, str, Disconnected]]]:
    """Sessions the server ended, and clients' Disconnected events, each with SimNet's clock."""
    ended: list[tuple[float, SessionEnded]] = []
    lost: list[tuple[float, str, Disconnected]] = []
    flush = net.flush_from

    def watching(users: object) -> None:
        before = len(net.server_events)
        mark = {u: len(evs) for u, evs in net.client_events.items()}
        flush(users)  # type: ignore[arg-type]
        ended.extend((net.now, e) for e in net.server_events[before:]
                     if isinstance(e, SessionEnded))
        for u, evs in net.client_events.items():
            lost.extend((net.now, u, e) for e in evs[mark[u]:] if isinstance(e, Disconnected))

    net.flush_from = watching  # type: ignore[method-assign]
    return ended, lost


def test_the_server_expires_a_vanished_busy_listener_at_the_busy_timeout() -> None:
    net, _ = _site(["ann", "bob", "cat"])
    net.run_until(net.now + IDLE_HEARTBEAT_INTERVAL)
    ended, _ = _watch(net)
    _talk(net, "ann", 1.5)  # cat hears the talker and tightens
    cat_seen = net.server.sessions.by_user["cat"].last_seen
    _cut(net, "cat")
    t_cut = net.now
    _talk(net, "ann", SESSION_TIMEOUT + 2.0)
    gone = [t for t, e in ended if e.user == "cat"]
    assert gone, "a vanished busy listener was not expired"
    assert gone[0] - cat_seen <= SESSION_TIMEOUT + EXPIRY_GRID + 0.05, (gone, cat_seen, t_cut)
    assert not [e for _, e in ended if e.user in ("ann", "bob")]


def test_the_server_keeps_a_silent_idle_session_past_the_busy_timeout() -> None:
    net, _ = _site(["ann", "bob"])
    ended, _ = _watch(net)
    _cut(net, "bob")  # bob's client vanishes while idle
    t_cut = net.now
    seen = net.server.sessions.by_user["bob"].last_seen
    net.run_until(t_cut + 3 * SESSION_TIMEOUT)
    assert "bob" in net.server.sessions.by_user  # an idle client is not expired at 5 s
    net.run_until(seen + IDLE_SESSION_TIMEOUT + 1.0)
    gone = [t for t, e in ended if e.user == "bob"]
    assert gone and gone[0] - seen <= IDLE_SESSION_TIMEOUT + EXPIRY_GRID + 0.05, (gone, seen)


@pytest.mark.parametrize("busy", [True, False])
def test_a_client_gives_up_a_silent_server_on_its_cadence(busy: bool) -> None:
    """Busy (a talker in its group): after busy_timeout of silence, as before the idle cadence.
    Idle: busy_timeout - busy after its next heartbeat went unanswered."""
    net, beats = _site(["ann", "bob"])
    net.run_until(net.now + IDLE_HEARTBEAT_INTERVAL)
    if busy:
        _talk(net, "ann", 1.0)
    _, lost = _watch(net)
    bob = net.clients["bob"]
    heard = net.now
    net.loss = 1.0  # the server is gone: nothing comes back (the last answers are in)
    net.run_until(heard + IDLE_HEARTBEAT_INTERVAL + SESSION_TIMEOUT + 1.0)
    t_lost = next((t for t, u, e in lost if u == "bob" and "heartbeat timeout" in e.reason),
                  None)
    assert t_lost is not None and bob.conn is not ConnState.CONNECTED
    if busy:
        assert t_lost - heard <= SESSION_TIMEOUT + 0.05, t_lost - heard
    else:
        first_unanswered = min(t for t in beats["bob"] if t > heard)
        assert first_unanswered - heard <= IDLE_HEARTBEAT_INTERVAL
        waited = t_lost - first_unanswered
        assert SESSION_TIMEOUT - HEARTBEAT_INTERVAL - 0.05 <= waited, waited
        assert waited <= SESSION_TIMEOUT - HEARTBEAT_INTERVAL + 0.05, waited
        # it asked again meanwhile (a lost heartbeat is not a lost server)
        assert _between(beats["bob"], first_unanswered, t_lost) >= 4


def test_voice_of_a_burst_the_view_missed_makes_an_idle_listener_ask_at_once() -> None:
    """Every copy of the floor news lost (1 in 15,000 at 30% loss): the voice that does arrive
    shows the view is stale, and the listener catches up within a round trip, not at its next
    idle heartbeat up to 55 s later."""
    net, beats = _site(["ann", "bob"])
    net.run_until(net.now + IDLE_HEARTBEAT_INTERVAL)
    bob, ann = net.clients["bob"], net.clients["ann"]
    assert bob.heartbeat_interval() == IDLE_HEARTBEAT_INTERVAL
    send = net._send

    def lose_control_to_bob(dest: object, data: bytes) -> None:
        if dest != "bob":
            send(dest, data)

    net._send = lose_control_to_bob  # type: ignore[method-assign]
    _talk(net, "ann", 2.0)  # the grant and every repeat of its news: none reach bob
    net._send = send  # type: ignore[method-assign]
    route = ann.talk_route("g")
    assert route is not None and bob.groups["g"].talker is None  # bob's view is stale
    gid, _, burst = route
    t0 = net.now
    assert bob.voice_heard(gid, burst, t0)  # the first frame bob hears of it
    assert not bob.voice_heard(gid, burst, t0 + 0.02)  # the next frames ask nothing more
    net.run_until(t0 + 0.1)
    assert bob.groups["g"].talker == "ann" and bob.groups["g"].talker_burst == burst
    assert [t for t in beats["bob"] if t >= t0] == [t0]  # one heartbeat did it
    # a frame of the burst the view shows asks nothing
    assert not bob.voice_heard(gid, burst, t0 + 5.0)


def test_a_talker_does_not_ask_about_its_own_burst() -> None:
    net, _ = _site(["ann", "bob"])
    ann = net.clients["ann"]
    ann.request_floor("g", net.now)
    net.run_until(net.now + 0.1)
    route = ann.talk_route("g")
    assert route is not None
    assert not ann.voice_heard(route[0], route[2], net.now)
    assert not ann.voice_heard(route[0] + 1, route[2], net.now)  # not a group it joined
