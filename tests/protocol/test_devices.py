"""One user, several devices: sessions keyed by user and device, one device talks at a time, the
oldest of one too many is told why and ended."""

from __future__ import annotations

from ptt.protocol.client import ClientCore, ConnState, Disconnected, IncomingCall, Participation
from ptt.protocol.server import ServerCoreConfig, SessionEnded
from ptt.wire.voice import VoiceHeader, add_mac, encode_voice
from tests.protocol.test_sealed import TOKEN, Pair


def device(p: Pair, user: str, name: str) -> ClientCore:
    """Another client of ``user``, on its own address, with device id ``name``."""
    key = f"{user}@{name}"
    core = ClientCore(user, TOKEN.replace("ann", user), p.rng.randbytes, device=name)
    p.clients[key] = core
    p.addrs[key] = ("10.0.1.%d" % (len(p.addrs) + 2), 40000)
    return core


def online(p: Pair, c: ClientCore) -> ClientCore:
    c.connect(p.now)
    p.pump()
    c.join("g", p.now)
    p.pump()
    assert c.conn is ConnState.CONNECTED and c.groups["g"].state is not None
    return c


def frame(c: ClientCore, burst: int) -> bytes:
    data = encode_voice(VoiceHeader(1, c.session_id, burst, 1, 0), bytes(60))
    return add_mac(c.voice_key, data)


def test_two_devices_of_one_user_both_hear_and_one_talks_at_a_time() -> None:
    p = Pair()
    p.add("ann")
    p.add("bob")
    laptop, desktop = online(p, device(p, "bob", "laptop")), online(p, device(p, "bob", "desktop"))
    ann = online(p, p.clients["ann"])
    assert laptop.session_id != desktop.session_id and laptop.conn is ConnState.CONNECTED
    g = p.server.groups["g"]
    assert g.online["bob"] == 2 and p.server.devices_in("g", "bob") == ["laptop", "desktop"]
    # ann talks: both of bob's devices are relay targets
    ann.request_floor("g", p.now)
    p.pump()
    route = ann.talk_route("g")
    assert route is not None
    to = p.server.receive_datagram(frame(ann, route[2]), p.addrs["ann"], p.now)
    assert set(to or ()) == {p.addrs["bob@laptop"], p.addrs["bob@desktop"]}
    ann.release_floor("g", p.now)
    p.pump()
    # the laptop takes the floor; the desktop is refused while it holds it, its voice dropped
    laptop.request_floor("g", p.now)
    p.pump()
    assert laptop.participation("g") is Participation.HAS_PERMISSION
    desktop.request_floor("g", p.now)
    p.pump()
    assert desktop.participation("g") is Participation.NO_PERMISSION
    burst = p.server.floors.floor("g").burst_id
    assert p.server.receive_datagram(frame(desktop, burst), p.addrs["bob@desktop"], p.now) is None
    heard = p.server.receive_datagram(frame(laptop, burst), p.addrs["bob@laptop"], p.now)
    assert set(heard or ()) == {p.addrs["ann"], p.addrs["bob@desktop"]}
    # the desktop's release or its leaving does not end the laptop's burst
    desktop.release_floor("g", p.now)
    desktop.close(p.now)
    p.pump()
    assert p.server.floors.floor("g").holder == "bob" and g.online["bob"] == 1
    assert ann.groups["g"].online == {"ann", "bob"}  # bob is still online: no presence change
    # the laptop's session ending does end it
    p.server.directory.end_session(p.server.sessions.by_id[laptop.session_id], "expired", p.now)
    assert p.server.floors.floor("g").holder is None and "bob" not in g.online


def test_a_login_beyond_the_limit_ends_the_oldest_device_and_tells_it_why() -> None:
    p = Pair(ServerCoreConfig(max_devices=2))
    p.add("bob")
    first, second = online(p, device(p, "bob", "a")), online(p, device(p, "bob", "b"))
    p.server.events()
    third = online(p, device(p, "bob", "c"))
    assert first.conn is ConnState.DISCONNECTED
    told = [e for e in first.events() if isinstance(e, Disconnected)]
    assert len(told) == 1 and told[0].final and "at most 2" in told[0].reason
    assert [e.reason for e in p.server.events() if isinstance(e, SessionEnded)] == [
        "too many devices"]
    assert second.conn is third.conn is ConnState.CONNECTED
    assert p.server.devices_in("g", "bob") == ["b", "c"]
    p.now += 10.0  # the ended device stays ended: it does not log in again
    first.handle_timer(p.now)
    assert first.datagrams_to_send() == [] and first.conn is ConnState.DISCONNECTED


def test_a_login_from_the_same_device_replaces_only_its_own_session() -> None:
    p = Pair()
    p.add("bob")
    laptop, desktop = online(p, device(p, "bob", "laptop")), online(p, device(p, "bob", "desktop"))
    old = laptop.session_id
    laptop.connect(p.now)  # the laptop logs in again (it thought its session lost)
    p.pump()
    assert laptop.conn is ConnState.CONNECTED and laptop.session_id != old
    assert old not in p.server.sessions.by_id
    assert desktop.session_id in p.server.sessions.by_id
    assert desktop.conn is ConnState.CONNECTED


def test_a_call_rings_every_device_of_the_callee() -> None:
    p = Pair()
    p.add("ann")
    p.add("bob")
    laptop, desktop = online(p, device(p, "bob", "laptop")), online(p, device(p, "bob", "desktop"))
    ann = online(p, p.clients["ann"])
    for c in (laptop, desktop):
        c.events()
    ann.call("bob", p.now)
    p.pump()
    for c in (laptop, desktop):
        rung = [e for e in c.events() if isinstance(e, IncomingCall)]
        assert [(e.peer) for e in rung] == ["ann"]
