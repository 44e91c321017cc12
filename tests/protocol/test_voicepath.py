"""The voice path machine (relay or multicast) on a virtual clock, against a real ServerCore.

Clients log in and join over the in-memory net (tests/protocol/simnet.py); a stand-in LAN
carries what the machines send to the group's multicast address to the server core's
``receive_multicast`` and what the server sends there back to every machine that listens.
"""

from __future__ import annotations

import pytest

from ptt.protocol.client import AdminResult, ClientCore, GroupJoined
from ptt.protocol.voicepath import (
    CONFIRM_TIMEOUT,
    PROBE_INTERVAL,
    PROBE_TIMEOUT,
    Heard,
    VoicePath,
    VoicePathChosen,
    VoicePaths,
)
from ptt.wire.voice import ECHO_SEQ, VoiceFlags, VoiceHeader, add_mac, encode_voice, strip_mac
from tests.protocol.simnet import SimNet

MCAST = ("239.255.0.7", 7810)
G, GID = "lan", 7


class Lan:
    """ann and bob in group ``lan`` (mode ``mode``), each with a VoicePaths, on a virtual clock.
    ``carries``: the LAN delivers multicast; ``listens``: who can listen on the address."""

    def __init__(self, mode: str = "auto", enabled: bool = True, ready: bool = True,
                 carries: bool = True) -> None:
        self.net = SimNet(seed=21)
        self.carries = carries
        self.listens: set[str] = {"ann", "bob"}  # may listen on the address
        self.listening: set[str] = set()  # do listen there (as MemberSockets would)
        self.on_lan: list[bytes] = []
        self.probes: dict[str, int] = {"ann": 0, "bob": 0}
        self.left: dict[str, list[int]] = {"ann": [], "bob": []}
        self.chosen: dict[str, list[VoicePathChosen]] = {"ann": [], "bob": []}
        self.seen = {"ann": 0, "bob": 0}
        self.paths: dict[str, VoicePaths] = {}
        for u in ("ann", "bob"):
            core = self.net.add_user(u)
            counter = iter(range(1, 1000))
            self.paths[u] = VoicePaths(core, enabled,
                                       lambda n, c=counter: next(c).to_bytes(n, "big"))
        self.net.server.upsert_group(G, GID, 30.0, mode=mode, mcast_addr=MCAST[0],
                                     mcast_port=MCAST[1])
        for u in ("ann", "bob"):
            self.net.server.set_member(G, u)
        self.net.server.set_multicast_ready(G, ready)
        server_out = self.net.server.datagrams_to_send

        def unicast_only() -> list[tuple[bytes, tuple[str, int]]]:
            out = []
            for data, addr in server_out():
                (self.on_lan.append(data) if addr == MCAST else out.append((data, addr)))
            return out

        self.net.server.datagrams_to_send = unicast_only  # type: ignore[method-assign]

    def core(self, user: str) -> ClientCore:
        return self.net.clients[user]

    def connect(self, *users: str) -> None:
        for u in users:
            self.core(u).connect(self.net.now)
            self.core(u).join(G, self.net.now)
        self.run(0.5)

    def run(self, seconds: float) -> None:
        """Advance the clock in small steps, doing what an adapter does between them."""
        end = self.net.now + seconds
        steps = 0
        while self.net.now < end and steps < 100_000:
            steps += 1
            self.net.run_until(min(end, self.net.now + 0.01))
            for u, p in self.paths.items():
                at = p.get_timer()
                if at is not None and at <= self.net.now:
                    p.handle_timer(self.net.now)
                self._track(u, p)
            self._lan()
        self.net.flush()

    def _track(self, user: str, p: VoicePaths) -> None:
        events = self.net.client_events[user]
        for ev in events[self.seen[user]:]:
            if isinstance(ev, GroupJoined):
                dest = p.joined(ev.state, self.net.now)
                if dest is not None and user in self.listens:
                    self.listening.add(user)
                    p.listening(ev.state.group, self.net.now, "lo, TTL 1")
                elif dest is not None:
                    p.unreachable(ev.state.group, "no route to 239.255.0.7")
            elif isinstance(ev, AdminResult) and ev.txn:
                p.answered(ev.txn, ev.result or {})
        self.seen[user] = len(events)
        left = p.addresses_to_leave()
        if GID in left:
            self.listening.discard(user)
        self.left[user] += left
        self.chosen[user] += p.events()

    def _lan(self) -> None:
        for u, p in self.paths.items():
            for data, dest in p.datagrams_to_send():
                assert dest == MCAST
                self.probes[u] += 1
                if self.carries:
                    self.net.server.receive_multicast(data, self.net.addrs[u], self.net.now)
        heard, self.on_lan = self.on_lan, []
        for data in heard if self.carries else []:
            for u in self.listening:
                self.paths[u].heard(GID, data, self.net.now)
        self.net.flush()


def test_an_echoed_probe_and_the_servers_yes_choose_multicast() -> None:
    lan = Lan()
    lan.connect("ann")
    p = lan.paths["ann"]
    assert p.path(G) is VoicePath.MULTICAST
    assert lan.chosen["ann"] == [VoicePathChosen(G, "multicast",
                                                 "multicast 239.255.0.7:7810 on lo, TTL 1")]
    assert p.multicast_dest(GID) == MCAST and p.any_multicast
    assert p.get_timer() is None  # decided: no probe, no wait
    assert lan.probes["ann"] == 1  # the first probe's echo decided it
    assert lan.net.server.groups[G].mcast_members == {lan.core("ann").session_id}


def test_no_echo_means_the_relay_after_the_probe_timeout() -> None:
    lan = Lan(carries=False)
    lan.core("ann").connect(0.0)
    lan.core("ann").join(G, 0.0)
    lan.run(0.05)
    p = lan.paths["ann"]
    assert p.path(G) is VoicePath.PROBING
    started = lan.net.now
    lan.run(PROBE_TIMEOUT - 0.1)
    assert p.path(G) is VoicePath.PROBING and lan.chosen["ann"] == []
    lan.run(0.2)
    assert p.path(G) is VoicePath.RELAY
    assert lan.chosen["ann"][0].reason == ("no echo from multicast 239.255.0.7:7810 within 1 s: "
                                           "the LAN may not carry multicast")
    # a probe at once, then every PROBE_INTERVAL until the timeout
    assert lan.probes["ann"] == round(PROBE_TIMEOUT / PROBE_INTERVAL)
    assert lan.left["ann"] == [GID] and p.multicast_dest(GID) is None
    assert lan.net.now - started < PROBE_TIMEOUT + 0.2


def test_an_echo_without_the_servers_answer_falls_back_after_the_confirm_timeout() -> None:
    lan = Lan()
    lan.connect("ann")
    p = lan.paths["ann"]
    p.listening(G, lan.net.now, "lo, TTL 1")  # probe again, but the answer will be lost
    lan.listening.add("ann")
    lan.net.loss = 1.0
    lan.run(0.05)
    assert p.path(G) is VoicePath.PROBING
    lan.run(CONFIRM_TIMEOUT - 0.2)
    assert p.path(G) is VoicePath.PROBING
    lan.run(0.3)
    assert p.path(G) is VoicePath.RELAY
    assert lan.chosen["ann"][-1].reason == "the server did not answer the voice path request"


def test_a_server_that_does_not_listen_on_the_address_refuses_multicast() -> None:
    lan = Lan(ready=False)  # the server neither listens there nor echoes
    lan.connect("ann")
    p, ann = lan.paths["ann"], lan.core("ann")
    assert p.path(G) is VoicePath.PROBING and lan.on_lan == []
    # an echo from elsewhere on the LAN, of ann's own probe (its nonce: the first from entropy)
    echo = encode_voice(VoiceHeader(GID, ann.session_id, 1, ECHO_SEQ, 0, VoiceFlags.PROBE), b"")
    assert p.heard(GID, echo, lan.net.now).verdict is Heard.ECHO
    assert p.heard(GID, echo, lan.net.now).verdict is Heard.IGNORED  # one question is enough
    lan.run(0.2)
    assert p.path(G) is VoicePath.RELAY
    assert lan.chosen["ann"][-1].reason == ("the server refused multicast: the server does not "
                                            "listen on the group's address")
    assert lan.left["ann"] == [GID]


@pytest.mark.parametrize("mode,error", [("multicast", True), ("auto", False)])
def test_an_address_that_cannot_be_listened_on(mode: str, error: bool) -> None:
    lan = Lan(mode=mode)
    lan.listens.discard("ann")
    lan.connect("ann")
    p = lan.paths["ann"]
    assert p.path(G) is VoicePath.RELAY and p.reason(G) == "no route to 239.255.0.7"
    assert p.error(G) == ("no route to 239.255.0.7" if error else None)
    assert lan.probes["ann"] == 0


def test_multicast_off_or_a_relay_group_never_probes() -> None:
    off = Lan(enabled=False)
    off.connect("ann")
    assert off.chosen["ann"] == [VoicePathChosen(G, "relay", "multicast is off on this client")]
    relay = Lan(mode="relay")
    relay.connect("ann")
    assert relay.chosen["ann"] == [VoicePathChosen(G, "relay", "the group's mode is relay")]
    assert off.probes["ann"] == relay.probes["ann"] == 0


def test_only_the_announced_burst_of_the_holder_is_played() -> None:
    lan = Lan()
    lan.connect("ann", "bob")
    ann, bob = lan.core("ann"), lan.core("bob")
    pa, pb = lan.paths["ann"], lan.paths["bob"]
    assert pa.path(G) is VoicePath.MULTICAST and pb.path(G) is VoicePath.MULTICAST
    ann.request_floor(G, lan.net.now)
    lan.run(0.2)
    burst = ann.groups[G].my_burst
    assert burst and bob.groups[G].talker == "ann"
    # the holder notice came to bob over the relay path (the adapter hands it over)
    notice = encode_voice(VoiceHeader(GID, ann.session_id, burst, 2, 0, VoiceFlags.PROBE), b"")
    assert pb.holder_notice(notice)
    assert not pb.holder_notice(b"\x56\x01")

    def frame(sender: int, burst_id: int) -> bytes:
        return add_mac(ann.voice_key, encode_voice(VoiceHeader(GID, sender, burst_id, 5, 0),
                                                   b"opus"))

    good = pb.heard(GID, frame(ann.session_id, burst), lan.net.now)
    assert good.verdict is Heard.HOLDER and good.talker == "ann" and good.group == G
    assert good.data == strip_mac(frame(ann.session_id, burst)) and not good.encrypted
    assert pb.heard(GID, frame(ann.session_id, burst + 1), lan.net.now).verdict is (
        Heard.WRONG_BURST)
    assert pb.heard(GID, frame(bob.session_id + 99, burst), lan.net.now).verdict is (
        Heard.NOT_HOLDER)
    assert pb.heard(GID, frame(bob.session_id, burst), lan.net.now).verdict is Heard.OWN
    assert pb.heard(GID, b"\x00junk", lan.net.now).verdict is Heard.MALFORMED
    assert pb.heard(GID + 1, frame(ann.session_id, burst), lan.net.now).verdict is Heard.IGNORED
    assert pa.heard(GID, frame(ann.session_id, burst), lan.net.now).verdict is Heard.OWN


def test_leaving_forgets_the_group_and_its_address() -> None:
    lan = Lan()
    lan.connect("ann")
    p = lan.paths["ann"]
    p.forget(G)
    assert p.addresses_to_leave() == [GID]
    assert p.path(G) is VoicePath.RELAY and p.group_of(GID) is None
    assert p.multicast_dest(GID) is None and not p.any_multicast
