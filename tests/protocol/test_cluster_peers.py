"""The peer plane between cluster nodes (ptt.protocol.cluster_peers): the Peer exchange that
decides when voice and floor messages go by UDP, and which peer datagrams a node takes; the
floor messages on it through ClusterSim (ptt.protocol.cluster_routing's "Paths" and "Order").
Sans-I/O."""

from __future__ import annotations

import pytest

from ptt.errors import ProtocolError
from ptt.protocol.client import FloorStateChanged, Participation
from ptt.protocol.cluster_peers import ASK_EVERY, WINDOW, PeerPlane
from ptt.protocol.cluster_routing import BUS_COPY_DELAY, TIMER_SLACK
from ptt.wire import cluster as wc
from ptt.wire.peer import CONTROL, peer_key, seal
from ptt.wire.voice import VoiceHeader, encode_voice
from tests.protocol.clustersim import ClusterSim

KEY = peer_key(b"cluster secret")
FRAME = encode_voice(VoiceHeader(7, 3, 9, 41, 960), bytes(80))


def _plane(node: str, epoch: int, key: bytes = KEY) -> PeerPlane:
    return PeerPlane(node, key, epoch, ("127.0.0.1", 7800 + epoch % 100))


def _settle(*planes: PeerPlane) -> list[tuple[str, str]]:
    """Each tells each the way the routing does (at start), answers until none is owed; the
    (from, to) of every Peer sent."""
    by_node = {p.node: p for p in planes}
    queue = [(p, q.node) for p in planes for q in planes if p is not q]
    sent = []
    while queue:
        src, dst = queue.pop(0)
        sent.append((src.node, dst))
        assert len(sent) < 50, "the exchange does not end"
        if by_node[dst].on_peer(src.hello(dst)):
            queue.append((by_node[dst], src.node))
    return sent


def test_voice_goes_by_udp_only_once_the_other_end_knows_this_epoch() -> None:
    a, b = _plane("a", 11), _plane("b", 22)
    assert a.route("b") is None  # nothing known: over the bus
    assert b.on_peer(a.hello("b")) is True  # b learns a, answers
    assert b.route("a") is None  # but a has not said it knows b's epoch
    assert a.on_peer(b.hello("a")) is True  # a learns b (new) and that b knows a
    assert a.route("b") == b.addr
    assert b.on_peer(a.hello("b")) is False  # nothing new: no answer, the exchange ends
    assert b.route("a") == a.addr


def test_three_nodes_settle_in_a_bounded_exchange() -> None:
    planes = [_plane(n, e) for n, e in (("a", 1), ("b", 2), ("c", 3))]
    sent = _settle(*planes)
    assert len(sent) == 12  # 6 at start, 6 answers (each pair: a, b, a; b, a, b)
    for p in planes:
        for q in planes:
            if p is not q:
                assert p.route(q.node) == q.addr


def test_a_frame_sealed_by_one_node_is_accepted_once_by_the_other() -> None:
    a, b = _plane("a", 11), _plane("b", 22)
    _settle(a, b)
    data = a.seal(FRAME)
    got = b.accept(data, 0.0)
    assert got is not None and got.node == "a" and got.frame == FRAME
    assert b.accept(data, 0.0) is None  # the same datagram again
    assert b.refused["replayed"] == 1 and b.last_refusal == "replayed"
    assert b.accepted == 1


def test_reordered_datagrams_are_taken_within_the_window() -> None:
    a, b = _plane("a", 11), _plane("b", 22)
    _settle(a, b)
    sealed = [a.seal(FRAME) for _ in range(5)]
    for data in (sealed[0], sealed[3], sealed[1], sealed[4], sealed[2]):
        assert b.accept(data, 0.0) is not None
    assert b.refused == {"forged": 0, "malformed": 0, "unknown": 0, "replayed": 0}
    old = a.seal(FRAME)
    for _ in range(WINDOW):
        a.seal(FRAME)
    assert b.accept(a.seal(FRAME), 0.0) is not None
    assert b.accept(old, 0.0) is None and b.refused["replayed"] == 1  # too old to tell: refused


def test_a_forged_datagram_is_refused_and_counted_and_moves_nothing() -> None:
    a, b = _plane("a", 11), _plane("b", 22)
    _settle(a, b)
    # right layout, a's name and epoch and the next counter, but not the cluster's key
    forged = seal(peer_key(b"guessed"), "a", 11, 1, FRAME)
    assert b.accept(forged, 0.0) is None
    assert b.refused["forged"] == 1 and b.last_refusal == "forged"
    assert b.accept(a.seal(FRAME), 0.0) is not None  # counter 1 still free: the forgery spent nothing


def test_an_earlier_life_of_a_node_and_an_unknown_node_are_refused() -> None:
    a, b = _plane("a", 11), _plane("b", 22)
    _settle(a, b)
    recorded = a.seal(FRAME)
    a2 = _plane("a", 12)  # a restarted: a new epoch
    assert b.on_peer(a2.hello("b")) is True  # a new life: answered
    assert b.accept(recorded, 0.0) is None and b.refused["unknown"] == 1
    assert b.accept(seal(KEY, "z", 5, 1, FRAME), 0.0) is None and b.refused["unknown"] == 2
    # and b sends to the new life only once it said it knows b: until then, the bus
    assert b.route("a") is None


def test_a_payload_that_is_not_a_voice_frame_is_malformed() -> None:
    a, b = _plane("a", 11), _plane("b", 22)
    _settle(a, b)
    assert b.accept(a.seal(b"\x91\x01 not voice"), 0.0) is None
    assert b.accept(b"P\x01junk", 0.0) is None
    assert b.refused["malformed"] == 2


def test_a_node_whose_key_differs_gets_voice_over_the_bus() -> None:
    a, odd = _plane("a", 11), _plane("b", 22, peer_key(b"another database"))
    _settle(a, odd)
    assert a.route("b") is None and odd.route("a") is None
    assert a.key_differs == {"b"}


def test_a_forgotten_node_gets_voice_over_the_bus_until_it_tells_again() -> None:
    a, b = _plane("a", 11), _plane("b", 22)
    _settle(a, b)
    a.forget("b")
    assert a.route("b") is None
    assert a.on_peer(b.hello("a")) is True  # its periodic Peer: learned again, answered
    assert a.route("b") == b.addr


def test_a_forgotten_node_s_datagrams_ask_for_its_peer_at_most_every_ask_every() -> None:
    """b took a for dead and forgot it; a, alive, still sends by UDP. b asks a for its Peer on
    the first refused datagram, not on every one (nor on a forged one); a answers b's Peer
    (seen 0) at once and sends by the bus until b said it knows it again."""
    a, b = _plane("a", 11), _plane("b", 22)
    _settle(a, b)
    b.forget("a")
    for i in range(50):
        assert b.accept(a.seal(FRAME), 0.01 * i) is None
    assert b.ask == ["a"] and b.refused["unknown"] == 50
    b.ask.clear()
    assert b.accept(seal(peer_key(b"another database"), "a", 11, 9_999, FRAME), 1.0) is None
    assert b.ask == [] and b.refused["forged"] == 1
    assert b.accept(a.seal(FRAME), 0.49 + ASK_EVERY) is None and b.ask == ["a"]
    assert a.on_peer(b.hello("a")) is True and a.route("b") is None
    assert b.on_peer(a.hello("b")) is True and b.route("a") == a.addr
    assert a.on_peer(b.hello("a")) is False and a.route("b") == b.addr
    assert b.accept(a.seal(FRAME), 1.0) is not None


@pytest.mark.parametrize("bad", [dict(port=0), dict(host=""), dict(epoch=0)])
def test_a_peer_message_without_an_address_or_epoch_is_refused(bad: dict[str, object]) -> None:
    msg = wc.Peer(**{**dict(node="a", host="127.0.0.1", port=7801, epoch=5, seen=0,
                            key_check=1), **bad})  # type: ignore[arg-type]
    with pytest.raises(ProtocolError):
        _plane("b", 22).on_peer(msg)


def test_the_routing_carries_the_peer_exchange_on_the_bus() -> None:
    sim = ClusterSim()
    planes = {}
    for i, (node, routing) in enumerate(sim.routing.items()):
        planes[node] = routing.peers = _plane(node, 100 + i)
    sim.run_until(2.5)  # the first periodic Presence carries each node's Peer
    for node, plane in planes.items():
        for other in planes:
            if other != node:
                assert plane.route(other) == planes[other].addr
    peers = [msg for _, _, msg in sim.bus_log if isinstance(msg, wc.Peer)]
    assert len(peers) == 12  # 6 told, 6 answers; none after
    sim.run_until(3.0)
    assert len([msg for _, _, msg in sim.bus_log if isinstance(msg, wc.Peer)]) == 12
    sim.routing["A"].node_gone("B", sim.now)
    assert planes["A"].route("B") is None


# --- floor messages on the plane (ClusterRouting, "Paths" and "Order") ------------------------

GROUPS = {"g": ["ann", "bob"]}


def _floor_sim(fate: object = None) -> ClusterSim:
    """ann on A, bob on B, g homed on C; every node has its peer plane, settled."""
    sim = ClusterSim(pinned={"g": "C"}, planes=True, fate=fate)  # type: ignore[arg-type]
    sim.add_user("ann", "A")
    sim.add_user("bob", "B")
    sim.add_group("g", 1, GROUPS["g"])
    sim.connect(GROUPS)
    sim.run_until(1.0)
    for node, routing in sim.routing.items():
        assert routing.peers is not None
        assert all(routing.peers.route(o) for o in sim.nodes if o != node)
    return sim


def _floor(log: list[tuple[str, str, object]], mark: int = 0) -> list[tuple[str, str, object]]:
    return [e for e in log[mark:] if isinstance(e[2], (wc.FloorInput, wc.FloorNews))]


def test_a_request_and_its_news_cross_the_plane_and_the_bus_copy_is_not_applied_twice() -> None:
    sim = _floor_sim()
    plane, bus = len(sim.plane_log), len(sim.bus_log)
    before = {n: dict(r.out_of_order) for n, r in sim.routing.items()}
    sim.clients["ann"].request_floor("g", sim.now)
    sim.run_until(sim.now + 0.3)
    by_plane, by_bus = _floor(sim.plane_log, plane), _floor(sim.bus_log, bus)
    # the request by UDP alone (its client sends it again if it is lost)
    assert [(a, b, x.kind) for a, b, x in by_plane if isinstance(x, wc.FloorInput)] == [
        ("A", "C", wc.InputKind.REQUEST)]
    assert not [x for _, _, x in by_bus if isinstance(x, wc.FloorInput)]
    # the news: to the requester's node first, then the listener's, by UDP, and by the bus
    news = [(a, b, x) for a, b, x in by_plane if isinstance(x, wc.FloorNews)]
    assert [(a, b) for a, b, _ in news] == [("C", "A"), ("C", "B")]
    assert news[0][2].origin == "A" and news[0][2].holder == "ann"
    # their bus copies, BUS_COPY_DELAY later, in one write
    copies = [(a, b, x) for a, b, x in by_bus if isinstance(x, wc.FloorNews)]
    assert copies == news
    assert sim.clients["ann"].participation("g") is Participation.HAS_PERMISSION
    assert sim.clients["bob"].groups["g"].talker == "ann"
    for node in ("A", "B"):  # each applied the plane's copy; the bus's is counted, not applied
        counts = sim.routing[node].out_of_order
        assert counts["news copies"] == before[node]["news copies"] + 1
    ann_grants = [ev for ev in sim.events["ann"] if isinstance(ev, FloorStateChanged)
                  and ev.state is Participation.HAS_PERMISSION]
    assert len(ann_grants) == 1
    # a release goes by both paths (nobody sends it again); the home takes it once
    plane, bus = len(sim.plane_log), len(sim.bus_log)
    sim.clients["ann"].release_floor("g", sim.now)
    sim.run_until(sim.now + 0.3)
    for log, mark in ((sim.plane_log, plane), (sim.bus_log, bus)):
        assert [(a, b, x.kind) for a, b, x in _floor(log, mark)
                if isinstance(x, wc.FloorInput)] == [("A", "C", wc.InputKind.RELEASE)]
    assert sim.routing["C"].out_of_order["inputs copies"] == 1
    assert sim.routing["C"].out_of_order["inputs stale"] == 0
    assert sim.cores["C"].floors.floor("g").holder is None
    assert sim.clients["bob"].groups["g"].talker is None


def test_a_dropped_request_datagram_is_recovered_by_the_clients_resend() -> None:
    dropped: list[object] = []

    def fate(path: str, src: str, dest: str, msg: object) -> float | None:
        if path == "peer" and isinstance(msg, wc.FloorInput) and not dropped:
            dropped.append(msg)
            return None
        return -1.0

    sim = _floor_sim(fate)
    plane = len(sim.plane_log)
    sim.clients["ann"].request_floor("g", sim.now)
    sim.run_until(sim.now + 0.1)
    assert len(dropped) == 1 and sim.cores["C"].floors.floor("g").holder is None
    while sim.clients["ann"].participation("g") is not Participation.HAS_PERMISSION:
        assert sim.now < 3.0, "the request was never sent again"
        sim.run_until(sim.now + 0.01)
    requests = [x for _, _, x in _floor(sim.plane_log, plane) if isinstance(x, wc.FloorInput)]
    assert len(requests) == 2 and requests[1].seq > requests[0].seq  # forwarded anew
    sim.run_until(sim.now + 0.01)
    assert sim.clients["bob"].groups["g"].talker == "ann"


def test_dropped_news_datagrams_are_recovered_by_their_bus_copies() -> None:
    def fate(path: str, src: str, dest: str, msg: object) -> float | None:
        return None if path == "peer" and isinstance(msg, wc.FloorNews) else -1.0

    sim = _floor_sim(fate)
    sim.clients["ann"].request_floor("g", sim.now)
    sim.run_until(sim.now + 0.3)
    assert sim.clients["ann"].participation("g") is Participation.HAS_PERMISSION
    assert sim.clients["bob"].groups["g"].talker == "ann"
    assert sim.cores["B"].floors.floor("g").holder == "ann"
    sim.clients["ann"].release_floor("g", sim.now)
    sim.run_until(sim.now + 0.3)
    assert sim.cores["B"].floors.floor("g").holder is None
    assert sim.clients["bob"].groups["g"].talker is None
    for node in ("A", "B"):  # no copy came twice: the plane's were all lost
        assert sim.routing[node].out_of_order["news copies"] == 0


def test_reordered_news_is_not_applied_out_of_order() -> None:
    """The grant's two copies to B come late, after the release's news: B's mirror and bob
    stay with the newer news (the floor idle), and both late copies are counted stale."""
    def fate(path: str, src: str, dest: str, msg: object) -> float | None:
        late = isinstance(msg, wc.FloorNews) and dest == "B" and msg.holder == "ann"
        return 0.2 if late else -1.0

    sim = _floor_sim(fate)
    sim.clients["ann"].request_floor("g", sim.now)
    sim.run_until(sim.now + 0.05)
    assert sim.clients["ann"].participation("g") is Participation.HAS_PERMISSION
    sim.clients["ann"].release_floor("g", sim.now)
    sim.run_until(sim.now + 0.05)  # the release's news reached B; the grant's not yet
    assert sim.routing["B"].out_of_order["news stale"] == 0
    sim.run_until(sim.now + 0.5)
    assert sim.routing["B"].out_of_order["news stale"] == 2
    assert sim.cores["B"].floors.floor("g").holder is None
    assert sim.clients["bob"].groups["g"].talker is None
    assert sim.cores["C"].floors.floor("g").holder is None


def test_news_order_is_per_term_and_per_life_of_the_home() -> None:
    """Fed by hand: a lower seq of the same term and life is stale; a newer term, or another
    life of the home under the same term (a restart under static homes), starts again."""
    sim = _floor_sim()
    b = sim.routing["B"]

    def news(term: int, life: int, seq: int, holder: str) -> bytes:
        return wc.encode(wc.FloorNews("g", term, "C", "", 0, (), "taken" if holder else "idle",
                                      holder, 5 if holder else 0, 0, (), ("A", "B"), life,
                                      seq))

    mirror = sim.cores["B"].floors.floor("g")
    b.receive(news(1, 77, 10, ""), sim.now)
    b.receive(news(1, 77, 9, "ann"), sim.now)  # older: not applied
    assert mirror.holder is None and b.out_of_order["news stale"] == 1
    b.receive(news(1, 78, 1, "ann"), sim.now)  # the home's next life
    assert mirror.holder == "ann"
    b.receive(news(2, 78, 1, ""), sim.now)  # a newer term
    assert mirror.holder is None
    with pytest.raises(ProtocolError):
        b.receive(news(2, 78, 0, "ann"), sim.now)  # no sequence: not a news of this version


def test_reordered_inputs_are_taken_in_their_nodes_order() -> None:
    """ann gives the floor back and asks again at once; her release's two copies come after
    her new request: the home takes the request, not the late release (the floor stays hers,
    as her last input says), and counts both copies stale."""
    held: list[object] = []

    def fate(path: str, src: str, dest: str, msg: object) -> float | None:
        if isinstance(msg, wc.FloorInput) and msg.kind is wc.InputKind.RELEASE:
            held.append(msg)
            return 0.05
        return -1.0

    sim = _floor_sim(fate)
    ann = sim.clients["ann"]
    ann.request_floor("g", sim.now)
    sim.run_until(sim.now + 0.05)
    assert ann.participation("g") is Participation.HAS_PERMISSION
    ann.release_floor("g", sim.now)
    sim.run_until(sim.now + 0.005)  # the release reached A, which forwarded it (held back)
    assert len(held) == 1  # its bus copy leaves BUS_COPY_DELAY later (held back too)
    ann.request_floor("g", sim.now)
    sim.run_until(sim.now + 0.3)
    assert len(held) == 2
    assert sim.routing["C"].out_of_order["inputs stale"] == 2
    assert sim.cores["C"].floors.floor("g").holder == "ann"
    assert ann.participation("g") is Participation.HAS_PERMISSION
    assert sim.clients["bob"].groups["g"].talker == "ann"


def test_a_node_not_knowing_this_epoch_yet_gets_floor_messages_over_the_bus() -> None:
    sim = _floor_sim()
    sim.routing["A"].node_gone("C", sim.now)  # taken for dead: forgotten until it tells again
    plane, bus = len(sim.plane_log), len(sim.bus_log)
    sim.clients["ann"].request_floor("g", sim.now)
    sim.run_until(sim.now + 0.3)
    assert sim.clients["ann"].participation("g") is Participation.HAS_PERMISSION
    assert [(a, b) for a, b, x in _floor(sim.bus_log, bus) if isinstance(x, wc.FloorInput)] == [
        ("A", "C")]
    # C still knows A: its news go by the plane (and the bus)
    assert [(a, b) for a, b, x in _floor(sim.plane_log, plane)] == [("C", "A"), ("C", "B")]
    sim.clients["ann"].release_floor("g", sim.now)
    sim.run_until(sim.now + 2.5)  # C's periodic Peer: A learns it again, answers; settled
    assert sim.routing["A"].peers is not None and sim.routing["A"].peers.route("C")
    plane = len(sim.plane_log)
    sim.clients["ann"].request_floor("g", sim.now)
    sim.run_until(sim.now + 0.3)
    assert ("A", "C") in [(a, b) for a, b, x in _floor(sim.plane_log, plane)
                          if isinstance(x, wc.FloorInput)]


def test_a_node_that_forgot_another_asks_its_peer_and_takes_its_datagrams_again_at_once(
        ) -> None:
    """C (g's home) took A for dead a moment and forgot its epoch; A, alive, did not notice
    and sends ann's request by UDP. C refuses it, asks A for its Peer (three bus messages
    settle it), and ann's request sent again is granted within 0.5 s, not at A's next periodic
    Peer (up to 2 s of requests refused)."""
    sim = _floor_sim()
    c = sim.routing["C"].peers
    assert c is not None
    c.forget("A")
    mark = len(sim.bus_log)
    sim.clients["ann"].request_floor("g", sim.now)
    sim.run_until(sim.now + 0.5)
    assert sim.clients["ann"].participation("g") is Participation.HAS_PERMISSION
    assert [(a, b) for a, b, x in sim.sent_since(mark) if isinstance(x, wc.Peer)] == [
        ("C", "A"), ("A", "C"), ("C", "A")]
    assert c.refused["unknown"] == 1 and c.route("A") is not None


def test_the_plane_carries_floor_messages_alone() -> None:
    sim = _floor_sim()
    a = sim.routing["A"]
    with pytest.raises(ProtocolError, match="peer plane"):
        a.receive(wc.encode(wc.Presence("B", ("g",), (), False)), sim.now, plane=True)
    plane = _plane("a", 11)
    b = _plane("b", 22)
    _settle(plane, b)
    assert b.accept(plane.seal(FRAME, CONTROL), 0.0) is None  # a voice frame labelled control
    assert b.accept(plane.seal(b"", CONTROL), 0.0) is None
    assert b.refused["malformed"] == 2
    msg = wc.encode(wc.Presence("a", (), (), True))
    got = b.accept(plane.seal(msg, CONTROL), 0.0)
    assert got is not None and got.kind == CONTROL and got.frame == msg


def test_the_bus_copies_ride_on_a_turn_after_their_time_else_wake_the_loop_the_slack_later(
        ) -> None:
    """The news's bus copies wait BUS_COPY_DELAY; a turn of the home's node after that (its
    flush) sends them in passing, and its timer for them is TIMER_SLACK later still: a busy
    node's loop does not wake for them."""
    sim = _floor_sim()
    sim.clients["ann"].request_floor("g", sim.now)
    sim.run_until(sim.now + BUS_COPY_DELAY / 4)
    home = sim.routing["C"]
    due = home._copies_at
    assert due is not None
    assert home.get_timer() == pytest.approx(due + TIMER_SLACK)
    home.messages_to_send()
    home.flush(due - 0.001)  # a turn before their time: they wait
    assert not home.messages_to_send() and home._copies_at == due
    home.flush(due + 0.001)  # a turn after it: in passing
    copies = [(to, wc.decode(data)) for to, data in home.messages_to_send()]
    assert [(to, type(x)) for to, x in copies] == [("A", wc.FloorNews), ("B", wc.FloorNews)]
    assert home._copies_at is None
    assert home.get_timer() is None or home.get_timer() > due + TIMER_SLACK
