"""Random floor traffic against a model: three groups, six users, a virtual clock.

The machine drives a FloorSet with requests at random priorities, releases, voice frames (current
and stale bursts), time advances that fire every due timer at its deadline, lost sessions, members
leaving and joining. A small model, rebuilt only from the events the core emits plus the rules
themselves, predicts every answer and every deadline; the invariants compare both after each step.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from ptt.protocol.floor import (
    BURST_ID_MAX,
    BurstEnded,
    Denied,
    EndReason,
    FloorConfig,
    FloorEvent,
    FloorSet,
    FloorState,
    Granted,
    Idle,
    QueueChanged,
    Queued,
    Revoked,
)
from ptt.protocol.messages import DenyCause, Priority, RevokeCause

USERS = ("u0", "u1", "u2", "u3", "u4", "u5")
# group -> (config, first burst id, initial members: user -> listen_only)
GROUPS: dict[str, tuple[FloorConfig, int, dict[str, bool]]] = {
    "alpha": (
        FloorConfig(max_talk=4.0, silence=1.0, grace=0.5, start_window=2.0, queue_max=3),
        1,
        {"u0": False, "u1": False, "u2": False, "u3": True},
    ),
    "bravo": (  # no queue, no grace, burst ids about to wrap
        FloorConfig(max_talk=3.0, silence=1.5, grace=0.0, start_window=0.5, queue_max=0),
        BURST_ID_MAX - 2,
        {"u1": False, "u3": False, "u4": False, "u5": True},
    ),
    "charlie": (
        FloorConfig(max_talk=6.0, silence=0.7, grace=1.0, start_window=1.0, queue_max=1),
        100,
        {"u0": False, "u2": True, "u4": False, "u5": False},
    ),
}
EPS = 1e-9
RESULTS = (Granted, Queued, Denied)


@dataclass
class GroupModel:
    config: FloorConfig
    members: dict[str, bool]
    holder: str | None = None
    burst: int = 0
    priority: Priority = Priority.NORMAL
    granted_at: float = 0.0
    from_queue: bool = False
    last_voice: float | None = None
    revoked_at: float | None = None
    revoke_cause: RevokeCause | None = None
    queue: dict[str, tuple[Priority, int]] = field(default_factory=dict)  # user -> (prio, arrival)
    bursts: set[int] = field(default_factory=set)
    last_burst: int = 0

    def queue_order(self) -> tuple[str, ...]:
        return tuple(sorted(self.queue, key=lambda u: (-self.queue[u][0], self.queue[u][1])))

    def deadline(self) -> float | None:
        """When the holder loses the floor (or is revoked) unless something happens first."""
        if self.holder is None:
            return None
        c = self.config
        if self.revoked_at is not None:
            return self.revoked_at + c.grace
        first = max(c.start_window, c.silence) if self.from_queue else c.silence
        silent_at = self.granted_at + first
        if self.last_voice is not None:
            silent_at = max(silent_at, self.last_voice + c.silence)
        return min(silent_at, self.granted_at + c.max_talk)


class FloorMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.floors = FloorSet()
        self.models: dict[str, GroupModel] = {}
        self.now = 0.0
        self.arrivals = 0

    @initialize()
    def setup(self) -> None:
        for group, (config, first_burst_id, members) in GROUPS.items():
            self.floors.add_group(group, config, first_burst_id)
            for user, listen_only in members.items():
                self.floors.add_member(group, user, listen_only)
            self.models[group] = GroupModel(config, dict(members))

    # -- rules ----------------------------------------------------------------------------------

    @rule(
        group=st.sampled_from(sorted(GROUPS)),
        user=st.sampled_from(USERS),
        priority=st.sampled_from(Priority),
    )
    def request(self, group: str, user: str, priority: Priority) -> None:
        m = self.models[group]
        expected = self.expected_answer(group, user, priority)
        events = self.floors.request(group, user, priority, self.now)
        answers = [e for e in events if isinstance(e, RESULTS) and e.user == user]
        assert len(answers) == 1, events  # exactly one Granted, Queued or Denied
        (answer,) = answers
        if expected is None:  # a new burst
            max_talk = m.config.max_talk
            assert answer == Granted(group, user, answer.burst_id, priority, max_talk, False)
        elif isinstance(expected, Queued):
            old = m.queue.get(user)
            if old is None:
                self.arrivals += 1
                prio, arrival = priority, self.arrivals
            else:  # a raised priority keeps its arrival
                prio, arrival = max(old[0], priority), old[1]
            m.queue[user] = (prio, arrival)
            assert answer == Queued(group, user, m.queue_order().index(user) + 1)
            preempts = prio > m.priority and m.revoked_at is None
            assert any(isinstance(e, Revoked) for e in events) == preempts, events
        else:
            assert answer == expected, (answer, expected)
            if isinstance(answer, Granted):
                m.priority = answer.priority
        self.apply(events)

    @rule(
        group=st.sampled_from(sorted(GROUPS)),
        requests=st.lists(st.tuples(st.sampled_from(USERS), st.sampled_from(Priority)), max_size=6),
    )
    def rush(self, group: str, requests: list[tuple[str, Priority]]) -> None:
        """Several users key up at the same instant: queues fill, pre-emptions collide."""
        for user, priority in requests:
            self.request(group, user, priority)

    @rule(
        group=st.sampled_from(sorted(GROUPS)),
        who=st.sampled_from(["holder", "queued", *USERS]),
    )
    def release(self, group: str, who: str) -> None:
        m = self.models[group]
        queue = m.queue_order()
        user = {"holder": m.holder or "u0", "queued": queue[-1] if queue else "u0"}.get(who, who)
        events = self.floors.release(group, user, self.now)
        if user == m.holder:
            reason = {
                None: EndReason.RELEASED,
                RevokeCause.PREEMPTED: EndReason.PREEMPTED,
                RevokeCause.MAX_TALK_TIME: EndReason.MAX_TALK,
            }[m.revoke_cause]
            assert events[0] == BurstEnded(group, user, m.burst, reason)
        elif user in m.queue:
            del m.queue[user]
            assert events == [QueueChanged(group, m.queue_order())]
        else:
            assert events == []
        self.apply(events)

    @rule(
        group=st.sampled_from(sorted(GROUPS)),
        user=st.sampled_from(USERS),
        which=st.sampled_from(["current", "previous", "next"]),
    )
    def voice(self, group: str, user: str, which: str) -> None:
        m = self.models[group]
        burst = {"current": m.burst, "previous": m.last_burst, "next": m.burst + 1}[which]
        forwarded = self.floors.voice(group, user, burst, self.now)
        expected = user == m.holder and burst == m.burst
        assert forwarded == expected
        if forwarded:
            m.last_voice = self.now

    @rule(dt=st.one_of(st.sampled_from([0.0, 0.02, 0.1, 0.4, 0.8, 1.2]), st.floats(0.0, 8.0)))
    def advance(self, dt: float) -> None:
        self.advance_to(self.now + dt)

    @rule(group=st.sampled_from(sorted(GROUPS)), seconds=st.floats(0.0, 8.0))
    def talk(self, group: str, seconds: float) -> None:
        """The holder keeps talking (a frame every 0.3 s) while the clock runs."""
        end = self.now + seconds
        while self.now < end:
            m = self.models[group]
            if m.holder is not None:
                assert self.floors.voice(group, m.holder, m.burst, self.now)
                m.last_voice = self.now
            self.advance_to(min(end, self.now + 0.3))

    def advance_to(self, target: float) -> None:
        """Move the clock, firing every timer at its own deadline on the way."""
        while (deadline := self.floors.get_timer()) is not None and deadline <= target:
            assert deadline >= self.now - EPS, "a timer was left to expire in the past"
            self.now = deadline
            events = self.floors.handle_timer(deadline)
            assert events, "get_timer() announced a deadline where nothing was due"
            self.apply(events)
        self.now = target

    @rule(user=st.sampled_from(USERS))
    def disconnect(self, user: str) -> None:
        for group, m in self.models.items():
            if user in m.members:
                was_queued = m.queue.pop(user, None) is not None
                events = self.floors.participant_lost(group, user, self.now)
                if user == m.holder:
                    assert events[0] == BurstEnded(group, user, m.burst, EndReason.SESSION_LOST)
                elif was_queued:
                    assert events == [QueueChanged(group, m.queue_order())]
                self.apply(events)
                assert self.floors.floor(group).holder != user

    @rule(group=st.sampled_from(sorted(GROUPS)), user=st.sampled_from(USERS))
    def leave(self, group: str, user: str) -> None:
        m = self.models[group]
        if user not in m.members:
            return
        m.queue.pop(user, None)
        del m.members[user]
        events = self.floors.remove_member(group, user, self.now)
        if user == m.holder:
            assert events[0] == BurstEnded(group, user, m.burst, EndReason.REMOVED)
        self.apply(events)

    @rule(
        group=st.sampled_from(sorted(GROUPS)),
        user=st.sampled_from(USERS),
        listen_only=st.booleans(),
    )
    def join(self, group: str, user: str, listen_only: bool) -> None:
        m = self.models[group]
        if user in m.members:
            return
        self.floors.add_member(group, user, listen_only)
        m.members[user] = listen_only

    # -- the model ------------------------------------------------------------------------------

    def expected_answer(
        self, group: str, user: str, priority: Priority
    ) -> Granted | Queued | Denied | None:
        """What the rules answer; None stands for a new grant (the core picks its burst id) and
        the position of a Queued answer is left for the caller to work out."""
        m = self.models[group]
        if user not in m.members:
            return Denied(group, user, DenyCause.NOT_MEMBER)
        if m.members[user]:
            return Denied(group, user, DenyCause.LISTEN_ONLY)
        if m.holder is None:
            return None
        if m.holder == user:  # the same burst; a revoked holder's priority no longer moves
            prio = m.priority if m.revoked_at is not None else max(m.priority, priority)
            return Granted(group, user, m.burst, prio, m.config.max_talk, False)
        effective = max(priority, m.queue[user][0]) if user in m.queue else priority
        if user not in m.queue and effective <= m.priority:
            if m.config.queue_max == 0:
                return Denied(group, user, DenyCause.RETRY_LATER)
            if len(m.queue) >= m.config.queue_max:
                return Denied(group, user, DenyCause.QUEUE_FULL)
        return Queued(group, user, 0)

    def apply(self, events: list[FloorEvent]) -> None:
        """Replay the core's events on the model, checking each against the rules."""
        for i, event in enumerate(events):
            m = self.models[event.group]
            if isinstance(event, Granted):
                assert m.members.get(event.user) is False, f"grant to a non-talker: {event}"
                if event.user == m.holder and event.burst_id == m.burst:
                    continue  # a holder's repeated request
                assert m.holder is None, f"two holders: {m.holder} and {event.user}"
                assert event.burst_id not in m.bursts, f"burst id reused: {event}"
                assert 0 < event.burst_id <= BURST_ID_MAX
                if event.from_queue:
                    assert m.queue_order()[:1] == (event.user,), "not the head of the queue"
                    assert m.queue.pop(event.user)[0] == event.priority
                m.bursts.add(event.burst_id)
                m.holder, m.burst, m.priority = event.user, event.burst_id, event.priority
                m.granted_at, m.from_queue = self.now, event.from_queue
                m.last_voice = m.revoked_at = m.revoke_cause = None
            elif isinstance(event, Revoked):
                assert (event.user, event.burst_id) == (m.holder, m.burst) and m.revoked_at is None
                assert event.grace == m.config.grace
                if event.cause is RevokeCause.MAX_TALK_TIME:
                    assert abs(self.now - (m.granted_at + m.config.max_talk)) < EPS
                else:
                    assert event.cause is RevokeCause.PREEMPTED
                    assert max(p for p, _ in m.queue.values()) > m.priority
                m.revoked_at, m.revoke_cause = self.now, event.cause
            elif isinstance(event, BurstEnded):
                assert (event.user, event.burst_id) == (m.holder, m.burst)
                if event.reason in (EndReason.SILENCE, EndReason.NO_START):
                    deadline = m.deadline()
                    assert deadline is not None and abs(self.now - deadline) < EPS
                    assert (event.reason is EndReason.NO_START) == (
                        m.from_queue and m.last_voice is None
                    )
                assert isinstance(events[i + 1], Granted | Idle), "BurstEnded must be followed"
                m.last_burst, m.holder = m.burst, None
                m.revoked_at = m.revoke_cause = None
            elif isinstance(event, Idle):
                assert m.holder is None and event.burst_id == m.last_burst and not m.queue
                m.burst = 0
            elif isinstance(event, QueueChanged):
                assert event.queue == m.queue_order()
            else:
                assert isinstance(event, Queued | Denied)  # answers, checked by `request`

    # -- invariants -----------------------------------------------------------------------------

    @invariant()
    def floors_match_the_model(self) -> None:
        if not self.models:
            return
        earliest = None
        for group, m in self.models.items():
            floor = self.floors.floor(group)
            assert floor.holder == m.holder  # one attribute: at most one holder
            assert (floor.state is FloorState.IDLE) == (m.holder is None)
            assert (floor.state is FloorState.REVOKING) == (m.revoked_at is not None)
            assert floor.burst_id == m.burst
            assert floor.queue == m.queue_order()  # priority, then arrival
            assert dict(floor.members) == m.members
            if floor.state is FloorState.TAKEN:
                assert all(p <= m.priority for p, _ in m.queue.values())
            deadline = m.deadline()
            timer = floor.get_timer()
            if deadline is None:
                assert timer is None
            else:
                # a silent, revoked or vanished holder never keeps the floor past its deadline
                # (equal only right after a revoke with no grace: due at once, fired next advance)
                assert timer is not None and abs(timer - deadline) < EPS
                assert self.now <= deadline
                earliest = deadline if earliest is None else min(earliest, deadline)
        timer = self.floors.get_timer()
        assert (timer is None) == (earliest is None)
        assert timer is None or earliest is None or abs(timer - earliest) < EPS


TestFloorMachine = FloorMachine.TestCase
# about 10 s when it passes; a failure takes a minute or two more to shrink, hence the timeout
TestFloorMachine.settings = settings(max_examples=300, stateful_step_count=50, deadline=None)
TestFloorMachine.pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

