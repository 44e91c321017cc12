"""How many dropped datagrams are written to the log: a flood of bad datagrams cannot flood it.

Every dropped datagram is counted (``Counters.drop_reasons``, ``ptt_datagrams_dropped_total``);
only the first few of each second are logged, by the adapter's debug lines and by the event log
alike, and the event log says how many it left out. Sans-I/O: the caller passes ``now``.
"""

from __future__ import annotations

DROP_LOG_PER_SECOND = 5  # the adapter's debug lines about dropped datagrams


class DropLog:
    """At most ``per_second`` lines a second; the datagrams left out are counted."""

    def __init__(self, per_second: int) -> None:
        self.per_second = per_second
        self._start = float("-inf")  # the current second's start
        self._lines = 0  # lines in it
        self.suppressed = 0  # datagrams left out since the last line

    def allow(self, now: float) -> bool:
        """May one more dropped datagram be logged at ``now``?"""
        if now - self._start >= 1.0:
            self._start, self._lines = now, 0
        if self._lines >= self.per_second:
            self.suppressed += 1
            return False
        self._lines += 1
        return True

    def take_suppressed(self) -> int:
        """How many were left out since the last line (and start counting again)."""
        n, self.suppressed = self.suppressed, 0
        return n
