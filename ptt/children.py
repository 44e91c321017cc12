"""Child processes that die with the process that started them.

A demo, a test harness or a bench starts `ptt server` nodes and engines as children; if the
parent is SIGKILLed it runs no clean-up, and the children would live on holding their ports.
On Linux the kernel can send a child a signal when its parent dies (``PR_SET_PDEATHSIG``); the
parent is the *thread* that forked, so start such children from a thread that outlives them
(the main thread, or the thread of the event loop that owns them).
"""

from __future__ import annotations

import ctypes
import signal
import sys

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Pass as ``preexec_fn``: the child gets SIGKILL when the thread that started it exits.
    Does nothing where the kernel has no such option (not Linux)."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
