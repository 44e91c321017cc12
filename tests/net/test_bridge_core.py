"""The server core's multicast bridge, sans I/O: who is relayed, what is bridged, probe echoes,
the silence timer fed by multicast, and the holder notices multicast listeners play by."""

from __future__ import annotations

from ptt.protocol.client import AdminResult, Participation
from ptt.protocol.messages import VOICE_PATH_OP
from ptt.wire.voice import HOLDER_SEQ, VoiceFlags, VoiceHeader, add_mac, decode_voice, encode_voice
from tests.protocol.simnet import SimNet

MCAST = ("239.255.0.1", 7802)


class LanNet(SimNet):
    """A SimNet that keeps the server's voice-format datagrams to members (holder notices) and
    to the group address (echoes) instead of delivering them."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.notices: dict[str, list[tuple[int, int]]] = {}
        self.to_group: list[bytes] = []

    def route(self, data: bytes, addr: object) -> None:
        if addr == MCAST:
            self.to_group.append(data)
        elif data[:1] == b"V":
            h, payload = decode_voice(data)
            assert h.flags & VoiceFlags.PROBE and h.seq == HOLDER_SEQ and payload == b""
            self.notices.setdefault(self._user_at(addr), []).append((h.sender, h.burst_id))
        else:
            super().route(data, addr)


def lan(users: tuple[str, ...] = ("ann", "bob", "cat"), mode: str = "auto",
        ready: bool = True) -> LanNet:
    net = LanNet(seed=11)
    for u in users:
        net.add_user(u)
        net.notices[u] = []
    net.server.upsert_group("g", 1, 30.0, mode, False, *MCAST)
    for u in users:
        net.server.set_member("g", u)
    net.server.set_multicast_ready("g", ready)
    for c in net.clients.values():
        c.connect(net.now)
        c.join("g", net.now)
    net.run_until(1.0)
    return net


def frame(net: SimNet, user: str, seq: int = 0, flags: VoiceFlags = VoiceFlags.NONE,
          burst: int | None = None) -> bytes:
    c = net.clients[user]
    route = c.talk_route("g")
    b = burst if burst is not None else (route[2] if route else 99)
    data = encode_voice(VoiceHeader(1, c.session_id, b, seq, seq * 320, flags), b"\x01\x02")
    return add_mac(c.voice_key, data)  # as its client sends it


def go_multicast(net: SimNet, *users: str) -> list[bool]:
    """Ask for the multicast path (as a client does after its probe came back); the answers."""
    txns = {u: net.clients[u].admin(VOICE_PATH_OP, {"group": "g", "multicast": True}, net.now)
            for u in users}
    net.run_until(net.now + 0.1)
    answers = []
    for u, txn in txns.items():
        res = [e for e in net.client_events[u] if isinstance(e, AdminResult) and e.txn == txn]
        assert len(res) == 1 and res[0].result is not None, res
        answers.append(bool(res[0].result["multicast"]))
    return answers


def take_floor(net: SimNet, user: str) -> None:
    net.clients[user].request_floor("g", net.now)
    net.run_until(net.now + 0.1)
    assert net.clients[user].participation("g") is Participation.HAS_PERMISSION


def test_multicast_members_are_not_relayed_and_relay_talkers_are_bridged() -> None:
    net = lan()
    assert go_multicast(net, "bob") == [True]
    take_floor(net, "ann")  # ann is a relay talker: cat by relay, bob via the group address
    assert net.server.route_voice(frame(net, "ann"), net.addrs["ann"], net.now) == (
        net.addrs["cat"], MCAST)
    go_multicast(net, "ann")  # now ann multicasts: the server hears it and bridges to cat only
    assert net.server.receive_multicast(frame(net, "ann"), ("127.0.0.1", 5), net.now) == (
        net.addrs["cat"],)
    go_multicast(net, "cat")  # a pure multicast group: nothing to relay
    assert net.server.receive_multicast(frame(net, "ann", 1), ("127.0.0.1", 5), net.now) == ()


def test_multicast_from_a_member_without_the_floor_is_refused() -> None:
    net = lan()
    go_multicast(net, "ann", "bob")
    take_floor(net, "ann")
    burst = net.clients["ann"].talk_route("g")[2]  # type: ignore[index]
    # bob claims ann's burst with his own session id, then a made-up burst
    assert net.server.receive_multicast(frame(net, "bob", burst=burst), ("1.2.3.4", 9),
                                        net.now) is None
    assert net.server.receive_multicast(frame(net, "bob", burst=7), ("1.2.3.4", 9),
                                        net.now) is None
    forged = encode_voice(VoiceHeader(1, 0xDEAD, burst, 0, 0), b"x")  # no such session
    assert net.server.receive_multicast(forged, ("1.2.3.4", 9), net.now) is None


def test_probe_is_echoed_to_the_group_with_seq_one() -> None:
    net = lan()
    probe = frame(net, "bob", 0, VoiceFlags.PROBE, burst=0x1234)
    assert net.server.receive_multicast(probe, ("127.0.0.1", 5), net.now) is None
    out = net.server.datagrams_to_send()
    assert len(out) == 1 and out[0][1] == MCAST
    header, _ = decode_voice(out[0][0])
    assert (header.sender, header.burst_id, header.seq) == (
        net.clients["bob"].session_id, 0x1234, 1)
    assert header.flags & VoiceFlags.PROBE
    # the echo itself, heard again, is not echoed
    assert net.server.receive_multicast(out[0][0], ("127.0.0.1", 6), net.now) is None
    assert net.server.datagrams_to_send() == []


def test_no_multicast_path_or_echo_where_the_server_does_not_listen() -> None:
    net = lan(ready=False)
    assert go_multicast(net, "bob") == [False]
    net.server.receive_multicast(frame(net, "bob", 0, VoiceFlags.PROBE), ("127.0.0.1", 5),
                                 net.now)
    assert net.server.datagrams_to_send() == []


def test_relay_mode_group_never_uses_multicast() -> None:
    net = lan(mode="relay")
    assert go_multicast(net, "bob") == [False]
    take_floor(net, "ann")
    assert set(net.server.route_voice(frame(net, "ann"), net.addrs["ann"], net.now) or ()) == {
        net.addrs["bob"], net.addrs["cat"]}


def test_when_the_server_stops_listening_members_return_to_the_relay() -> None:
    net = lan()
    go_multicast(net, "bob")
    net.server.set_multicast_ready("g", False)
    take_floor(net, "ann")
    assert set(net.server.route_voice(frame(net, "ann"), net.addrs["ann"], net.now) or ()) == {
        net.addrs["bob"], net.addrs["cat"]}


def test_multicast_voice_keeps_the_floor_and_its_absence_ends_it() -> None:
    net = lan()
    go_multicast(net, "ann", "bob", "cat")
    take_floor(net, "ann")
    t_end = net.now + 4.0  # well past T1 (1.5 s): only voice heard by multicast keeps it
    seq = 0
    while net.now < t_end:
        net.server.receive_multicast(frame(net, "ann", seq), ("127.0.0.1", 5), net.now)
        seq += 1
        net.run_until(net.now + 0.2)
    assert net.server.floors.floor("g").holder == "ann"
    net.run_until(net.now + 2.0)  # silence
    assert net.server.floors.floor("g").holder is None
    assert net.clients["ann"].participation("g") is Participation.NO_PERMISSION


def test_multicast_members_get_a_holder_notice_with_each_grant_and_on_moving_mid_burst(
) -> None:
    net = lan(users=("ann", "bob", "cat", "dan"))
    go_multicast(net, "bob", "cat")
    ann = net.clients["ann"]
    take_floor(net, "ann")
    burst = ann.talk_route("g")[2]  # type: ignore[index]
    assert net.notices["bob"] == [(ann.session_id, burst)]
    assert net.notices["cat"] == [(ann.session_id, burst)]
    assert net.notices["dan"] == []  # a relay member: the relay filters for it
    go_multicast(net, "dan")  # moves to multicast mid-burst: told whose frames to play
    assert net.notices["dan"] == [(ann.session_id, burst)]


def test_members_learn_whether_the_server_bridges_the_group_address() -> None:
    """Only then can a relay talker's frames be heard by multicast, and need its signature."""
    for mode, ready, bridged in (("auto", True, True), ("auto", False, False),
                                 ("relay", True, False)):
        net = lan(mode=mode, ready=ready)
        assert {c.groups["g"].state.bridged for c in net.clients.values()} == {bridged}
