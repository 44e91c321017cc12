"""One test per floor rule, on a single Floor and on a FloorSet, with a hand-driven clock."""

from __future__ import annotations

import random
from collections.abc import Iterable

import pytest

from ptt.errors import FloorError
from ptt.protocol.floor import (
    BURST_ID_MAX,
    EMERGENCY_ROLES,
    HIGH_ROLES,
    BurstEnded,
    Denied,
    EndReason,
    Floor,
    FloorConfig,
    FloorSet,
    FloorSnapshot,
    FloorState,
    Granted,
    Idle,
    QueueChanged,
    Queued,
    Revoked,
    RolePolicy,
)
from ptt.protocol.messages import DenyCause, Priority, RevokeCause, Role

G = "ops"
N, H, E = Priority.NORMAL, Priority.HIGH, Priority.EMERGENCY
CFG = FloorConfig(max_talk=30.0, silence=1.5, grace=0.5, start_window=2.0, queue_max=16)


def make_floor(
    members: str = "abcde",
    listen_only: str = "",
    config: FloorConfig = CFG,
    first_burst_id: int = 1,
) -> Floor:
    floor = Floor(G, config, first_burst_id)
    for user in members:
        floor.add_member(user)
    for user in listen_only:
        floor.add_member(user, listen_only=True)
    return floor


def granted(user: str, burst: int, prio: Priority = N, from_queue: bool = False) -> Granted:
    return Granted(G, user, burst, prio, CFG.max_talk, from_queue)


def ended(user: str, burst: int, reason: EndReason) -> BurstEnded:
    return BurstEnded(G, user, burst, reason)


def queue_changed(*users: str) -> QueueChanged:
    return QueueChanged(G, users)


# --- configuration and local misuse ------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_talk": 0},
        {"silence": -1},
        {"silence": float("nan")},
        {"grace": -0.1},
        {"start_window": -1},
        {"queue_max": -1},
    ],
)
def test_invalid_config_is_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(FloorError):
        FloorConfig(**kwargs)  # type: ignore[arg-type]


def test_local_misuse_raises_floor_error() -> None:
    floor = make_floor("a")
    floor.add_member("a")  # again, as it is: nothing changes
    with pytest.raises(FloorError):
        floor.add_member("a", listen_only=True)  # a change goes through remove_member
    with pytest.raises(FloorError):
        floor.remove_member("zed", 0.0)
    with pytest.raises(FloorError):
        floor.participant_lost("zed", 0.0)
    with pytest.raises(FloorError):
        floor.request("a", 7, 0.0)  # type: ignore[arg-type]
    for bad in (0, BURST_ID_MAX + 1):
        with pytest.raises(FloorError):
            Floor(G, CFG, first_burst_id=bad)


# --- requests ----------------------------------------------------------------------------------


def test_request_when_idle_is_granted() -> None:
    floor = make_floor()
    assert floor.state is FloorState.IDLE and floor.holder is None and floor.burst_id == 0
    assert floor.request("a", N, 0.0) == [granted("a", 1)]
    assert floor.snapshot() == FloorSnapshot(G, FloorState.TAKEN, "a", 1, N, (), 1.5)


def test_non_member_and_listen_only_are_denied() -> None:
    floor = make_floor("a", listen_only="l")
    assert floor.request("x", E, 0.0) == [Denied(G, "x", DenyCause.NOT_MEMBER)]
    assert floor.request("l", E, 0.0) == [Denied(G, "l", DenyCause.LISTEN_ONLY)]
    assert floor.state is FloorState.IDLE
    floor.request("a", N, 0.0)
    assert floor.request("l", E, 0.1) == [Denied(G, "l", DenyCause.LISTEN_ONLY)]
    assert floor.holder == "a" and floor.queue == ()
    assert dict(floor.members) == {"a": False, "l": True}


def test_holder_request_again_is_the_same_grant() -> None:
    floor = make_floor()
    floor.request("a", N, 0.0)
    assert floor.request("a", N, 1.0) == [granted("a", 1)]
    assert floor.request("a", H, 1.0) == [granted("a", 1, H)]  # priority may rise
    assert floor.request("a", N, 1.0) == [granted("a", 1, H)]  # never falls
    assert floor.request("b", H, 1.1) == [Queued(G, "b", 1), queue_changed("b")]  # no pre-emption
    assert floor.state is FloorState.TAKEN


def test_queue_order_is_priority_then_arrival() -> None:
    floor = make_floor("abcdef")
    floor.request("a", E, 0.0)
    assert floor.request("b", N, 0.1) == [Queued(G, "b", 1), queue_changed("b")]
    assert floor.request("c", H, 0.2) == [Queued(G, "c", 1), queue_changed("c", "b")]
    assert floor.request("d", N, 0.3) == [Queued(G, "d", 3), queue_changed("c", "b", "d")]
    assert floor.request("e", E, 0.4) == [Queued(G, "e", 1), queue_changed("e", "c", "b", "d")]
    assert floor.request("f", H, 0.5) == [Queued(G, "f", 3), queue_changed("e", "c", "f", "b", "d")]
    assert floor.queue == ("e", "c", "f", "b", "d")


def test_queued_request_again_keeps_or_raises_its_place() -> None:
    floor = make_floor()
    floor.request("a", E, 0.0)
    for user in "bcd":
        floor.request(user, N, 0.1)
    assert floor.request("c", N, 0.2) == [Queued(G, "c", 2)]  # no change, no QueueChanged
    assert floor.request("d", H, 0.3) == [Queued(G, "d", 1), queue_changed("d", "b", "c")]
    assert floor.request("d", N, 0.4) == [Queued(G, "d", 1)]  # a lower priority does not demote
    assert floor.request("b", H, 0.5) == [Queued(G, "b", 1), queue_changed("b", "d", "c")]
    assert floor.state is FloorState.TAKEN  # none of these out-ranks the holder


def test_full_queue_denies_queue_full() -> None:
    floor = make_floor(config=FloorConfig(queue_max=2))
    floor.request("a", N, 0.0)
    floor.request("b", N, 0.1)
    floor.request("c", N, 0.2)
    assert floor.request("d", N, 0.3) == [Denied(G, "d", DenyCause.QUEUE_FULL)]
    assert floor.request("b", N, 0.4) == [Queued(G, "b", 1)]  # already queued: still answered
    assert floor.queue == ("b", "c")


def test_queueing_disabled_denies_retry_later() -> None:
    floor = make_floor(config=FloorConfig(queue_max=0))
    floor.request("a", H, 0.0)
    assert floor.request("b", H, 0.1) == [Denied(G, "b", DenyCause.RETRY_LATER)]
    assert floor.queue == ()


# --- pre-emption -------------------------------------------------------------------------------


def test_preemption_revokes_then_grants_after_grace() -> None:
    floor = make_floor()
    floor.request("a", N, 0.0)
    floor.request("b", N, 0.1)
    assert floor.request("c", H, 1.0) == [
        Revoked(G, "a", 1, RevokeCause.PREEMPTED, CFG.grace),
        Queued(G, "c", 1),
        queue_changed("c", "b"),
    ]
    assert floor.state is FloorState.REVOKING and floor.get_timer() == 1.5
    assert floor.voice("a", 1, 1.2)  # still forwarded inside the grace
    assert floor.handle_timer(1.49) == []
    assert floor.handle_timer(1.5) == [
        ended("a", 1, EndReason.PREEMPTED),
        granted("c", 2, H, from_queue=True),
        queue_changed("b"),
    ]
    assert not floor.voice("a", 1, 1.6)
    assert floor.holder == "c" and floor.holder_priority is H


def test_preempted_holder_releasing_early_hands_over_at_once() -> None:
    floor = make_floor()
    floor.request("a", N, 0.0)
    floor.request("c", E, 1.0)
    assert floor.release("a", 1.1) == [
        ended("a", 1, EndReason.PREEMPTED),
        granted("c", 2, E, from_queue=True),
        queue_changed(),
    ]
    assert floor.get_timer() == 1.1 + 2.0  # c's start window, not a's grace


def test_preemption_gets_through_a_full_or_disabled_queue() -> None:
    for queue_max in (0, 1):
        floor = make_floor(config=FloorConfig(queue_max=queue_max))
        floor.request("a", N, 0.0)
        floor.request("b", N, 0.1)
        events = floor.request("c", E, 0.2)
        assert Queued(G, "c", 1) in events and floor.state is FloorState.REVOKING


def test_revoked_holder_asking_again_keeps_burst_and_priority() -> None:
    floor = make_floor()
    floor.request("a", N, 0.0)
    floor.request("b", H, 0.1)
    assert floor.request("a", E, 0.2) == [granted("a", 1)]  # revoked: no priority rise
    assert floor.state is FloorState.REVOKING and floor.get_timer() == pytest.approx(0.6)


def test_second_preemption_while_revoking_only_queues() -> None:
    floor = make_floor()
    floor.request("a", N, 0.0)
    floor.request("b", H, 1.0)
    assert floor.request("c", E, 1.2) == [Queued(G, "c", 1), queue_changed("c", "b")]
    assert floor.get_timer() == 1.5  # the first grace stands
    assert floor.handle_timer(1.5)[:2] == [
        ended("a", 1, EndReason.PREEMPTED),
        granted("c", 2, E, from_queue=True),
    ]


def test_queued_user_raising_above_the_holder_preempts() -> None:
    floor = make_floor()
    floor.request("a", H, 0.0)
    floor.request("b", N, 0.1)
    floor.request("c", N, 0.2)
    assert floor.request("c", E, 0.3) == [
        Revoked(G, "a", 1, RevokeCause.PREEMPTED, CFG.grace),
        Queued(G, "c", 1),
        queue_changed("c", "b"),
    ]


# --- timers ------------------------------------------------------------------------------------


def talk(floor: Floor, user: str, burst: int, start: float, end: float, step: float = 0.02) -> None:
    t = start
    while t <= end:
        floor.voice(user, burst, t)
        assert floor.handle_timer(t) == [] or floor.state is not FloorState.TAKEN
        t += step


def test_max_talk_revokes_then_ends_after_grace() -> None:
    floor = make_floor()
    floor.request("a", N, 0.0)
    talk(floor, "a", 1, 0.0, 29.9)
    assert floor.get_timer() == 30.0
    assert floor.handle_timer(30.0) == [Revoked(G, "a", 1, RevokeCause.MAX_TALK_TIME, CFG.grace)]
    assert floor.voice("a", 1, 30.2)
    assert floor.handle_timer(30.5) == [ended("a", 1, EndReason.MAX_TALK), Idle(G, 1)]
    assert floor.state is FloorState.IDLE and floor.burst_id == 0


def test_max_talk_then_next_in_queue_and_release_in_grace() -> None:
    floor = make_floor()
    floor.request("a", N, 0.0)
    floor.request("b", N, 0.1)
    talk(floor, "a", 1, 0.0, 29.9)
    floor.handle_timer(30.0)
    assert floor.release("a", 30.1) == [
        ended("a", 1, EndReason.MAX_TALK),
        granted("b", 2, from_queue=True),
        queue_changed(),
    ]


def test_late_timer_call_fires_every_due_deadline_as_of_its_time() -> None:
    floor = make_floor()
    floor.request("a", N, 0.0)
    floor.request("b", N, 0.0)
    talk(floor, "a", 1, 0.0, 29.9)
    assert floor.handle_timer(40.0) == [
        Revoked(G, "a", 1, RevokeCause.MAX_TALK_TIME, CFG.grace),
        ended("a", 1, EndReason.MAX_TALK),  # at 30.5
        granted("b", 2, from_queue=True),
        queue_changed(),
        ended("b", 2, EndReason.NO_START),  # at 30.5 + 2.0
        Idle(G, 2),
    ]


def test_silence_ends_the_burst_t1_after_the_last_voice() -> None:
    floor = make_floor()
    floor.request("a", N, 0.0)
    assert floor.get_timer() == 1.5
    assert floor.voice("a", 1, 1.0)
    assert floor.get_timer() == 2.5
    assert floor.handle_timer(2.49) == []
    assert floor.handle_timer(2.5) == [ended("a", 1, EndReason.SILENCE), Idle(G, 1)]


def test_direct_grant_never_spoken_ends_by_silence() -> None:
    floor = make_floor()
    floor.request("a", N, 0.0)
    assert floor.handle_timer(1.5) == [ended("a", 1, EndReason.SILENCE), Idle(G, 1)]


def test_grant_from_queue_has_a_start_window() -> None:
    floor = make_floor()
    floor.request("a", N, 0.0)
    floor.request("b", N, 0.0)
    floor.release("a", 1.0)
    assert floor.get_timer() == 3.0  # 1.0 + max(start_window 2.0, silence 1.5)
    assert floor.handle_timer(3.0) == [ended("b", 2, EndReason.NO_START), Idle(G, 2)]


def test_grant_from_queue_that_started_then_fell_silent() -> None:
    floor = make_floor()
    floor.request("a", N, 0.0)
    floor.request("b", N, 0.0)
    floor.release("a", 1.0)
    floor.voice("b", 2, 1.1)
    assert floor.get_timer() == 3.0  # the start window still covers 1.1 + 1.5
    floor.voice("b", 2, 2.0)
    assert floor.get_timer() == 3.5
    assert floor.handle_timer(3.5) == [ended("b", 2, EndReason.SILENCE), Idle(G, 2)]


def test_start_window_shorter_than_silence_uses_silence() -> None:
    floor = make_floor(config=FloorConfig(silence=1.5, start_window=0.2))
    floor.request("a", N, 0.0)
    floor.request("b", N, 0.0)
    floor.release("a", 1.0)
    assert floor.get_timer() == 2.5


def test_silence_before_max_talk_wins_a_tie() -> None:
    floor = make_floor(config=FloorConfig(max_talk=3.0, silence=1.5))
    floor.request("a", N, 0.0)
    floor.voice("a", 1, 1.5)
    assert floor.handle_timer(3.0) == [ended("a", 1, EndReason.SILENCE), Idle(G, 1)]


# --- release, leave, loss ----------------------------------------------------------------------


def test_release_by_holder_goes_idle_or_to_the_next() -> None:
    floor = make_floor()
    floor.request("a", N, 0.0)
    assert floor.release("a", 1.0) == [ended("a", 1, EndReason.RELEASED), Idle(G, 1)]
    assert floor.get_timer() is None
    floor.request("a", N, 2.0)
    floor.request("b", N, 2.1)
    floor.request("c", N, 2.2)
    assert floor.release("a", 3.0) == [
        ended("a", 2, EndReason.RELEASED),
        granted("b", 3, from_queue=True),
        queue_changed("c"),
    ]


def test_release_by_queued_user_withdraws_and_others_are_ignored() -> None:
    floor = make_floor(listen_only="l")
    floor.request("a", N, 0.0)
    floor.request("b", N, 0.1)
    floor.request("c", N, 0.2)
    assert floor.release("b", 0.3) == [queue_changed("c")]
    assert floor.release("b", 0.4) == []
    assert floor.release("d", 0.4) == []
    assert floor.release("l", 0.4) == []
    assert floor.release("stranger", 0.4) == []
    assert floor.holder == "a" and floor.queue == ("c",)


def test_removed_holder_ends_the_burst_and_is_no_longer_a_member() -> None:
    floor = make_floor()
    floor.request("a", N, 0.0)
    floor.request("b", N, 0.1)
    assert floor.remove_member("a", 0.5) == [
        ended("a", 1, EndReason.REMOVED),
        granted("b", 2, from_queue=True),
        queue_changed(),
    ]
    assert floor.request("a", N, 0.6) == [Denied(G, "a", DenyCause.NOT_MEMBER)]


def test_removed_or_lost_queued_user_is_dequeued() -> None:
    floor = make_floor()
    floor.request("a", N, 0.0)
    floor.request("b", N, 0.1)
    floor.request("c", N, 0.2)
    assert floor.participant_lost("b", 0.3) == [queue_changed("c")]
    assert floor.remove_member("c", 0.4) == [queue_changed()]
    assert floor.remove_member("d", 0.5) == []  # neither holder nor queued
    assert floor.holder == "a"


def test_lost_holder_ends_the_burst_but_stays_member() -> None:
    floor = make_floor()
    floor.request("a", N, 0.0)
    assert floor.participant_lost("a", 0.5) == [ended("a", 1, EndReason.SESSION_LOST), Idle(G, 1)]
    assert floor.request("a", N, 0.6) == [granted("a", 2)]


def test_lost_holder_while_revoking_hands_over_at_once() -> None:
    floor = make_floor()
    floor.request("a", N, 0.0)
    floor.request("b", E, 0.1)
    assert floor.participant_lost("a", 0.2) == [
        ended("a", 1, EndReason.SESSION_LOST),
        granted("b", 2, E, from_queue=True),
        queue_changed(),
    ]


def test_close_empties_queue_and_ends_the_burst() -> None:
    floor = make_floor()
    floor.request("a", N, 0.0)
    floor.request("b", N, 0.1)
    assert floor.close(1.0) == [queue_changed(), ended("a", 1, EndReason.REMOVED), Idle(G, 1)]
    assert floor.close(1.0) == []


# --- voice and burst ids -----------------------------------------------------------------------


def test_voice_is_forwarded_only_for_the_holder_and_current_burst() -> None:
    floor = make_floor(listen_only="l")
    assert not floor.voice("a", 0, 0.0)
    floor.request("a", N, 0.0)
    assert floor.voice("a", 1, 0.1)
    assert not floor.voice("a", 2, 0.1)
    assert not floor.voice("b", 1, 0.1)
    assert not floor.voice("l", 1, 0.1)
    floor.release("a", 0.2)
    assert not floor.voice("a", 1, 0.3)


def test_burst_ids_are_unique_and_increasing() -> None:
    floor = make_floor()
    seen = []
    for i in range(50):
        now = float(i)
        (grant,) = floor.request("abcde"[i % 5], N, now)
        assert isinstance(grant, Granted)
        seen.append(grant.burst_id)
        floor.release(grant.user, now + 0.5)
    assert seen == list(range(1, 51))


def test_burst_ids_wrap_within_32_bits_skipping_zero() -> None:
    floor = make_floor(first_burst_id=BURST_ID_MAX - 1)
    ids = []
    for i in range(4):
        (grant,) = floor.request("a", N, float(i))
        assert isinstance(grant, Granted)
        ids.append(grant.burst_id)
        floor.release("a", i + 0.5)
    assert ids == [BURST_ID_MAX - 1, BURST_ID_MAX, 1, 2]


# --- many groups -------------------------------------------------------------------------------


def make_set(groups: Iterable[str] = "xyz", members: str = "abc") -> FloorSet:
    floors = FloorSet()
    for group in groups:
        floors.add_group(group, CFG)
        for user in members:
            floors.add_member(group, user)
    return floors


def test_floor_set_fires_timers_across_groups_in_deadline_order() -> None:
    floors = make_set()
    assert floors.get_timer() is None
    floors.request("x", "a", N, 0.0)  # silence at 1.5
    floors.request("y", "a", N, 0.5)  # silence at 2.0
    floors.request("z", "a", N, 0.2)  # silence at 1.7
    assert floors.get_timer() == 1.5
    assert floors.voice("x", "a", 1, 1.0)  # x now at 2.5
    assert floors.get_timer() == 1.7
    assert floors.handle_timer(2.2) == [
        BurstEnded("z", "a", 1, EndReason.SILENCE),
        Idle("z", 1),
        BurstEnded("y", "a", 1, EndReason.SILENCE),
        Idle("y", 1),
    ]
    assert floors.get_timer() == 2.5
    assert floors.handle_timer(2.5) == [BurstEnded("x", "a", 1, EndReason.SILENCE), Idle("x", 1)]
    assert floors.get_timer() is None


def test_floor_set_timer_follows_revokes_and_releases() -> None:
    floors = make_set()
    floors.request("x", "a", N, 0.0)
    floors.request("x", "b", E, 0.1)  # grace: 0.6, earlier than a's silence at 1.5
    assert floors.get_timer() == pytest.approx(0.6)
    events = floors.handle_timer(0.6)
    assert events[:2] == [
        BurstEnded("x", "a", 1, EndReason.PREEMPTED),
        Granted("x", "b", 2, E, CFG.max_talk, True),
    ]
    assert floors.get_timer() == pytest.approx(2.6)  # b's start window
    floors.release("x", "b", 1.0)
    assert floors.get_timer() is None


def test_floor_set_passes_inputs_through() -> None:
    floors = make_set()
    floors.add_member("x", "l", listen_only=True)
    assert floors.request("x", "l", N, 0.0) == [Denied("x", "l", DenyCause.LISTEN_ONLY)]
    floors.request("x", "a", N, 0.0)
    floors.request("x", "b", N, 0.0)
    assert floors.participant_lost("x", "b", 0.1) == [QueueChanged("x", ())]
    assert floors.remove_member("x", "a", 0.2) == [
        BurstEnded("x", "a", 1, EndReason.REMOVED),
        Idle("x", 1),
    ]
    assert floors.floor("x").members.keys() == {"b", "c", "l"}


def test_floor_set_groups_and_misuse() -> None:
    floors = make_set("xy")
    assert floors.groups == ("x", "y") and len(floors) == 2 and "x" in floors
    with pytest.raises(FloorError):
        floors.add_group("x")
    for call in (
        lambda: floors.floor("nope"),
        lambda: floors.request("nope", "a", N, 0.0),
        lambda: floors.voice("nope", "a", 1, 0.0),
        lambda: floors.remove_group("nope", 0.0),
    ):
        with pytest.raises(FloorError):
            call()


def test_configure_a_live_group_reschedules_its_timer() -> None:
    floors = make_set("xyz")
    floors.request("y", "a", N, 0.0)
    floors.voice("y", "a", 1, 1.4)  # silence at 2.9
    floors.request("z", "a", N, 1.0)  # silence at 2.5
    assert floors.get_timer() == 2.5
    floors.configure("y", FloorConfig(silence=0.5))  # the grant's window stands: max(1.5, 1.9)
    assert floors.get_timer() == 1.9
    assert floors.handle_timer(1.9) == [BurstEnded("y", "a", 1, EndReason.SILENCE), Idle("y", 1)]


def test_remove_group_ends_its_burst_and_forgets_its_timer() -> None:
    floors = make_set("xy")
    floors.request("x", "a", N, 0.0)
    floors.request("x", "b", N, 0.0)
    floors.request("y", "a", N, 1.0)
    assert floors.remove_group("x", 0.5) == [
        QueueChanged("x", ()),
        BurstEnded("x", "a", 1, EndReason.REMOVED),
        Idle("x", 1),
    ]
    assert "x" not in floors
    assert floors.get_timer() == 2.5
    floors.add_group("x")  # a new group of the same name starts afresh
    assert floors.floor("x").state is FloorState.IDLE


def test_floor_set_timer_is_exact_and_heap_small_under_churn() -> None:
    rng = random.Random(7)
    floors = make_set(groups=[f"g{i}" for i in range(20)], members="abcd")
    now, biggest = 0.0, 0
    for _ in range(20_000):
        group, user, op = rng.choice(floors.groups), rng.choice("abcd"), rng.random()
        if op < 0.3:
            floors.request(group, user, rng.choice(list(Priority)), now)
        elif op < 0.4:
            floors.release(group, user, now)
        else:
            floor = floors.floor(group)
            if floor.holder is not None:
                floors.voice(group, floor.holder, floor.burst_id, now)
        now += rng.choice((0.0, 0.001, 0.05))
        deadlines = [d for g in floors.groups if (d := floors.floor(g).get_timer()) is not None]
        assert floors.get_timer() == min(deadlines, default=None)
        while (deadline := floors.get_timer()) is not None and deadline <= now:
            assert floors.handle_timer(deadline)
        biggest = max(biggest, len(floors._heap))
    assert biggest <= 2 * len(floors)  # dead entries do not pile up


# --- roles and stale releases: rules of the floor module, applied by the server --------------


@pytest.mark.parametrize(("role", "asked", "counts"), [
    (Role.VOLUNTEER, N, N),
    (Role.VOLUNTEER, H, None),  # HIGH is for dispatchers and coordinators
    (Role.VOLUNTEER, E, E),  # a volunteer in trouble must be able to call
    (Role.DISPATCHER, N, H),  # their NORMAL counts as HIGH
    (Role.DISPATCHER, H, H),
    (Role.COORDINATOR, N, H),
    (Role.COORDINATOR, E, E),
])
def test_role_policy_gives_each_role_its_priorities(role: Role, asked: Priority,
                                                    counts: Priority | None) -> None:
    assert RolePolicy().priority(role, asked) == counts


def test_role_policy_takes_the_configured_emergency_roles() -> None:
    policy = RolePolicy(emergency_roles=frozenset({Role.COORDINATOR}))
    assert policy.priority(Role.VOLUNTEER, E) is None
    assert policy.priority(Role.DISPATCHER, E) is None
    assert policy.priority(Role.COORDINATOR, E) == E
    assert RolePolicy().emergency_roles == EMERGENCY_ROLES and Role.VOLUNTEER in EMERGENCY_ROLES
    assert HIGH_ROLES == {Role.DISPATCHER, Role.COORDINATOR}


def test_a_release_naming_an_older_burst_ends_nothing() -> None:
    """A give-back for an older grant (resent) must not end the holder's current burst."""
    f = make_floor()
    first = f.request("a", N, 0.0)[0]
    assert isinstance(first, Granted)
    f.release("a", 0.1, first.burst_id)
    second = f.request("a", N, 0.2)[0]
    assert isinstance(second, Granted) and second.burst_id != first.burst_id
    assert f.release("a", 0.3, first.burst_id) == []
    assert f.holder == "a" and f.burst_id == second.burst_id
    ended = f.release("a", 0.4, second.burst_id)
    assert ended == [BurstEnded(G, "a", second.burst_id, EndReason.RELEASED),
                     Idle(G, second.burst_id)]


def test_a_queued_release_naming_a_burst_still_withdraws() -> None:
    f = make_floor()
    f.request("a", N, 0.0)
    f.request("b", N, 0.1)
    assert f.release("b", 0.2, 12345) == [QueueChanged(G, ())]
    s = FloorSet()
    s.add_group(G, CFG)
    for u in "ab":
        s.add_member(G, u)
    granted = s.request(G, "a", N, 0.0)[0]
    assert isinstance(granted, Granted)
    assert s.release(G, "a", 0.1, granted.burst_id + 1) == []
    assert s.floor(G).holder == "a"
    assert s.release(G, "a", 0.2, granted.burst_id)[0] == BurstEnded(
        G, "a", granted.burst_id, EndReason.RELEASED)
