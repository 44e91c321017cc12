"""Floor control and voice across three nodes in one process (ClusterSim): the talker, the
listeners and the group's home on different nodes, and exactly which node-to-node messages go
where."""

from __future__ import annotations

import pytest

from ptt.errors import ProtocolError
from ptt.protocol import auth
from ptt.protocol import floor as fl
from ptt.protocol import messages as m
from ptt.protocol.client import ClientCore, FloorStateChanged, Participation
from ptt.protocol.client_events import DeliveryReported, GroupGone, LinkReported, TalkerChanged
from ptt.protocol.cluster_routing import (
    TIMER_SLACK,
    ClusterRouting,
    StaticHomes,
    from_wire,
    to_wire,
)
from ptt.protocol.server_events import FloorEvent as FloorEventReported
from ptt.protocol.server_floor import STATE_REPEATS
from ptt.wire import cluster as wc
from tests.protocol.clustersim import ClusterSim, bench_layout

GROUPS = {"g": ["ann", "bob", "cat"], "h": ["ann", "dan"]}


def _sim() -> ClusterSim:
    """ann and dan on A, bob and cat (a dispatcher) on B, nobody on C; g and h homed on C."""
    sim = ClusterSim(pinned={"g": "C", "h": "C"})
    sim.add_user("ann", "A")
    sim.add_user("bob", "B")
    sim.add_user("cat", "B", m.Role.DISPATCHER)
    sim.add_user("dan", "A")
    sim.add_group("g", 1, GROUPS["g"])
    sim.add_group("h", 2, GROUPS["h"])
    sim.connect(GROUPS)
    sim.run_until(1.0)
    return sim


def test_a_change_of_presence_touches_only_its_groups_and_a_full_list_trims_the_rest() -> None:
    sim = _sim()
    home = sim.routing["C"]
    assert home._relay == {"g": {"A", "B"}, "h": {"A"}}
    # a change from A (its last member of g left) leaves A in h's relay set
    home.receive(wc.encode(wc.Presence("A", (), ("g",), False)), sim.now)
    assert home._relay == {"g": {"B"}, "h": {"A"}}
    home.receive(wc.encode(wc.Presence("A", ("g",), (), False)), sim.now)
    assert home._relay == {"g": {"A", "B"}, "h": {"A"}}
    # A's whole list names h alone: A leaves g; B's relay sets are not A's to change
    home.receive(wc.encode(wc.Presence("A", ("h",), (), True)), sim.now)
    assert home._relay == {"g": {"B"}, "h": {"A"}}
    home.receive(wc.encode(wc.Presence("A", (), (), True)), sim.now)
    assert home._relay == {"g": {"B"}, "h": set()}


def _floor_msgs(log: list[tuple[str, str, object]]) -> list[tuple[str, str, object]]:
    return [e for e in log if isinstance(e[2], (wc.FloorInput, wc.FloorNews))]


def test_a_request_is_one_message_to_the_home_and_its_news_reaches_only_nodes_with_members(
) -> None:
    sim = _sim()
    home = sim.routing["C"]
    assert home._relay == {"g": {"A", "B"}, "h": {"A"}}  # learnt from the nodes' Presence
    mark = len(sim.bus_log)
    sim.clients["ann"].request_floor("g", sim.now)
    sim.run_until(sim.now + 0.3)
    sent = _floor_msgs(sim.sent_since(mark))
    # the access node's one forward comes first; B and C send nothing to anyone but C's news
    assert (sent[0][0], sent[0][1], type(sent[0][2])) == ("A", "C", wc.FloorInput)
    assert [e for e in sent if e[0] != "C"] == [sent[0]]
    inputs = [x for _, _, x in sent if isinstance(x, wc.FloorInput)]
    assert len(inputs) == 1 and inputs[0].kind is wc.InputKind.REQUEST
    news = [(a, b, x) for a, b, x in sent if isinstance(x, wc.FloorNews)]
    # the home answers the origin and tells the group's other node; never itself, never C
    assert sorted(b for a, b, _ in news) == ["A", "B"]
    assert all(a == "C" and x.origin == "A" and x.holder == "ann" for a, _, x in news)
    assert sim.clients["ann"].participation("g") is Participation.HAS_PERMISSION
    assert sim.clients["bob"].groups["g"].talker == "ann"
    assert sim.clients["cat"].groups["g"].talker == "ann"
    assert sim.cores["B"].floors.floor("g").holder == "ann"  # the mirror follows the home


def test_the_news_answering_a_request_goes_to_the_requesters_node_first() -> None:
    """bob asks on B: the home's news leaves for B before A (whose name sorts first), in the
    same batch; ann's answer, asked on A, leaves for A first."""
    sim = _sim()
    for user, first, other in (("bob", "B", "A"), ("ann", "A", "B")):
        mark = len(sim.bus_log)
        sim.clients[user].request_floor("g", sim.now)
        sim.run_until(sim.now + 0.3)
        news = [(b, x) for a, b, x in sim.sent_since(mark) if isinstance(x, wc.FloorNews)]
        assert [(b, x.origin) for b, x in news[:2]] == [(first, first), (other, first)]
        assert sim.clients[user].participation("g") is Participation.HAS_PERMISSION
        sim.clients[user].release_floor("g", sim.now)
        sim.run_until(sim.now + 0.3)


def test_a_floor_input_or_news_waiting_is_what_a_node_calls_urgent() -> None:
    """``floor_waiting``: True from a request forwarded (at its node) or a decision made (at
    the home) until the messages are taken; a member's presence elsewhere is not."""
    sim = _sim()
    a, home = sim.routing["A"], sim.routing["C"]
    assert not a.floor_waiting and not home.floor_waiting
    a.receive(wc.encode(wc.Members("g", "B", 1, "C", ("zed",), (), False)), sim.now)
    a.flush(sim.now)
    assert not a.floor_waiting
    sim.clients["ann"].request_floor("g", sim.now)
    for data in sim.clients["ann"].datagrams_to_send():
        sim.cores["A"].receive_datagram(data, sim.addrs["ann"], sim.now)
    assert a.floor_waiting
    sent = a.messages_to_send()
    assert not a.floor_waiting
    request = next(x for n, x in sent if n == "C")
    home.receive(request, sim.now)
    assert home.floor_waiting  # the grant, in the floor's log or as news
    home.flush(sim.now)
    assert home.floor_waiting
    assert [n for n, _ in home.messages_to_send()] == ["A", "B"]
    assert not home.floor_waiting


def test_news_of_a_group_never_goes_to_a_node_without_its_members() -> None:
    sim = _sim()
    mark = len(sim.bus_log)
    sim.clients["dan"].request_floor("h", sim.now)
    sim.talk(0.5)
    sim.clients["dan"].release_floor("h", sim.now)
    sim.run_until(sim.now + 0.5)
    sent = sim.sent_since(mark)
    assert sim.clients["ann"].groups["h"].talker is None
    assert {b for a, b, x in sent if isinstance(x, wc.FloorNews) and x.group == "h"} == {"A"}
    # B has no member of h: no floor message and no voice, only the periodic Presence
    assert not [e for e in sent if e[1] == "B" and not isinstance(e[2], wc.Presence)]
    # voice stays on A (dan and ann are both there); C hears the talker by ALIVE only
    assert not [e for e in sent if isinstance(e[2], tuple)]
    alive = [x for _, _, x in sent if isinstance(x, wc.FloorInput)
             and x.kind is wc.InputKind.ALIVE]
    assert 2 <= len(alive) <= 0.5 / 0.25 + 2


def test_voice_crosses_once_per_node_with_listeners() -> None:
    sim = _sim()
    sim.clients["ann"].request_floor("g", sim.now)
    sim.run_until(sim.now + 0.3)
    mark = len(sim.bus_log)
    sim.talk(2.0)  # 100 frames, longer than T1 (1.5 s)
    voice = [(a, b) for a, b, x in sim.sent_since(mark) if isinstance(x, tuple)]
    assert voice and set(voice) == {("A", "B")}  # once to B for bob and cat; none to C
    assert sim.heard["bob"] == sim.heard["cat"] == len(voice) >= 98
    assert sim.heard["ann"] == 0 and sim.heard["dan"] == 0
    # C heard no frame, but ALIVE fed its silence timer: the burst is still on after T1
    assert sim.cores["C"].floors.floor("g").holder == "ann"
    sim.run_until(sim.now + 2.0)  # ann stops: C's T1 ends the burst, A and B are told
    assert {sim.clients[u].groups["g"].talker for u in ("ann", "bob", "cat")} == {None}


def test_a_frame_of_a_group_with_every_member_on_its_home_crosses_to_no_node() -> None:
    """g homed on A with ann and bob on A: its frames go nowhere else, and A's turns end
    without work for the routing; cat logs in on B and joins: the frames go to B."""
    sim = ClusterSim(pinned={"g": "A"})
    for u, n in (("ann", "A"), ("bob", "A"), ("cat", "B")):
        sim.add_user(u, n)
    sim.add_group("g", 1, ["ann", "bob", "cat"])
    sim.connect({"g": ["ann", "bob"]})
    sim.run_until(1.0)
    a = sim.routing["A"]
    sim.clients["ann"].request_floor("g", sim.now)
    sim.run_until(sim.now + 0.3)
    mark = len(sim.bus_log)
    sim.talk(0.5)
    assert sim.heard["bob"] >= 24 and a.frame_nodes == () and a.idle
    assert not [x for _, _, x in sim.sent_since(mark) if isinstance(x, tuple)]
    sim.clients["cat"].join("g", sim.now)
    sim.run_until(sim.now + 0.3)
    mark = len(sim.bus_log)
    sim.talk(0.5)
    assert a.frame_nodes == ("B",)
    assert sim.heard["cat"] >= 24
    assert {(s, d) for s, d, x in sim.sent_since(mark) if isinstance(x, tuple)} == {("A", "B")}


def test_the_routing_s_timer_is_its_earliest_deadline_as_they_are_set_and_run() -> None:
    """get_timer is one number kept as the deadlines are set (news copies for the bus on the
    plane, page marks, held inputs) and worked out again when the timer runs: the held
    inputs' retry, and the others TIMER_SLACK after their time (a flush runs them sooner)."""
    sim = bench_layout(planes=True)
    seen: set[str] = set()

    def deadlines(r: ClusterRouting) -> list[float]:
        return [t + TIMER_SLACK for t in (r._presence_at, r._marks_at, r._copies_at)
                if t is not None] + ([r._retry_at] if r._retry_at is not None else [])

    def check() -> None:
        for r in sim.routing.values():
            due = deadlines(r)
            assert r.get_timer() is not None and due and r.get_timer() <= min(due)
            seen.update(k for k in ("_copies_at", "_retry_at") if getattr(r, k) is not None)
            if r.get_timer() < min(due):  # only one that ran: worked out again when it does
                r.handle_timer(r.get_timer())
                assert r.get_timer() == min(deadlines(r))

    def steps(n: int) -> None:
        for _ in range(n):
            sim.run_until(sim.now + 0.001)
            check()

    for _ in range(3):
        sim.clients["ann"].request_floor("g", sim.now)
        steps(40)
        sim.clients["ann"].release_floor("g", sim.now)
        steps(40)
        sim.run_until(sim.now + 2.1)  # the presence lists' turn
        check()
    assert "_copies_at" in seen


def test_queue_preemption_and_silence_across_nodes() -> None:
    sim = _sim()
    ann, bob, cat = (sim.clients[u] for u in ("ann", "bob", "cat"))
    ann.request_floor("g", sim.now)
    sim.talk(0.3)
    bob.request_floor("g", sim.now)
    sim.talk(0.3)
    assert bob.participation("g") is Participation.QUEUED and bob.groups["g"].position == 1
    assert ann.groups["g"].queue == ("bob",)
    cat.request_floor("g", sim.now, m.Priority.EMERGENCY)  # pre-empts ann
    sim.talk(1.0)  # ann keeps talking into its grace: revoked, then ended
    assert ann.participation("g") is Participation.NO_PERMISSION
    assert cat.participation("g") is Participation.HAS_PERMISSION
    assert bob.participation("g") is Participation.QUEUED
    assert {sim.clients[u].groups["g"].talker for u in ("ann", "bob", "cat")} == {"cat"}
    cat.release_floor("g", sim.now)
    sim.talk(0.3)
    assert bob.participation("g") is Participation.HAS_PERMISSION  # granted from the queue
    assert ann.groups["g"].talker == "bob"
    sim.run_until(sim.now + 3.0)  # bob never speaks: the home's start window ends the burst
    assert sim.cores["C"].floors.floor("g").holder is None
    assert {sim.clients[u].groups["g"].talker for u in ("ann", "bob", "cat")} == {None}


class MovableHomes:
    """Homes a test moves by hand, as the ownership watch would (a claim, a higher term)."""

    def __init__(self, nodes: tuple[str, ...], homes: dict[str, tuple[str, int]]) -> None:
        self.nodes = nodes
        self.homes = homes

    def home_of(self, group: str) -> tuple[str, int]:
        return self.homes[group]

    def may_act(self, group: str, now: float) -> bool:
        return True


def _homed_on_c() -> tuple[ClusterSim, MovableHomes]:
    """ann and dan on A, bob and cat on B, g and h homed on C under term 3, homes movable."""
    homes = MovableHomes(("A", "B", "C"), {"g": ("C", 3), "h": ("C", 3)})
    sim = ClusterSim(homes=homes)
    for u, node in (("ann", "A"), ("bob", "B"), ("cat", "B"), ("dan", "A")):
        sim.add_user(u, node)
    sim.add_group("g", 1, GROUPS["g"])
    sim.add_group("h", 2, GROUPS["h"])
    sim.connect(GROUPS)
    sim.run_until(1.0)
    return sim, homes


def _bob_queued_behind_ann(sim: ClusterSim) -> tuple[ClientCore, ClientCore]:
    """ann (on A) granted g, then bob (on B) queued behind her: their clients."""
    ann, bob = sim.clients["ann"], sim.clients["bob"]
    ann.request_floor("g", sim.now)
    sim.talk(0.3)
    bob.request_floor("g", sim.now)
    sim.talk(0.3)
    assert bob.participation("g") is Participation.QUEUED
    return ann, bob


def test_a_survivor_that_claims_a_dead_homes_group_frees_the_floor_and_grants_again() -> None:
    sim, homes = _homed_on_c()
    ann, bob = _bob_queued_behind_ann(sim)
    sim.dead.add("C")  # SIGKILL of the home, mid-burst
    ann_events = sim.events["ann"]
    ann_events.clear()
    sim.talk(0.5)
    homes.homes["g"] = ("B", 4)  # B's claim, as every node's watch reports it
    for node in ("A", "B"):
        sim.routing[node].learn_home("g", 4)
        sim.routing[node].home_changed("g", sim.now)
    sim.talk(0.3)
    # everyone is told the floor is free: the old grant and queue are void
    assert {sim.clients[u].groups["g"].talker for u in ("ann", "bob", "cat")} == {None}
    assert ann.participation("g") is Participation.NO_PERMISSION
    assert sim.cores["B"].floors.floor("g").holder is None
    # the talker is revoked with the cause (a FloorIdle overtaking the push reads as silence)
    assert m.RevokeCause.FAILOVER in [ev.revoke_cause for ev in ann_events
                                      if isinstance(ev, FloorStateChanged)]
    bob.request_floor("g", sim.now)  # the new home grants
    sim.talk(0.5)
    assert bob.participation("g") is Participation.HAS_PERMISSION
    assert ann.groups["g"].talker == "bob"
    # news stamped by the dead home's term is refused everywhere now
    stale = wc.FloorNews("g", 3, "C", "", 0, (), "taken", "ann", 99, 0, (), ("A", "B"))
    sim.routing["A"].receive(wc.encode(stale), sim.now)
    assert sim.routing["A"].refused_news == 1
    assert sim.cores["A"].floors.floor("g").holder == "bob"


def test_news_from_an_older_term_is_refused() -> None:
    sim = _sim()
    b = sim.routing["B"]
    b.learn_home("g", 5)  # B has seen the group claimed under term 5
    news = wc.FloorNews("g", 4, "C", "", 0, (to_wire(fl.Granted("g", "bob", 9, m.Priority.NORMAL,
                                                                 30.0, False)),),
                        "taken", "bob", 9, 0, (), ("A", "B"))
    b.receive(wc.encode(news), sim.now)
    assert b.refused_news == 1
    assert sim.cores["B"].floors.floor("g").holder is None


def test_events_survive_the_wire_both_ways() -> None:
    events: list[fl.FloorEvent] = [
        fl.Granted("g", "ann", 7, m.Priority.HIGH, 30.0, True),
        fl.Queued("g", "bob", 2), fl.Denied("g", "cat", m.DenyCause.QUEUE_FULL),
        fl.Revoked("g", "ann", 7, m.RevokeCause.PREEMPTED, 0.5),
        fl.BurstEnded("g", "ann", 7, fl.EndReason.PREEMPTED), fl.Idle("g", 7),
        fl.QueueChanged("g", ("bob", "cat")),
    ]
    news = wc.FloorNews("g", 3, "C", "A", 11, tuple(map(to_wire, events)), "idle", "", 0, 0,
                        (), ("A",))
    back = wc.decode(wc.encode(news))
    assert back == news
    assert isinstance(back, wc.FloorNews)
    assert [from_wire("g", e) for e in back.events] == events
    members = wc.Members("g", "B", 3, "C", ("bob", "cat"), ("dan",), False)
    assert wc.decode(wc.encode(members)) == members


@pytest.mark.parametrize("data", [b"", b"\x93\x01\x09\x00", b"\x92\x02\x01",
                                  wc.encode(wc.Presence("A", ("g",), (), True))[:-1],
                                  b"\x95\x01\x01\x07\xa1g\xa1u",
                                  wc.encode(wc.Members("g", "B", 0, "", ("bob",), (), False)
                                            ).replace(b"\xa3bob", b"\x03\x02\x01\x00")])
def test_bad_cluster_messages_are_one_error(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        wc.decode(data)


def test_static_homes_are_the_same_everywhere_and_refuse_unknown_nodes() -> None:
    a = StaticHomes(["C", "A", "B"])
    b = StaticHomes(["A", "B", "C"])
    assert [a.home_of(f"g{i}") for i in range(50)] == [b.home_of(f"g{i}") for i in range(50)]
    assert {a.home_of(f"g{i}")[0] for i in range(50)} == {"A", "B", "C"}
    with pytest.raises(ProtocolError, match="unknown nodes"):
        StaticHomes(["A"], {"g": "Z"})


# --- presence across nodes ------------------------------------------------------------------


def _members_msgs(log: list[tuple[str, str, object]]) -> list[tuple[str, str, wc.Members]]:
    return [(a, b, x) for a, b, x in log if isinstance(x, wc.Members)]


def _shown_online(sim: ClusterSim, user: str, group: str) -> set[str]:
    return set(sim.clients[user].groups[group].online)


def test_presence_is_the_same_on_every_node_and_crosses_only_on_change() -> None:
    """ann and dan on A, bob and cat on B, g homed on C where nobody logs in: every member
    sees who is online on any node, the home included, from one message per change to the
    home and one forward per other node with members; idle, nothing but the periodic
    Presence crosses."""
    sim = _sim()
    everyone = {"ann", "bob", "cat"}
    for u in everyone:
        assert _shown_online(sim, u, "g") == everyone, u
    assert _shown_online(sim, "dan", "h") == {"ann", "dan"}
    for node in ("A", "B", "C"):  # the roster a coordinator would read on any node
        st = sim.cores[node].group_state("g")
        assert {mi.user for mi in st.members if mi.online} == everyone, node
    mark = len(sim.bus_log)
    sim.run_until(sim.now + 10.0)  # idle: no change, no Members
    assert not _members_msgs(sim.sent_since(mark))
    # cat leaves g on B: one Members to the home, one forward to A (bob keeps B in the set)
    mark = len(sim.bus_log)
    sim.clients["cat"].leave("g", sim.now)
    sim.run_until(sim.now + 1.0)
    sent = [(a, b, x.node, x.online, x.offline) for a, b, x in
            _members_msgs(sim.sent_since(mark))]
    assert sent == [("B", "C", "B", (), ("cat",)), ("C", "A", "B", (), ("cat",))]
    assert _shown_online(sim, "ann", "g") == {"ann", "bob"}
    assert "cat" not in sim.cores["A"].state.groups["g"].remote


def test_a_silent_node_s_members_go_offline_when_its_lease_ends() -> None:
    """B stops (killed: its periodic Presence stops): after NODE_LEASE the home takes B out
    of g's relay set and tells A that bob and cat are offline."""
    from ptt.protocol.cluster_routing import NODE_LEASE, PRESENCE_EVERY

    sim = _sim()
    sim.dead.add("B")
    sim.run_until(sim.now + NODE_LEASE - PRESENCE_EVERY)
    assert _shown_online(sim, "ann", "g") == {"ann", "bob", "cat"}  # still within the lease
    sim.run_until(sim.now + 2 * PRESENCE_EVERY + 1.0)
    assert _shown_online(sim, "ann", "g") == {"ann"}
    assert sim.routing["C"]._relay["g"] == {"A"}


def test_a_node_whose_etcd_lease_went_takes_its_users_offline_at_once() -> None:
    """The node adapter tells the routing when a node's etcd key went for good
    (``node_gone``): the home drops B from g's relay set and A shows bob and cat offline
    without waiting for the Presence lease."""
    sim = _sim()
    sim.dead.add("B")
    sim.routing["C"].node_gone("B", sim.now)
    sim._flush_node("C")
    sim.run_until(sim.now + 0.2)
    assert _shown_online(sim, "ann", "g") == {"ann"}


def test_a_dead_node_leaves_the_relay_sets_a_slice_of_groups_at_a_time() -> None:
    """The adapter spreads a dead node's groups over turns of its loop: A is in the relay sets
    of g and h; one slice of the groups it was relayed by, then the other, and it is in none."""
    sim = _sim()
    home = sim.routing["C"]
    assert home._relay == {"g": {"A", "B"}, "h": {"A"}}
    relayed = home.relayed_by("A")
    assert sorted(relayed) == ["g", "h"]
    home.leave_relays("A", relayed[:1], sim.now)
    assert home.relayed_by("A") == relayed[1:]
    home.leave_relays("A", relayed[1:], sim.now)
    assert home.relayed_by("A") == []
    assert home._relay == {"g": {"B"}, "h": set()}


def test_a_delivery_report_names_members_online_on_other_nodes() -> None:
    """ann on A talks to g: bob and cat, online on B, are in her delivery report as online
    (silent: their receipts are B's), not offline."""
    sim = _sim()
    ann = sim.clients["ann"]
    ann.request_floor("g", sim.now)
    sim.talk(0.5)
    ann.release_floor("g", sim.now)
    sim.run_until(sim.now + 4.0)
    reports = [e for e in sim.events["ann"] if isinstance(e, DeliveryReported)]
    assert len(reports) == 1
    assert reports[0].offline == [] and sorted(reports[0].silent) == ["bob", "cat"]


def test_a_listener_on_another_node_who_leaves_at_the_burst_s_end_is_in_the_report() -> None:
    """ann on A talks to g (home C); bob on B hears it all, sends his receipt and leaves g
    before ann's release: A learns he went offline before the burst ends there. A still waits
    for his node's receipts (he was online when the burst began), and ann's report says bob
    heard it, not that he was offline."""
    sim = ClusterSim(pinned={"g": "C"})
    ann, bob = sim.add_user("ann", "A"), sim.add_user("bob", "B")
    sim.add_group("g", 1, ["ann", "bob"])
    sim.connect({"g": ["ann", "bob"]})
    sim.run_until(1.0)
    ann.request_floor("g", sim.now)
    sim.talk(0.5)
    burst = sim.cores["C"].floors.floor("g").burst_id
    bob.send_receipt("g", burst, 25, 25, sim.now)
    sim.run_until(sim.now + 0.05)
    bob.leave("g", sim.now)
    sim.run_until(sim.now + 0.1)
    assert "bob" not in sim.cores["A"].state.groups["g"].remote  # A knows he left
    ann.release_floor("g", sim.now)
    sim.run_until(sim.now + 2.0)
    reports = [e for e in sim.events["ann"] if isinstance(e, DeliveryReported)]
    assert len(reports) == 1
    assert [r.user for r in reports[0].heard] == ["bob"] and reports[0].offline == []


def test_a_talker_granted_from_the_queue_on_a_node_that_is_not_the_home_gets_its_report(
        ) -> None:
    """ann on A talks to g (home C), bob on B queues behind her and is granted when she
    releases: B, which had ann's grant as asked elsewhere, takes bob's burst for its own
    talker's and sends bob his delivery report, as A sends ann hers."""
    sim = _sim()
    ann, bob = _bob_queued_behind_ann(sim)
    ann.release_floor("g", sim.now)
    sim.talk(0.5)
    assert bob.participation("g") is Participation.HAS_PERMISSION
    bob.release_floor("g", sim.now)
    sim.run_until(sim.now + 4.0)
    for user, others in (("ann", ["bob", "cat"]), ("bob", ["ann", "cat"])):
        reports = [e for e in sim.events[user] if isinstance(e, DeliveryReported)]
        assert [sorted(r.silent) for r in reports] == [others], (user, reports)


# --- receipts and loss feedback across nodes ----------------------------------------------------


def test_receipts_and_loss_feedback_go_straight_to_the_talker_s_node() -> None:
    """ann on A talks to g (home C); bob and cat listen on B. Their loss reports reach ann as
    one LinkWindow from B per window (bob's 20% loss is the worst and, of two listeners, the
    90th percentile: what her protection adapts to); their end-of-burst receipts as one Receipts message from B: her delivery
    report says both heard it. Nothing of either goes to C, the home."""
    sim = _sim()
    ann, bob, cat = (sim.clients[u] for u in ("ann", "bob", "cat"))
    ann.request_floor("g", sim.now)
    sim.talk(0.3)
    burst = ann.groups["g"].my_burst
    assert burst and bob.groups["g"].talker_burst == burst
    mark = len(sim.bus_log)
    for _ in range(3):  # each listener reports about once a second, bob first
        bob.report_reception("g", burst, 50, 10, 5)
        sim.talk(0.1)
        cat.report_reception("g", burst, 50, 0, 0)
        sim.talk(0.9)
    ann.release_floor("g", sim.now)
    sim.run_until(sim.now + 0.2)
    bob.send_receipt("g", burst, 140, 175, sim.now)
    cat.send_receipt("g", burst, 175, 175, sim.now)
    sim.run_until(sim.now + 3.0)
    sent = sim.sent_since(mark)
    windows = [(a, b) for a, b, x in sent if isinstance(x, wc.LinkWindow)]
    receipts = [(a, b, x) for a, b, x in sent if isinstance(x, wc.Receipts)]
    assert windows and set(windows) == {("B", "A")} and len(windows) <= 3
    assert [(a, b, x.users) for a, b, x in receipts] == [("B", "A", ("bob", "cat"))]
    links = [e for e in sim.events["ann"] if isinstance(e, LinkReported)]
    # windows as on one server: the burst's first leaves at once (bob's report alone), later
    # ones hold the reports that came since; bob's loss is in every window that has his
    assert links and links[0].listeners == 1 and links[-1].listeners == 2
    assert (links[0].loss, links[0].worst) == (0.2, 0.2)
    assert (links[-1].loss, links[-1].worst) == (0.2, 0.2)
    reports = [e for e in sim.events["ann"] if isinstance(e, DeliveryReported)]
    assert len(reports) == 1
    r = reports[0]
    assert [(x.user, x.received, x.expected) for x in r.heard] == [("bob", 140, 175),
                                                                    ("cat", 175, 175)]
    assert r.silent == [] and r.offline == []


# --- administration that touches a held floor -------------------------------------------------


def _ended(sim: ClusterSim, node: str, burst: int) -> list[fl.BurstEnded]:
    return [e.event for e in sim.server_events.get(node, [])
            if isinstance(e, FloorEventReported) and isinstance(e.event, fl.BurstEnded)
            and e.event.burst_id == burst]


@pytest.mark.parametrize("order", [("A", "B", "C"), ("C", "B", "A")])
def test_removing_the_talker_from_its_group_ends_its_burst_once_through_the_home(
        order: tuple[str, ...]) -> None:
    """ann (on A) holds g's floor (home C) and is removed from g: every node applies the
    change (as each follows the directory), in either order. Only the home decides: the
    burst ends once (REMOVED), each node tells its own clients once, from the home's news;
    ann is revoked and told g is gone; bob and cat see the floor idle."""
    sim = _sim()
    ann = sim.clients["ann"]
    ann.request_floor("g", sim.now)
    sim.talk(0.5)
    burst = ann.groups["g"].my_burst
    assert sim.clients["bob"].groups["g"].talker == "ann"
    marks = {u: len(sim.events[u]) for u in ("ann", "bob", "cat")}
    for node in order:
        sim.cores[node].remove_member("g", "ann", sim.now)
        sim._flush_node(node)
    sim.run_until(sim.now + 1.0)
    for node in ("A", "B", "C"):
        assert [(e.user, e.reason) for e in _ended(sim, node, burst)] == [
            ("ann", fl.EndReason.REMOVED)], node
        assert sim.cores[node].floors.floor("g").holder is None
    told = [(type(e).__name__, getattr(e, "revoke_cause", None))
            for e in sim.events["ann"][marks["ann"]:]
            if isinstance(e, (FloorStateChanged, GroupGone))]
    assert told == [("FloorStateChanged", m.RevokeCause.REMOVED), ("GroupGone", None)]
    for u in ("bob", "cat"):
        assert [e.talker for e in sim.events[u][marks[u]:]
                if isinstance(e, TalkerChanged) and e.group == "g"] == [None], u


@pytest.mark.parametrize("order", [("A", "B", "C"), ("C", "B", "A")])
def test_deleting_a_group_whose_floor_is_held_ends_the_burst_once_on_each_node(
        order: tuple[str, ...]) -> None:
    """g is deleted while ann (on A) holds its floor: the group is gone everywhere, so there
    is no home left to decide; each node ends the burst on its own copy once and tells only
    its own clients (the home publishes nothing for a group it no longer has)."""
    sim = _sim()
    ann = sim.clients["ann"]
    ann.request_floor("g", sim.now)
    sim.talk(0.5)
    burst = ann.groups["g"].my_burst
    mark = len(sim.events["ann"])
    for node in order:
        sim.cores[node].remove_group("g", sim.now)
        sim._flush_node(node)
    sim.run_until(sim.now + 1.0)
    for node in ("A", "B", "C"):
        assert [e.reason for e in _ended(sim, node, burst)] == [fl.EndReason.REMOVED], node
    # (the talker's client hears the same as on one server: whether the revoke or the news
    # that the group is gone comes first is up to the datagrams' order)
    assert [e.reason for e in sim.events["ann"][mark:] if isinstance(e, GroupGone)] == [
        m.GoneReason.DELETED]


def test_a_request_left_with_a_dead_home_is_sent_again_when_the_new_home_frees_the_floor(
        ) -> None:
    """bob asks while ann talks, just as the home C dies: the request is lost with C and
    unanswered. When A takes g over and announces the free floor, bob's client sends it again
    at once (not at its next retry, up to 0.2 s later), and A grants it."""
    sim, homes = _homed_on_c()
    ann, bob = sim.clients["ann"], sim.clients["bob"]
    ann.request_floor("g", sim.now)
    sim.talk(0.3)
    sim.dead.add("C")  # SIGKILL of the home, mid-burst
    asked = sim.now
    bob.request_floor("g", asked)
    sim.talk(0.32)  # bob's client resent at 0.1 and 0.3 s; its next retry is at 0.5 s
    assert bob.participation("g") is Participation.PENDING_REQUEST
    homes.homes["g"] = ("A", 4)  # A's claim, as every node's watch reports it
    for node in ("A", "B"):
        sim.routing[node].learn_home("g", 4)
        sim.routing[node].home_changed("g", sim.now)
    sim.talk(0.06)
    assert sim.now < asked + 0.45
    assert bob.participation("g") is Participation.HAS_PERMISSION
    assert sim.cores["A"].floors.floor("g").holder == "bob"


def test_no_node_decides_a_floor_while_its_group_has_no_home() -> None:
    """Between the dead home's key vanishing and a survivor's claim the group has no home (term
    0; the static rule names B). bob asks on B then: B must not answer from its mirror (which
    still shows ann talking: it queued him there, a queue the new home never knew, and he waited
    for ever); his request stays unanswered until A claims g and frees the floor, then A grants
    it."""
    sim, homes = _homed_on_c()
    ann, bob = sim.clients["ann"], sim.clients["bob"]
    ann.request_floor("g", sim.now)
    sim.talk(0.3)
    sim.dead.add("C")
    homes.homes["g"] = ("B", 0)  # C's key is gone; nobody has claimed g yet
    bob.request_floor("g", sim.now)
    sim.talk(0.3)
    assert bob.participation("g") is Participation.PENDING_REQUEST
    assert sim.cores["B"].floors.floor("g").queue == ()
    homes.homes["g"] = ("A", 4)
    for node in ("A", "B"):
        sim.routing[node].learn_home("g", 4)
        sim.routing[node].home_changed("g", sim.now)
    sim.talk(0.1)
    assert bob.participation("g") is Participation.HAS_PERMISSION
    assert sim.cores["A"].floors.floor("g").holder == "bob"


@pytest.mark.parametrize("watch", [("C", 3), ("B", 0)])
def test_a_request_goes_to_the_home_whose_news_beat_the_watch(watch: tuple[str, int]) -> None:
    """A claims g and frees the floor; its news reaches B before B's ownership watch names A
    (B's watch still names C, the dead home, or says g vanished: term 0, bob's request held at
    B). bob's request goes to A, whose news came under the newer term, not to C and not held
    until B's watch catches up (0.3-0.5 s behind the claim on a survivor busy with the dead
    node's clients, bench_cluster_churn): granted while B's watch still lags."""
    sim, homes = _homed_on_c()
    lagging = MovableHomes(("A", "B", "C"), {**homes.homes, "g": watch})  # B's watch, behind
    sim.routing["B"].homes = lagging
    ann, bob = sim.clients["ann"], sim.clients["bob"]
    ann.request_floor("g", sim.now)
    sim.talk(0.3)
    sim.dead.add("C")
    bob.request_floor("g", sim.now)
    sim.talk(0.32)  # bob's client resent at 0.1 and 0.3 s; its next retry is at 0.5 s
    assert bob.participation("g") is Participation.PENDING_REQUEST
    homes.homes["g"] = ("A", 4)  # A's claim: A knows it, B's watch not yet
    sim.claim_seen("A", "g", 4)
    sim.talk(0.06)  # before bob's client's next retry
    assert bob.participation("g") is Participation.HAS_PERMISSION
    assert sim.cores["A"].floors.floor("g").holder == "bob"
    lagging.homes["g"] = ("A", 4)  # B's watch catches up: nothing changes
    sim.claim_seen("B", "g", 4)
    sim.talk(0.3)
    assert bob.participation("g") is Participation.HAS_PERMISSION
    assert sim.cores["A"].floors.floor("g").holder == "bob"


# --- one session per device across nodes ---------------------------------------------------------


def _second_client(sim: ClusterSim, key: str, user: str, node: str, device: str) -> ClientCore:
    """Another client of ``user`` (same token) on ``node`` from ``device``."""
    c = sim.clients[key] = ClientCore(user, f"token-of-{user}-0123456789abcdef",
                                      sim.rng.randbytes, device=device)
    sim.node_of[key] = node
    sim.addrs[key] = ("10.255.1.%d" % (len(sim.addrs) + 2), 40000)
    sim.heard[key] = 0
    sim.events[key] = []
    return c


def test_a_login_from_a_device_ends_that_device_s_session_on_another_node() -> None:
    """ann's phone is on A; a second phone of hers logs in on B: both stay. Then the first
    phone's device logs in on B: its session on A ends (one Login message to each other
    node per login), as a second login from one device ends the first on one server."""
    sim = ClusterSim(pinned={"g": "C"})
    sim.add_user("bob", "B")
    ann = _second_client(sim, "ann", "ann", "A", "phone-1")
    token = "token-of-ann-0123456789abcdef"
    creds = auth.make_credentials(token, sim.rng.randbytes(16), auth.MIN_ITERATIONS)
    for core in sim.cores.values():
        core.upsert_user("ann", m.Role.VOLUNTEER, creds.salt, creds.iterations, creds.verifier)
    sim.add_group("g", 1, ["ann", "bob"])
    sim.connect({"g": ["ann", "bob"]})
    sim.run_until(1.0)
    assert [s.device for s in sim.cores["A"].state.sessions.devices("ann")] == ["phone-1"]
    mark = len(sim.bus_log)
    other = _second_client(sim, "ann-2", "ann", "B", "phone-2")
    other.connect(sim.now)
    sim.run_until(sim.now + 1.0)
    logins = [(a, b, x) for a, b, x in sim.sent_since(mark) if isinstance(x, wc.Login)]
    assert sorted((a, b) for a, b, _ in logins) == [("B", "A"), ("B", "C")]
    assert [s.device for s in sim.cores["A"].state.sessions.devices("ann")] == ["phone-1"]
    moved = _second_client(sim, "ann-3", "ann", "B", "phone-1")  # phone-1, now through B
    moved.connect(sim.now)
    sim.run_until(sim.now + 1.0)
    assert sim.cores["A"].state.sessions.devices("ann") == []
    assert sorted(s.device for s in sim.cores["B"].state.sessions.devices("ann")) == [
        "phone-1", "phone-2"]
    assert ann.session_id not in sim.cores["A"].state.sessions.by_id


def test_a_group_deleted_and_made_again_starts_with_nobody_online_elsewhere() -> None:
    """g is deleted on every node and made again under its name: what the nodes knew of the
    old g's members online elsewhere is not carried over, and the members who join the new g
    are seen online on every node."""
    sim = _sim()
    for core in sim.cores.values():
        core.remove_group("g", sim.now)
    sim.run_until(sim.now + 1.0)
    sim.add_group("g", 3, GROUPS["g"])
    assert all(not c.state.groups["g"].remote for c in sim.cores.values())
    for u in GROUPS["g"]:
        sim.clients[u].join("g", sim.now)
    sim.run_until(sim.now + 1.0)
    assert _shown_online(sim, "ann", "g") == {"ann", "bob", "cat"}
    assert _shown_online(sim, "bob", "g") == {"ann", "bob", "cat"}


def test_a_batch_of_logins_is_one_login_message_to_each_live_node() -> None:
    """Five users log in on B in one batch while C is known dead: B tells A once, naming all
    five, and tells C nothing (the dead node's clients logging in again at the survivors send
    no message per login, none to the dead)."""
    sim = ClusterSim(pinned={"g": "A"})
    users = [f"u{k}" for k in range(5)]
    for u in users:
        sim.add_user(u, "B")
    sim.add_group("g", 1, users)
    sim.routing["B"].live = {"A", "B"}
    mark = len(sim.bus_log)
    b = sim.cores["B"]
    for u in users:  # every client's login handed to B's core, then one flush (a batch)
        c = sim.clients[u]
        c.connect(sim.now)
        for d in c.datagrams_to_send():
            b.receive_datagram(d, sim.addrs[u], sim.now)
    for d, addr in b.datagrams_to_send():
        user = next(u for u, a in sim.addrs.items() if a == addr)
        sim.clients[user].receive_datagram(d, sim.now)
    for u in users:
        for d in sim.clients[u].datagrams_to_send():
            b.receive_datagram(d, sim.addrs[u], sim.now)
    sim._flush_node("B")
    logins = [(a, to, x) for a, to, x in sim.sent_since(mark) if isinstance(x, wc.Login)]
    assert [(a, to) for a, to, _ in logins] == [("B", "A")]
    assert sorted(logins[0][2].users) == users


def _denials(sim: ClusterSim, key: str, mark: int) -> list[m.DenyCause]:
    """The deny causes client ``key`` was told since its ``mark``-th event."""
    return [e.deny_cause for e in sim.events[key][mark:]
            if isinstance(e, FloorStateChanged) and e.deny_cause is not m.DenyCause.NONE]


def _ann_on_a_and_c(phone_on: str = "A", tablet_on: str = "C",
                    ) -> tuple[ClusterSim, ClientCore, ClientCore, ClientCore]:
    """g homed on A; ann's phone (no device id) on A and her tablet on C, or the other way
    round, bob on B, all in g: the sim and the phone, the tablet and bob."""
    sim = ClusterSim(pinned={"g": "A"})
    sim.add_user("ann", phone_on)
    sim.add_user("bob", "B")
    sim.add_group("g", 1, ["ann", "bob"])
    tablet = _second_client(sim, "ann-tablet", "ann", tablet_on, "tablet")
    for c in sim.clients.values():
        c.connect(sim.now)
        c.join("g", sim.now)
    sim.run_until(1.0)
    phone, bob = sim.clients["ann"], sim.clients["bob"]
    return sim, phone, tablet, bob


def test_a_grant_asked_for_on_one_node_is_not_given_back_by_the_user_s_device_on_another() -> None:
    """ann's phone on A (g's home) and her tablet on C, both in g; bob on B. The tablet asks:
    A grants ann and does not tell the phone (which did not ask: told of a grant, a client
    gives it back, and the tablet's burst would end at once); the tablet talks, bob hears it.
    After its release the phone asks: the tablet, on C, is not told of that grant either."""
    sim, phone, tablet, bob = _ann_on_a_and_c()

    def grants(key: str) -> int:
        return sum(1 for e in sim.events[key] if isinstance(e, FloorStateChanged)
                   and e.state is Participation.HAS_PERMISSION)

    for asking, other in ((tablet, "ann"), (phone, "ann-tablet")):
        told = grants(other)
        asking.request_floor("g", sim.now)
        sim.run_until(sim.now + 0.2)
        heard = sim.heard["bob"]
        sim.talk(0.5)
        assert asking.participation("g") is Participation.HAS_PERMISSION
        assert sim.cores["A"].floors.floor("g").holder == "ann"
        assert bob.groups["g"].talker == "ann"
        assert sim.heard["bob"] - heard >= 20
        assert grants(other) == told
        asking.release_floor("g", sim.now)
        sim.run_until(sim.now + 0.2)
        assert sim.cores["A"].floors.floor("g").holder is None


def test_a_second_device_of_the_holder_is_told_retry_later_on_any_node() -> None:
    """ann's phone on A (g's home) and her tablet on C. While one of them holds g's floor the
    other asks: it is denied RETRY_LATER, as on one server (one device of a user talks at a
    time), the holder keeps the floor and bob keeps hearing it; the home, which knows the
    tablet's hold from the request C forwarded, and C, which knows the phone's from the news,
    each answer it."""
    sim, phone, tablet, bob = _ann_on_a_and_c()
    for holding, asking, node in ((tablet, phone, "A"), (phone, tablet, "C")):
        holding.request_floor("g", sim.now)
        sim.run_until(sim.now + 0.2)
        assert holding.participation("g") is Participation.HAS_PERMISSION
        burst = sim.cores["A"].floors.floor("g").burst_id
        key = next(k for k, c in sim.clients.items() if c is asking)
        mark = len(sim.events[key])
        asking.request_floor("g", sim.now)
        sim.run_until(sim.now + 0.2)
        denials = _denials(sim, key, mark)
        assert denials == [m.DenyCause.RETRY_LATER]
        assert asking.participation("g") is not Participation.HAS_PERMISSION
        assert any(isinstance(e, FloorEventReported) and e.event == fl.Denied(
            "g", "ann", m.DenyCause.RETRY_LATER) for e in sim.server_events[node])
        heard = sim.heard["bob"]
        sim.talk(0.5)
        assert holding.participation("g") is Participation.HAS_PERMISSION
        assert sim.cores["A"].floors.floor("g").burst_id == burst
        assert bob.groups["g"].talker == "ann"
        assert sim.heard["bob"] - heard >= 20
        holding.release_floor("g", sim.now)
        sim.run_until(sim.now + 0.2)
        assert sim.cores["A"].floors.floor("g").holder is None


def test_a_device_of_the_holder_leaving_on_another_node_leaves_the_floor_held() -> None:
    """g homed on C, bob on C. dan's phone on A holds g's floor; his laptop on C, the home,
    and his tablet, logged in on B (no member of g there before) after the grant, ask (each
    told RETRY_LATER) and leave g: dan's last session in g on that node leaves, and gives up
    nothing (on one server the user's last session leaving gives up the user's floor), as
    the floor is the phone's: it keeps talking, bob keeps hearing it."""
    sim = ClusterSim(pinned={"g": "C"})
    phone = sim.add_user("dan", "A")
    phone.device = "phone"
    bob = sim.add_user("bob", "C")
    sim.add_group("g", 1, ["dan", "bob"])
    laptop = _second_client(sim, "dan-laptop", "dan", "C", "laptop")
    for c in (phone, bob, laptop):
        c.connect(sim.now)
        c.join("g", sim.now)
    sim.run_until(1.0)
    phone.request_floor("g", sim.now)
    sim.talk(0.2)
    assert phone.participation("g") is Participation.HAS_PERMISSION
    burst = sim.cores["C"].floors.floor("g").burst_id
    tablet = _second_client(sim, "dan-tablet", "dan", "B", "tablet")
    tablet.connect(sim.now)
    tablet.join("g", sim.now)
    sim.talk(0.3)
    for key, asking in (("dan-tablet", tablet), ("dan-laptop", laptop)):
        mark = len(sim.events[key])
        asking.request_floor("g", sim.now)
        sim.talk(0.2)
        assert _denials(sim, key, mark) == [m.DenyCause.RETRY_LATER], key
        asking.leave("g", sim.now)
        sim.talk(0.3)
        assert phone.participation("g") is Participation.HAS_PERMISSION, key
        assert sim.cores["C"].floors.floor("g").burst_id == burst, key
    heard = sim.heard["bob"]
    sim.talk(0.5)
    assert bob.groups["g"].talker == "dan" and sim.heard["bob"] - heard >= 20


def _granted_before_news_reaches(sim: ClusterSim, asking: ClientCore, node: str) -> None:
    """``asking`` is granted g's floor while the home's news to ``node`` is held 0.1 s on the
    bus: ``node`` has not heard of the grant yet."""
    sim.fate = lambda path, src, dest, msg: (
        0.1 if dest == node and isinstance(msg, wc.FloorNews) else -1.0)
    asking.request_floor("g", sim.now)
    sim.run_until(sim.now + 0.02)
    assert asking.participation("g") is Participation.HAS_PERMISSION
    assert sim.cores[node].floors.floor("g").holder is None


def test_a_request_forwarded_while_the_user_s_device_on_the_home_holds_is_told_retry_later(
) -> None:
    """ann's phone on A (g's home) is granted g's floor; her tablet on C asks before the
    home's news of that grant reaches C (held 0.1 s on the bus): C forwards the request, the
    home denies it RETRY_LATER, and the phone keeps talking."""
    sim, phone, tablet, bob = _ann_on_a_and_c()
    _granted_before_news_reaches(sim, phone, "C")
    mark = len(sim.events["ann-tablet"])
    tablet.request_floor("g", sim.now)
    sim.run_until(sim.now + 0.3)
    denials = _denials(sim, "ann-tablet", mark)
    assert denials == [m.DenyCause.RETRY_LATER]
    assert tablet.participation("g") is not Participation.HAS_PERMISSION
    a = sim.cores["A"]
    assert a.state.groups["g"].holder_sid == phone.session_id
    heard = sim.heard["bob"]
    sim.talk(0.5)
    assert phone.participation("g") is Participation.HAS_PERMISSION
    assert bob.groups["g"].talker == "ann"
    assert sim.heard["bob"] - heard >= 20


def _tablet_holds(sim: ClusterSim, tablet: ClientCore) -> int:
    """ann's tablet on C asks for g's floor and is granted: the burst id."""
    tablet.request_floor("g", sim.now)
    sim.run_until(sim.now + 0.2)
    assert tablet.participation("g") is Participation.HAS_PERMISSION
    return sim.cores["A"].floors.floor("g").burst_id


@pytest.mark.parametrize("node", ["A", "B"])
def test_the_holder_s_device_back_through_another_node_after_its_own_died_is_granted_again(
        node: str) -> None:
    """ann's tablet on C holds g's floor (home A). C dies; the tablet (the same device id)
    logs in on ``node`` (the home, or B) before any node has declared C dead, and asks again
    at once: it is the holder's own device, not a second one, so it is granted the same burst
    and bob hears it, instead of being told to try later until the floor's silence timer
    frees it."""
    sim, _, tablet, bob = _ann_on_a_and_c()
    burst = _tablet_holds(sim, tablet)
    sim.dead.add("C")
    moved = _second_client(sim, f"tablet-on-{node}", "ann", node, "tablet")
    moved.connect(sim.now)
    moved.join("g", sim.now)
    sim.run_until(sim.now + 0.1)
    key = f"tablet-on-{node}"
    mark = len(sim.events[key])
    moved.request_floor("g", sim.now)
    sim.run_until(sim.now + 0.1)
    denials = _denials(sim, key, mark)
    assert denials == []
    assert moved.participation("g") is Participation.HAS_PERMISSION
    assert sim.cores["A"].floors.floor("g").burst_id == burst
    heard = sim.heard["bob"]
    sim.talk(0.5)
    assert bob.groups["g"].talker == "ann"
    assert sim.heard["bob"] - heard >= 20


@pytest.mark.parametrize(("old", "node"), [("C", "A"), ("C", "B"), ("A", "B")])
def test_the_holder_s_device_moved_off_a_node_that_lives_keeps_the_floor_from_the_queue(
        old: str, node: str) -> None:
    """ann's tablet on ``old`` holds g's floor (home A) and bob, on B, is queued. The
    tablet's link to ``old`` breaks while that node lives; the tablet (the same device id)
    logs in on ``node`` and asks again. ``old``, told of that login, ends the tablet's old
    session there, which held the floor: the device lives on through ``node``, so ``old``
    gives up nothing for it. The tablet is granted the same burst again, and bob stays
    queued, instead of being handed the floor of a talker who is still talking."""
    sim, _, tablet, bob = _ann_on_a_and_c(phone_on="C" if old == "A" else "A", tablet_on=old)
    burst = _tablet_holds(sim, tablet)
    bob.request_floor("g", sim.now)
    sim.talk(0.2)
    assert bob.participation("g") is Participation.QUEUED
    sim.cut_off("ann-tablet")
    moved = _second_client(sim, f"tablet-on-{node}", "ann", node, "tablet")
    moved.connect(sim.now)
    moved.join("g", sim.now)
    moved.request_floor("g", sim.now)
    sim.talk(0.3)
    assert sim.cores[old].state.sessions.on_device("ann", "tablet") is None  # ended there
    assert moved.participation("g") is Participation.HAS_PERMISSION
    a = sim.cores["A"].floors.floor("g")
    assert (a.holder, a.burst_id) == ("ann", burst)
    assert bob.participation("g") is Participation.QUEUED
    heard = sim.heard["bob"]
    sim.talk(0.5)
    assert bob.groups["g"].talker == "ann"
    assert sim.heard["bob"] - heard >= 20


def test_the_holder_s_device_moved_that_does_not_ask_again_leaves_the_floor_to_the_queue(
) -> None:
    """As above, but the tablet moved to B does not ask again (its talk ended with its old
    link): the floor's silence timer frees it, and bob, queued, is granted."""
    sim, _, tablet, bob = _ann_on_a_and_c()
    _tablet_holds(sim, tablet)
    bob.request_floor("g", sim.now)
    sim.talk(0.2)
    sim.cut_off("ann-tablet")
    moved = _second_client(sim, "tablet-on-B", "ann", "B", "tablet")
    moved.connect(sim.now)
    moved.join("g", sim.now)
    sim.run_until(sim.now + 0.3)
    assert sim.cores["A"].floors.floor("g").holder == "ann"  # nothing given up at the move
    sim.run_until(sim.now + fl.FloorConfig().silence)
    assert bob.participation("g") is Participation.HAS_PERMISSION


def _tablet_granted_before_b_hears() -> tuple[ClusterSim, ClientCore, ClientCore, ClientCore,
                                                int]:
    """ann's tablet on C is granted g's floor (home A) while the home's news to B is held
    0.1 s; her second tablet ("ann-2") is on B: the sim, the tablet, the second tablet, bob
    and the burst."""
    sim, _, tablet, bob = _ann_on_a_and_c()
    other = _second_client(sim, "ann-2", "ann", "B", "tablet-2")
    other.connect(sim.now)
    other.join("g", sim.now)
    sim.run_until(sim.now + 0.5)
    _granted_before_news_reaches(sim, tablet, "B")
    return sim, tablet, other, bob, sim.cores["A"].floors.floor("g").burst_id


def test_two_devices_of_the_holder_on_two_other_nodes_are_told_apart_by_the_home() -> None:
    """ann's tablet on C is granted g's floor (home A); her second tablet, on B, asks before
    the home's news of that grant reaches B (held 0.1 s on the bus), so B forwards it: the
    home, told the device of each forwarded request, denies the second RETRY_LATER (both
    come from other nodes). Once B has the news, it lets the home decide all the same (the
    news names no device)."""
    sim, tablet, other, bob, burst = _tablet_granted_before_b_hears()
    for asking_at in (sim.now, sim.now + 0.3):  # before B hears of the grant, then after
        sim.run_until(asking_at)
        mark = len(sim.events["ann-2"])
        other.request_floor("g", sim.now)
        sim.run_until(sim.now + 0.15)  # the home's answer is news to B: held 0.1 s too
        denials = _denials(sim, "ann-2", mark)
        assert denials == [m.DenyCause.RETRY_LATER]
        assert other.participation("g") is not Participation.HAS_PERMISSION
    heard = sim.heard["bob"]
    sim.talk(0.5)
    assert tablet.participation("g") is Participation.HAS_PERMISSION
    assert sim.cores["A"].floors.floor("g").burst_id == burst
    assert sim.heard["bob"] - heard >= 20


@pytest.mark.parametrize("lost", [False, True])
def test_a_release_or_loss_from_another_device_of_the_holder_leaves_the_floor_to_the_holder(
        lost: bool) -> None:
    """ann's tablet on C is granted g's floor (home A); her second tablet, on B, asks before
    the home's news of that grant reaches B (held 0.1 s), then leaves g (or its session ends)
    before the home's answer comes back: B knows only that this device asked, so it tells the
    home the user gave up (a RELEASE, or LOST). The home, told the device of each, keeps the
    floor with the holder's: the tablet talks on, bob hears it."""
    sim, tablet, other, bob, burst = _tablet_granted_before_b_hears()
    other.request_floor("g", sim.now)
    sim.run_until(sim.now + 0.01)
    b = sim.cores["B"]
    s = b.state.sessions.by_id[other.session_id]
    assert b.state.groups["g"].requesters["ann"] == s.session_id  # B forwarded its request
    if lost:
        b.directory.end_session(s, "expired", sim.now)
    else:
        other.leave("g", sim.now)
    sim.run_until(sim.now + 0.3)
    assert sim.cores["A"].floors.floor("g").holder == "ann"
    assert sim.cores["A"].floors.floor("g").burst_id == burst
    heard = sim.heard["bob"]
    sim.talk(0.5)
    assert tablet.participation("g") is Participation.HAS_PERMISSION
    assert bob.groups["g"].talker == "ann"
    assert sim.heard["bob"] - heard >= 20


def test_a_holder_whose_device_has_no_id_is_not_given_away_to_a_named_device_on_the_home(
) -> None:
    """ann's phone on C sends no device id (the wire allows it) and holds g's floor (home
    A); her tablet on A asks: the home cannot match the devices, so it tells them apart by
    node and denies the tablet RETRY_LATER."""
    sim, unnamed, tablet, _ = _ann_on_a_and_c(phone_on="C", tablet_on="A")
    unnamed.request_floor("g", sim.now)
    sim.run_until(sim.now + 0.2)
    assert unnamed.participation("g") is Participation.HAS_PERMISSION
    mark = len(sim.events["ann-tablet"])
    tablet.request_floor("g", sim.now)
    sim.run_until(sim.now + 0.2)
    assert _denials(sim, "ann-tablet", mark) == [m.DenyCause.RETRY_LATER]
    assert unnamed.participation("g") is Participation.HAS_PERMISSION


def test_a_home_without_members_of_its_own_repeats_no_floor_news() -> None:
    """The home decides for members on other nodes only: its FloorTaken would be repeated to
    nobody, each repeat a timer of its loop; the access node repeats it to its member."""
    sim = bench_layout()
    sim.clients["ann"].request_floor("g", sim.now)
    sim.run_until(sim.now + 0.05)
    assert sim.clients["ann"].participation("g") is Participation.HAS_PERMISSION
    assert sim.cores["C"].floors.floor("g").holder == "ann"
    assert sim.cores["C"].floor_control._repeats == []
    assert sim.cores["C"].floor_control.get_timer() is None
    assert len(sim.cores["A"].floor_control._repeats) == len(STATE_REPEATS)
