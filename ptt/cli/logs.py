"""Logging for commands: stderr only, one line per record, verbosity from ``-v``."""

from __future__ import annotations

import logging
import sys
from typing import TextIO

_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
_DATEFMT = "%H:%M:%S"


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time of each record.

    A handler bound to the stream of the moment would keep writing to a stream that click's
    CliRunner (or a test's capture) has since closed.
    """

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass  # always sys.stderr


class _Formatter(logging.Formatter):
    """The format's time is to the second: made once a second, not once a line (a survivor
    writes thousands of event lines a second while a dead node's clients move to it)."""

    _second: tuple[int, str] = (-1, "")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        second = int(record.created)
        if self._second[0] != second:
            self._second = (second, super().formatTime(record, datefmt))
        return self._second[1]


_handler: _StderrHandler | None = None


def level_for(verbose: int, base: int = logging.WARNING) -> int:
    """``base`` lowered one step per ``-v`` (WARNING -> INFO -> DEBUG)."""
    return max(logging.DEBUG, base - 10 * verbose)


def configure(verbose: int, base: int = logging.WARNING) -> None:
    """Send log records at ``level_for(verbose, base)`` and above to stderr.

    Idempotent: the root group configures first and a command like ``ptt server`` may then ask
    for a chattier base. Only our own handler is replaced; others (pytest's) stay.
    """
    global _handler
    root = logging.getLogger()
    if _handler is None:
        _handler = _StderrHandler()
        _handler.setFormatter(_Formatter(_FORMAT, _DATEFMT))
        root.addHandler(_handler)
    elif _handler not in root.handlers:
        root.addHandler(_handler)
    root.setLevel(level_for(verbose, base))
