"""Replaying recordings into a live group: bursts of voice, or the floor events of a session.

:class:`BurstReplayer` (``ptt replay FILE|DIR --group G``) sends each recorded burst at its
original time through the normal floor procedure: ask for the floor ``LEAD`` seconds before the
burst is due (so the grant's round trip does not delay it), wait while queued, report a denial
and go on with the next burst, then send the stored Opus packets *as they are*, one datagram per
20 ms packet, paced by their recorded times, the last one flagged END_OF_BURST, and release.
A packet the recording lost (a lost-frame packet, or a hole left by a damaged page) is sent as
a lost-frame packet, so listeners conceal it and the frame numbering keeps its place. A file
whose parameters differ from what ptt sends (``ptt.record.export.check_params``: several
channels, packets other than 20 ms, ...) is decoded and re-encoded with ptt's encoder instead.

Timing: bursts start at ``offset / speed`` from the start of the replay (``--speed`` shortens or
stretches the silences between bursts; a burst itself always plays in real time, since voice
cannot be sent faster than it was spoken), never before the previous burst has ended and its
delivery report (``ptt.client.receipts``, printed after each burst as ``ptt talk`` prints it) has
come, or ``REPORT_WAIT`` has passed without it.

:class:`EventReplayer` (``ptt replay --events FILE.jsonl --group G``) replays the control events
of a session: several simulated users, each on its own connection, ask for the floor (with the
recorded priority) and release it at their recorded times, and send frames of encoded silence
while they hold it (as a talking user would: a silent holder loses the floor after the silence
timer). Grants, queueing and pre-emption then happen as the live server decides, so a race
between requests can be reproduced. :func:`~ptt.record.replay.floor_script` reads the actions
from an event log, :func:`~ptt.record.replay.burst_frames` the packets of a recorded burst.

Loss feedback: a replayed burst follows its listeners' link as ``ptt talk`` does
(:class:`~ptt.media.sender.RedundancyPolicy` fed the server's LinkReports, one policy across
the bursts, ``on_link`` hearing each change): the copies per packet and their offsets. The
stored packets are sent as they are, so the lower Opus rate the policy asks for under heavy
random loss applies only to a converted file, whose frames are encoded before the burst.

Encrypted groups: in a group with a key, both seal every frame they send with the key the
connection holds (:meth:`~ptt.client.keys.VoiceKeys.sealer`, one burst at a time, as the Talker
does). Without the key a burst is not sent at all (status "skipped", the floor released at
once): frames in the clear would only be dropped by every member.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from ptt.audio.codec import DEFAULT_BITRATE, FRAME_SECONDS, OpusEncoder
from ptt.audio.streams import SILENCE
from ptt.client.connection import RELEASE_WAIT, STOP_RELEASE_WAIT, Connection, deny_text
from ptt.client.keys import VoiceKeys
from ptt.client.receipts import await_delivery, delivery_line
from ptt.client.voice import LinkChange
from ptt.errors import AudioError, NetError, PttError, RecordingError
from ptt.media.sender import START_REDUNDANCY, Packetizer, RedundancyPolicy
from ptt.protocol import client as cl
from ptt.protocol import messages as m
from ptt.record.export import ReplayBurst
from ptt.record.replay import FloorAction, burst_frames
from ptt.wire.voice import encode_voice

__all__ = ["BurstOutcome", "BurstReplayer", "EventReplayer"]

log = logging.getLogger("ptt.replay")

LEAD = 0.15  # ask for the floor this long before a burst is due
LATE_NOTE = 0.02  # a burst starting later than this is reported as late
MAX_WAIT = 30.0  # how long a burst waits in the queue before it is skipped


# -- bursts ---------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class BurstOutcome:
    """What happened to one burst: ``status`` is sent, denied, lost (floor lost midway), skipped,
    or unacknowledged (sent, but the server never answered its release: it may not have been
    heard)."""

    label: str
    offset: float  # seconds from the start of the replay the burst was due at
    status: str
    frames: int = 0
    late: float = 0.0  # seconds after its due time the first frame went
    converted: bool = False
    detail: str = ""
    delivery: str = ""  # of a sent burst: the delivery report's line, as ptt talk prints it


class BurstReplayer:
    """Plays recorded bursts into ``group`` through ``conn`` (which has joined it)."""

    def __init__(
        self,
        conn: Connection,
        group: str,
        *,
        speed: float = 1.0,
        bitrate: int = DEFAULT_BITRATE,
        redundancy: int = START_REDUNDANCY,
        priority: m.Priority = m.Priority.NORMAL,
        max_wait: float = MAX_WAIT,
        echo: Callable[[str], None] | None = None,
        on_link: Callable[[LinkChange], None] | None = None,
    ) -> None:
        if not speed > 0:
            raise PttError("speed must be positive")
        self.conn = conn
        self.group = group
        self.speed = speed
        self.bitrate = bitrate
        self.redundancy = redundancy  # copies before the listeners' first report
        # as the Talker's: lives across the bursts, so the next starts from what this one learnt
        self.policy = RedundancyPolicy()
        self.policy.start(redundancy)
        self.on_link = on_link
        self.priority = priority
        self.max_wait = max_wait
        self.echo = echo or (lambda line: None)

    async def play(self, bursts: Iterable[ReplayBurst], stop: asyncio.Event | None = None
                   ) -> list[BurstOutcome]:
        loop = asyncio.get_running_loop()
        t0 = loop.time() + LEAD
        free_at = 0.0  # when the previous burst ended
        outcomes = []
        for rb in bursts:
            if stop is not None and stop.is_set():
                break
            due = max(t0 + rb.offset / self.speed, free_at)
            outcome = await self._one(rb, due, stop)
            outcomes.append(outcome)
            self.echo(_describe(outcome))
            if outcome.delivery:
                self.echo(outcome.delivery)
            free_at = loop.time()
        return outcomes

    async def _one(self, rb: ReplayBurst, due: float, stop: asyncio.Event | None
                   ) -> BurstOutcome:
        loop = asyncio.get_running_loop()
        label = rb.burst.label
        offset = rb.offset / self.speed
        try:
            frames, converted = burst_frames(rb, self.bitrate)
        except (AudioError, RecordingError) as exc:
            return BurstOutcome(label, offset, "skipped", detail=f"cannot convert: {exc}")
        if not frames:
            return BurstOutcome(label, offset, "skipped", detail="no readable audio")
        await _sleep_until(due - LEAD, stop)
        if stop is not None and stop.is_set():
            return BurstOutcome(label, offset, "skipped", detail="stopped")
        outcome = await self.conn.request_floor(self.group, self.priority)
        if outcome.state is cl.Participation.QUEUED:
            self.echo(f"{label}: queued #{outcome.position}, waiting for the floor")
            waiting = asyncio.ensure_future(self.conn.wait_floor(self.group, self.max_wait))
            stopped = asyncio.ensure_future(stop.wait() if stop is not None
                                            else asyncio.Event().wait())
            try:
                await asyncio.wait({waiting, stopped}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stopped.cancel()
            if not waiting.done():  # a stop key while queued: leave the queue at once
                waiting.cancel()
                await self.conn.release_floor(self.group)
                return BurstOutcome(label, offset, "skipped", detail="stopped while queued")
            try:
                outcome = waiting.result()
            except NetError:
                await self.conn.release_floor(self.group)  # withdraw from the queue
                return BurstOutcome(label, offset, "denied",
                                    detail=f"still queued after {self.max_wait:g} s")
        if outcome.state is not cl.Participation.HAS_PERMISSION:
            cause = (deny_text(outcome.deny_cause) if outcome.deny_cause != m.DenyCause.NONE
                     else "not granted")
            return BurstOutcome(label, offset, "denied", detail=f"floor denied: {cause}")
        route = self.conn.core.talk_route(self.group)
        assert route is not None
        burst = route[2]
        try:
            # a keyed group's burst is sealed with the key current now, to its end
            sealer = VoiceKeys.of(self.conn).sealer(self.group)
        except PttError as exc:
            await self.conn.release_floor(self.group)
            return BurstOutcome(label, offset, "skipped", converted=converted, detail=str(exc))
        await _sleep_until(due, stop)
        start = max(due, loop.time())
        pk = Packetizer(*route, offsets=self.policy.settings.offsets,
                        seal=encode_voice if sealer is None else sealer.seal)
        reports = self.conn.subscribe()
        delivery = ""
        try:
            status, detail, sent = await self._send(frames, pk, route, start, stop, reports)
            if status == "sent":
                # as ptt talk: the burst counts once its end is acknowledged, then its report;
                # after a stop key neither is waited for long (out within a second or two)
                stop_asked = stop is not None and stop.is_set()
                if await self.conn.release_floor(self.group, timeout=STOP_RELEASE_WAIT
                                                 if stop_asked else RELEASE_WAIT):
                    if not stop_asked:
                        delivery = delivery_line(
                            await await_delivery(self.conn, reports, self.group, burst), sent)
                else:
                    status, detail = "unacknowledged", "the server did not answer its release"
        finally:
            self.conn.unsubscribe(reports)
        return BurstOutcome(label, offset, status, sent, start - due, converted, detail,
                            delivery)

    def _follow_link(self, reports: asyncio.Queue[cl.ClientEvent], pk: Packetizer,
                     heard: bool) -> bool:
        """Take the LinkReports of this burst that came in; whether one has been heard."""
        while not reports.empty():
            ev = reports.get_nowait()
            if isinstance(ev, cl.LinkReported) and ev.group == self.group and (
                    ev.burst_id == pk.burst_id):
                before = self.policy.settings
                settings = self.policy.update(ev.loss, ev.mean_run)
                pk.offsets = settings.offsets
                if (not heard or settings != before) and self.on_link is not None:
                    self.on_link(LinkChange(ev.loss, ev.mean_run, ev.listeners, settings))
                heard = True
        return heard

    async def _send(self, frames: list[tuple[float, bytes]], pk: Packetizer,
                    route: tuple[int, int, int], start: float,
                    stop: asyncio.Event | None, reports: asyncio.Queue[cl.ClientEvent]
                    ) -> tuple[str, str, int]:
        """Send one burst's frames at their times; (status, detail, frames sent)."""
        loop = asyncio.get_running_loop()
        sent = 0
        status, detail = "sent", ""
        heard = False  # a report of this burst: the first one is shown even if nothing changes
        for i, (at, packet) in enumerate(frames):
            delay = start + at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            heard = self._follow_link(reports, pk, heard)
            if self.conn.core.talk_route(self.group) != route:
                status, detail = "lost", f"floor lost after {at:.1f} s"
                break
            if stop is not None and stop.is_set():
                last = True
            else:
                last = i == len(frames) - 1
            self.conn.send_voice(pk.packetize(packet, last=last))
            sent += 1
            if last:
                break
        return status, detail, sent


def _describe(o: BurstOutcome) -> str:
    when = f"+{o.offset:7.2f}s"
    if o.status == "sent":
        late = f", {o.late * 1000:.0f} ms late" if o.late > LATE_NOTE else ""
        conv = ", converted" if o.converted else ""
        return f"{when}  {o.label}: sent {o.frames * FRAME_SECONDS:.2f} s{conv}{late}"
    return f"{when}  {o.label}: {o.status}: {o.detail}"


async def _sleep_until(when: float, stop: asyncio.Event | None = None) -> None:
    delay = when - asyncio.get_running_loop().time()
    if delay <= 0:
        return
    if stop is None:
        await asyncio.sleep(delay)
        return
    try:
        await asyncio.wait_for(stop.wait(), delay)
    except TimeoutError:
        pass


# -- control events -------------------------------------------------------------------------------
class EventReplayer:
    """Simulated users acting out a :func:`~ptt.record.replay.floor_script` in ``group``.

    ``conns`` maps each recorded user name to a logged-in connection that has joined the group
    (its own user name may differ, e.g. a temporary user). ``echo`` gets one line per action
    and per floor outcome.
    """

    def __init__(self, conns: Mapping[str, Connection], group: str, *, speed: float = 1.0,
                 echo: Callable[[str], None] | None = None) -> None:
        if not speed > 0:
            raise PttError("speed must be positive")
        self.conns = dict(conns)
        self.group = group
        self.speed = speed
        self.echo = echo or (lambda line: None)
        self.outcomes: list[tuple[float, str, str]] = []  # (seconds, recorded user, what)
        self._silence = OpusEncoder().encode(SILENCE)
        self._tasks: set[asyncio.Task[None]] = set()

    async def play(self, script: list[FloorAction], stop: asyncio.Event | None = None,
                   tail: float = 0.5) -> list[tuple[float, str, str]]:
        """Run the script; returns what each user experienced, in order."""
        loop = asyncio.get_running_loop()
        t0 = loop.time() + 0.05
        pumps = [asyncio.create_task(self._pump(user, conn))
                 for user, conn in self.conns.items()]
        watchers = [asyncio.create_task(self._watch(user, conn, t0))
                    for user, conn in self.conns.items()]
        try:
            per_user: dict[str, list[FloorAction]] = {}
            for a in script:
                per_user.setdefault(a.user, []).append(a)
            await asyncio.gather(*(self._act(u, acts, t0, stop) for u, acts in per_user.items()))
            await _sleep_until(loop.time() + tail, stop)
        finally:
            rest = pumps + watchers + list(self._tasks)
            for t in rest:
                t.cancel()
            await asyncio.gather(*rest, return_exceptions=True)
            for conn in self.conns.values():
                if conn.core.participation(self.group) is not cl.Participation.NO_PERMISSION:
                    await conn.release_floor(self.group)
        return self.outcomes

    async def _act(self, user: str, actions: list[FloorAction], t0: float,
                   stop: asyncio.Event | None) -> None:
        conn = self.conns.get(user)  # none for a user who only paged: pages are only shown
        for a in actions:
            await _sleep_until(t0 + a.at / self.speed, stop)
            if stop is not None and stop.is_set():
                return
            if a.action == "page":
                self.echo(f"+{a.at / self.speed:7.2f}s  {user} {a.text}")
            elif conn is None:
                continue
            elif a.action == "request":
                self.echo(f"+{a.at / self.speed:7.2f}s  {user} asks for the floor"
                          + ("" if a.priority == m.Priority.NORMAL
                             else f" ({a.priority.name.lower()})"))
                # the answer is awaited aside: this user's next action keeps its recorded time
                task = asyncio.create_task(self._request(user, conn, a.priority))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            else:
                self.echo(f"+{a.at / self.speed:7.2f}s  {user} releases the floor")
                await conn.release_floor(self.group)

    async def _request(self, user: str, conn: Connection, priority: m.Priority) -> None:
        try:
            await conn.request_floor(self.group, priority)
        except PttError as exc:
            self.echo(f"{user}: the floor request failed: {exc}")

    async def _watch(self, user: str, conn: Connection, t0: float) -> None:
        q = conn.subscribe()
        loop = asyncio.get_running_loop()
        try:
            while True:
                ev = await q.get()
                if not isinstance(ev, cl.FloorStateChanged) or ev.group != self.group:
                    continue
                what = None
                if ev.state is cl.Participation.HAS_PERMISSION:
                    what = "granted"
                elif ev.state is cl.Participation.QUEUED:
                    what = f"queued #{ev.position}"
                elif ev.state is cl.Participation.NO_PERMISSION:
                    if ev.deny_cause != m.DenyCause.NONE:
                        what = f"denied: {deny_text(ev.deny_cause)}"
                    elif ev.revoke_cause is not None:
                        what = f"revoked: {ev.revoke_cause.name.lower()}"
                if what is not None:
                    at = loop.time() - t0
                    self.outcomes.append((at, user, what))
                    self.echo(f"+{at:7.2f}s  {user}: {what}")
        finally:
            conn.unsubscribe(q)

    async def _pump(self, user: str, conn: Connection) -> None:
        """Frames of silence while the user holds the floor, as a talking member sends voice."""
        pk: Packetizer | None = None
        route = None
        keys = VoiceKeys.of(conn)
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            now_route = conn.core.talk_route(self.group)
            if now_route != route:
                route, pk = now_route, None
                if route is not None:
                    try:
                        sealer = keys.sealer(self.group)  # a new burst: the key current now
                    except PttError as exc:
                        # holds the floor in silence; the server's timer ends it
                        self.echo(f"{user}: {exc}")
                    else:
                        pk = Packetizer(*route, seal=encode_voice if sealer is None
                                        else sealer.seal)
            if pk is not None:
                conn.send_voice(pk.packetize(self._silence))
            next_at = max(next_at + FRAME_SECONDS, loop.time())
            await asyncio.sleep(next_at - loop.time())
