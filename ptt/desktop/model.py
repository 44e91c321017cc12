"""What the window shows, as plain data: no Tk here, so every state is testable directly.

The engine thread sends :class:`~ptt.protocol.client.ClientEvent` objects and the desktop events
below; :meth:`DesktopModel.apply` folds them in and :meth:`DesktopModel.view` says what to draw::

    model = DesktopModel("ann")
    model.apply(cl.Connected(...), now); model.apply(cl.GroupJoined(state), now)
    v = model.view(now)    # v.state is TalkState.IDLE, v.headline == "Ready", ...

Groups are kept in priority order, highest first: the first unmuted group with a talker is the
one heard (the mixer uses the same order) and the one named in the LISTENING state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from ptt.audio.levels import SILENCE_DBFS, Level
from ptt.client.calls import ReplyTarget, call_peer
from ptt.client.pages import ShownPage
from ptt.client.receipts import delivery_text
from ptt.protocol import client as cl

__all__ = [
    "BurstEnded", "ConnStatus", "DesktopEvent", "DesktopModel", "Failure", "GroupRow",
    "LevelUpdate", "LinkUpdate", "PageArrived", "TalkState", "View",
]

LEVEL_HOLD_S = 0.3  # a VU reading older than this decays to silence (the talker stopped)
MESSAGES_KEPT = 50  # text pages in the window's list, newest first


class TalkState(Enum):
    OFFLINE = "offline"
    IDLE = "idle"
    REQUESTING = "requesting"
    QUEUED = "queued"
    TALKING = "talking"
    RELEASING = "releasing"
    LISTENING = "listening"


# colours are part of the state's meaning (green: you talk, amber: wait, blue: someone else)
STATE_COLOURS = {
    TalkState.OFFLINE: "#7f8c8d",
    TalkState.IDLE: "#34495e",
    TalkState.REQUESTING: "#d68910",
    TalkState.QUEUED: "#b9770e",
    TalkState.TALKING: "#1e8449",
    TalkState.RELEASING: "#5d6d7e",
    TalkState.LISTENING: "#2471a3",
}


# --- events from the engine, besides the protocol's own ------------------------------------------


@dataclass(frozen=True, slots=True)
class ConnStatus:
    """The engine's connection state in words (connecting, connected, retrying...)."""

    text: str
    connected: bool


@dataclass(frozen=True, slots=True)
class LevelUpdate:
    level: Level


@dataclass(frozen=True, slots=True)
class BurstEnded:
    group: str
    frames: int
    reason: str


@dataclass(frozen=True, slots=True)
class Failure:
    message: str


@dataclass(frozen=True, slots=True)
class LinkUpdate:
    """While talking: the listeners' link and the protection chosen (``LinkChange.line()``)."""

    group: str
    text: str


@dataclass(frozen=True, slots=True)
class PageArrived:
    """A text page for this user (``ptt.client.pages``), to list until the person reads it."""

    page: ShownPage


DesktopEvent = ConnStatus | LevelUpdate | BurstEnded | Failure | LinkUpdate | PageArrived


@dataclass
class GroupRow:
    name: str
    members: list[str] = field(default_factory=list)
    online: set[str] = field(default_factory=set)
    talker: str | None = None
    participation: cl.Participation = cl.Participation.NO_PERMISSION
    position: int = 0
    muted: bool = False
    joined: bool = False

    def online_text(self, connected: bool = True) -> str:
        if not connected:
            return "presence unknown while offline"  # the last list shown could be stale
        names = sorted(self.online)
        return f"{len(names)}/{len(self.members) or len(names)} online: " + (", ".join(names)
                                                                                or "nobody")


@dataclass(frozen=True, slots=True)
class View:
    """Everything the window draws, for one instant."""

    state: TalkState
    headline: str  # big text: "TALKING", "QUEUED #2", "bob is talking"
    detail: str  # one line under it
    colour: str
    connection: str
    talk_group: str | None
    remaining_fraction: float | None  # of the talk time left, while TALKING
    level_dbfs: float  # the VU meter's reading, SILENCE_DBFS when not talking


class DesktopModel:
    """State of the window; fed by :meth:`apply`, read by :meth:`view`."""

    def __init__(self, user: str) -> None:
        self.user = user
        self.connection = "not connected"
        self.connected = False
        self.groups: dict[str, GroupRow] = {}  # insertion order = priority, highest first
        self.talk_group: str | None = None
        self.last_error = ""
        self.delivery = ""  # the delivery report of this client's last burst, as one line
        self.bursts = 0  # own bursts completed
        self._granted_at: float | None = None
        self._max_talk_ms = 0
        self._level = SILENCE_DBFS
        self._level_at = 0.0
        self.link = ""  # the talker's link while talking ("link: 3% loss -> 1 copy ...")
        self.reply = ReplyTarget()  # the call the button answers, for a while after it rang
        self.messages: list[ShownPage] = []  # text pages, newest first
        self.unread: list[ShownPage] = []  # of those, the ones the person has not read yet

    def mark_read(self) -> list[ShownPage]:
        """The person looked at the message list: every unread page is read now (returned,
        for their read receipts)."""
        read, self.unread = self.unread, []
        return read

    @property
    def messages_title(self) -> str:
        n = len(self.unread)
        urgent = sum(1 for p in self.unread if p.urgent)
        return ("Messages" + (f" ({n} unread" + (f", {urgent} URGENT" if urgent else "") + ")"
                              if n else ""))

    # --- the priority order and per-group switches ----------------------------------------------

    @property
    def order(self) -> list[str]:
        return list(self.groups)

    def raise_priority(self, group: str) -> None:
        """Move ``group`` one place up (towards the top, which wins)."""
        names = self.order
        i = names.index(group)
        if i > 0:
            names[i - 1], names[i] = names[i], names[i - 1]
            self.groups = {n: self.groups[n] for n in names}

    def set_muted(self, group: str, muted: bool) -> None:
        self.groups[group].muted = muted

    def select(self, group: str) -> None:
        if group in self.groups:
            self.talk_group = group

    def label(self, group: str) -> str:
        """A group's name on screen ("call with ann" for a call)."""
        peer = call_peer(group, self.user)
        return group if peer is None else f"call with {peer}"

    def talk_target(self, now: float) -> str | None:
        """Where the button talks: the call that rang last while it is open, else the
        selected group (which keeps the button while it is busy there)."""
        own = self.groups.get(self.talk_group) if self.talk_group else None
        busy = own is not None and own.participation is not cl.Participation.NO_PERMISSION
        if self.reply.active(now) and not busy:
            return self.reply.group
        return self.talk_group

    # --- events -------------------------------------------------------------------------------

    def apply(self, ev: cl.ClientEvent | DesktopEvent, now: float) -> None:  # noqa: C901
        if isinstance(ev, ConnStatus):
            self.connection, self.connected = ev.text, ev.connected
        elif isinstance(ev, cl.Connected):
            self.connected = True
            for name in ev.groups:
                self._row(name)
            if self.talk_group is None and ev.groups:
                self.talk_group = ev.groups[0]
        elif isinstance(ev, cl.Disconnected):
            self.connected = False
            self.connection = (f"session ended by the server: {ev.reason}" if ev.final
                               else f"disconnected: {ev.reason}")
            for row in self.groups.values():
                row.talker, row.participation = None, cl.Participation.NO_PERMISSION
        elif isinstance(ev, cl.GroupJoined):
            row = self._row(ev.state.group)
            row.joined = True
            row.members = [mi.user for mi in ev.state.members]
            row.online = {mi.user for mi in ev.state.members if mi.online}
            row.talker = ev.state.talker
        elif isinstance(ev, cl.PresenceChanged) and ev.group in self.groups:
            (self.groups[ev.group].online.add if ev.online
             else self.groups[ev.group].online.discard)(ev.user)
        elif isinstance(ev, cl.IncomingCall):
            self.reply.note(ev.group, ev.peer, now)
        elif isinstance(ev, cl.TalkerChanged) and ev.group in self.groups:
            self.groups[ev.group].talker = ev.talker
            if ev.group == self.reply.group and self.reply.peer is not None:
                self.reply.note(ev.group, self.reply.peer, now)  # each word keeps it open
        elif isinstance(ev, cl.FloorStateChanged) and ev.group in self.groups:
            row = self.groups[ev.group]
            row.participation, row.position = ev.state, ev.position
            if ev.state is cl.Participation.HAS_PERMISSION:
                self._granted_at, self._max_talk_ms = now, ev.max_talk_ms
                self.link = ""
            if ev.revoke_cause is not None:
                self.last_error = f"floor taken back ({ev.revoke_cause.name.lower()})"
        elif isinstance(ev, LevelUpdate):
            self._level, self._level_at = ev.level.rms_dbfs, now
        elif isinstance(ev, BurstEnded):
            self.bursts += 1
            self._level = SILENCE_DBFS
        elif isinstance(ev, LinkUpdate):
            self.link = ev.text
        elif isinstance(ev, PageArrived):
            self.messages.insert(0, ev.page)
            del self.messages[MESSAGES_KEPT:]
            self.unread.append(ev.page)
        elif isinstance(ev, Failure):
            self.last_error = ev.message
        elif isinstance(ev, cl.RequestFailed):
            self.last_error = ev.message
        elif isinstance(ev, cl.DeliveryReported):
            # the newest news wins the line under the headline: this report, or a later error
            self.last_error = ""
            peer = call_peer(ev.group, self.user)
            self.delivery = f"{self.label(ev.group)}: {delivery_text(ev, peer=peer)}"

    def _row(self, name: str) -> GroupRow:
        if name not in self.groups:
            self.groups[name] = GroupRow(name)
        return self.groups[name]

    # --- what to draw ---------------------------------------------------------------------------

    def heard_group(self) -> GroupRow | None:
        """The group whose talker is heard: the first unmuted one with someone else talking."""
        for row in self.groups.values():
            if row.talker not in (None, self.user) and not row.muted:
                return row
        return None

    def view(self, now: float) -> View:
        target = self.talk_target(now)
        mine = self.groups.get(target) if target else None
        part = mine.participation if mine else cl.Participation.NO_PERMISSION
        remaining: float | None = None
        level = SILENCE_DBFS
        detail = self.last_error or self.delivery
        if not self.connected:
            state, headline = TalkState.OFFLINE, "Offline"
            detail = self.connection
        elif part is cl.Participation.PENDING_REQUEST:
            state, headline = TalkState.REQUESTING, "Requesting…"
        elif part is cl.Participation.QUEUED:
            assert mine is not None
            state, headline = TalkState.QUEUED, f"Queued #{mine.position or 1}"
            detail = f"{mine.talker or 'someone'} is talking in {mine.name}"
        elif part is cl.Participation.HAS_PERMISSION:
            state, headline = TalkState.TALKING, f"TALKING in {self.label(target or '')}"
            left_s = None
            if self._granted_at is not None and self._max_talk_ms > 0:
                left_s = max(0.0, self._max_talk_ms / 1000 - (now - self._granted_at))
                remaining = left_s / (self._max_talk_ms / 1000)
            detail = f"{left_s:.0f} s of talk time left" if left_s is not None else ""
            if self.link:
                detail = f"{detail} · {self.link}" if detail else self.link
            if now - self._level_at < LEVEL_HOLD_S:
                level = self._level
        elif part is cl.Participation.PENDING_RELEASE:
            state, headline = TalkState.RELEASING, "Releasing…"
        elif (heard := self.heard_group()) is not None:
            state, headline = TalkState.LISTENING, f"{heard.talker} is talking"
            detail = f"in {heard.name}"
        elif self.reply.active(now):
            state, headline = TalkState.IDLE, f"Call from {self.reply.peer}"
            detail = f"hold to answer ({self.reply.seconds_left(now):.0f} s)"
        else:
            state, headline = TalkState.IDLE, "Ready: hold to talk"
        return View(state, headline, detail, STATE_COLOURS[state], self.connection,
                    self.talk_group, remaining, level)
