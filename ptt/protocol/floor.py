"""Floor arbitration: who may talk in a group, one talker at a time. Sans-I/O.

Every rule that decides the floor lives in this module, the way h11 keeps its whole state machine
in ``_state.py``. A :class:`Floor` is one group's floor; a :class:`FloorSet` holds many and merges
their timers into one heap. Nothing here reads a clock, sleeps or touches a socket: every input
carries ``now`` (seconds on any monotonic clock) and returns the events the I/O layer must
announce; timers are deadlines, read with ``get_timer()`` and fired with ``handle_timer(now)`` as in
aioquic. Fire due timers before feeding later input: the core trusts ``now`` and never catches up
on its own.

One group's floor (T1 = ``silence``, T2 = ``max_talk``, "held" = TAKEN or REVOKING)::

    state      input                            outcome
    ---------  -------------------------------  -----------------------------------------------
    any        request by a non-member          Denied NOT_MEMBER
    any        request by a listen-only member  Denied LISTEN_ONLY
    any        request of a priority its role   Denied NOT_ALLOWED (RolePolicy, checked before
               may not ask for                  the request reaches the floor)
    IDLE       request                          Granted, new burst id                -> TAKEN
    held       request by the holder            Granted again, same burst id
    held       request, priority <= holder's    Queued(position); Denied QUEUE_FULL when full,
                                                RETRY_LATER when queue_max is 0
    TAKEN      request, priority > holder's     Revoked(PREEMPTED) to the holder,
                                                Queued(1) to the requester           -> REVOKING
    REVOKING   request, priority > holder's     Queued by priority (already revoked)
    TAKEN      release by the holder            BurstEnded(RELEASED)                 -> next
    held       release by the holder naming     nothing: a give-back for an older grant (resent)
               another burst                    must not end the current burst
    TAKEN      T1 without voice from holder     BurstEnded(SILENCE | NO_START)       -> next
    TAKEN      grant + T2                       Revoked(MAX_TALK_TIME)               -> REVOKING
    REVOKING   grace over, or holder releases   BurstEnded(PREEMPTED | MAX_TALK)     -> next
    held       holder lost / removed            BurstEnded(SESSION_LOST | REMOVED)   -> next
    any        queued user releases, is lost    dequeued, QueueChanged
               or removed

    next: the head of the queue is Granted(from_queue=True) and must start talking within
          max(start_window, silence), else NO_START                     -> TAKEN
          or, with an empty queue, Idle                                 -> IDLE

Roles (:class:`RolePolicy`): HIGH only for ``high_roles``, whose NORMAL requests count as HIGH;
EMERGENCY only for ``emergency_roles`` (``ServerCoreConfig.emergency_roles``). The floor itself
knows users, not roles: the server asks the policy for the priority a request counts with, then
feeds the floor that priority.

The queue is ordered by priority, then arrival. A pre-empting request always gets a place, even in
a full queue or with queueing disabled: an emergency call is never told to retry later. Every
``BurstEnded`` is followed by ``Granted`` (the next talker) or ``Idle``. A ``Granted`` that repeats
the current burst id answers a holder's repeated request; it starts nothing new.
"""

from __future__ import annotations

import heapq
from bisect import insort
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from types import MappingProxyType

from ptt.errors import FloorError
from ptt.protocol.messages import DenyCause, Priority, RevokeCause, Role

__all__ = [
    "BURST_ID_MAX",
    "EMERGENCY_ROLES",
    "HIGH_ROLES",
    "BurstEnded",
    "Denied",
    "EndReason",
    "Floor",
    "FloorConfig",
    "FloorEvent",
    "FloorSet",
    "FloorSnapshot",
    "FloorState",
    "Granted",
    "Idle",
    "QueueChanged",
    "Queued",
    "Revoked",
    "RolePolicy",
]

BURST_ID_MAX = 0xFFFF_FFFF  # burst ids are u32 on the wire; 0 means "no burst"
_NEVER = float("-inf")  # last voice of a holder who has not spoken yet
# who may ask for emergency priority unless configured otherwise: a volunteer in trouble must be
# able to call (ServerCoreConfig.emergency_roles)
EMERGENCY_ROLES = frozenset({Role.VOLUNTEER, Role.DISPATCHER, Role.COORDINATOR})
HIGH_ROLES = frozenset({Role.DISPATCHER, Role.COORDINATOR})  # their NORMAL counts as HIGH


@dataclass(frozen=True, slots=True)
class FloorConfig:
    """Timers (seconds) and queue size of one group's floor."""

    max_talk: float = 30.0  # MCPTT T2: longest burst, then revoke
    silence: float = 1.5  # T1: no voice from the holder this long ends the burst (MCPTT: 4 s)
    grace: float = 0.5  # after a revoke the holder has this long to stop
    start_window: float = 2.0  # a grantee from the queue must start within this (MCPTT T132)
    queue_max: int = 16  # 0 disables queueing: a request while taken is denied RETRY_LATER

    def __post_init__(self) -> None:
        # written as "not x > 0" so that NaN is refused too
        if not (self.max_talk > 0 and self.silence > 0):
            raise FloorError("max_talk and silence must be positive")
        if not (self.grace >= 0 and self.start_window >= 0):
            raise FloorError("grace and start_window must not be negative")
        if self.queue_max < 0:
            raise FloorError("queue_max must not be negative")


DEFAULT_CONFIG = FloorConfig()


@dataclass(frozen=True, slots=True)
class RolePolicy:
    """Which floor priorities each role may ask for, and what its requests count with."""

    emergency_roles: frozenset[Role] = EMERGENCY_ROLES
    high_roles: frozenset[Role] = HIGH_ROLES

    def priority(self, role: Role, asked: Priority) -> Priority | None:
        """The priority a request of ``role`` for ``asked`` counts with, or None when the role
        may not ask for it (the request is denied NOT_ALLOWED without reaching the floor)."""
        if asked == Priority.HIGH and role not in self.high_roles:
            return None
        if asked == Priority.EMERGENCY and role not in self.emergency_roles:
            return None
        if asked == Priority.NORMAL and role in self.high_roles:
            return Priority.HIGH
        return asked


class FloorState(Enum):
    IDLE = "idle"
    TAKEN = "taken"
    REVOKING = "revoking"  # the holder was revoked and is inside its grace period


class EndReason(Enum):
    RELEASED = "released"
    SILENCE = "silence"
    MAX_TALK = "max_talk"
    PREEMPTED = "preempted"
    SESSION_LOST = "session_lost"
    REMOVED = "removed"
    NO_START = "no_start"  # granted from the queue, never spoke within the start window
    FAILOVER = "failover"  # granted by a cluster home that died; this node now decides


# --- events ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Granted:
    """``user`` now holds the floor with ``burst_id``: tell it, announce "taken" to the group."""

    group: str
    user: str
    burst_id: int
    priority: Priority
    max_talk: float
    from_queue: bool


@dataclass(frozen=True, slots=True)
class Queued:
    """``user`` waits at ``position`` (1-based)."""

    group: str
    user: str
    position: int


@dataclass(frozen=True, slots=True)
class Denied:
    group: str
    user: str
    cause: DenyCause


@dataclass(frozen=True, slots=True)
class Revoked:
    """The holder must stop within ``grace`` seconds; its voice is still forwarded until then."""

    group: str
    user: str
    burst_id: int
    cause: RevokeCause
    grace: float


@dataclass(frozen=True, slots=True)
class BurstEnded:
    """``user`` no longer holds the floor; a ``Granted`` or an ``Idle`` follows."""

    group: str
    user: str
    burst_id: int
    reason: EndReason


@dataclass(frozen=True, slots=True)
class Idle:
    """Nobody holds the floor now; ``burst_id`` is the burst that ended."""

    group: str
    burst_id: int


@dataclass(frozen=True, slots=True)
class QueueChanged:
    """The queue's order or content changed; ``queue`` is the new order, head first."""

    group: str
    queue: tuple[str, ...]


FloorEvent = Granted | Queued | Denied | Revoked | BurstEnded | Idle | QueueChanged


@dataclass(frozen=True, slots=True)
class FloorSnapshot:
    group: str
    state: FloorState
    holder: str | None
    burst_id: int  # 0 when idle
    holder_priority: Priority | None
    queue: tuple[str, ...]
    deadline: float | None  # what get_timer() returns


def _check_priority(priority: Priority) -> Priority:
    try:
        return Priority(priority)
    except ValueError:
        raise FloorError(f"unknown floor priority {priority!r}") from None


# --- one group ---------------------------------------------------------------------------------

# A queue entry sorts in floor order: higher priority first, then earlier arrival.
_Entry = tuple[int, int, str]  # (-priority, arrival number, user)


class Floor:
    """The floor of one group. Add members, then feed requests, releases, voice and timers."""

    def __init__(
        self, group: str, config: FloorConfig = DEFAULT_CONFIG, first_burst_id: int = 1
    ) -> None:
        if not 0 < first_burst_id <= BURST_ID_MAX:
            raise FloorError(f"first_burst_id must be in 1..{BURST_ID_MAX}")
        self.group = group
        self.config = config
        self._members: dict[str, bool] = {}  # user -> listen_only
        self._state = FloorState.IDLE
        self._holder: str | None = None
        self._burst_id = 0
        self._next_burst_id = first_burst_id
        self._priority = Priority.NORMAL  # the holder's
        self._queue: list[_Entry] = []  # kept sorted
        self._queued: dict[str, _Entry] = {}
        self._arrivals = 0
        # deadlines of the current burst
        self._talk_until = 0.0  # grant + max_talk: revoke
        self._start_until = 0.0  # grant + first silence window
        self._last_voice = _NEVER
        self._from_queue = False
        self._grace_until = 0.0  # REVOKING only
        self._revoke_reason = EndReason.PREEMPTED  # REVOKING only
        self._mirror = False  # follows a floor decided elsewhere: no deadlines here

    # -- reading --------------------------------------------------------------------------------

    @property
    def state(self) -> FloorState:
        return self._state

    @property
    def holder(self) -> str | None:
        return self._holder

    @property
    def burst_id(self) -> int:
        """The current burst, 0 when idle."""
        return self._burst_id

    @property
    def holder_priority(self) -> Priority | None:
        return None if self._holder is None else self._priority

    @property
    def queue(self) -> tuple[str, ...]:
        if not self._queue:  # most floors most of the time: no generator to run
            return ()
        return tuple(entry[2] for entry in self._queue)

    @property
    def members(self) -> Mapping[str, bool]:
        """A read-only live view: user -> listen_only."""
        return MappingProxyType(self._members)

    def snapshot(self) -> FloorSnapshot:
        return FloorSnapshot(
            self.group, self._state, self._holder, self._burst_id, self.holder_priority,
            self.queue, self.get_timer(),
        )

    def follow(self, state: FloorState, holder: str | None, burst_id: int,
               priority: Priority | None, queue: tuple[str, ...]) -> None:
        """Become a mirror of a floor decided elsewhere (a cluster's home node): holder, burst
        and queue as given, and no deadline of its own (the home keeps T1 and T2). ``voice``
        then answers for the mirrored burst; requests must go to the home, not here."""
        if (holder is None) != (state is FloorState.IDLE):
            raise FloorError("a mirrored floor has a holder exactly when it is not idle")
        self._state = state
        self._holder = holder
        self._burst_id = burst_id if holder is not None else 0
        self._priority = _check_priority(priority or Priority.NORMAL)
        self._queue = [(0, i, u) for i, u in enumerate(queue)]
        self._queued = {e[2]: e for e in self._queue}
        self._arrivals = len(queue)
        self._talk_until = self._start_until = self._grace_until = 0.0
        self._last_voice = _NEVER
        self._mirror = True
        if burst_id >= self._next_burst_id:  # should it take over, no burst id is reused
            self._next_burst_id = burst_id % BURST_ID_MAX + 1

    def take_over(self, now: float) -> list[FloorEvent]:
        """Decide this floor here from now on: it mirrored a home that died. What that home
        granted or queued is void (its talker cannot be timed from here): the queue empties,
        a burst ends (FAILOVER: its talker is revoked with that cause) and the floor is idle,
        for every member to hear."""
        self._mirror = False
        return self.void(now)

    def void(self, now: float) -> list[FloorEvent]:
        """A newer home took the group: what this copy holds is void (the queue empties, a
        burst ends with FAILOVER), and a mirror stays a mirror."""
        return self._void(EndReason.FAILOVER, now)

    # -- membership -----------------------------------------------------------------------------

    def add_member(self, user: str, listen_only: bool = False) -> None:
        """Add a member; adding it again as it is changes nothing. To change ``listen_only``,
        remove the member first: that ends its burst or drops its request, with events."""
        if self._members.get(user, listen_only) != listen_only:
            raise FloorError(f"{user} is already a member of {self.group}; remove it first")
        self._members[user] = listen_only

    def remove_member(self, user: str, now: float) -> list[FloorEvent]:
        """The member leaves: a holder's burst ends (REMOVED), a queued request is dropped.
        A mirror only forgets the member: its home, which every node's copy of the change
        reaches too, ends the burst once and its news says so to every node."""
        self._check_member(user)
        events = [] if self._mirror else self._drop(user, EndReason.REMOVED, now)
        del self._members[user]
        return events

    def participant_lost(self, user: str, now: float) -> list[FloorEvent]:
        """The member's session expired: like ``remove_member`` (SESSION_LOST), but it stays."""
        self._check_member(user)
        return self._drop(user, EndReason.SESSION_LOST, now)

    def close(self, now: float) -> list[FloorEvent]:
        """The group goes away: empty the queue, end the burst (REMOVED)."""
        return self._void(EndReason.REMOVED, now)

    def _void(self, reason: EndReason, now: float) -> list[FloorEvent]:
        """Empty the queue, then end the burst with ``reason``: the floor is idle."""
        events: list[FloorEvent] = []
        if self._queue:
            self._queue.clear()
            self._queued.clear()
            events.append(QueueChanged(self.group, ()))
        if self._holder is not None:
            self._end(reason, now, events)
        return events

    # -- floor control --------------------------------------------------------------------------

    def request(self, user: str, priority: Priority, now: float) -> list[FloorEvent]:
        """Ask for the floor: exactly one Granted, Queued or Denied for ``user``, plus effects."""
        if priority.__class__ is not Priority:
            priority = _check_priority(priority)
        listen_only = self._members.get(user)
        if listen_only is None:
            return [Denied(self.group, user, DenyCause.NOT_MEMBER)]
        if listen_only:
            return [Denied(self.group, user, DenyCause.LISTEN_ONLY)]
        events: list[FloorEvent] = []
        if self._state is FloorState.IDLE:
            self._grant(user, priority, now, False, events)
            return events
        if user == self._holder:
            if self._state is FloorState.TAKEN and priority > self._priority:
                self._priority = priority
            max_talk = self.config.max_talk
            return [Granted(self.group, user, self._burst_id, self._priority, max_talk, False)]

        entry = self._queued.get(user)
        if entry is not None:
            priority = max(priority, Priority(-entry[0]))
        preempts = priority > self._priority
        if entry is None and not preempts:
            if self.config.queue_max == 0:
                return [Denied(self.group, user, DenyCause.RETRY_LATER)]
            if len(self._queue) >= self.config.queue_max:
                return [Denied(self.group, user, DenyCause.QUEUE_FULL)]
        if preempts and self._state is FloorState.TAKEN:
            self._revoke(RevokeCause.PREEMPTED, EndReason.PREEMPTED, now, events)
        before = self.queue
        self._enqueue(user, priority, entry)
        events.append(Queued(self.group, user, self._queue.index(self._queued[user]) + 1))
        if self.queue != before:
            events.append(QueueChanged(self.group, self.queue))
        return events

    def release(self, user: str, now: float, burst_id: int = 0) -> list[FloorEvent]:
        """The holder stops talking, or a queued user withdraws; anyone else: no events.

        ``burst_id``: the burst the release names (0: whichever is current). A holder's release
        naming another burst is a give-back for an older grant, resent: it ends nothing."""
        events: list[FloorEvent] = []
        if user == self._holder:
            if burst_id and burst_id != self._burst_id:
                return events
            revoked = self._state is FloorState.REVOKING
            self._end(self._revoke_reason if revoked else EndReason.RELEASED, now, events)
        elif user in self._queued:
            self._dequeue(user, events)
        return events

    def voice(self, user: str, burst_id: int, now: float) -> bool:
        """A voice frame arrived: True if it must be forwarded. Runs per frame, so it stays tiny."""
        if burst_id == self._burst_id and user == self._holder:
            self._last_voice = now
            return True
        return False

    # -- timers ---------------------------------------------------------------------------------

    def get_timer(self) -> float | None:
        """The next deadline, or None: call ``handle_timer`` once the clock reaches it."""
        if self._mirror:
            return None
        if self._state is FloorState.TAKEN:
            silent_at = max(self._start_until, self._last_voice + self.config.silence)
            return min(silent_at, self._talk_until)
        if self._state is FloorState.REVOKING:
            return self._grace_until
        return None

    def handle_timer(self, now: float) -> list[FloorEvent]:
        """Fire every deadline that is due at ``now``, earliest first.

        Each fires as of its own deadline, so a late call changes nothing but when the events
        come out: the timers that follow (grace, the next grant's) count from the deadline too.
        """
        events: list[FloorEvent] = []
        while True:
            if self._state is FloorState.TAKEN:
                silent_at = max(self._start_until, self._last_voice + self.config.silence)
                if silent_at <= now and silent_at <= self._talk_until:
                    never_started = self._from_queue and self._last_voice == _NEVER
                    reason = EndReason.NO_START if never_started else EndReason.SILENCE
                    self._end(reason, silent_at, events)
                elif self._talk_until <= now:
                    cause, reason = RevokeCause.MAX_TALK_TIME, EndReason.MAX_TALK
                    self._revoke(cause, reason, self._talk_until, events)
                else:
                    return events
            elif self._state is FloorState.REVOKING and self._grace_until <= now:
                self._end(self._revoke_reason, self._grace_until, events)
            else:
                return events

    # -- transitions: the only places that change the state -------------------------------------

    def _grant(
        self, user: str, priority: Priority, now: float, from_queue: bool, events: list[FloorEvent]
    ) -> None:
        burst_id = self._next_burst_id
        self._next_burst_id = burst_id % BURST_ID_MAX + 1  # wraps to 1, never 0
        config = self.config
        self._state = FloorState.TAKEN
        self._holder = user
        self._burst_id = burst_id
        self._priority = priority
        self._talk_until = now + config.max_talk
        first_window = max(config.start_window, config.silence) if from_queue else config.silence
        self._start_until = now + first_window
        self._last_voice = _NEVER
        self._from_queue = from_queue
        events.append(Granted(self.group, user, burst_id, priority, config.max_talk, from_queue))

    def _revoke(
        self, cause: RevokeCause, reason: EndReason, now: float, events: list[FloorEvent]
    ) -> None:
        """The holder must stop within the grace; its burst ends then with ``reason``."""
        assert self._holder is not None
        self._state = FloorState.REVOKING
        self._grace_until = now + self.config.grace
        self._revoke_reason = reason
        events.append(Revoked(self.group, self._holder, self._burst_id, cause, self.config.grace))

    def _end(self, reason: EndReason, now: float, events: list[FloorEvent]) -> None:
        """End the current burst; the head of the queue gets the floor, or it goes idle."""
        assert self._holder is not None
        events.append(BurstEnded(self.group, self._holder, self._burst_id, reason))
        self._holder = None
        if self._queue:
            neg_priority, _, user = self._queue.pop(0)
            del self._queued[user]
            self._grant(user, Priority(-neg_priority), now, True, events)
            events.append(QueueChanged(self.group, self.queue))
        else:
            events.append(Idle(self.group, self._burst_id))
            self._state = FloorState.IDLE
            self._burst_id = 0

    def _enqueue(self, user: str, priority: Priority, old: _Entry | None) -> None:
        if old is not None:
            self._queue.remove(old)
            entry = (-priority, old[1], user)  # a raised priority keeps its arrival
        else:
            self._arrivals += 1
            entry = (-priority, self._arrivals, user)
        insort(self._queue, entry)
        self._queued[user] = entry

    def _dequeue(self, user: str, events: list[FloorEvent]) -> None:
        self._queue.remove(self._queued.pop(user))
        events.append(QueueChanged(self.group, self.queue))

    def _drop(self, user: str, reason: EndReason, now: float) -> list[FloorEvent]:
        events: list[FloorEvent] = []
        if user == self._holder:
            self._end(reason, now, events)
        elif user in self._queued:
            self._dequeue(user, events)
        return events

    def _check_member(self, user: str) -> None:
        if user not in self._members:
            raise FloorError(f"{user} is not a member of {self.group}")


# --- many groups -------------------------------------------------------------------------------


class FloorSet:
    """The floors of many groups behind one timer heap, for a server with thousands of groups.

    The same inputs as :class:`Floor`, with the group first. The heap is lazy: each group has one
    live entry (its deadline in ``_due``), never later than the group's real deadline; entries that
    no longer match are skipped when they surface. ``voice`` only ever moves a deadline later, so it
    leaves the heap alone and costs one dict lookup more than ``Floor.voice``; ``get_timer`` moves
    such an entry when it reaches the top. Only a deadline that moves earlier pushes a new entry,
    which a group's few timer lengths allow a handful of times before the entry fires, so dead
    entries stay few. Read a group with ``floor(group)``; drive it through the set, or its timer
    may be missed.
    """

    def __init__(self) -> None:
        self._floors: dict[str, Floor] = {}
        self._heap: list[tuple[float, str]] = []
        self._due: dict[str, float] = {}  # group -> the deadline of its live heap entry
        # every event of every floor, in order, while a cluster node reads them to publish
        # its groups' news (ptt.protocol.cluster_routing); None: nobody reads them
        self.log: list[FloorEvent] | None = None
        # a group's deadlines that come due wait while this says so, until the time it gives
        # (a cluster home whose lease is unsure decides nothing, timers included)
        self.defer: Callable[[str, float], float | None] | None = None

    def __contains__(self, group: str) -> bool:
        return group in self._floors

    def __len__(self) -> int:
        return len(self._floors)

    @property
    def groups(self) -> tuple[str, ...]:
        return tuple(self._floors)

    def floor(self, group: str) -> Floor:
        try:
            return self._floors[group]
        except KeyError:
            raise FloorError(f"unknown group {group}") from None

    def add_group(
        self, group: str, config: FloorConfig = DEFAULT_CONFIG, first_burst_id: int = 1
    ) -> Floor:
        if group in self._floors:
            raise FloorError(f"group {group} exists")
        floor = self._floors[group] = Floor(group, config, first_burst_id)
        return floor

    def configure(self, group: str, config: FloorConfig) -> None:
        """New timers and queue size for a live group. The current burst keeps the windows it
        was granted with; T1 after its last voice counts with the new ``silence`` at once."""
        floor = self.floor(group)
        floor.config = config
        self._scheduled(group, floor, [])

    def remove_group(self, group: str, now: float) -> list[FloorEvent]:
        """The group is deleted: its holder's burst ends (REMOVED), its queue empties."""
        events = self.floor(group).close(now)
        if self.log is not None:
            self.log.extend(events)
        del self._floors[group]
        self._due.pop(group, None)
        return events

    # -- inputs: Floor's, with the group first ---------------------------------------------------

    def add_member(self, group: str, user: str, listen_only: bool = False) -> None:
        self.floor(group).add_member(user, listen_only)

    def remove_member(self, group: str, user: str, now: float) -> list[FloorEvent]:
        floor = self.floor(group)
        return self._scheduled(group, floor, floor.remove_member(user, now))

    def participant_lost(self, group: str, user: str, now: float) -> list[FloorEvent]:
        floor = self.floor(group)
        return self._scheduled(group, floor, floor.participant_lost(user, now))

    def request(self, group: str, user: str, priority: Priority, now: float) -> list[FloorEvent]:
        floor = self.floor(group)
        return self._scheduled(group, floor, floor.request(user, priority, now))

    def release(self, group: str, user: str, now: float, burst_id: int = 0
                ) -> list[FloorEvent]:
        floor = self.floor(group)
        return self._scheduled(group, floor, floor.release(user, now, burst_id))

    def follow(self, group: str, state: FloorState, holder: str | None, burst_id: int,
               priority: Priority | None, queue: tuple[str, ...]) -> None:
        """The group's floor mirrors one decided elsewhere (``Floor.follow``); its deadlines
        leave the heap."""
        self.floor(group).follow(state, holder, burst_id, priority, queue)
        self._due.pop(group, None)

    def take_over(self, group: str, now: float) -> list[FloorEvent]:
        """The group's floor, a mirror, is decided here from now on (``Floor.take_over``)."""
        floor = self.floor(group)
        return self._scheduled(group, floor, floor.take_over(now))

    def void(self, group: str, now: float) -> list[FloorEvent]:
        """The group's copy of the floor is void (``Floor.void``)."""
        floor = self.floor(group)
        return self._scheduled(group, floor, floor.void(now))

    def is_mirror(self, group: str) -> bool:
        return self.floor(group)._mirror

    def voice(self, group: str, user: str, burst_id: int, now: float) -> bool:
        floor = self._floors.get(group)
        if floor is None:
            raise FloorError(f"unknown group {group}")
        return floor.voice(user, burst_id, now)

    # -- timers ---------------------------------------------------------------------------------

    def get_timer(self) -> float | None:
        """The earliest deadline of any group, or None."""
        heap, due = self._heap, self._due
        while heap:
            deadline, group = heap[0]
            if due.get(group) != deadline:
                heapq.heappop(heap)  # superseded, or the group is gone
                continue
            real = self._floors[group].get_timer()
            if real == deadline or real is not None and real < deadline:  # or deferred
                return deadline
            if real is None:
                heapq.heappop(heap)
                del due[group]
            else:  # voice moved the silence deadline out
                heapq.heapreplace(heap, (real, group))
                due[group] = real
        return None

    def handle_timer(self, now: float) -> list[FloorEvent]:
        """Fire every group's deadlines that are due at ``now``, earliest first."""
        heap, due = self._heap, self._due
        fired = []  # each group once: Floor.handle_timer fires all of its due deadlines
        while heap and heap[0][0] <= now:
            deadline, group = heapq.heappop(heap)
            if due.get(group) == deadline:
                del due[group]
                fired.append(group)
        events: list[FloorEvent] = []
        defer = self.defer
        for group in fired:
            later = defer(group, now) if defer is not None else None
            if later is not None:
                due[group] = later
                heapq.heappush(heap, (later, group))
                continue
            floor = self._floors[group]
            events += self._scheduled(group, floor, floor.handle_timer(now))
        return events

    def _scheduled(self, group: str, floor: Floor, events: list[FloorEvent]) -> list[FloorEvent]:
        """Keep the group's live heap entry no later than its deadline; pass ``events`` through
        (and into ``log`` while it is read)."""
        if self.log is not None:
            self.log.extend(events)
        deadline = floor.get_timer()
        if deadline is not None:
            due = self._due.get(group)
            if due is None or deadline < due:
                self._due[group] = deadline
                heapq.heappush(self._heap, (deadline, group))
        return events
