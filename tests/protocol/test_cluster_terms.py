"""A group's home changing under churn (ClusterSim, no engines): one granted talker per group
at a time, and no release lost, whatever order the nodes learn of a lapsed lease, a claim and
the new home's news in.

Each test is one of the ways the churn bench (``bench/bench_cluster_churn.py``, homes moving
because a busy node's 1 s lease lapsed) produced a double grant or a lost release; docs/cluster.md
("Home changes under churn") tells them apart."""

from __future__ import annotations

from ptt.protocol import floor as fl
from ptt.protocol.client import FloorStateChanged, Participation
from ptt.protocol.messages import RevokeCause
from ptt.protocol.server_events import FloorEvent as FloorEventReported
from ptt.wire import cluster as wc
from tests.protocol.clustersim import STEP, ClusterSim

MEMBERS = ["ann", "bob", "cat", "dan"]


class NodeHomes:
    """One node's view of the homes, as its ownership watch and lease clock give it: moved by
    hand, per node, in the order a test wants the nodes to learn things."""

    def __init__(self, nodes: tuple[str, ...], homes: dict[str, tuple[str, int]]) -> None:
        self.nodes = nodes
        self.homes = dict(homes)
        self.lapsed: set[str] = set()  # groups whose home (this node) may not act: lease unsure

    def home_of(self, group: str) -> tuple[str, int]:
        return self.homes[group]

    def may_act(self, group: str, now: float) -> bool:
        return group not in self.lapsed


def _sim(on: tuple[tuple[str, str], ...] = (("ann", "A"), ("bob", "B"), ("cat", "C"),
                                            ("dan", "C"))
         ) -> tuple[ClusterSim, dict[str, NodeHomes]]:
    """ann on A, bob on B, cat and dan on C (or as ``on`` places them); g homed on C under
    term 3; one view per node."""
    nodes = ("A", "B", "C")
    sim = ClusterSim(nodes=nodes)
    views = {n: NodeHomes(nodes, {"g": ("C", 3)}) for n in nodes}
    for n, r in sim.routing.items():
        r.homes = views[n]
    for u, n in on:
        sim.add_user(u, n)
    sim.add_group("g", 1, MEMBERS)
    for n in nodes:  # every node's watch reports C's claim, C's first
        sim.claim_seen(n, "g", 3)
    sim.connect({"g": MEMBERS})
    sim.run_until(2.5)  # every node's Presence has reached the home: all in the relay set
    return sim, views


def _claim(sim: ClusterSim, views: dict[str, NodeHomes], node: str, home: str, term: int
           ) -> None:
    """``node``'s watch reports ``home``'s claim of g under ``term``."""
    views[node].homes["g"] = (home, term)
    views[node].lapsed.discard("g")
    sim.claim_seen(node, "g", term)


def _holders(sim: ClusterSim) -> list[str]:
    return [u for u, c in sim.clients.items() if c.participation("g") is Participation.HAS_PERMISSION]


def _talk_checking(sim: ClusterSim, seconds: float, overlaps: list[tuple[float, list[str]]]
                   ) -> None:
    """Talk ``seconds``, noting every step at which two clients believe they hold g."""
    end = sim.now + seconds
    while sim.now < end - 1e-9:
        sim.send_voice()
        sim.run_until(sim.now + STEP)
        holders = _holders(sim)
        if len(holders) > 1:
            overlaps.append((sim.now, holders))


def _home_events(sim: ClusterSim, node: str) -> list[fl.FloorEvent]:
    return [ev.event for ev in sim.server_events.get(node, [])
            if isinstance(ev, FloorEventReported)]


def test_a_home_whose_lease_may_have_lapsed_grants_none_of_its_own_clients() -> None:
    """C's lease clock ran out (a busy loop renewed late) while its watch still names C. cat,
    on C, asks: C must not grant it from its own floor, since B may claim g any moment and grant
    someone else (C's client would hear "yours" beside B's grantee, with the same burst id: B
    continues from the burst it mirrored, as C's counter does). The request waits at C and goes
    to B once C's watch names B; B decides it."""
    sim, views = _sim()
    views["C"].lapsed.add("g")
    overlaps: list[tuple[float, list[str]]] = []
    sim.clients["cat"].request_floor("g", sim.now)
    _talk_checking(sim, 0.3, overlaps)
    assert sim.clients["cat"].participation("g") is not Participation.HAS_PERMISSION
    assert sim.cores["C"].floors.floor("g").holder is None
    for n in ("B", "A"):  # etcd expired C's lease; B claims under term 4
        _claim(sim, views, n, "B", 4)
    sim.clients["bob"].request_floor("g", sim.now)
    _talk_checking(sim, 0.3, overlaps)
    _claim(sim, views, "C", "B", 4)  # C's watch catches up
    _talk_checking(sim, 0.6, overlaps)
    assert overlaps == []
    holder = sim.cores["B"].floors.floor("g").holder
    assert holder in ("bob", "cat")
    assert _holders(sim) == [holder]


def test_news_from_a_newer_home_ends_the_old_home_s_rule_at_once() -> None:
    """C's lease lapsed; B claimed g (term 4) and its news reaches C before C's own watch says
    so. From that news on C is not g's home: its own client's request goes to B (when C knows
    where B is), not to C's floor, which now mirrors B's."""
    sim, views = _sim()
    for n in ("B", "A"):
        _claim(sim, views, n, "B", 4)
    overlaps: list[tuple[float, list[str]]] = []
    sim.clients["bob"].request_floor("g", sim.now)
    _talk_checking(sim, 0.3, overlaps)
    assert sim.clients["bob"].participation("g") is Participation.HAS_PERMISSION
    assert sim.routing["C"].elsewhere("g")  # B's news, term 4 > C's own 3
    sim.clients["cat"].request_floor("g", sim.now)
    _talk_checking(sim, 0.5, overlaps)
    assert overlaps == []
    assert _holders(sim) == ["bob"]
    assert not [ev for ev in _home_events(sim, "C")
                if isinstance(ev, fl.Granted) and ev.user == "cat"]


def test_an_access_node_that_learns_of_a_new_home_ends_its_talker_s_burst_at_once() -> None:
    """ann (on A) talks; C's lease lapses and B claims g. B's mirror had the burst, but A learns
    of the claim (its watch) before any news of B's: A revokes ann with cause FAILOVER at once,
    not when (or if) B's news comes, and her voice goes nowhere from then on."""
    sim, views = _sim()
    ann = sim.clients["ann"]
    ann.request_floor("g", sim.now)
    sim.talk(0.3)
    assert ann.participation("g") is Participation.HAS_PERMISSION
    sim.dead.add("C")
    sim.dead.add("B")  # B's news is late: nothing of B reaches A yet
    sim.events["ann"].clear()
    _claim(sim, views, "A", "B", 4)
    sim.talk(0.1)
    assert ann.participation("g") is Participation.NO_PERMISSION
    assert RevokeCause.FAILOVER in [ev.revoke_cause for ev in sim.events["ann"]
                                    if isinstance(ev, FloorStateChanged)]
    assert sim.cores["A"].floors.floor("g").holder is None


def test_a_new_home_that_never_mirrored_the_burst_still_frees_the_floor_everywhere() -> None:
    """B had no member of g (no news reached its mirror) when it claimed g: its take-over ends
    no burst of its own, yet every node with members is told the floor is free under the new
    term, and the talker on A is revoked (FAILOVER) however A learns it."""
    nodes = ("A", "B", "C")
    sim = ClusterSim(nodes=nodes)
    views = {n: NodeHomes(nodes, {"g": ("C", 3)}) for n in nodes}
    for n, r in sim.routing.items():
        r.homes = views[n]
    for u, n in (("ann", "A"), ("dan", "A"), ("cat", "C")):
        sim.add_user(u, n)
    sim.add_group("g", 1, ["ann", "dan", "cat"])
    for n in ("C", "A", "B"):
        sim.claim_seen(n, "g", 3)
    sim.connect({"g": ["ann", "dan", "cat"]})
    sim.run_until(2.5)
    ann = sim.clients["ann"]
    ann.request_floor("g", sim.now)
    sim.talk(0.3)
    assert sim.clients["dan"].groups["g"].talker == "ann"
    sim.dead.add("C")
    _claim(sim, views, "B", "B", 4)  # B's claim: A's watch has not said so yet
    sim.talk(0.1)
    assert ann.participation("g") is Participation.NO_PERMISSION  # B's news, term 4
    assert sim.clients["dan"].groups["g"].talker is None
    sim.clients["dan"].request_floor("g", sim.now)
    _claim(sim, views, "A", "B", 4)
    sim.talk(0.3)
    assert _holders(sim) == ["dan"]


def _released_while_c_lapsed(wait: float) -> tuple[ClusterSim, dict[str, NodeHomes]]:
    """ann (on A) talks 0.3 s; C's lease clock runs out; she releases; ``wait`` s pass."""
    sim, views = _sim()
    ann = sim.clients["ann"]
    ann.request_floor("g", sim.now)
    sim.talk(0.3)
    views["C"].lapsed.add("g")
    ann.release_floor("g", sim.now)
    sim.run_until(sim.now + wait)
    return sim, views


def test_a_home_whose_lease_is_unsure_lets_no_timer_end_a_burst_it_hears_nothing_of() -> None:
    """ann (on A) talks on while C's lease clock has run out for longer than T1 (1.5 s): her
    node's ALIVEs wait at C with every other input, so C must not end her burst by silence
    (its T1 waits too); when C's lease is sure again her voice counts and she talks on. C has
    no member of g, so her voice does not cross to C: only the ALIVEs tell it she talks."""
    sim, views = _sim((("ann", "A"), ("bob", "B"), ("cat", "B"), ("dan", "A")))
    ann = sim.clients["ann"]
    ann.request_floor("g", sim.now)
    sim.talk(0.3)
    views["C"].lapsed.add("g")
    sim.talk(2.0)
    views["C"].lapsed.discard("g")
    sim.talk(1.0)
    assert ann.participation("g") is Participation.HAS_PERMISSION
    assert not [ev for ev in _home_events(sim, "C") if isinstance(ev, fl.BurstEnded)]
    assert {sim.clients[u].groups["g"].talker for u in MEMBERS} == {"ann"}


def test_a_silence_that_came_while_the_home_s_lease_was_unsure_ends_the_burst_everywhere(
        ) -> None:
    """ann's voice stops without a release while C's lease clock has run out: C decides
    nothing then; when its lease is sure again T1 ends the burst and every node is told (no
    node mirrors her burst for ever: a floor held to the end)."""
    sim, views = _sim()
    ann = sim.clients["ann"]
    ann.request_floor("g", sim.now)
    sim.talk(0.3)
    views["C"].lapsed.add("g")
    sim.run_until(sim.now + 2.0)  # no voice
    assert sim.cores["C"].floors.floor("g").holder == "ann"
    views["C"].lapsed.discard("g")
    sim.run_until(sim.now + 0.3)
    ends = [ev for ev in _home_events(sim, "C") if isinstance(ev, fl.BurstEnded)]
    assert [e.reason for e in ends] == [fl.EndReason.SILENCE]
    for n in ("A", "B", "C"):
        assert sim.cores[n].floors.floor("g").holder is None
    assert {sim.clients[u].groups["g"].talker for u in MEMBERS} == {None}


def test_a_release_sent_while_the_home_s_lease_is_unsure_ends_the_burst_as_released() -> None:
    """ann (on A) releases while C's lease clock has run out (a late renewal; etcd kept the
    lease). C must not drop the release: it waits, and when C knows its lease again the burst
    ends as released, not 1.5 s later by silence (a lost release)."""
    sim, views = _released_while_c_lapsed(0.2)
    views["C"].lapsed.discard("g")  # the renewal's answer came: the lease lives
    sim.run_until(sim.now + 2.5)
    ends = [ev for ev in _home_events(sim, "C") if isinstance(ev, fl.BurstEnded)]
    assert [e.reason for e in ends] == [fl.EndReason.RELEASED]
    assert {sim.clients[u].groups["g"].talker for u in MEMBERS} == {None}


def test_a_home_that_claims_its_group_again_starts_the_new_term_idle() -> None:
    """C's lease expired at etcd while ann talked and her release was on its way; nobody else
    claimed g in time, and C claims it again under term 5. Every node that learns of term 5
    ends the old term's burst (FAILOVER) at once, and C, the home, ends it too: no floor of the
    new term keeps a burst whose release was sent to the old one (it ended by silence 1.5 s
    later, a lost release), and no member hears a talker its home no longer has."""
    sim, views = _released_while_c_lapsed(0.1)
    for n in ("C", "A", "B"):
        _claim(sim, views, n, "C", 5)
    sim.run_until(sim.now + 2.5)
    ends = [ev for ev in _home_events(sim, "C") if isinstance(ev, fl.BurstEnded)]
    assert [e.reason for e in ends] in ([fl.EndReason.FAILOVER], [fl.EndReason.RELEASED])
    assert {sim.clients[u].groups["g"].talker for u in MEMBERS} == {None}
    assert sim.cores["C"].floors.floor("g").holder is None


def test_an_input_a_former_home_holds_goes_to_the_new_home() -> None:
    """bob's request reaches C after C lost g to A (C's watch says so; B's has not, and A's
    take-over news to B was lost): C hands it to A at its next retry instead of dropping it,
    and A decides it."""
    sim, views = _sim()
    sim.dead.add("B")  # A's take-over news to B is lost: B knows nothing of the claim
    for n in ("A", "C"):
        _claim(sim, views, n, "A", 4)
    sim.run_until(sim.now + 0.1)
    sim.dead.discard("B")
    mark = len(sim.bus_log)
    sim.clients["bob"].request_floor("g", sim.now)
    sim.run_until(sim.now + 0.09)  # within one retry of C's (HELD_RETRY), before bob's own
    assert sim.clients["bob"].participation("g") is Participation.HAS_PERMISSION
    sent = [(s, d, msg) for s, d, msg in sim.sent_since(mark) if isinstance(msg, wc.FloorInput)]
    assert [(s, d) for s, d, _ in sent] == [("B", "C"), ("C", "A")]


def _talking_while_c_stalls(seconds: float) -> ClusterSim:
    """ann (on A) holds g and talks ``seconds`` while C, the home (no member of g there), is
    stalled 2 s from 0.3 s into her burst."""
    sim, _ = _sim((("ann", "A"), ("bob", "B"), ("cat", "B"), ("dan", "A")))
    sim.clients["ann"].request_floor("g", sim.now)
    sim.talk(0.3)
    sim.stalled["C"] = sim.now + 2.0
    sim.talk(seconds)
    return sim


def test_a_home_that_wakes_from_a_stall_reads_what_waited_before_judging_silence() -> None:
    """C's loop stalls 2 s (longer than T1) while ann (on A) talks, then releases. On waking
    its timers come due before it reads its backlog (the ALIVEs, the release): T1 must not end
    her burst by silence first. It ends as released: her release was late, not lost."""
    sim = _talking_while_c_stalls(1.6)
    ann = sim.clients["ann"]
    ann.release_floor("g", sim.now)
    sim.run_until(sim.now + 1.0)
    ends = [ev for ev in _home_events(sim, "C") if isinstance(ev, fl.BurstEnded)]
    assert [e.reason for e in ends] == [fl.EndReason.RELEASED]
    assert {sim.clients[u].groups["g"].talker for u in MEMBERS} == {None}


def test_a_home_that_wakes_from_a_stall_keeps_a_talker_who_talked_through_it() -> None:
    """The same stall while ann talks on: her burst goes on after C wakes."""
    sim = _talking_while_c_stalls(3.0)
    ann = sim.clients["ann"]
    assert not [ev for ev in _home_events(sim, "C") if isinstance(ev, fl.BurstEnded)]
    assert ann.participation("g") is Participation.HAS_PERMISSION
    assert sim.clients["bob"].groups["g"].talker == "ann"


def test_a_home_told_it_lost_its_group_then_that_it_holds_it_again_decides_it_again() -> None:
    """C's ownership reports g lost (no home known: term 0), then C's own claim again under
    the same term (the lease was renewed after all). While it had no home, C's floor became a
    mirror (no timers); back home it must decide again, not keep a burst nobody times (held to
    the end: her silence never ended it)."""
    sim, views = _sim()
    ann = sim.clients["ann"]
    ann.request_floor("g", sim.now)
    sim.talk(0.3)
    views["C"].homes["g"] = ("C", 0)
    sim.claim_seen("C", "g", 0)
    sim.run_until(sim.now + 0.1)
    views["C"].homes["g"] = ("C", 3)
    sim.claim_seen("C", "g", 3)
    sim.run_until(sim.now + 3.0)  # ann says nothing more
    assert not sim.cores["C"].floors.is_mirror("g")
    for n in ("A", "B", "C"):
        assert sim.cores[n].floors.floor("g").holder is None
    assert {sim.clients[u].groups["g"].talker for u in MEMBERS} == {None}
