"""ptt.record: recordings as standard Ogg Opus files (RFC 7845) beside JSON Lines event logs.

On disk (one session per group directory; see :mod:`ptt.record.recorder` for why one file per
burst)::

    DIR/<group>/events.jsonl                              floor requests, grants, queue positions,
                                                          revokes, releases, joins, leaves, bursts
    DIR/<group>/<start-utc>-b<burst>-<talker>.opus        one burst: Opus packets exactly as received,
                                                          tags GROUP TALKER BURST START ENCODER

Where to start:

* recording (server ``--record``, ``ptt record``): :class:`~ptt.record.live.LiveRecording` --
  ``voice`` (datagrams as received), ``event``, ``tick``, ``close``, over a :class:`Recorder`
  (``burst_started``, ``frame``, ``burst_ended``); the caller passes every wall time.
* ``ptt sessions DIR``: :func:`scan` then :func:`format_sessions`.
* ``ptt export FILE --wav OUT``: :func:`export_wav` then :func:`format_timeline`.
* ``ptt replay FILE``: :func:`replay_bursts` -- per burst, packets with times, and whether the file
  must be converted (``compatibility.needs_conversion``; ``pcm()`` gives audio to re-encode).
* ``ptt replay --events``: :func:`read_events`.

Modules, bottom up: :mod:`~ptt.record.ogg` (pages, CRC, damage-tolerant scan),
:mod:`~ptt.record.opus` (TOC durations, lost-frame packets, OpusHead/OpusTags),
:mod:`~ptt.record.opusfile` (crash-safe writer, reader), :mod:`~ptt.record.events`,
:mod:`~ptt.record.recorder`, :mod:`~ptt.record.live`, :mod:`~ptt.record.catalog`,
:mod:`~ptt.record.export`.
Damage never stops a reader: problems are collected as messages naming the file, byte offset and
cause, and everything readable is kept. ``RecordingError`` is raised for what cannot be done at all.
"""

from __future__ import annotations

from ptt.errors import RecordingError
from ptt.record.catalog import Burst, Session, format_sessions, load, scan
from ptt.record.events import (
    EVENTS_FILE,
    Event,
    EventFile,
    EventKind,
    EventLogContents,
    read_events,
)
from ptt.record.export import (
    Compatibility,
    ExportResult,
    ReplayBurst,
    StreamParams,
    TimedPacket,
    check_params,
    export_wav,
    format_timeline,
    replay_bursts,
)
from ptt.record.opusfile import OpusFile, OpusFileWriter, OpusStream, read_opus
from ptt.record.recorder import BurstSummary, Recorder

__all__ = [
    "EVENTS_FILE",
    "Burst",
    "BurstSummary",
    "Compatibility",
    "Event",
    "EventFile",
    "EventKind",
    "EventLogContents",
    "ExportResult",
    "OpusFile",
    "OpusFileWriter",
    "OpusStream",
    "Recorder",
    "RecordingError",
    "ReplayBurst",
    "Session",
    "StreamParams",
    "TimedPacket",
    "check_params",
    "export_wav",
    "format_sessions",
    "format_timeline",
    "load",
    "read_events",
    "read_opus",
    "replay_bursts",
    "scan",
]
