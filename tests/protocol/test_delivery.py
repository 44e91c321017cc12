"""The server core collects burst receipts and reports delivery to the talker (sans-I/O)."""

from __future__ import annotations

from ptt.protocol import messages as m
from ptt.protocol.client import DeliveryReported, FloorStateChanged, Participation
from ptt.protocol.messages import RECEIPT_WAIT
from ptt.protocol.server import DeliveryReported as ServerDeliveryReported
from ptt.wire.voice import VoiceFlags, VoiceHeader, encode_voice
from tests.protocol.simnet import SimNet

MEMBERS = ["ann", "bob", "cat", "dan"]


def _site(online: list[str], seed: int = 5, loss: float = 0.0) -> SimNet:
    net = SimNet(seed=seed, loss=loss)
    for u in MEMBERS:
        net.add_user(u)
    net.add_group("g", MEMBERS, 1)
    for u in online:
        c = net.clients[u]
        c.connect(net.now)
        c.join("g", net.now)
    net.run_until(4.0 if loss else 1.0)
    return net


def _talk(net: SimNet, frames: int, drop: frozenset[int] = frozenset()) -> int:
    """ann takes the floor and sends ``frames`` voice frames (the server sees all but ``drop``);
    returns the burst id."""
    ann = net.clients["ann"]
    ann.request_floor("g", net.now)
    for _ in range(50):  # retransmitted under loss
        net.run_until(net.now + 0.1)
        if ann.talk_route("g") is not None:
            break
    gid, sid, burst = ann.talk_route("g")  # type: ignore[misc]
    for seq in range(frames):
        if seq in drop:
            continue
        flags = VoiceFlags.END_OF_BURST if seq == frames - 1 else VoiceFlags.NONE
        net._send(("server", net.addrs["ann"]),
                  encode_voice(VoiceHeader(gid, sid, burst, seq, seq * 320, flags), b"\x00"))
        net.run_until(net.now + 0.02)
    return burst


def _report(net: SimNet) -> DeliveryReported:
    got = [e for e in net.client_events["ann"] if isinstance(e, DeliveryReported)]
    assert len(got) == 1, got
    return got[0]


def test_receipts_of_every_online_member_make_the_report_at_once() -> None:
    net = _site(["ann", "bob", "cat"])
    burst = _talk(net, 50)
    net.clients["ann"].release_floor("g", net.now)
    net.run_until(net.now + 0.05)
    net.clients["bob"].send_receipt("g", burst, 50, 50, net.now)
    net.clients["cat"].send_receipt("g", burst, 49, 50, net.now)
    t_sent = net.now
    net.run_until(net.now + 0.1)  # well before RECEIPT_WAIT: both online members answered
    r = _report(net)
    assert (r.group, r.burst_id, r.frames) == ("g", burst, 50)
    assert [(x.user, x.received, x.expected) for x in r.heard] == [("bob", 50, 50),
                                                                  ("cat", 49, 50)]
    assert (r.silent, r.offline) == ([], ["dan"])
    assert net.now - t_sent < RECEIPT_WAIT
    logged = [e for e in net.server_events if isinstance(e, ServerDeliveryReported)]
    assert len(logged) == 1 and logged[0].talker == "ann" and logged[0].offline == ("dan",)


def test_an_online_member_without_receipt_is_silent_after_the_bounded_wait() -> None:
    net = _site(["ann", "bob", "cat"])
    burst = _talk(net, 20)
    net.clients["ann"].release_floor("g", net.now)
    net.run_until(net.now + 0.05)
    net.clients["bob"].send_receipt("g", burst, 20, 20, net.now)
    net.run_until(net.now + RECEIPT_WAIT / 2)
    assert not [e for e in net.client_events["ann"] if isinstance(e, DeliveryReported)]
    net.run_until(net.now + RECEIPT_WAIT)
    r = _report(net)
    assert [x.user for x in r.heard] == ["bob"]
    assert (r.silent, r.offline) == (["cat"], ["dan"])


def test_the_frame_count_is_the_highest_sequence_the_relay_accepted() -> None:
    # the server lost frames 10..19 of the talker's 30: a listener that saw seq 29 still
    # makes the whole burst the denominator, and the relay's count alone says 30 as well
    net = _site(["ann", "bob"])
    burst = _talk(net, 30, drop=frozenset(range(10, 20)))
    net.clients["ann"].release_floor("g", net.now)
    net.run_until(net.now + 0.05)
    net.clients["bob"].send_receipt("g", burst, 20, 30, net.now)
    net.run_until(net.now + 0.2)
    r = _report(net)
    assert r.frames == 30 and r.heard == [m.Receipt("bob", 20, 30)]


def test_receipts_from_strangers_the_talker_or_other_bursts_are_not_counted() -> None:
    net = _site(["ann", "bob", "cat"])
    net.add_group("h", ["dan"], 2)
    burst = _talk(net, 10)
    net.clients["ann"].release_floor("g", net.now)
    net.run_until(net.now + 0.05)
    net.clients["ann"].send_receipt("g", burst, 10, 10, net.now)  # the talker itself
    net.clients["bob"].send_receipt("g", burst + 1, 10, 10, net.now)  # no such burst
    net.clients["cat"].send_receipt("g", burst, 99, 10, net.now)  # more than it could get
    net.run_until(net.now + RECEIPT_WAIT + 0.2)
    r = _report(net)
    assert r.heard == [m.Receipt("cat", 10, 10)]
    assert r.silent == ["bob"]


def test_receipts_survive_loss_and_each_burst_gets_one_report() -> None:
    net = _site(["ann", "bob", "cat"], seed=11, loss=0.2)
    burst = _talk(net, 40)
    net.clients["ann"].release_floor("g", net.now)
    net.run_until(net.now + 0.3)
    for u in ("bob", "cat"):
        net.clients[u].send_receipt("g", burst, 40, 40, net.now)
    net.run_until(net.now + RECEIPT_WAIT + 3.0)  # retransmissions on both sides
    r = _report(net)
    assert {x.user for x in r.heard} == {"bob", "cat"}


def test_removal_and_group_deletion_name_their_causes() -> None:
    net = _site(["ann", "bob"])
    _talk(net, 5)
    net.server.remove_member("g", "ann", net.now)
    net.run_until(net.now + 0.2)
    lost = [e for e in net.client_events["ann"] if isinstance(e, FloorStateChanged)
            and e.state is Participation.NO_PERMISSION]
    assert lost and lost[-1].revoke_cause is m.RevokeCause.REMOVED
    net.server.set_member("g", "ann")
    net.clients["ann"].join("g", net.now)
    net.run_until(net.now + 0.2)
    net.client_events["ann"].clear()
    _talk(net, 5)
    net.server.remove_group("g", net.now)
    net.run_until(net.now + 0.2)
    lost = [e for e in net.client_events["ann"] if isinstance(e, FloorStateChanged)
            and e.state is Participation.NO_PERMISSION]
    assert lost and lost[-1].revoke_cause is m.RevokeCause.GROUP_DELETED


def test_a_lost_session_names_why() -> None:
    net = _site(["ann", "bob"])
    _talk(net, 5)
    net.loss = 1.0  # the server is gone: nothing comes back
    net.run_until(net.now + 7.0)
    lost = [e for e in net.client_events["ann"] if isinstance(e, FloorStateChanged)
            and e.state is Participation.NO_PERMISSION]
    assert lost[-1].revoke_cause is m.RevokeCause.SESSION_LOST
    assert "heartbeat timeout" in lost[-1].reason


def test_a_large_groups_report_names_the_least_heard_and_counts_the_rest() -> None:
    """It must fit one datagram for any group size: 60 listeners, 100 offline."""
    listeners = [f"l{i:03d}" for i in range(60)]
    away = [f"o{i:03d}" for i in range(100)]
    net = SimNet(seed=3)
    for u in ["ann", *listeners, *away]:
        net.add_user(u)
    net.add_group("g", ["ann", *listeners, *away], 1)
    for u in ["ann", *listeners]:
        net.clients[u].connect(net.now)
        net.clients[u].join("g", net.now)
    net.run_until(2.0)
    burst = _talk(net, 50)
    net.clients["ann"].release_floor("g", net.now)
    net.run_until(net.now + 0.05)
    for i, u in enumerate(listeners):
        net.clients[u].send_receipt("g", burst, 50 - i % 7, 50, net.now)
    net.run_until(net.now + 0.5)
    r = _report(net)
    assert len(r.heard) == m.REPORT_NAMES and r.heard_more == 60 - m.REPORT_NAMES
    named_least = max(x.received for x in r.heard)
    assert named_least <= min(50 - i % 7 for i in range(60) if f"l{i:03d}" not in
                              {x.user for x in r.heard})
    assert [x.user for x in r.heard] == sorted(x.user for x in r.heard)
    assert r.offline == away[:m.REPORT_NAMES] and r.offline_more == 100 - m.REPORT_NAMES
    assert (r.silent, r.silent_more) == ([], 0)
    logged = [e for e in net.server_events if isinstance(e, ServerDeliveryReported)]
    assert len(logged[0].offline) == 100  # the server's own log keeps every name
