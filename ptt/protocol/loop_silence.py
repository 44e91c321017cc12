"""When a node's lease renewer stops renewing: a wedged event loop, not a starved one. Sans-I/O.

A node's lease is renewed by a thread of its own (``ptt.cluster.lease``) so that a busy loop
cannot make the renewals late; the thread still withholds them when the loop stops running, so
that a node whose loop is wedged (a blocking call, a deadlock) gives its groups up. It knows the
loop runs from a sign the loop gives from a timer callback every renewal interval.

A loop can also be silent because its thread is *runnable and not scheduled*: on 2 cores at
load 10-12 (a failover at 100,000 clients, every process of the cluster busy) the survivors'
loops went 3.0-3.4 s without running a timer, most of it waiting for a CPU (py-spy). Counting
that wait as silence made the renewers let three live survivors' leases go and the others took
them for dead: a cascade. So the silence a loop is charged with is the wall time since its last
sign **minus the time the process's threads spent waiting in the kernel's run queue**
meanwhile (Linux: ``/proc/self/task/*/schedstat``, the second field, summed), at most all of
it. The whole process, not the loop's thread alone: a starved loop also waits for the GIL
while another thread of the process holds it and is not scheduled, and that wait is a sleep to
the kernel, charged to the thread holding it. Time the process spent running, or asleep with
nothing to wait for but the loop (blocked on a lock, a socket, a ``time.sleep``), counts; time
it wanted a CPU and had none does not.

    the loop since its last sign                 charged          verdict past the limit
    ------------------------------------------   --------------   ----------------------------
    runnable, not scheduled (a starved machine)  ~0               kept while the loop is starved
    running a long turn, then a timer            its CPU time     a turn never lasts 3 s of CPU
    blocked (a lock never released, a call       wall time        withheld after LIMIT TTLs
      that never returns)
    spinning for ever in one callback            its CPU time     withheld after LIMIT TTLs of
                                                                  CPU, or the CEILING, first
    stopped (SIGSTOP), killed                    -                the renewer stops with it

``CEILING_TTLS`` of wall time ends the lease whatever the wait: a loop spinning for ever on a
machine so loaded that it gets a sliver of a CPU still gives its groups up within a bound. A
kernel that does not report the wait (no ``schedstat``) gives 0 and the rule is the wall-clock
one it always was.

The two numbers are read by different threads: the loop gives ``(now, the wait then)`` with its
sign (:meth:`LoopSilence.sign`), the renewer judges with ``(now, the wait now)``
(:meth:`LoopSilence.judge`). The sign is one tuple, replaced whole, so a judge running beside a
sign sees either the old pair or the new one.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from ptt.errors import ConfigError

__all__ = ["CEILING_TTLS", "LIMIT_TTLS", "LoopSilence", "Silence"]

# silence charged to the loop (its run-queue wait excluded) after which the renewer withholds:
# a loop that works shows itself within one renewal interval and two turns, and a turn under a
# burst measured 0.5 s of wall on an idle core, ~1 s at load 15-17: 0.33 + 2 x 1 = 2.3 s with
# the wait counted, so 3 TTLs keeps a busy loop's lease and a wedged one's lease still goes
LIMIT_TTLS = 3.0
# wall-clock silence after which the renewer withholds whatever the wait: the starved survivors
# of the 100,000-client failover went 3.0-3.4 s; a loop spinning for ever is let go within this
CEILING_TTLS = 10.0


class Silence(Enum):
    RUNNING = "running"  # a sign within the last TTL
    LATE = "late"  # silent past a TTL, under the limits: renew (and say so once)
    WEDGED = "wedged"  # past the limit (charged) or the ceiling (wall): withhold


@dataclass
class LoopSilence:
    """The loop's last sign and the rule above. Times in seconds, from one monotonic clock;
    ``waited``: the process's threads' total run-queue wait so far (0 where it is not known);
    ``ttl``: the lease's, as etcd granted it."""

    limit_ttls: float = LIMIT_TTLS
    ceiling_ttls: float = CEILING_TTLS

    def __post_init__(self) -> None:
        if not 0 < self.limit_ttls <= self.ceiling_ttls:
            raise ConfigError(f"loop silence limit {self.limit_ttls} TTLs must be > 0 and at "
                              f"most its ceiling {self.ceiling_ttls}")
        self._sign = (float("-inf"), 0.0)  # (when, the loop's wait then): replaced whole

    def sign(self, now: float, waited: float) -> None:
        """The loop ran at ``now`` (called on the loop's thread)."""
        self._sign = (now, waited)

    def silent(self, now: float) -> float:
        """Wall seconds since the loop's last sign."""
        return now - self._sign[0]

    def charged(self, now: float, waited: float) -> float:
        """The silence the loop is charged with: wall time since its sign minus the run-queue
        wait since then (a wait that went backwards, a thread replaced, excuses nothing)."""
        at, waited_then = self._sign
        return (now - at) - max(0.0, waited - waited_then)

    def judge(self, now: float, waited: float, ttl: float) -> Silence:
        at = self._sign[0]
        if now - at <= ttl:
            return Silence.RUNNING
        if now - at > self.ceiling_ttls * ttl \
                or self.charged(now, waited) > self.limit_ttls * ttl:
            return Silence.WEDGED
        return Silence.LATE
