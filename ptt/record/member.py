"""A group as one member sees it, recorded: what ``ptt record`` writes (sans-I/O: wall times in).

The recorder client (:class:`~ptt.client.recorder.GroupRecorder`) hands this the group's voice
frames, opened, and the client core's events; this decides what becomes of them in a
:class:`~ptt.record.live.LiveRecording`:

* voice: the Opus packets exactly as received, an opened frame of an encrypted group stored as
  plaintext Opus, like a plain group's; the talker from the floor announcements;
* ``floor_grant`` when a talker is announced, ``floor_idle``, ``join``/``leave`` from presence,
  ``joined`` with who was online, ``disconnected``/``reconnected``, and the group's text pages
  as the member read them. A member does not see other members' requests, queue positions or
  revokes: the server's recording (``ptt server --record``) has those.

A burst ends on its END_OF_BURST frame (after a short wait for overtaken frames), when another
talker or an idle floor is announced, or after the recorder's idle timeout.
"""

from __future__ import annotations

import dataclasses

from ptt.protocol import client as cl
from ptt.record.events import EventKind
from ptt.record.live import END_GRACE, LiveRecording
from ptt.wire.voice import VoiceFlags, VoiceHeader

__all__ = ["TALKERS_REMEMBERED", "MemberRecording"]

TALKERS_REMEMBERED = 64  # announced bursts whose talker is kept for their late frames


class MemberRecording:
    """Records ``group`` as ``user`` sees it into ``live``."""

    def __init__(self, live: LiveRecording, group: str, user: str) -> None:
        self.live = live
        self.group = group
        self.user = user
        self._talkers: dict[int, str] = {}  # burst id -> talker, from the announcements
        self._lost_connection = False

    def voice(self, header: VoiceHeader, payload: bytes, wall: float,
              current: tuple[str | None, int | None] = (None, None)) -> None:
        """One opened frame of the group; ``current``: the (talker, burst id) the member's view
        of the group holds now, for a burst whose announcement was not seen."""
        if header.flags & VoiceFlags.ENCRYPTED:
            # opened: what is stored is the plaintext Opus, as from a plain group
            header = dataclasses.replace(header, flags=header.flags & ~VoiceFlags.ENCRYPTED)
        talker = self._talkers.get(header.burst_id)
        if talker is None and current[1] == header.burst_id:
            talker = current[0]
        self.live.voice(self.group, talker, header, payload, wall)

    def event(self, ev: cl.ClientEvent, wall: float) -> None:
        """One event of the member's client core (others' groups are left out)."""
        live, group = self.live, self.group
        if isinstance(ev, cl.TalkerChanged) and ev.group == group:
            if ev.talker is None:
                live.end_group(group, wall, END_GRACE)
                live.event(group, EventKind.FLOOR_IDLE, wall, burst=ev.burst_id)
            else:
                self._talkers[ev.burst_id] = ev.talker
                if len(self._talkers) > TALKERS_REMEMBERED:
                    self._talkers.pop(next(iter(self._talkers)))
                live.end_group(group, wall, END_GRACE, keep=ev.burst_id)
                live.event(group, EventKind.FLOOR_GRANT, wall, user=ev.talker,
                           burst=ev.burst_id, seen_by="member")
        elif isinstance(ev, cl.PresenceChanged) and ev.group == group:
            kind = EventKind.JOIN if ev.online else EventKind.LEAVE
            live.event(group, kind, wall, user=ev.user)
        elif isinstance(ev, cl.GroupJoined) and ev.state.group == group:
            online = sorted(mi.user for mi in ev.state.members if mi.online)
            live.event(group, "joined", wall, user=self.user, online=online,
                       talker=ev.state.talker)
        elif isinstance(ev, cl.Disconnected):
            self._lost_connection = True
            live.end_group(group, wall)
            live.event(group, "disconnected", wall, reason=ev.reason)
        elif isinstance(ev, cl.Connected) and self._lost_connection:
            self._lost_connection = False
            live.event(group, "reconnected", wall)

    def page(self, sender: str, page_id: int, urgent: bool, sent: float, text: str | None,
             problem: str = "") -> None:
        """A text page of the group as the member read it (``text`` None: it did not open,
        ``problem`` says why)."""
        fields: dict[str, object] = {"text": text} if text is not None else {
            "sealed": True, "problem": problem}
        self.live.event(self.group, EventKind.PAGE, sent, user=sender, page=page_id,
                        urgent=urgent, seen_by="member", **fields)
