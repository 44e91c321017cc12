"""Fencing: a group's stale home is never obeyed. Sans-I/O.

Each group of a cluster has one home node, which holds the group's etcd key
``/ptt/groups/<id>/home`` under its lease (``ptt.cluster.ownership``). The key's create revision
at the claim is the home's **fencing number**: etcd's revisions only grow, and a claim always
creates the key anew, so every later claim of the group carries a higher number than every
earlier one. The home stamps its number on every grant and burst it issues.

Two rules live here, one per side:

- :class:`FencingView` (an access node): a grant or burst for a group stamped with a number lower
  than the highest this node has seen for that group, from a stamp or from the ownership watch,
  is refused. A home paused past its lease (SIGSTOP, a long GC, a partition) wakes up believing it
  still owns its groups; whatever it stamps then is refused wherever the new home's claim, or
  anything the new home stamped, has been seen.
- :class:`LeaseClock` (a home): a home stops stamping once its lease may have expired, without
  waiting to hear so: the lease is known to live until ``ttl`` after the *sending* of the last
  renewal etcd acknowledged (etcd restarts the TTL when it receives the renewal, later than it
  was sent). This keeps a paused or cut-off home quiet on its own; the view above makes what it
  sent before safe.

    input (FencingView)                        outcome
    ----------------------------------------   ---------------------------------------------
    stamp >= highest seen for the group        Accepted; highest := stamp
    stamp <  highest seen for the group        Refused (stale home)
    owner learned (claim seen in the watch)    highest := max(highest, its fencing number)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from ptt.errors import ValidationError


class Verdict(Enum):
    ACCEPTED = "accepted"
    REFUSED = "refused"


@dataclass(frozen=True)
class Stamp:
    """What a home puts on a grant or burst: the group and its fencing number."""

    group: str
    fencing: int

    def __post_init__(self) -> None:
        if self.fencing < 1:
            raise ValidationError(f"a fencing number is an etcd revision (>= 1), not {self.fencing}")


@dataclass
class FencingView:
    """The highest fencing number an access node has seen, per group."""

    highest: dict[str, int] = field(default_factory=dict)

    def check(self, stamp: Stamp) -> Verdict:
        """Accept a grant or burst stamped ``stamp``, or refuse it as a stale home's."""
        if stamp.fencing < self.highest.get(stamp.group, 0):
            return Verdict.REFUSED
        self.highest[stamp.group] = stamp.fencing
        return Verdict.ACCEPTED

    def learn_owner(self, stamp: Stamp) -> None:
        """A claim seen in the ownership watch: older homes are refused from now on, even
        before the new home has stamped anything."""
        if stamp.fencing > self.highest.get(stamp.group, 0):
            self.highest[stamp.group] = stamp.fencing


@dataclass
class LeaseClock:
    """Until when a home's lease is known to live, from the renewals etcd acknowledged.

    ``now`` is any monotonic clock's seconds, the same for every call.
    """

    ttl: float
    valid_until: float = float("-inf")

    def acknowledged(self, sent_at: float, ttl: float) -> None:
        """etcd answered a grant or renewal sent at ``sent_at`` with the lease's ``ttl``."""
        if ttl <= 0:
            self.valid_until = float("-inf")
            return
        self.ttl = ttl
        self.valid_until = max(self.valid_until, sent_at + ttl)

    def lost(self) -> None:
        """etcd said the lease is gone (expired or revoked)."""
        self.valid_until = float("-inf")

    def valid(self, now: float) -> bool:
        """The lease surely still lives: the home may stamp."""
        return now < self.valid_until
