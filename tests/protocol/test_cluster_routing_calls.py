"""One-to-one calls between users on different nodes (ClusterSim, one process): the callee
rung wherever it is logged in, the call's floor decided on the caller's node, voice and news
across, the call's end, and its home's death."""

from __future__ import annotations

import dataclasses

import pytest

from ptt.errors import ProtocolError
from ptt.names import call_group_name
from ptt.protocol import messages as m
from ptt.protocol.client import ClientCore, Participation
from ptt.protocol.client_events import FloorStateChanged, GroupGone, IncomingCall
from ptt.protocol.cluster_routing import CALL_TERM, call_id_slice
from ptt.protocol.server_state import PRIVATE_GROUP_BASE
from ptt.wire import cluster as wc
from tests.protocol.clustersim import ClusterSim
from tests.protocol.test_cluster_routing import _second_client

CALL = call_group_name("ann", "bob")


def _sim(bob_on: str | None = "B") -> ClusterSim:
    """ann on A, bob on ``bob_on`` (None: on B, not logged in yet), dan on C; g (ann, bob,
    dan) homed on C: what lets a volunteer call another."""
    sim = ClusterSim(pinned={"g": "C"})
    sim.add_user("ann", "A")
    sim.add_user("bob", bob_on or "B")
    sim.add_user("dan", "C")
    sim.add_group("g", 1, ["ann", "bob", "dan"])
    for user, c in sim.clients.items():
        if user != "bob" or bob_on is not None:
            c.connect(sim.now)
            c.join("g", sim.now)
    sim.run_until(1.0)
    return sim


def _calls(log: list[tuple[str, str, object]]) -> list[tuple[str, str, object]]:
    return [e for e in log if isinstance(e[2], (wc.Call, wc.CallEnd))]


def test_a_call_rings_the_callee_on_another_node_and_the_two_talk_in_turn() -> None:
    sim = _sim()
    ann, bob = sim.clients["ann"], sim.clients["bob"]
    mark = len(sim.bus_log)
    ann.call("bob", sim.now)
    sim.run_until(sim.now + 0.5)
    # one Call to every other node (calls are rare: no search for where bob is)
    rings = _calls(sim.sent_since(mark))
    assert sorted((a, b) for a, b, _ in rings) == [("A", "B"), ("A", "C")]
    call = rings[0][2]
    assert isinstance(call, wc.Call) and (call.home, call.caller, call.callee) == (
        "A", "ann", "bob")
    first, end = call_id_slice("A", sim.nodes)
    assert first <= call.group_id < end  # A's own slice: no other node gives that id
    assert IncomingCall(CALL, "ann") in sim.events["bob"]
    assert CALL in ann.groups and CALL in bob.groups
    # presence crosses as in a group: each sees the other online
    assert set(bob.groups[CALL].online) == {"ann", "bob"}
    assert set(ann.groups[CALL].online) == {"ann", "bob"}
    # C has the call too (an offline callee logging in there rings) but no session in it
    assert sim.cores["C"].groups[CALL].group_id == call.group_id
    assert not sim.cores["C"].groups[CALL].joined

    # ann talks: decided at A (the call's home), news and voice to B only
    mark = len(sim.bus_log)
    ann.request_floor(CALL, sim.now)
    sim.run_until(sim.now + 0.2)
    heard = sim.heard["bob"]
    sim.talk(0.5)
    assert ann.participation(CALL) is Participation.HAS_PERMISSION
    assert bob.groups[CALL].talker == "ann"
    assert sim.heard["bob"] - heard >= 20
    sent = sim.sent_since(mark)
    assert not [e for e in sent if isinstance(e[2], wc.FloorInput)
                and e[2].kind is not wc.InputKind.ALIVE]
    news = [(a, b, x) for a, b, x in sent if isinstance(x, wc.FloorNews) and x.group == CALL]
    assert news and {(a, b) for a, b, _ in news} == {("A", "B")}
    assert all(x.term == CALL_TERM for _, _, x in news)
    voice = {(a, b) for a, b, x in sent if isinstance(x, tuple) and x[1] == call.group_id}
    assert voice == {("A", "B")}

    # one talker at a time: bob's request while ann talks is not a grant; after her release
    # it goes to A (one FloorInput) and is granted
    bob.request_floor(CALL, sim.now)
    sim.talk(0.2)
    assert bob.participation(CALL) is not Participation.HAS_PERMISSION
    assert ann.participation(CALL) is Participation.HAS_PERMISSION
    ann.release_floor(CALL, sim.now)
    sim.run_until(sim.now + 0.1)
    if bob.participation(CALL) is not Participation.HAS_PERMISSION:
        bob.request_floor(CALL, sim.now)
    heard = sim.heard["ann"]
    mark = len(sim.bus_log)
    sim.talk(0.5)
    assert bob.participation(CALL) is Participation.HAS_PERMISSION
    assert ann.groups[CALL].talker == "bob"
    assert sim.heard["ann"] - heard >= 20
    assert {(a, b) for a, b, x in sim.sent_since(mark)
            if isinstance(x, tuple) and x[1] == call.group_id} == {("B", "A")}


def test_every_device_of_the_callee_rings_on_whichever_node_it_is_logged_in_to() -> None:
    """bob's phone is on B, his tablet on C: both ring, both hear ann; her voice crosses once
    to each of the two nodes."""
    sim = _sim()
    tablet = _second_client(sim, "bob-tablet", "bob", "C", "tablet")
    tablet.connect(sim.now)
    sim.run_until(sim.now + 1.0)
    ann = sim.clients["ann"]
    ann.call("bob", sim.now)
    sim.run_until(sim.now + 0.5)
    assert IncomingCall(CALL, "ann") in sim.events["bob"]
    assert IncomingCall(CALL, "ann") in sim.events["bob-tablet"]
    ann.request_floor(CALL, sim.now)
    sim.run_until(sim.now + 0.2)
    mark, heard = len(sim.bus_log), dict(sim.heard)
    sim.talk(0.5)
    assert sim.heard["bob"] - heard["bob"] >= 20
    assert sim.heard["bob-tablet"] - heard["bob-tablet"] >= 20
    gid = sim.cores["A"].groups[CALL].group_id
    frames = [(a, b) for a, b, x in sim.sent_since(mark) if isinstance(x, tuple) and x[1] == gid]
    assert set(frames) == {("A", "B"), ("A", "C")}
    assert frames.count(("A", "B")) == frames.count(("A", "C"))


def test_an_offline_callee_is_rung_when_it_logs_in_on_any_node_while_the_call_lasts() -> None:
    sim = _sim(bob_on=None)
    ann, bob = sim.clients["ann"], sim.clients["bob"]
    ann.call("bob", sim.now)
    sim.run_until(sim.now + 0.5)
    assert CALL in ann.groups
    bob.connect(sim.now)  # on B
    sim.run_until(sim.now + 1.0)
    assert IncomingCall(CALL, "ann") in sim.events["bob"]
    ann.request_floor(CALL, sim.now)
    sim.run_until(sim.now + 0.2)
    heard = sim.heard["bob"]
    sim.talk(0.5)
    assert bob.groups[CALL].talker == "ann"
    assert sim.heard["bob"] - heard >= 20


def _ann_called_bob_and_left() -> ClusterSim:
    """ann (A) called bob (B) and left the call; bob is still in it."""
    sim = _sim()
    sim.clients["ann"].call("bob", sim.now)
    sim.run_until(sim.now + 0.5)
    sim.clients["ann"].leave(CALL, sim.now)
    sim.run_until(sim.now + 0.5)
    return sim


def test_the_call_ends_on_every_node_once_nobody_is_in_it_anywhere() -> None:
    """ann leaves first: bob, on B, is still in, so A keeps the call; bob leaves: A ends it
    and tells every other node."""
    sim = _ann_called_bob_and_left()
    bob = sim.clients["bob"]
    assert CALL in sim.cores["A"].groups and not sim.cores["A"].groups[CALL].joined
    assert sim.routing["A"].call_open(sim.cores["A"].groups[CALL])
    mark = len(sim.bus_log)
    bob.leave(CALL, sim.now)
    sim.run_until(sim.now + 0.5)
    ends = _calls(sim.sent_since(mark))
    assert sorted((a, b) for a, b, _ in ends) == [("A", "B"), ("A", "C")]
    assert all(isinstance(x, wc.CallEnd) for _, _, x in ends)
    for node in sim.nodes:
        assert CALL not in sim.cores[node].groups, node
    # a new call between them starts afresh (a new id from the caller's node, B's now)
    bob.call("ann", sim.now)
    sim.run_until(sim.now + 0.5)
    assert IncomingCall(CALL, "bob") in sim.events["ann"]
    first, end = call_id_slice("B", sim.nodes)
    assert all(first <= sim.cores[n].groups[CALL].group_id < end for n in sim.nodes)


def test_the_caller_logging_in_again_is_rung_by_the_callee_still_in_the_call() -> None:
    """ann's session ended after she left; bob is still in the call on B: her next login on A
    (the call's home, with no session in the call) rings her, as on one server."""
    sim = _ann_called_bob_and_left()
    ann = sim.clients["ann"]
    ann.close(sim.now)
    sim.run_until(sim.now + 0.5)
    sim.events["ann"].clear()
    ann.connect(sim.now)
    sim.run_until(sim.now + 1.0)
    assert IncomingCall(CALL, "bob") in sim.events["ann"]
    sim.clients["bob"].request_floor(CALL, sim.now)
    sim.talk(0.5)
    assert ann.groups[CALL].talker == "bob"


def test_a_callee_calling_back_rings_the_caller_on_the_calls_home() -> None:
    """ann (A) left the call; bob, still in it on B, calls her back: the Call from B rings
    her devices on A, the home, and the call stays homed on A."""
    sim = _ann_called_bob_and_left()
    ann, bob = sim.clients["ann"], sim.clients["bob"]
    sim.events["ann"].clear()
    bob.call("ann", sim.now)
    sim.run_until(sim.now + 0.5)
    assert IncomingCall(CALL, "bob") in sim.events["ann"]
    assert sim.routing["B"]._calls[CALL] == "A"
    bob.request_floor(CALL, sim.now)
    sim.talk(0.5)
    assert ann.groups[CALL].talker == "bob"


def test_the_call_ends_with_a_cause_when_its_home_dies() -> None:
    """A (the caller's node, the call's home) dies: B learns it (etcd, or its Presence
    stopping) and ends its copy; bob is told the call is lost and hears nothing more."""
    sim = _sim()
    ann, bob = sim.clients["ann"], sim.clients["bob"]
    ann.call("bob", sim.now)
    sim.run_until(sim.now + 0.5)
    ann.request_floor(CALL, sim.now)
    sim.talk(0.3)
    assert bob.groups[CALL].talker == "ann"
    sim.dead.add("A")
    sim.routing["B"].node_gone("A", sim.now)
    sim.routing["C"].node_gone("A", sim.now)
    sim._flush_node("B")
    sim._flush_node("C")
    sim.run_until(sim.now + 0.5)
    assert GroupGone(CALL, m.GoneReason.CALL_LOST) in sim.events["bob"]
    assert CALL not in bob.groups
    assert CALL not in sim.cores["B"].groups and CALL not in sim.cores["C"].groups


def test_a_call_from_a_restarted_home_replaces_its_call_from_before() -> None:
    """A restarted home gives ids out again: a node still holding A's older call under the
    id of A's new one takes the older as over."""
    sim = _sim()
    b = sim.routing["B"]
    first, _ = call_id_slice("A", sim.nodes)
    b.receive(wc.encode(wc.Call(call_group_name("ann", "dan"), first, "A", "ann", "dan", "A",
                                sim.routing["A"].life)), sim.now)
    assert sim.cores["B"].groups[call_group_name("ann", "dan")].group_id == first
    b.receive(wc.encode(wc.Call(CALL, first, "A", "ann", "bob", "A", 77)), sim.now)
    assert call_group_name("ann", "dan") not in sim.cores["B"].groups
    assert sim.cores["B"].groups[CALL].group_id == first


@pytest.mark.parametrize("msg, why", [
    (wc.Call("call:ann+bob", 0, "A", "ann", "bob", "A", 1), "not A's to give"),
    (wc.Call("call:ann+bob", call_id_slice("A", "ABC")[0], "A", "ann", "dan", "A", 1),
     "two members"),
    (wc.Call("g", call_id_slice("A", "ABC")[0], "A", "ann", "bob", "A", 1), "call group name"),
    (wc.Call(CALL, call_id_slice("A", "ABC")[0] + 5, "B", "ann", "bob", "B", 2),
     "not B's to give"),
    (wc.Call(CALL, call_id_slice("A", "ABC")[0], "A", "ann", "bob", "A", 0), "life"),
    (wc.Call(CALL, call_id_slice("A", "ABC")[0], "A", "ann", "bob", "Z", 1), "no node"),
])
def test_a_bad_call_message_is_one_protocol_error(msg: wc.Call, why: str) -> None:
    sim = _sim()
    with pytest.raises(ProtocolError, match=why):
        sim.routing["C"].receive(wc.encode(msg), sim.now)
    assert CALL not in sim.cores["C"].groups


def test_each_node_gives_call_ids_from_its_own_slice() -> None:
    slices = [call_id_slice(n, ("c", "a", "b")) for n in ("a", "b", "c")]
    assert slices[0][0] == PRIVATE_GROUP_BASE + 1
    for (f1, e1), (f2, _) in zip(slices, slices[1:]):
        assert f1 < e1 <= f2
    assert slices[-1][1] <= 1 << 32
    sim = _sim()
    sim.clients["ann"].call("dan", sim.now)  # on A
    sim.clients["bob"].call("dan", sim.now)  # on B
    sim.run_until(sim.now + 0.5)
    ids = {name: sim.cores["C"].groups[name].group_id
           for name in (call_group_name("ann", "dan"), call_group_name("bob", "dan"))}
    assert call_id_slice("A", sim.nodes)[0] <= ids[call_group_name("ann", "dan")] \
        < call_id_slice("A", sim.nodes)[1]
    assert call_id_slice("B", sim.nodes)[0] <= ids[call_group_name("bob", "dan")] \
        < call_id_slice("B", sim.nodes)[1]
    for name, gid in ids.items():
        assert all(sim.cores[n].groups[name].group_id == gid for n in sim.nodes)


def _cross_calls(sim: ClusterSim) -> int:
    """ann (A) calls bob (B) and bob calls ann at the same moment (both reach their nodes 1 ms
    later, each before the other's Call: they cross on the bus); the call's id."""
    ann, bob = sim.clients["ann"], sim.clients["bob"]
    mark = len(sim.bus_log)
    sim.delay = (0.001, 0.001)
    ann.call("bob", sim.now)
    bob.call("ann", sim.now)
    sim.run_until(sim.now + 1.0)
    # each node made its call and told the others; no node ended one: each drops the loser
    sent = _calls(sim.sent_since(mark))
    assert sorted((a, b) for a, b, x in sent if isinstance(x, wc.Call)) == [
        ("A", "B"), ("A", "C"), ("B", "A"), ("B", "C")]
    assert not [x for _, _, x in sent if isinstance(x, wc.CallEnd)]
    # one call on every node: the lower id, A's (A sorts first: its slice is the lowest)
    gid = sim.cores["A"].groups[CALL].group_id
    first, end = call_id_slice("A", sim.nodes)
    assert first <= gid < end
    for node in sim.nodes:
        assert sim.cores[node].groups[CALL].group_id == gid, node
        assert sim.routing[node]._calls[CALL] == "A", node
        assert sim.routing[node].crossed_calls == 1, node
    # both rung into it, as a second call of one pair is on one server
    assert IncomingCall(CALL, "ann") in sim.events["bob"]
    assert IncomingCall(CALL, "bob") in sim.events["ann"]
    for c in (ann, bob):
        view = c.groups[CALL]
        assert view.state is not None and view.state.group_id == gid
        assert view.online == {"ann", "bob"}
    return gid


def _talks(sim: ClusterSim, talker: str, listener: str, gid: int,
           path: set[tuple[str, str]]) -> None:
    """``talker`` asks for the call's floor and talks 0.5 s: granted, ``listener`` hears it,
    the frames crossing from node to node along ``path`` alone."""
    sim.clients[talker].request_floor(CALL, sim.now)
    sim.run_until(sim.now + 0.2)
    heard, mark = sim.heard[listener], len(sim.bus_log)
    sim.talk(0.5)
    assert sim.clients[talker].participation(CALL) is Participation.HAS_PERMISSION
    assert sim.clients[listener].groups[CALL].talker == talker
    assert sim.heard[listener] - heard >= 20
    assert {(a, b) for a, b, x in sim.sent_since(mark)
            if isinstance(x, tuple) and x[1] == gid} == path


def test_two_users_calling_each_other_at_once_from_two_nodes_get_one_call() -> None:
    """Call glare: the calls cross on the bus; every node keeps the lower id's, and the two
    talk in turn in it."""
    sim = _sim()
    gid = _cross_calls(sim)
    _talks(sim, "ann", "bob", gid, {("A", "B")})
    sim.clients["ann"].release_floor(CALL, sim.now)
    sim.run_until(sim.now + 0.1)
    _talks(sim, "bob", "ann", gid, {("B", "A")})


def test_crossing_calls_reaching_a_third_node_in_either_order_leave_it_the_same_call() -> None:
    """ann's tablet on C: B's call (bob calling ann) reaches C first (A's is held back 50 ms),
    so the tablet is rung into it; A's then takes its place on C, and the tablet is rung into
    A's and hears bob there."""
    sim = _sim()
    sim.fate = lambda path, src, dest, msg: (
        0.05 if isinstance(msg, wc.Call) and (src, dest) == ("A", "C") else -1.0)
    tablet = _second_client(sim, "ann-tablet", "ann", "C", "tablet")
    tablet.connect(sim.now)
    sim.run_until(sim.now + 1.0)
    gid = _cross_calls(sim)
    view = tablet.groups[CALL]
    assert view.state is not None and view.state.group_id == gid
    assert [e for e in sim.events["ann-tablet"] if isinstance(e, IncomingCall)] == [
        IncomingCall(CALL, "bob"), IncomingCall(CALL, "bob")]
    _talks(sim, "bob", "ann-tablet", gid, {("B", "A"), ("B", "C")})


def test_a_home_restarted_within_its_grace_ends_its_calls_from_before_on_every_node() -> None:
    """A (ann's node, the call's home) restarts within its lease's grace, so no node takes it
    for dead; its first Peer shows a new life. B and C end their copies of its call at once:
    bob is told the call is lost, not left in a call nobody decides. A Peer of the life they
    knew changes nothing; a callback in a copy of the old life is refused."""
    sim = _sim()
    sim.clients["ann"].call("bob", sim.now)
    sim.run_until(sim.now + 0.5)
    old = sim.cores["B"].groups[CALL].group_id
    life = sim.routing["A"].life

    def peer_of_a(epoch: int) -> bytes:
        return wc.encode(wc.Peer("A", "10.254.0.1", 7800, epoch, 0, 1))

    for node in "BC":
        sim.routing[node].receive(peer_of_a(life), sim.now)
    assert all(CALL in sim.cores[n].groups for n in "BC")
    sim.dead.add("A")  # the old process: gone, nothing more from it
    for node in "BC":
        sim.routing[node].receive(peer_of_a(life + 1), sim.now)
        sim._flush_node(node)
    sim.run_until(sim.now + 0.5)
    assert GroupGone(CALL, m.GoneReason.CALL_LOST) in sim.events["bob"]
    assert CALL not in sim.clients["bob"].groups
    assert all(CALL not in sim.cores[n].groups for n in "BC")
    c = sim.routing["C"]
    c.receive(wc.encode(wc.Call(CALL, old, "A", "bob", "ann", "B", life)), sim.now)
    assert CALL not in sim.cores["C"].groups and c.refused_calls == 1


def _glare_with_tablet(hold: float) -> tuple[ClusterSim, ClientCore, int]:
    """ann's tablet on C; ann (A) and bob (B) call each other at once, A's Call to C held back
    ``hold`` s: C has B's call first and rings the tablet into it. Runs 20 ms: B has given way
    to A's call (its Call crossed B's on the bus), C not yet. The mark in ``sim.bus_log``."""
    sim = _sim()
    sim.fate = lambda path, src, dest, msg: (
        hold if isinstance(msg, wc.Call) and (src, dest) == ("A", "C") else -1.0)
    tablet = _second_client(sim, "ann-tablet", "ann", "C", "tablet")
    tablet.connect(sim.now)
    sim.run_until(sim.now + 1.0)
    sim.delay = (0.001, 0.001)
    mark = len(sim.bus_log)
    sim.clients["ann"].call("bob", sim.now)
    sim.clients["bob"].call("ann", sim.now)
    sim.run_until(sim.now + 0.02)
    assert sim.routing["B"]._calls[CALL] == "A" and sim.routing["C"]._calls[CALL] == "B"
    view = tablet.groups[CALL]
    first, end = call_id_slice("B", sim.nodes)
    assert view.state is not None and first <= view.state.group_id < end  # B's call
    return sim, tablet, mark


def test_news_and_rosters_of_a_call_that_gave_way_are_taken_from_the_kept_call_s_home_alone(
        ) -> None:
    """C holds B's call (A's Call to it held back 50 ms) when A's arrives: B's call gives way.
    A floor grant and a roster from B for that name, late on the wire, are refused on C (B
    is not the kept call's home): the tablet sees no talker and bob still online; A's news
    are taken."""
    sim, tablet, _ = _glare_with_tablet(0.05)
    sim.run_until(sim.now + 0.1)
    c = sim.routing["C"]
    assert c._calls[CALL] == "A"
    gid = sim.cores["A"].groups[CALL].group_id
    view = tablet.groups[CALL]
    assert view.state is not None and view.state.group_id == gid
    assert view.online == {"ann", "bob"} and view.talker is None
    refused = c.refused_news
    # what B's call's home sent before it gave way: bob granted, then bob gone from B
    life = sim.routing["B"].life
    grant = wc.FloorNews(CALL, CALL_TERM, "B", "", 0, (), "taken", "bob", 7, 0, (), ("B", "C"),
                         life, 1)
    c.receive(wc.encode(grant), sim.now)
    c.receive(wc.encode(wc.Members(CALL, "B", CALL_TERM, "B", (), ("bob",), False)), sim.now)
    sim.run_until(sim.now + 0.1)
    assert c.refused_news == refused + 2
    assert sim.cores["C"].floors.floor(CALL).holder is None
    assert view.talker is None and view.online == {"ann", "bob"}
    # the kept call's home is heard: bob talks, the tablet hears him
    _talks(sim, "bob", "ann-tablet", gid, {("B", "A"), ("B", "C")})


def test_a_request_forwarded_to_the_call_that_gave_way_is_passed_on_to_the_kept_call_s_home(
        ) -> None:
    """The tablet asks for the floor in B's call on C (A's Call to C held back 50 ms); C sends
    it to B, which has given way to A's call by then: B passes it on to A, A grants ann, and
    the answer reaches the tablet on C (which has A's call by then), granted."""
    sim, tablet, _ = _glare_with_tablet(0.05)
    mark = len(sim.bus_log)
    tablet.request_floor(CALL, sim.now)
    sim.run_until(sim.now + 0.15)
    sent = sim.sent_since(mark)
    inputs = [(a, b, x.origin) for a, b, x in sent
              if isinstance(x, wc.FloorInput) and x.kind is wc.InputKind.REQUEST]
    assert inputs == [("C", "B", "C"), ("B", "A", "C")]
    answers = [(a, b) for a, b, x in sent if isinstance(x, wc.FloorNews) and x.origin == "C"
               and x.events and x.events[0][:2] == (wc.EventKind.GRANTED, "ann")]
    assert ("A", "C") in answers
    assert sim.routing["C"].refused_news == 0
    assert [e.state for e in sim.events["ann-tablet"] if isinstance(e, FloorStateChanged)][:2] \
        == [Participation.PENDING_REQUEST, Participation.HAS_PERMISSION]


def test_an_answer_that_overtakes_the_kept_call_is_refused_and_the_resent_request_answered(
        ) -> None:
    """As above with A's Call to C held back 200 ms: A's grant reaches C while C still holds
    B's call and is refused there; once C has A's call, the tablet's resent request goes to A
    and is granted."""
    sim, tablet, _ = _glare_with_tablet(0.2)
    mark = len(sim.bus_log)
    tablet.request_floor(CALL, sim.now)
    sim.run_until(sim.now + 0.4)
    sent = sim.sent_since(mark)
    inputs = [(a, b) for a, b, x in sent
              if isinstance(x, wc.FloorInput) and x.kind is wc.InputKind.REQUEST]
    assert inputs[:2] == [("C", "B"), ("B", "A")] and inputs[-1] == ("C", "A")
    assert sim.routing["C"].refused_news >= 1
    assert sim.routing["C"]._calls[CALL] == "A"
    assert Participation.HAS_PERMISSION in [
        e.state for e in sim.events["ann-tablet"] if isinstance(e, FloorStateChanged)]


def test_a_peer_of_a_node_s_earlier_life_arriving_after_its_new_one_changes_nothing() -> None:
    """B knew an earlier life of A, then its current one (A restarted within its grace), and
    ann calls bob from A. A ``Peer`` of the earlier life delivered late (sent by A's old
    process on its own bus connection, in no order with the new one's), and a ``Call`` of
    that life, take B back to nothing (the Call refused): the call's copy stays (bob is not told it was lost), and B's peer plane keeps
    A's current epoch, so the call's floor messages from A by UDP are taken."""
    sim = ClusterSim(pinned={"g": "C"}, planes=True)
    for user, node in (("ann", "A"), ("bob", "B"), ("dan", "C")):
        sim.add_user(user, node)
    sim.add_group("g", 1, ["ann", "bob", "dan"])
    sim.connect({"g": ["ann", "bob", "dan"]})
    b = sim.routing["B"]
    plane = b.peers
    assert plane is not None
    current = sim.routing["A"].peers.hello("B")  # type: ignore[union-attr]
    earlier = dataclasses.replace(current, epoch=current.epoch + 1000)
    for peer in (earlier, current):
        b.receive(wc.encode(peer), sim.now)
    sim.run_until(sim.now + 1.0)
    sim.clients["ann"].call("bob", sim.now)
    sim.run_until(sim.now + 0.5)
    bob = sim.clients["bob"]
    assert CALL in bob.groups
    gid = sim.cores["B"].groups[CALL].group_id
    b.receive(wc.encode(earlier), sim.now)  # late, and a Call that life made
    b.receive(wc.encode(wc.Call(CALL, gid, "A", "ann", "bob", "A", earlier.epoch)), sim.now)
    sim.run_until(sim.now + 0.5)
    assert b.refused_calls == 1
    assert CALL in sim.cores["B"].groups and CALL in bob.groups
    assert GroupGone(CALL, m.GoneReason.CALL_LOST) not in sim.events["bob"]
    unknown = plane.refused["unknown"]
    sim.clients["ann"].request_floor(CALL, sim.now)
    sim.talk(0.3)
    assert bob.groups[CALL].talker == "ann"
    assert plane.refused["unknown"] == unknown
