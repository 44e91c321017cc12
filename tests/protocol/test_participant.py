"""The floor participant's transition table, each move driven through a real ClientCore.

The client logs in to a real ServerCore over the in-memory net; from then on the test plays
the server itself: it takes what the client sends (opened with the server's side of the
session) and answers with sealed messages of its choosing, so each state and each event can
be reached exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from ptt.errors import FloorError, PttError
from ptt.protocol import messages as m
from ptt.protocol import participant
from ptt.protocol.client import ClientCore, FloorStateChanged
from ptt.protocol.messages import decode_message, encode_message
from ptt.protocol.participant import TRANSITIONS, FloorInput, Participation, next_state
from ptt.protocol.transactions import RETRY_TOTAL
from tests.protocol.simnet import SimNet

P = Participation
I = FloorInput  # noqa: E741 - the table's own shorthand
G = "g"


class Rig:
    """ann logged in and joined to ``g``; ``moves`` records every table lookup the core made."""

    def __init__(self, moves: list[tuple[P, I, P]]) -> None:
        self.net = SimNet(seed=11)
        self.ann: ClientCore = self.net.add_user("ann")
        self.net.add_group(G, ["ann"], 1)
        self.ann.connect(0.0)
        self.ann.join(G, 0.0)
        self.net.run_until(1.0)
        assert self.ann.groups[G].state is not None
        self.moves = moves
        self.burst = 0

    @property
    def now(self) -> float:
        return self.net.now

    def _channel(self):  # type: ignore[no-untyped-def]
        ch = self.net.server.sessions.by_id[self.ann.session_id].channel
        assert ch is not None
        return ch

    def sent(self) -> list[m.Message]:
        """What ann sent since the last look, opened as the server would (never delivered)."""
        ch = self._channel()
        return [decode_message(ch.open(d)) for d in self.ann.datagrams_to_send()]

    def push(self, msg: m.Message) -> None:
        self.ann.receive_datagram(self._channel().seal(encode_message(msg)), self.now)

    def state(self) -> P:
        return self.ann.participation(G)

    # --- ways into each state (the server's answers crafted, ann's requests kept here) ---

    def request(self, priority: m.Priority = m.Priority.NORMAL) -> int:
        self.ann.request_floor(G, self.now, priority)
        return next(x.txn for x in self.sent() if isinstance(x, m.FloorRequest))

    def release(self) -> int:
        self.ann.release_floor(G, self.now)
        return next(x.txn for x in self.sent() if isinstance(x, m.FloorRelease))

    def queued(self) -> None:
        self.push(m.FloorResponse(self.request(), G, m.FloorResult.QUEUED, position=1))
        assert self.state() is P.QUEUED

    def granted(self) -> None:
        self.burst += 7
        self.push(m.FloorResponse(self.request(), G, m.FloorResult.GRANTED, self.burst,
                                  max_talk_ms=30_000))
        assert self.state() is P.HAS_PERMISSION

    def into(self, state: P) -> None:
        if state is P.PENDING_REQUEST:
            self.request()
        elif state is P.QUEUED:
            self.queued()
        elif state is P.HAS_PERMISSION:
            self.granted()
        elif state is P.PENDING_RELEASE:
            self.granted()
            self.release()
        assert self.state() is state

    def relogin(self) -> None:
        """A new session on the same core (close, then connect again), through the real server."""
        self.ann.close(self.now)
        self.ann.datagrams_to_send()
        self.ann.connect(self.now)
        self.net.run_until(self.now + 1.0)

    def silent_until(self, t: float, heartbeats_answered: bool = False) -> None:
        """Time passes and nothing ann sends reaches the server; with ``heartbeats_answered``
        each heartbeat gets its answer (the session stays up), nothing else does."""
        steps = 0
        while self.now < t and steps < 10_000:
            steps += 1
            at = self.ann.get_timer()
            self.net.now = min(t, at if at is not None else t)
            self.ann.handle_timer(self.net.now)
            if not heartbeats_answered:
                self.ann.datagrams_to_send()
                continue
            for msg in self.sent():
                if isinstance(msg, m.Heartbeat):
                    self.push(m.HeartbeatAck(msg.txn, self.ann.groups[G].version))
        assert self.now >= t


# each scenario starts in the table's state and makes the table's event happen
Scenario = Callable[[Rig], None]


def _refused_with_a_request_open(state: P) -> Scenario:
    def run(r: Rig) -> None:
        if state is P.NO_PERMISSION:  # revoked while its release was on the way
            r.granted()
            txn = r.release()
            r.push(m.FloorRevoked(1, G, r.burst, m.RevokeCause.PREEMPTED, 0))
            assert r.state() is P.NO_PERMISSION
        elif state is P.PENDING_RELEASE:
            r.granted()
            txn = r.release()
        else:  # an emergency asked on top of an open request, answered with an error
            first = r.request()
            txn = r.request(m.Priority.EMERGENCY)
            if state is P.QUEUED:
                r.push(m.FloorResponse(first, G, m.FloorResult.QUEUED, position=1))
            elif state is P.HAS_PERMISSION:
                r.burst = 9
                r.push(m.FloorResponse(first, G, m.FloorResult.GRANTED, r.burst))
        assert r.state() is state
        r.moves.clear()
        r.push(m.Error(txn, m.ErrorCode.BAD_REQUEST, "no"))
    return run


def _session_lost(state: P) -> Scenario:
    def run(r: Rig) -> None:
        if state is P.PENDING_REQUEST:  # acknowledged, never decided, too old to carry over
            r.push(m.Ack(r.request(), r.ann.session_id))
            r.silent_until(r.now + RETRY_TOTAL + 0.5, heartbeats_answered=True)
        else:
            r.into(state)
        assert r.state() is state
        r.moves.clear()
        r.silent_until(r.now + r.ann.session_timeout + 0.5)
    return run


def _relogin(state: P) -> Scenario:
    def run(r: Rig) -> None:
        r.into(state)
        r.moves.clear()
        r.relogin()
    return run


def _from(state: P, then: Callable[[Rig], object]) -> Scenario:
    def run(r: Rig) -> None:
        r.into(state)
        r.moves.clear()
        then(r)
    return run


def _timeout(state: P) -> Scenario:
    def run(r: Rig) -> None:
        r.into(state)
        r.moves.clear()
        r.silent_until(r.now + RETRY_TOTAL + 0.01, heartbeats_answered=True)
    return run


SCENARIOS: dict[tuple[P, I], Scenario] = {
    **{(s, I.REQUEST): _from(s, lambda r: r.request(m.Priority.EMERGENCY)) for s in P},
    **{(s, I.RELEASE): _from(s, Rig.release) for s in P if s is not P.NO_PERMISSION},
    **{(s, I.REFUSED): _refused_with_a_request_open(s) for s in P},
    **{(s, I.SESSION_LOST): _session_lost(s) for s in P if s is not P.NO_PERMISSION},
    **{(s, I.RELOGIN): _relogin(s) for s in (P.QUEUED, P.HAS_PERMISSION, P.PENDING_RELEASE)},
    **{(s, I.TIMEOUT): _timeout(s) for s in (P.PENDING_REQUEST, P.PENDING_RELEASE)},
    (P.PENDING_REQUEST, I.GRANTED): lambda r: r.granted(),
    (P.QUEUED, I.GRANTED): _from(P.QUEUED, lambda r: r.push(
        m.FloorGranted(5, G, 21, 30_000, 1_000))),
    (P.PENDING_REQUEST, I.QUEUED): lambda r: r.queued(),
    (P.PENDING_REQUEST, I.DENIED): lambda r: r.push(m.FloorResponse(
        r.request(), G, m.FloorResult.DENIED, cause=m.DenyCause.QUEUE_FULL)),
    (P.QUEUED, I.QUEUE_MOVED): _from(P.QUEUED, lambda r: r.push(m.QueuePosition(G, 2))),
    (P.PENDING_RELEASE, I.RELEASED): lambda r: r.push(m.FloorReleased(
        (r.granted(), r.release())[1], G)),
    (P.HAS_PERMISSION, I.REVOKED): _from(P.HAS_PERMISSION, lambda r: r.push(
        m.FloorRevoked(5, G, r.burst, m.RevokeCause.PREEMPTED, 0))),
    (P.PENDING_RELEASE, I.REVOKED): _from(P.PENDING_RELEASE, lambda r: r.push(
        m.FloorRevoked(5, G, r.burst, m.RevokeCause.MAX_TALK_TIME, 0))),
    (P.HAS_PERMISSION, I.ENDED): _from(P.HAS_PERMISSION, lambda r: r.push(
        m.FloorIdle(G, r.burst))),
}


@pytest.fixture
def moves(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[P, I, P]]]:
    seen: list[tuple[P, I, P]] = []

    def recording(state: P, event: I) -> P:
        to = next_state(state, event)
        seen.append((state, event, to))
        return to

    monkeypatch.setattr("ptt.protocol.client.next_state", recording)
    yield seen


def test_every_move_in_the_table_has_a_scenario_and_nothing_else_does() -> None:
    table = {(s, e) for s, row in TRANSITIONS.items() for e in row}
    assert set(SCENARIOS) == table
    assert set(TRANSITIONS) == set(P)


@pytest.mark.parametrize("move", sorted(SCENARIOS, key=lambda k: (k[0].name, k[1].name)),
                         ids=lambda k: f"{k[0].name}-{k[1].name}")
def test_each_move_is_made_by_the_client_core(move: tuple[P, I],
                                              moves: list[tuple[P, I, P]]) -> None:
    state, event = move
    rig = Rig(moves)
    SCENARIOS[move](rig)
    to = TRANSITIONS[state][event]
    assert (state, event, to) in moves
    assert rig.state() is to
    changes = [e for e in rig.net.client_events["ann"] + rig.ann.events()
               if isinstance(e, FloorStateChanged)]
    assert changes and changes[-1].state is rig.state()


def test_a_move_the_table_does_not_have_raises_a_floor_error() -> None:
    with pytest.raises(FloorError) as err:
        next_state(P.NO_PERMISSION, I.GRANTED)
    assert isinstance(err.value, PttError)
    assert "NO_PERMISSION" in str(err.value) and "granted" in str(err.value)
    for state in P:
        for event in I:
            if event not in TRANSITIONS[state]:
                with pytest.raises(FloorError):
                    participant.next_state(state, event)


def test_the_client_core_changes_no_state_without_the_table() -> None:
    """A state the table forbids cannot be reached by driving the core wrongly: the core asks
    the table, and the table refuses."""
    rig = Rig([])
    rig.into(P.HAS_PERMISSION)
    g = rig.ann.groups[G]
    g.participation = P.NO_PERMISSION  # as if a bug had skipped a move
    with pytest.raises(FloorError):
        rig.ann._move(g, I.REVOKED)
