"""What the server core reports: frozen events for logs, metrics, recorders and administration.

:meth:`ServerCore.events() <ptt.protocol.server.ServerCore.events>` returns them in the order they
happened. The adapter answers :class:`AdminCommand` with ``ServerCore.admin_reply`` once it has
changed the store, and re-reads the group's multicast address on :class:`GroupUpdated`; the rest
are reports. Import them from ``ptt.protocol.server``, which re-exports every one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ptt.protocol import messages as m
from ptt.protocol.session import Addr

__all__ = [
    "AdminCommand",
    "DeliveryReported",
    "Dropped",
    "FloorEvent",
    "FloorRequested",
    "GroupUpdated",
    "MemberJoined",
    "MemberLeft",
    "PageDelivered",
    "PageRead",
    "PageStored",
    "PageSubmitted",
    "ServerEvent",
    "SessionEnded",
    "SessionMoved",
    "SessionStarted",
]


@dataclass(frozen=True, slots=True)
class SessionStarted:
    user: str
    session_id: int
    addr: Addr


@dataclass(frozen=True, slots=True)
class SessionMoved:
    """A session's client now sends from ``addr`` (its NAT rebound the port), no longer
    ``old``."""

    user: str
    session_id: int
    addr: Addr
    old: Addr


@dataclass(frozen=True, slots=True)
class SessionEnded:
    user: str
    session_id: int
    reason: str  # "bye", "expired", "replaced", "removed", "too many devices"


@dataclass(frozen=True, slots=True)
class MemberJoined:
    group: str
    user: str


@dataclass(frozen=True, slots=True)
class MemberLeft:
    group: str
    user: str


@dataclass(frozen=True, slots=True)
class FloorEvent:
    """A floor event from ``ptt.protocol.floor`` (Granted, Queued, Denied, Revoked, ...)."""

    event: object


@dataclass(frozen=True, slots=True)
class FloorRequested:
    group: str
    user: str
    priority: m.Priority


@dataclass(frozen=True, slots=True)
class AdminCommand:
    """A coordinator's request for the adapter to execute; answer with ``admin_reply``."""

    session_id: int
    user: str
    role: m.Role
    op: str
    args: dict[str, object]
    txn: int
    addr: Addr


@dataclass(frozen=True, slots=True)
class Dropped:
    addr: Addr
    reason: str


@dataclass(frozen=True, slots=True)
class GroupUpdated:
    """A group was created, changed (mode, multicast address) or removed: the adapter decides
    anew which group addresses it listens on."""

    group: str
    removed: bool = False


@dataclass(frozen=True, slots=True)
class DeliveryReported:
    """The delivery report sent to ``talker`` for ``burst_id`` (see ``server_delivery``)."""

    group: str
    talker: str
    burst_id: int
    frames: int
    heard: tuple[m.Receipt, ...]
    silent: tuple[str, ...]
    offline: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PageSubmitted:
    """A page that passed the checks: the adapter stores it, then answers with
    ``ServerCore.page_stored`` (or ``page_failed``); nothing is acknowledged before."""

    session_id: int
    user: str
    txn: int
    addr: Addr
    group: str  # "" for a direct page
    to: str
    body: bytes
    epoch: int
    urgent: bool
    recipients: frozenset[str]


@dataclass(frozen=True, slots=True)
class PageStored:
    """A page was stored and pushed to the online devices (for logs and recorders); ``page``
    is ``ptt.protocol.server_pages.PageEntry``, its receipts as they stand."""

    page: Any


@dataclass(frozen=True, slots=True)
class PageDelivered:
    """A device of ``user`` acknowledged page ``page_id``; its cursor is now ``cursor``."""

    page_id: int
    user: str
    device: str
    cursor: int


@dataclass(frozen=True, slots=True)
class PageRead:
    """A device of ``user`` showed page ``page_id`` to its person."""

    page_id: int
    user: str
    device: str


ServerEvent = (
    SessionStarted | SessionEnded | SessionMoved | MemberJoined | MemberLeft | FloorEvent
    | FloorRequested | AdminCommand | Dropped | GroupUpdated | DeliveryReported | PageSubmitted
    | PageStored | PageDelivered | PageRead
)
