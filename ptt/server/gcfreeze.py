"""When the server freezes its long-lived state out of the garbage collector's scans.

A full collection walks every live object, and 10,000 sessions are a few hundred thousand of them
(tens of ms on one core: the floor-access tail). What has lived this long is the server's state,
not garbage, so it is frozen out of the collector's scans (``gc.freeze``) at start-up and whenever
the session count has grown by GC_FREEZE_GROWTH; once every GC_THAW_EVERY the freeze is lifted for
one full collection, so cycles frozen with the state are still reclaimed.

:class:`FreezePolicy` decides, from the time and the session count it is given (sans-I/O); the
adapter (``ptt.server.app``) checks it every GC_CHECK_EVERY and calls ``gc``. Freezing acts on the
whole process, so only the ``ptt server`` process turns it on (:func:`gc_freeze_wanted`).
"""

from __future__ import annotations

import os
from enum import Enum

GC_CHECK_EVERY = 10.0  # seconds between checks of the session count
GC_FREEZE_GROWTH = 0.1  # freeze again after the sessions grew by this fraction (and 100)
GC_THAW_EVERY = 3600.0


class GcStep(Enum):
    KEEP = "keep"
    FREEZE = "freeze"  # collect, then freeze what is left
    THAW = "thaw"  # unfreeze, then freeze again: the collection looks at everything once


class FreezePolicy:
    """What the adapter does with the collector at each check."""

    def __init__(self, now: float) -> None:
        self.thawed_at = now
        self.sessions = 0  # at the last freeze

    def frozen(self, sessions: int) -> None:
        """The adapter froze the state with ``sessions`` sessions online."""
        self.sessions = sessions

    def check(self, now: float, sessions: int) -> GcStep:
        if now - self.thawed_at >= GC_THAW_EVERY:
            self.thawed_at = now
            return GcStep.THAW
        if sessions >= max(self.sessions * (1 + GC_FREEZE_GROWTH), self.sessions + 100):
            return GcStep.FREEZE
        return GcStep.KEEP


def gc_freeze_wanted() -> bool:
    """The ``ptt server`` process freezes its long-lived state unless ``PTT_NO_GC_FREEZE=1``."""
    return os.environ.get("PTT_NO_GC_FREEZE", "") in ("", "0")
