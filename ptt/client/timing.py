"""Per-frame timing logs: when a talker sent each voice frame and when a listener played it.

``ptt talk --wav FILE --timing T`` writes a ``sent`` line per voice datagram and ``ptt listen
--timing T`` a ``played`` line per frame it writes to its output, so that the mouth-to-ear
delay of the real commands can be measured (bench/bench_mouth_to_ear.py). Times are
``time.monotonic()`` seconds: processes on one machine share that clock, so a talker's and a
listener's lines compare directly. One line per event, space separated::

    # ptt timing: monotonic seconds, event, burst id, seq, source
    8123.402117 sent 17 0 -
    8123.463850 played 17 0 received

``source`` says where a played frame came from (``ptt.media.jitter.Source``: received,
redundancy, fec, concealed, inserted); a sent line has ``-``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from ptt.errors import PttError

__all__ = ["TimingEntry", "TimingLog", "read_timing"]

HEADER = "# ptt timing: monotonic seconds, event, burst id, seq, source\n"
EVENTS = ("sent", "played")


@dataclass(frozen=True, slots=True)
class TimingEntry:
    """One line of a timing log."""

    at: float  # time.monotonic() seconds
    event: str  # "sent" or "played"
    burst_id: int
    seq: int
    source: str  # how a played frame was made; "-" for a sent one


class TimingLog:
    """Appends timing lines to a file; stamps each with ``time.monotonic()`` when called.

    Lines are buffered and written out by :meth:`close` (and by the file's own buffer as it
    fills): a flush per frame would add a system call to every 20 ms tick."""

    def __init__(self, path: Path) -> None:
        try:
            self._file: TextIO | None = open(path, "w", encoding="ascii")  # noqa: SIM115
        except OSError as exc:
            raise PttError(f"cannot write the timing log {path}: {exc.strerror}") from None
        self._file.write(HEADER)

    def sent(self, burst_id: int, seq: int) -> None:
        self._line("sent", burst_id, seq, "-")

    def played(self, burst_id: int, seq: int, source: str) -> None:
        self._line("played", burst_id, seq, source)

    def _line(self, event: str, burst_id: int, seq: int, source: str) -> None:
        if self._file is not None:
            self._file.write(f"{time.monotonic():.6f} {event} {burst_id} {seq} {source}\n")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def read_timing(path: Path) -> list[TimingEntry]:
    """The entries of a timing log (PttError on a line that is not one)."""
    out = []
    for n, line in enumerate(path.read_text(encoding="ascii").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split()
        try:
            at, event, burst, seq, source = parts
            entry = TimingEntry(float(at), event, int(burst), int(seq), source)
        except ValueError:
            raise PttError(f"{path}:{n}: not a timing line: {line!r}") from None
        if event not in EVENTS:
            raise PttError(f"{path}:{n}: unknown event {event!r}")
        out.append(entry)
    return out
