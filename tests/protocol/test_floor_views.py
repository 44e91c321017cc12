"""Every member's view of the floor converges on the server's under heavy random loss, and a
talker whose voice still reaches the server keeps its session."""

from __future__ import annotations

import random

import pytest

from ptt.protocol.client import ConnState, Disconnected, Participation
from ptt.protocol.server import SessionEnded
from ptt.wire.voice import VoiceHeader, add_mac, encode_voice
from tests.protocol.simnet import SimNet
from tests.protocol.test_client_server import connect_all

USERS = ["ann", "bob", "cat", "dan", "eve"]
STEP = 0.02


def send_voice(net: SimNet) -> None:
    """Every holder sends a voice frame, with its session's MAC, as the media path would."""
    for u, c in net.clients.items():
        for g in c.groups:
            route = c.talk_route(g)
            if route is not None:
                frame = encode_voice(VoiceHeader(*route, 0, 0), b"\x00")
                net._send(("server", net.addrs[u]), add_mac(c.voice_key, frame))


def stale_views(net: SimNet, since: dict[tuple[str, str], float]) -> float:
    """Update, per (member, group), when its view of the talker started to differ from the
    server's; returns the longest difference still open."""
    worst = 0.0
    for u, c in net.clients.items():
        for name, g in c.groups.items():
            key = (u, name)
            live = c.conn is ConnState.CONNECTED and g.state is not None
            if live and g.talker != net.server.floors.floor(name).holder:
                since.setdefault(key, net.now)
                worst = max(worst, net.now - since[key])
            else:
                since.pop(key, None)
    return worst


@pytest.mark.parametrize("seed", [21, 22, 23])
def test_views_of_the_floor_converge_within_2_s_at_30_percent_loss(seed: int) -> None:
    net = SimNet(seed=seed, loss=0.3, delay=(0.001, 0.03))
    for u in USERS:
        net.add_user(u)
    connect_all(net, {"g": USERS})
    net.run_until(4.0)
    rng = random.Random(seed)
    since: dict[tuple[str, str], float] = {}
    worst = 0.0
    changes = 0
    t = net.now
    while t < 64.0:  # one short page every ~3 s, by a random member
        talker = net.clients[rng.choice(USERS)]
        if talker.conn is ConnState.CONNECTED:
            talker.request_floor("g", t)
        end = t + rng.uniform(0.5, 2.0)
        while t < end:
            send_voice(net)
            t += STEP
            net.run_until(t)
            worst = max(worst, stale_views(net, since))
        if talker.participation("g") is Participation.HAS_PERMISSION:
            talker.release_floor("g", t)
        idle_until = t + rng.uniform(1.0, 3.0)
        while t < idle_until:
            t += STEP
            net.run_until(t)
            worst = max(worst, stale_views(net, since))
        changes += 1
    assert changes >= 15
    assert net.server.floors.floor("g").holder is None
    assert worst <= 2.0, f"a view stayed stale for {worst:.2f} s"
    assert not since  # every view agrees once the floor has stayed idle a while


def test_a_lost_idle_is_caught_up_by_the_next_heartbeat_answer() -> None:
    """Everything to cat is lost for a while: it misses the idle and both repeats, and the
    first heartbeat answer after the outage says its view is behind."""
    net = SimNet(seed=5)
    for u in ("ann", "cat"):
        net.add_user(u)
    connect_all(net, {"g": ["ann", "cat"]})
    net.run_until(2.0)
    ann, cat = net.clients["ann"], net.clients["cat"]
    ann.request_floor("g", net.now)
    net.run_until(2.5)
    assert cat.groups["g"].talker == "ann"
    send = net._send
    net._send = lambda dest, data: None if dest == "cat" else send(dest, data)  # type: ignore
    ann.release_floor("g", net.now)
    net.run_until(5.0)  # past every repeat
    net._send = send  # type: ignore[method-assign]
    assert net.server.floors.floor("g").holder is None
    assert cat.groups["g"].talker == "ann"  # stale: the idle and its repeats were lost
    net.run_until(5.0 + cat.heartbeat + 0.2)
    assert cat.groups["g"].talker is None
    assert cat.conn is ConnState.CONNECTED


def test_a_talker_at_30_percent_loss_keeps_its_session_while_its_voice_gets_through() -> None:
    net = SimNet(seed=8, loss=0.3, delay=(0.001, 0.03))
    for u in ("ann", "bob"):
        net.add_user(u)
    connect_all(net, {"g": ["ann", "bob"]})
    net.run_until(3.0)
    ann = net.clients["ann"]
    ann.request_floor("g", net.now)
    t = net.now
    while ann.participation("g") is not Participation.HAS_PERMISSION and t < 10.0:
        t += STEP
        net.run_until(t)
    assert ann.participation("g") is Participation.HAS_PERMISSION
    end = t + 25.0  # within the group's 30 s maximum talk time
    while t < end:
        send_voice(net)
        t += STEP
        net.run_until(t)
    assert ann.participation("g") is Participation.HAS_PERMISSION
    assert not [e for e in net.client_events["ann"] if isinstance(e, Disconnected)]
    assert not [e for e in net.server_events if isinstance(e, SessionEnded) and e.user == "ann"]
    assert net.server.floors.floor("g").holder == "ann"
    ann.release_floor("g", t)
    net.run_until(t + 3.0)
    assert net.clients["bob"].groups["g"].talker is None
