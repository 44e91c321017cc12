"""The recorder client: a group member that stores what it hears (``ptt record GROUP --out DIR``).

It joins the group like any listener (a listen-only membership is enough) and hands a
:class:`~ptt.record.member.MemberRecording` (what becomes of it: :mod:`ptt.record.member`)

* every voice datagram of the group the connection hands to ``on_voice``, opened: relay or
  multicast alike, since the connection has already dropped multicast frames of anyone but the
  announced holder;
* every event of the client core, and the group's text pages.

Encrypted groups: frames are opened with the group key this member holds
(:meth:`~ptt.client.keys.VoiceKeys.open_voice`) and the plaintext Opus packets are stored, so the
files play like any other (unlike the server's recording, which holds only the events of such a
group). Frames that do not open (no key yet, in the clear, forged, replayed) are not recorded
and are counted (``RecordReport.undecryptable``). The files are then as secret as the voice:
keep the recording directory as private as the member's token.

Use::

    rec = GroupRecorder(conn, "volunteers", "recordings")
    await conn.join("volunteers")
    report = await rec.run(stop)     # until stop is set; rec.live.finished lists the bursts
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ptt.client.connection import Connection
from ptt.client.keys import VoiceKeys
from ptt.client.pages import PageInbox, ShownPage
from ptt.media.playout import FrameOpener
from ptt.protocol import client as cl
from ptt.record.live import TICK_INTERVAL, LiveRecording
from ptt.record.member import MemberRecording
from ptt.record.recorder import BurstSummary

__all__ = ["GroupRecorder", "RecordReport"]


@dataclass(frozen=True, slots=True)
class RecordReport:
    bursts: int
    seconds: float  # talk time recorded
    lost: int  # 20 ms slots no packet (nor a copy) arrived for
    errors: int  # recording errors (disk): see the log
    undecryptable: int = 0  # encrypted group: frames that did not open (no key, forged, ...)


class GroupRecorder:
    """Records one joined group of ``conn`` into ``directory`` (see the module docstring)."""

    def __init__(
        self,
        conn: Connection,
        group: str,
        directory: str | os.PathLike[str],
        *,
        on_burst: Callable[[BurstSummary], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.conn = conn
        self.group = group
        self.live = LiveRecording(directory)
        self.member = MemberRecording(self.live, group, conn.user)
        self.on_burst = on_burst
        self._clock = clock
        self._events = conn.subscribe()
        self._reported = 0
        self.keys = VoiceKeys.of(conn)
        self.frames = FrameOpener(self.keys.open_voice)

    @property
    def undecryptable(self) -> int:
        """Frames of this group that did not open."""
        return self.frames.undecryptable

    def _learn_group_id(self) -> None:
        g = self.conn.core.groups.get(self.group)
        if g is not None and g.state is not None:  # joined: the directory takes the group's id
            self.live.set_group_id(self.group, g.state.group_id)

    def group_dir(self) -> Path:
        """Where this group's files go (``DIR/<name>`` or ``DIR/<slug>+<id>``); once joined."""
        self._learn_group_id()
        return self.live.recorder.group_dir(self.group)

    # -- voice ------------------------------------------------------------------------------------
    def _on_voice(self, datagram: bytes) -> None:
        # floor news first: a burst's first frame may come before this loop's next turn
        self._drain()
        g = self.conn.core.groups.get(self.group)
        if g is None or g.state is None:
            return
        group_id = g.state.group_id  # another group this connection has joined is not recorded
        opened = self.frames.open(datagram, lambda gid: gid == group_id)
        if opened is None:
            return
        self.member.voice(*opened, self._clock(), (g.talker, g.talker_burst))
        self.conn.receipts.heard(*opened)

    # -- events -----------------------------------------------------------------------------------
    def _drain(self) -> None:
        while not self._events.empty():
            self._handle(self._events.get_nowait())

    def _handle(self, ev: cl.ClientEvent) -> None:
        self.member.event(ev, self._clock())

    def record_pages(self, device: str) -> None:
        """Record the group's text pages too, opened with the member's key (a recorder is a
        member: it reads what the server cannot), under its own page ``device`` so that the
        member's own clients still show them. A recorder is no person: no read receipts."""
        inbox = PageInbox(self.conn, device)

        def on_page(page: ShownPage) -> None:
            if page.group == self.group:
                self.member.page(page.sender, page.page_id, page.urgent, page.sent, page.text,
                                 page.problem)

        inbox.on_page.append(on_page)

    def _report_new(self) -> None:
        finished = self.live.finished
        while self._reported < len(finished):
            if self.on_burst is not None:
                self.on_burst(finished[self._reported])
            self._reported += 1

    async def run(self, stop: asyncio.Event) -> RecordReport:
        """Record until ``stop`` is set; then finish the files and close the log."""
        previous = self.conn.on_voice
        self.conn.on_voice = self._on_voice
        self._learn_group_id()
        self.live.event(self.group, "recording", self._clock(), user=self.conn.user)
        try:
            while not stop.is_set():
                self._drain()
                self.live.tick(self._clock())
                self._report_new()
                try:
                    await asyncio.wait_for(stop.wait(), TICK_INTERVAL)
                except TimeoutError:
                    pass
            self._drain()
        finally:
            self.conn.on_voice = previous
            self.conn.unsubscribe(self._events)
            self.live.close(self._clock())
            self._report_new()
        done = self.live.finished
        return RecordReport(len(done), sum(s.duration for s in done), sum(s.lost for s in done),
                            self.live.errors, self.undecryptable)
