"""The ``ptt`` console script's entry point: Ctrl-C while the command is still loading.

Loading the command line takes ~0.2 s of imports. Python turns a Ctrl-C into a
KeyboardInterrupt wherever the interpreter is: in that time, in the middle of an import it ends
in a traceback, and inside a finalizer (which the imports' garbage collection runs) the
interpreter drops it, so the command runs on as if never interrupted. While loading, a Ctrl-C
is therefore only noted (:func:`loading`), and acted on once the code is loaded: exit 130 and no
output, like any other interruption. Then Ctrl-C is Python's again (asyncio turns it into the
cancellation that the commands handle). This module imports nothing of ptt's.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import NoReturn

EX_INTERRUPTED = 130  # 128 + SIGINT, what shells report for Ctrl-C


@contextmanager
def loading() -> Iterator[None]:
    """Hold a Ctrl-C back while code is imported; raise KeyboardInterrupt after, if one came."""
    caught: list[int] = []

    def note(signum: int, frame: FrameType | None) -> None:
        caught.append(signum)

    previous = signal.signal(signal.SIGINT, note)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        raise KeyboardInterrupt


def main() -> NoReturn:
    """``ptt = ptt.cli.entry:main``: load the command line, then run it."""
    try:
        with loading():
            from ptt.cli.main import main as run
    except KeyboardInterrupt:
        sys.exit(EX_INTERRUPTED)
    run()
