"""A session survives what is not proof of its end: a plain NO_SESSION anyone can send from the
server's address, and a NAT that rebinds the client's port mid-burst."""

from __future__ import annotations

from ptt.protocol import messages as m
from ptt.protocol.client import CHECK_WINDOW, ConnState, Participation
from ptt.protocol.messages import encode_message
from ptt.protocol.server import SessionMoved
from ptt.wire.voice import VoiceHeader, add_mac, encode_voice
from tests.protocol.test_sealed import Pair

NO_SESSION = encode_message(m.Error(0, m.ErrorCode.NO_SESSION, "no session: log in again"))


def talking(p: Pair, user: str) -> int:
    c = p.login(user)
    c.join("g", p.now)
    c.request_floor("g", p.now)
    p.pump()
    assert c.participation("g") is Participation.HAS_PERMISSION
    return c.session_id


def voice(p: Pair, user: str, seq: int) -> bytes:
    route = p.clients[user].talk_route("g")
    assert route is not None
    gid, sid, burst = route
    data = encode_voice(VoiceHeader(gid, sid, burst, seq, seq * 320), bytes(60))
    return add_mac(p.clients[user].voice_key, data)  # as its client sends it


def ann_talks_to_bob() -> tuple[Pair, int]:
    """ann holds the floor of g, bob listens; returns the pair and ann's session id."""
    p = Pair()
    p.add("ann")
    p.add("bob")
    sid = talking(p, "ann")
    p.login("bob").join("g", p.now)
    p.pump()
    return p, sid


def test_a_spoofed_plain_no_session_does_not_end_a_talkers_burst() -> None:
    p, sid = ann_talks_to_bob()
    ann = p.clients["ann"]
    for _ in range(3):  # repeated, as an attacker would twice a second
        ann.receive_datagram(NO_SESSION, p.now)
        sent = ann.datagrams_to_send()
        assert len(sent) == 1 and sent[0][0] == 0x4B  # one sealed heartbeat checks the session
        for d in sent:
            p.deliver(d, p.addrs["ann"])
        p.pump()  # the server's sealed answer
        p.now += CHECK_WINDOW + 0.2
        ann.handle_timer(p.now)
        p.pump()
        assert ann.conn is ConnState.CONNECTED and ann.session_id == sid
        assert ann.participation("g") is Participation.HAS_PERMISSION
        assert p.deliver(voice(p, "ann", 1), p.addrs["ann"]) == []  # relayed, not refused
        assert p.server.sessions.by_id[sid].addr == p.addrs["ann"]
        p.now += 0.3
    assert p.server.floors.floor("g").holder == "ann"


def test_a_no_session_without_a_sealed_answer_logs_in_again_after_the_check_window() -> None:
    p = Pair()
    p.add("ann")
    sid = talking(p, "ann")
    p.server.sessions.remove(p.server.sessions.by_id[sid])  # as a restarted server forgot it
    ann = p.clients["ann"]
    ann.receive_datagram(NO_SESSION, p.now)
    p.pump()  # the sealed heartbeat draws only another plain NO_SESSION
    assert ann.conn is ConnState.CONNECTED
    t = p.now
    while ann.session_id == sid and p.now < t + 1.0:
        p.now = min(ann.get_timer() or p.now + 0.05, t + 1.0)
        ann.handle_timer(p.now)
        p.pump()
    assert p.now - t <= CHECK_WINDOW + 1e-9
    assert ann.conn is ConnState.CONNECTED and ann.session_id != sid  # logged in again


def test_a_talkers_session_follows_its_nat_to_a_new_port_mid_burst() -> None:
    p, sid = ann_talks_to_bob()
    relayed = p.server.receive_datagram(voice(p, "ann", 1), p.addrs["ann"], p.now)
    assert relayed == (p.addrs["bob"],)
    old, new = p.addrs["ann"], ("10.0.0.2", 41234)
    p.addrs["ann"] = new  # the NAT now maps ann to another port
    p.server.events()
    # the first frame from there is not relayed (it may be a replay), but draws a sealed check
    assert p.server.receive_datagram(voice(p, "ann", 2), new, p.now) is None
    out = p.server.datagrams_to_send()
    assert [a for _, a in out] == [new] and out[0][0][0] == 0x53
    assert p.server.receive_datagram(voice(p, "ann", 3), new, p.now) is None
    assert p.server.datagrams_to_send() == []  # rate-limited: one check per PATH_CHECK_EVERY
    p.clients["ann"].receive_datagram(out[0][0], p.now)
    p.pump()  # ann's heartbeat answers from the new port: newer, so the session moves
    moved = [e for e in p.server.events() if isinstance(e, SessionMoved)]
    assert moved == [SessionMoved("ann", sid, new, old)]
    assert p.server.receive_datagram(voice(p, "ann", 4), new, p.now) == (p.addrs["bob"],)
    assert p.server.floors.floor("g").holder == "ann"
    # the old port is gone: what comes from there now is refused
    assert p.server.receive_datagram(voice(p, "ann", 5), old, p.now) is None


def test_voice_from_elsewhere_for_a_non_holder_draws_nothing() -> None:
    p = Pair()
    p.add("ann")
    p.add("bob")
    talking(p, "ann")
    bob = p.login("bob")
    bob.join("g", p.now)
    p.pump()
    frame = add_mac(bob.voice_key, encode_voice(VoiceHeader(1, bob.session_id, 7, 1, 0), bytes(60)))
    assert p.server.receive_datagram(frame, ("10.9.9.9", 9), p.now) is None
    assert p.server.datagrams_to_send() == []
