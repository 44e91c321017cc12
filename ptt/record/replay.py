"""What a replay sends, read from a recording: a burst's timed Opus packets and a session's floor
actions. :mod:`ptt.client.replay` sends them into a live group through the floor.

- :func:`burst_frames`: one recorded burst (:class:`~ptt.record.export.ReplayBurst`) as
  ``(seconds from its start, Opus packet)``: the stored packets, lost slots and holes as
  lost-frame packets (decoders conceal them), or the burst re-encoded with ptt's encoder when its
  parameters differ from what ptt sends.
- :func:`floor_script`: the users' own floor actions (and pages) in an event log, timed from the
  first, as :class:`FloorAction` items.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ptt.audio.codec import DEFAULT_BITRATE, FRAME_BYTES, FRAME_SECONDS, SAMPLE_RATE, OpusEncoder
from ptt.protocol import messages as m
from ptt.record.events import Event, EventKind
from ptt.record.export import ReplayBurst
from ptt.record.opus import lost_packet

__all__ = ["FloorAction", "burst_frames", "floor_script"]


def burst_frames(rb: ReplayBurst, bitrate: int = DEFAULT_BITRATE) -> tuple[list[tuple[float, bytes]], bool]:
    """``([(seconds from the burst start, opus packet)], converted)`` for one burst.

    Packets are the stored ones unless the burst's parameters force a conversion; lost slots and
    holes become lost-frame packets (one per 20 ms), which decoders conceal.
    """
    if rb.compatibility.needs_conversion:
        pcm = rb.pcm(SAMPLE_RATE)
        enc = OpusEncoder(bitrate=bitrate, expected_loss=0)  # redundancy repairs loss
        frames = []
        for i in range(0, len(pcm), FRAME_BYTES):
            chunk = pcm[i : i + FRAME_BYTES]
            chunk += bytes(FRAME_BYTES - len(chunk))
            frames.append((i // FRAME_BYTES * FRAME_SECONDS, enc.encode(chunk)))
        return frames, True
    real = [p.data for p in rb.packets if p.data]
    if not real:
        return [], False
    template = real[0]
    frames = []
    for p in rb.packets:
        if p.data:
            frames.append((p.at, p.data))
            if not p.lost:
                template = p.data
            continue
        # a hole: the slots a damaged page took with it
        for k in range(max(1, round(p.duration / FRAME_SECONDS))):
            frames.append((p.at + k * FRAME_SECONDS, lost_packet(template)))
    return frames, False


# -- control events -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class FloorAction:
    """One user's action at ``at`` seconds from the first one: "request" or "release"."""

    at: float
    user: str
    action: str  # "request", "release", or "page" (shown, not sent again)
    priority: m.Priority = m.Priority.NORMAL
    text: str = ""  # of a page: its words, or what is known of a sealed one


def floor_script(events: Iterable[Event]) -> list[FloorAction]:
    """The users' own floor actions in an event log, timed from the first.

    From a server's log: ``floor_request`` and ``floor_release`` with reason "released" (other
    ends - silence, pre-emption, max talk time - are the server's doing and happen again by
    themselves). A recorder client's log has no requests: each announced talker
    (``floor_grant``) then becomes a request at the grant and a release when the next talker or
    an idle floor is announced.
    """
    events = sorted(events, key=lambda e: e.t)
    actions: list[tuple[float, str, str, m.Priority, str]] = []
    if any(e.kind == EventKind.FLOOR_REQUEST for e in events):
        for e in events:
            user = e.get("user")
            if not isinstance(user, str):
                continue
            if e.kind == EventKind.FLOOR_REQUEST:
                prio = _priority(e.get("priority", 0))
                actions.append((e.t, user, "request", prio, ""))
            elif e.kind == EventKind.FLOOR_RELEASE and e.get("reason", "released") == "released":
                actions.append((e.t, user, "release", m.Priority.NORMAL, ""))
    else:
        holder: str | None = None
        for e in events:
            if e.kind == EventKind.FLOOR_GRANT and isinstance(e.get("user"), str):
                if holder is not None:
                    actions.append((e.t, holder, "release", m.Priority.NORMAL, ""))
                holder = e.get("user")
                actions.append((e.t, e.get("user"), "request", _priority(e.get("priority", 0)),
                                ""))
            elif e.kind in (EventKind.FLOOR_IDLE, EventKind.RECORDER_STOP) and holder:
                actions.append((e.t, holder, "release", m.Priority.NORMAL, ""))
                holder = None
    for e in events:
        if e.kind == EventKind.PAGE and isinstance(e.get("user"), str):
            actions.append((e.t, e.get("user"), "page", m.Priority.NORMAL, _page_text(e)))
    if not actions:
        return []
    actions.sort(key=lambda a: a[0])
    first = actions[0][0]
    return [FloorAction(t - first, u, a, p, x) for t, u, a, p, x in actions]


def _page_text(e: Event) -> str:
    """How a recorded page is shown: its text, or what the log knows of a sealed one."""
    urgent = "URGENT " if e.get("urgent") else ""
    n = e.get("recipients")
    to = f" ({n} recipients)" if isinstance(n, int) else ""
    text = e.get("text")
    body = text if isinstance(text, str) else "(sealed: the group key is needed to read it)"
    return f"{urgent}page{to}: {body}"


def _priority(value: object) -> m.Priority:
    try:
        return m.Priority(int(value))  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return m.Priority.NORMAL
