"""Client cores against the server core in memory: virtual clock, lossy duplicating reordering net."""

from __future__ import annotations

import random

import pytest

from ptt.crypto.channel import is_sealed
from ptt.protocol import floor as fl
from ptt.protocol import messages as m
from ptt.protocol.client import (
    LOGIN_RETRY,
    ClientCore,
    ConnState,
    FloorStateChanged,
    LoginFailed,
    Participation,
    RequestFailed,
)
from ptt.protocol.messages import encode_message
from ptt.protocol.server import FloorEvent
from ptt.protocol.server_floor import STATE_REPEATS
from ptt.wire.voice import VoiceHeader, add_mac, encode_voice, is_voice
from tests.protocol.simnet import SimNet

USERS = ["ann", "bob", "cat", "dan", "eve", "fay"]


def connect_all(net: SimNet, groups: dict[str, list[str]]) -> None:
    for gid, (g, members) in enumerate(groups.items(), 1):
        net.add_group(g, members, gid)
    for u, c in net.clients.items():
        c.connect(net.now)
        for g, members in groups.items():
            if u in members:
                c.join(g, net.now)


def send_voice(net: SimNet) -> None:
    """Every holder sends a voice frame (as the media path would)."""
    for u, c in net.clients.items():
        for g in c.groups:
            route = c.talk_route(g)
            if route is not None:
                gid, sid, burst = route
                net._send(("server", net.addrs[u]),
                          encode_voice(VoiceHeader(gid, sid, burst, 0, 0), b"\x00"))


def _ann_and_bob_in_g(seed: int) -> tuple[SimNet, ClientCore, ClientCore]:
    """ann and bob logged in and joined to g, at 1.0 s."""
    net = SimNet(seed=seed)
    for u in ("ann", "bob"):
        net.add_user(u)
    connect_all(net, {"g": ["ann", "bob"]})
    net.run_until(1.0)
    return net, net.clients["ann"], net.clients["bob"]


def test_clean_login_join_request_queue_release() -> None:
    net, ann, bob = _ann_and_bob_in_g(3)
    assert ann.conn is ConnState.CONNECTED and bob.conn is ConnState.CONNECTED
    assert net.clients["bob"].groups["g"].online == {"ann", "bob"}
    ann.request_floor("g", net.now)
    net.run_until(1.1)
    assert ann.participation("g") is Participation.HAS_PERMISSION
    bob.request_floor("g", net.now)
    net.run_until(1.2)
    assert bob.participation("g") is Participation.QUEUED
    assert bob.groups["g"].talker == "ann"
    ann.release_floor("g", net.now)
    net.run_until(1.3)
    assert ann.participation("g") is Participation.NO_PERMISSION
    assert bob.participation("g") is Participation.HAS_PERMISSION
    assert net.server.floors.floor("g").holder == "bob"


def test_wrong_token_fails_login_with_a_clear_message() -> None:
    net = SimNet(seed=4)
    net.add_user("ann")
    net.clients["ann"]._token = "wrong-token-wrong-token-wrong-token"
    net.clients["ann"].connect(0.0)
    net.run_until(1.0)
    assert [e.message for e in net.client_events["ann"] if isinstance(e, LoginFailed)] == [
        "login failed: wrong user or token"]


def test_emergency_preempts_over_the_core() -> None:
    net = SimNet(seed=5)
    for u in ("ann", "bob"):
        net.add_user(u)
    connect_all(net, {"g": ["ann", "bob"]})
    net.run_until(1.0)
    net.clients["ann"].request_floor("g", net.now)
    net.run_until(1.1)
    net.clients["bob"].request_floor("g", net.now, m.Priority.EMERGENCY)
    for _ in range(10):  # ann keeps talking through the grace: bob still gets the floor
        send_voice(net)
        net.run_until(net.now + 0.1)
    assert net.clients["bob"].participation("g") is Participation.HAS_PERMISSION
    assert net.clients["ann"].participation("g") is Participation.NO_PERMISSION
    revokes = [e for e in net.client_events["ann"]
               if isinstance(e, FloorStateChanged) and e.revoke_cause is not None]
    assert revokes and revokes[0].revoke_cause is m.RevokeCause.PREEMPTED


def test_server_restart_clients_reregister_by_themselves() -> None:
    net = SimNet(seed=6)
    for u in ("ann", "bob"):
        net.add_user(u)
    connect_all(net, {"g": ["ann", "bob"]})
    net.run_until(1.0)
    old_sid = net.clients["ann"].session_id
    # a new server core with the same directory, as after a restart from the store
    from ptt.protocol.server import ServerCore
    old = net.server
    net.server = ServerCore(net.rng.randbytes)
    for name, ue in old.users.items():
        net.server.upsert_user(name, ue.role, ue.salt, ue.iterations, ue.verifier)
    net.add_group("g", ["ann", "bob"], 1)
    restarted = net.now
    net.run_until(restarted + 2.0)
    assert all(c.conn is ConnState.CONNECTED for c in net.clients.values())
    assert net.clients["ann"].session_id != old_sid
    assert set(net.server.groups["g"].online) == {"ann", "bob"}


def test_a_restarted_server_announces_itself_and_clients_return_at_once() -> None:
    from ptt.protocol.server import ServerCore, ServerCoreConfig

    slow = ServerCoreConfig(heartbeat=30.0, session_timeout=90.0)  # heartbeats cannot tell
    net = SimNet(seed=8)
    net.server = ServerCore(net.rng.randbytes, slow)
    for u in ("ann", "bob"):
        net.add_user(u)
    connect_all(net, {"g": ["ann", "bob"]})
    net.run_until(1.0)
    addrs = sorted(s.addr for s in net.server.sessions.by_id.values())
    old = net.server
    net.server = ServerCore(net.rng.randbytes, slow)
    for name, ue in old.users.items():
        net.server.upsert_user(name, ue.role, ue.salt, ue.iterations, ue.verifier)
    net.add_group("g", ["ann", "bob"], 1)
    assert net.server.announce_restart(addrs, net.now) == 2
    restarted = net.now
    net.run_until(restarted + 0.5)
    assert all(c.conn is ConnState.CONNECTED for c in net.clients.values())
    assert set(net.server.groups["g"].online) == {"ann", "bob"}


def test_an_announcement_ends_a_re_login_back_off_once() -> None:
    net = SimNet(seed=9)
    net.add_user("ann")
    connect_all(net, {"g": ["ann"]})
    ann = net.clients["ann"]
    no_session = encode_message(m.Error(0, m.ErrorCode.NO_SESSION, "no session: log in again"))
    ann._schedule_relogin(net.now, "the server is away")  # as after a failed login
    assert ann.conn is ConnState.DISCONNECTED and ann.get_timer() is not None
    ann.receive_datagram(no_session, net.now)
    assert ann.conn is ConnState.LOGGING_IN  # at once, not at the end of the back-off
    ann.receive_datagram(no_session, net.now)  # a second one changes nothing
    assert ann.conn is ConnState.LOGGING_IN


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_lossy_network_every_request_resolves_and_beliefs_match_server(seed: int) -> None:
    """30% loss, 10% duplication, 1-60 ms delay (reordering), random floor churn."""
    net = SimNet(seed=seed, loss=0.3, dup=0.1, delay=(0.001, 0.06))
    for u in USERS:
        net.add_user(u, m.Role.DISPATCHER if u == "fay" else m.Role.VOLUNTEER)
    connect_all(net, {"g1": USERS[:4], "g2": USERS[2:]})
    net.run_until(5.0)
    rng = random.Random(seed)
    requests = 0
    t = net.now
    while t < 90.0:
        u = rng.choice(USERS)
        c = net.clients[u]
        g = rng.choice(sorted(c.groups)) if c.groups else None
        if g is not None and c.conn is ConnState.CONNECTED:
            if rng.random() < 0.55:
                prio = rng.choice([m.Priority.NORMAL] * 6 + [m.Priority.EMERGENCY])
                c.request_floor(g, t, prio)
                requests += 1
            else:
                c.release_floor(g, t)
        for _ in range(rng.randint(1, 6)):
            send_voice(net)
            t += 0.1
            net.run_until(t)
    assert requests > 100
    # settle: no new actions, holders keep talking until everything in flight is resolved
    for _ in range(80):
        send_voice(net)
        t += 0.1
        net.run_until(t)

    for u, c in net.clients.items():
        assert c.conn is ConnState.CONNECTED, u
        for g, view in c.groups.items():
            assert view.participation in (Participation.NO_PERMISSION, Participation.QUEUED,
                                          Participation.HAS_PERMISSION), (u, g, view)
            floor = net.server.floors.floor(g)
            if view.participation is Participation.HAS_PERMISSION:
                assert (floor.holder, floor.burst_id) == (u, view.my_burst), (u, g)
            if view.participation is Participation.QUEUED:
                assert u in floor.queue, (u, g)
    # no duplicate grants: a burst id belongs to exactly one participant. (A holder that asks
    # again, e.g. raising to emergency, is re-granted its own burst: that is not a second grant.)
    grants = [e.event for e in net.server_events
              if isinstance(e, FloorEvent) and isinstance(e.event, fl.Granted)]
    owners: dict[tuple[str, int], set[str]] = {}
    for gr in grants:
        owners.setdefault((gr.group, gr.burst_id), set()).add(gr.user)
    assert len(owners) > 20
    assert all(len(users) == 1 for users in owners.values()), owners
    # every request answered: no request left failing silently under 30% loss
    failed = [e for ev in net.client_events.values() for e in ev
              if isinstance(e, RequestFailed) and e.what == "floor"]
    assert failed == []


def test_repeats_of_floor_news_that_newer_news_replaced_arm_no_timer() -> None:
    """A grant's news is repeated at STATE_REPEATS, but once the release's news replaced it
    the server's next floor timer is the release's first repeat: the grant's are dropped
    unfired (each was a turn of the server's loop for nothing), and the release's still come."""
    net, ann, bob = _ann_and_bob_in_g(5)
    ann.request_floor("g", net.now)
    net.run_until(1.1)
    assert ann.participation("g") is Participation.HAS_PERMISSION
    ann.release_floor("g", 1.1)
    net.run_until(1.15)
    assert bob.groups["g"].talker is None
    fc = net.server.floor_control
    due = fc.get_timer()
    # the grant's first repeat was due at ~1.2; the release's at 1.1 + 0.2 and later
    assert due is not None and 1.3 <= due <= 1.15 + STATE_REPEATS[0]
    g = net.server.state.groups["g"]
    fired = 0
    while (due := fc.get_timer()) is not None:  # each timer armed from here on is live
        assert fc._repeats[0][2] == g.version and fired < len(STATE_REPEATS)
        net.run_until(due + 0.001)
        fired += 1
    assert fired == len(STATE_REPEATS) and not fc._repeats  # the release's, all of them


def _named_ann_talks_bob_queued(seed: int, device: str, talking: bool = True,
                                ) -> tuple[SimNet, ClientCore, ClientCore, int]:
    """ann (logged in again from ``device``: a login from a named device replaces the unnamed
    session) and bob in g; if ``talking``, ann holds g's floor and bob is queued: the net,
    ann, bob and ann's burst (0 when not talking)."""
    net, ann, bob = _ann_and_bob_in_g(seed)
    ann.device = device
    ann.connect(net.now)
    ann.join("g", net.now)
    net.run_until(net.now + 0.5)
    if not talking:
        return net, ann, bob, 0
    ann.request_floor("g", net.now)
    net.run_until(net.now + 0.2)
    assert ann.participation("g") is Participation.HAS_PERMISSION
    bob.request_floor("g", net.now)
    net.run_until(net.now + 0.2)
    assert bob.participation("g") is Participation.QUEUED
    return net, ann, bob, net.server.floors.floor("g").burst_id


def test_the_talker_s_connection_logging_in_again_keeps_its_floor_from_the_queue() -> None:
    """ann's connection (device "ann-phone/1") holds g's floor and bob is queued. ann's
    connection loses its session (its old client object goes silent: a new one takes over
    with the same device id, from a new address) and logs in again: the server ends the old
    session, which held the floor, without handing the floor to bob; ann asks again and is
    granted the same burst, bob still queued."""
    net, ann, bob, burst = _named_ann_talks_bob_queued(9, "ann-phone/1")
    net.flush()
    del net.clients["ann"]  # goes silent; the same connection comes back as "ann-again"
    again = ClientCore("ann", "token-of-ann-0123456789abcdef", net.rng.randbytes,
                       device="ann-phone/1")
    net.clients["ann-again"] = again
    net.addrs["ann-again"] = ("10.255.0.99", 40000)
    net.client_events["ann-again"] = []
    again.connect(net.now)
    again.join("g", net.now)
    again.request_floor("g", net.now)
    net.run_until(net.now + 0.5)
    assert again.participation("g") is Participation.HAS_PERMISSION
    floor = net.server.floors.floor("g")
    assert (floor.holder, floor.burst_id) == ("ann", burst)
    assert bob.participation("g") is Participation.QUEUED


def _talk_step(net: SimNet, talker: ClientCore) -> None:
    """20 ms: ``talker``'s frame if it holds a floor (with its session's MAC, as the media
    path sends it), then the net runs."""
    route = talker.talk_route("g")
    if route is not None:
        net._send(("server", net.addrs["ann"]),
                  add_mac(talker.voice_key, encode_voice(VoiceHeader(*route, 0, 0), b"\0")))
    net.run_until(net.now + 0.02)


def _hellos_after_a_downstream_outage(talking: bool, back_after: float,
                                      ) -> tuple[list[float], SimNet, ClientCore, ClientCore, int]:
    """ann (talking, or only listening) and bob in g, bob queued when ann talks; from 1.5 s
    nothing reaches ann from the server (her voice still reaches it) until ``back_after`` s
    after her client gave up its session: the times of the Hello copies she sent from then,
    counted from the first; the net, ann, bob and ann's burst (0 when not talking)."""
    net, ann, bob, burst = _named_ann_talks_bob_queued(11, "ann-laptop/1", talking)
    cut = {"on": True}
    route = net.route

    def downstream(data: bytes, addr: object) -> None:
        if not (cut["on"] and net._user_at(addr) == "ann"):
            route(data, addr)

    net.route = downstream  # type: ignore[method-assign]
    hellos: list[float] = []
    send = net._send

    def watch(dest: object, data: bytes) -> None:
        if dest == ("server", net.addrs["ann"]) and not (is_sealed(data) or is_voice(data)):
            if isinstance(m.decode_message(data), m.Hello):
                hellos.append(net.now)
        send(dest, data)

    net._send = watch  # type: ignore[method-assign]
    gave_up = None
    end = net.now + 20.0
    while net.now < end:
        _talk_step(net, ann)
        if gave_up is None and ann.conn is not ConnState.CONNECTED:
            gave_up = net.now
        if gave_up is not None and net.now >= gave_up + back_after:
            cut["on"] = False
        if gave_up is not None and ann.conn is ConnState.CONNECTED:
            break
    assert gave_up is not None and hellos
    return [t - hellos[0] for t in hellos], net, ann, bob, burst


def test_a_talker_that_lost_its_session_logs_in_again_without_backing_off_within_t1() -> None:
    """Within T1 of losing its session a client that held a floor sends its Hello every
    LOGIN_RETRY[0] (the server may hold the floor for it that long); a listener backs off as
    every client does (+0.25, +0.75, +1.75 s). Back 1.1 s after giving up, the talker is
    logged in in time to be granted its own burst again, bob still queued; backing off, its
    next copy would have gone at +1.75 s, past T1."""
    listener_hellos, *_ = _hellos_after_a_downstream_outage(False, 2.0)
    assert [round(t, 2) for t in listener_hellos[:4]] == [0.0, 0.25, 0.75, 1.75]
    hellos, net, ann, bob, burst = _hellos_after_a_downstream_outage(True, 1.1)
    gaps = [round(b - a, 2) for a, b in zip(hellos, hellos[1:])]
    assert gaps and all(g == LOGIN_RETRY[0] for g in gaps), hellos
    ann.request_floor("g", net.now)  # as ptt talk does once logged in again, and talks on
    for _ in range(50):
        _talk_step(net, ann)
    assert ann.participation("g") is Participation.HAS_PERMISSION
    floor = net.server.floors.floor("g")
    assert (floor.holder, floor.burst_id) == ("ann", burst)
    assert bob.participation("g") is Participation.QUEUED
