"""The media plane between cluster nodes (ptt.protocol.cluster_peers): the Peer exchange that
decides when voice goes by UDP, and which peer datagrams a node takes. Sans-I/O."""

from __future__ import annotations

import pytest

from ptt.errors import ProtocolError
from ptt.protocol.cluster_peers import WINDOW, PeerPlane
from ptt.wire import cluster as wc
from ptt.wire.peer import peer_key, seal
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
    got = b.accept(data)
    assert got is not None and got.node == "a" and got.frame == FRAME
    assert b.accept(data) is None  # the same datagram again
    assert b.refused["replayed"] == 1 and b.last_refusal == "replayed"
    assert b.accepted == 1


def test_reordered_datagrams_are_taken_within_the_window() -> None:
    a, b = _plane("a", 11), _plane("b", 22)
    _settle(a, b)
    sealed = [a.seal(FRAME) for _ in range(5)]
    for data in (sealed[0], sealed[3], sealed[1], sealed[4], sealed[2]):
        assert b.accept(data) is not None
    assert b.refused == {"forged": 0, "malformed": 0, "unknown": 0, "replayed": 0}
    old = a.seal(FRAME)
    for _ in range(WINDOW):
        a.seal(FRAME)
    assert b.accept(a.seal(FRAME)) is not None
    assert b.accept(old) is None and b.refused["replayed"] == 1  # too old to tell: refused


def test_a_forged_datagram_is_refused_and_counted_and_moves_nothing() -> None:
    a, b = _plane("a", 11), _plane("b", 22)
    _settle(a, b)
    # right layout, a's name and epoch and the next counter, but not the cluster's key
    forged = seal(peer_key(b"guessed"), "a", 11, 1, FRAME)
    assert b.accept(forged) is None
    assert b.refused["forged"] == 1 and b.last_refusal == "forged"
    assert b.accept(a.seal(FRAME)) is not None  # counter 1 still free: the forgery spent nothing


def test_an_earlier_life_of_a_node_and_an_unknown_node_are_refused() -> None:
    a, b = _plane("a", 11), _plane("b", 22)
    _settle(a, b)
    recorded = a.seal(FRAME)
    a2 = _plane("a", 12)  # a restarted: a new epoch
    assert b.on_peer(a2.hello("b")) is True  # a new life: answered
    assert b.accept(recorded) is None and b.refused["unknown"] == 1
    assert b.accept(seal(KEY, "z", 5, 1, FRAME)) is None and b.refused["unknown"] == 2
    # and b sends to the new life only once it said it knows b: until then, the bus
    assert b.route("a") is None


def test_a_payload_that_is_not_a_voice_frame_is_malformed() -> None:
    a, b = _plane("a", 11), _plane("b", 22)
    _settle(a, b)
    assert b.accept(a.seal(b"\x91\x01 not voice")) is None
    assert b.accept(b"P\x01junk") is None
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
