"""Queue changes are floor changes: they bump the group's floor version and are announced to the
whole group like a new talker, so a listener or a queued member that lost that news catches up
(by a repeat, or by the heartbeat digest) instead of keeping a stale queue."""

from __future__ import annotations

import random

import pytest

from ptt.protocol.client import ConnState, Participation
from tests.protocol.simnet import SimNet
from tests.protocol.test_client_server import connect_all
from tests.protocol.test_floor_views import STEP, send_voice

USERS = ["ann", "bob", "cat", "dan", "eve"]


def _deaf(net: SimNet, *users: str) -> object:
    """Lose everything sent to ``users`` until the returned function is called."""
    send = net._send

    def lossy(dest: object, data: bytes) -> None:
        if dest not in users:
            send(dest, data)

    net._send = lossy  # type: ignore[method-assign]
    return lambda: setattr(net, "_send", send)


def _run(net: SimNet, until: float) -> None:
    t = net.now
    while t < until:
        send_voice(net)  # the holder keeps talking: the floor stays held
        t += STEP
        net.run_until(t)


def test_a_queued_member_and_a_listener_that_lost_a_queue_change_catch_up() -> None:
    net = SimNet(seed=3)
    for u in ("ann", "bob", "cat", "dan"):
        net.add_user(u)
    connect_all(net, {"g": ["ann", "bob", "cat", "dan"]})
    net.run_until(2.0)
    ann, bob, cat, dan = (net.clients[u] for u in ("ann", "bob", "cat", "dan"))
    ann.request_floor("g", net.now)
    _run(net, net.now + 0.3)
    bob.request_floor("g", net.now)
    _run(net, net.now + 0.3)
    cat.request_floor("g", net.now)
    _run(net, net.now + 0.3)
    assert cat.groups["g"].position == 2
    assert dan.groups["g"].queue == ("bob", "cat")
    hear = _deaf(net, "cat", "dan")
    bob.release_floor("g", net.now)  # bob gives up waiting: cat moves up
    _run(net, net.now + 3.0)  # past every repeat of the news
    assert net.server.floors.floor("g").queue == ("cat",)
    assert cat.groups["g"].position == 2  # stale while nothing reaches it
    hear()  # type: ignore[operator]
    _run(net, net.now + cat.heartbeat + 0.3)  # the next heartbeat answer shows the gap
    assert cat.participation("g") is Participation.QUEUED
    assert cat.groups["g"].position == 1
    assert dan.groups["g"].queue == ("cat",)
    assert ann.groups["g"].queue == ("cat",)


def _stale(net: SimNet, since: dict[tuple[str, str], float]) -> float:
    """Per member: when its view of the queue (and, if queued, its place) started to differ
    from the server's; the longest difference still open."""
    worst = 0.0
    queue = net.server.floors.floor("g").queue
    for u, c in net.clients.items():
        g = c.groups.get("g")
        key = (u, "g")
        live = c.conn is ConnState.CONNECTED and g is not None and g.state is not None
        place_wrong = (live and c.participation("g") is Participation.QUEUED and u in queue
                       and g.position != queue.index(u) + 1)
        if live and (g.queue != queue or place_wrong):
            since.setdefault(key, net.now)
            worst = max(worst, net.now - since[key])
        else:
            since.pop(key, None)
    return worst


@pytest.mark.parametrize("seed", [31, 32])
def test_queue_views_converge_within_2_s_at_30_percent_loss(seed: int) -> None:
    net = SimNet(seed=seed, loss=0.3, delay=(0.001, 0.03))
    for u in USERS:
        net.add_user(u)
    connect_all(net, {"g": USERS})
    net.run_until(4.0)
    rng = random.Random(seed)
    ann = net.clients["ann"]
    since: dict[tuple[str, str], float] = {}
    worst = 0.0
    changes = 0
    t = net.now
    while t < 40.0:  # ann holds the floor; the others queue and give up at random
        if ann.conn is ConnState.CONNECTED and ann.participation("g") is (
                Participation.NO_PERMISSION):
            ann.request_floor("g", t)
        c = net.clients[rng.choice(USERS[1:])]
        if c.conn is ConnState.CONNECTED:
            if c.participation("g") is Participation.QUEUED:
                c.release_floor("g", t)
                changes += 1
            elif c.participation("g") is Participation.NO_PERMISSION:
                c.request_floor("g", t)
                changes += 1
        end = t + rng.uniform(0.5, 1.5)
        while t < end:
            send_voice(net)
            t += STEP
            net.run_until(t)
            worst = max(worst, _stale(net, since))
    assert changes >= 20
    assert worst <= 2.0, f"a queue view stayed stale for {worst:.2f} s"
