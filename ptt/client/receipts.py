"""Burst receipts: a listening client tells the server how much of each burst reached it.

Every player of voice (``ptt listen``'s :class:`~ptt.client.voice.Listener`, the dispatcher's
monitor, the desktop mixer, the recorder client) hands each frame it accepted to
:meth:`Receipts.heard`, after opening it; the tally counts the distinct frames of the burst that
arrived, as a primary frame or as a redundant copy in a later datagram, and the highest sequence
number seen. When the burst is over for this listener (its END_OF_BURST frame plus
``RECEIPT_SETTLE`` for stragglers, the floor moving on, or no frame for ``RECEIPT_IDLE``) the
connection sends a ``BurstReceipt`` (again, updated, if frames of it still arrive); the server
turns the receipts into the talker's delivery report (``ptt.protocol.server_delivery``). Frames
that never reached a player (frames that did not open, another group's voice a single-group
listener does not play) are not counted: a receipt says what this client really received.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ptt.errors import NetError, ProtocolError
from ptt.media.packet import parse_payload
from ptt.protocol import messages as m
from ptt.protocol.client import ClientEvent, DeliveryReported
from ptt.wire.voice import VoiceFlags, VoiceHeader

if TYPE_CHECKING:
    from ptt.client.connection import Connection

RECEIPT_SETTLE = 0.1  # after the END_OF_BURST frame, for frames that arrive out of order
# no frame for this long: the burst is over here, though its END_OF_BURST frame and the floor's
# news were lost (a talker sends 50 frames a second; the server waits RECEIPT_WAIT for receipts)
RECEIPT_IDLE = 0.5
# a talker's wait for the delivery report once its release was answered: the server's own wait
# for receipts, and a margin for the report's way back
REPORT_WAIT = m.RECEIPT_WAIT + 1.5
_SENT_KEPT = 64  # bursts already receipted: frames that still come update the receipt


@dataclass
class BurstTally:
    """The frames of one burst that reached this listener."""

    group_id: int
    burst_id: int
    seqs: set[int] = field(default_factory=set)
    top: int = -1
    timer: asyncio.TimerHandle | None = None

    def add(self, header: VoiceHeader, payload: bytes) -> None:
        self.seqs.add(header.seq)
        try:
            copies = parse_payload(payload).redundancy
        except ProtocolError:
            copies = ()
        self.seqs.update(header.seq - off for off, _ in copies if header.seq >= off)
        self.top = max(self.top, header.seq)

    @property
    def received(self) -> int:
        return len(self.seqs)

    @property
    def expected(self) -> int:
        return self.top + 1


class Receipts:
    """The connection's tallies, one per burst being heard; see the module docstring."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._tallies: dict[tuple[int, int], BurstTally] = {}
        self._sent: OrderedDict[tuple[int, int], BurstTally] = OrderedDict()

    def heard(self, header: VoiceHeader, payload: bytes) -> None:
        """A player accepted this frame (opened: ``payload`` is the plain media payload)."""
        key = (header.group_id, header.burst_id)
        t = self._tallies.get(key)
        if t is None:
            # frames after the receipt went (a gap longer than RECEIPT_IDLE): count on and
            # send it again, the server keeps the newest
            t = self._tallies[key] = self._sent.pop(key) if key in self._sent else BurstTally(*key)
        t.add(header, payload)
        wait = RECEIPT_SETTLE if header.flags & VoiceFlags.END_OF_BURST else RECEIPT_IDLE
        if t.timer is not None:
            t.timer.cancel()
        t.timer = asyncio.get_running_loop().call_later(wait, self._send, key)

    def floor_moved(self, group_id: int, burst_id: int) -> None:
        """The floor announced ``burst_id`` (0: idle): every other burst of the group is over."""
        for key in [k for k in self._tallies if k[0] == group_id and k[1] != burst_id]:
            self._send(key)

    def flush(self) -> None:
        """Send every open tally now (the connection is closing)."""
        for key in list(self._tallies):
            self._send(key)

    def _send(self, key: tuple[int, int]) -> None:
        t = self._tallies.pop(key, None)
        if t is None:
            return
        if t.timer is not None:
            t.timer.cancel()
        self._sent[key] = t
        if len(self._sent) > _SENT_KEPT:
            self._sent.popitem(last=False)
        group = self._conn.group_of(t.group_id)
        if group is not None:
            self._conn.send_receipt(group, t.burst_id, t.received, t.expected)


def delivery_text(ev: DeliveryReported, sent: int = 0, peer: str | None = None) -> str:
    """The delivery report as one line: ``heard by 2 of 3 online members (cat 100%, coordinator
    98%); not confirmed: bob; offline: dan``. ``sent``: the frames the talker sent (the
    denominator when larger than what the server saw); ``peer``: the callee of a call."""
    total = max(ev.frames, sent, 1)

    def pct(r: m.Receipt) -> int:
        return min(100, r.received * 100 // max(total, r.expected, 1))

    heard = [r for r in ev.heard if r.received > 0]
    if peer is not None:
        for r in heard:
            if r.user == peer:
                return f"{peer} heard it ({pct(r)}%)"
        if peer in ev.offline:
            return f"{peer} is offline: not heard"
        return f"{peer} did not confirm hearing it"
    online = len(ev.heard) + ev.heard_more + len(ev.silent) + ev.silent_more
    # a large group's report names the receipts that got least: those left out got at least as
    # much, so they heard it whenever a named one did
    more_heard = ev.heard_more if heard else 0
    count = len(heard) + more_heard
    line = f"heard by {count} of {online} online member{'' if online == 1 else 's'}"
    if heard:
        more = f", and {more_heard} more" if more_heard else ""
        line += " (" + ", ".join(f"{r.user} {pct(r)}%" for r in heard) + more + ")"
    nothing = [r.user for r in ev.heard if r.received == 0]
    if nothing:
        line += f"; heard nothing: {', '.join(nothing)}"
        if ev.heard_more and not heard:
            line += f" ({ev.heard_more} more receipts not named)"
    if ev.silent:
        line += f"; not confirmed: {_names(ev.silent, ev.silent_more)}"
    if ev.offline:
        line += f"; offline: {_names(ev.offline, ev.offline_more)}"
    return line


def _names(names: list[str], more: int) -> str:
    """``dan, eve``, or for a list the report cut: ``996 (dan, eve, ..., and 956 more)``."""
    if not more:
        return ", ".join(names)
    return f"{len(names) + more} ({', '.join(names)}, and {more} more)"


async def await_delivery(conn: Connection, events: asyncio.Queue[ClientEvent], group: str,
                         burst: int) -> DeliveryReported | None:
    """The delivery report of ``burst`` from ``events`` (subscribed before the release), or None
    when none came within ``REPORT_WAIT``."""
    try:
        ev = await conn.wait_for(events, lambda e: isinstance(e, DeliveryReported)
                                 and e.group == group and e.burst_id == burst,
                                 REPORT_WAIT, "no delivery report")
    except NetError:
        return None
    assert isinstance(ev, DeliveryReported)
    return ev


def delivery_line(ev: DeliveryReported | None, sent: int = 0, peer: str | None = None) -> str:
    """What a talking command prints after a burst: :func:`delivery_text`, or that no report
    came."""
    return "delivery: no report from the server" if ev is None else delivery_text(ev, sent, peer)


__all__ = ["RECEIPT_IDLE", "RECEIPT_SETTLE", "REPORT_WAIT", "BurstTally", "Receipts",
           "await_delivery", "delivery_line", "delivery_text"]
