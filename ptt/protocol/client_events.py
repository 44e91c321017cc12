"""What the client core reports and keeps per group: connection state, events, group views.

:meth:`ClientCore.events() <ptt.protocol.client.ClientCore.events>` returns the events in the
order they happened; ``ClientCore.groups`` maps each group to its :class:`GroupView` (its floor
participant state is a :class:`~ptt.protocol.participant.Participation`). Import them from
``ptt.protocol.client``, which re-exports every one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from ptt.protocol import messages as m
from ptt.protocol.participant import Participation

__all__ = [
    "AdminResult", "CallOpened", "ClientEvent", "ConnState", "Connected", "DeliveryReported",
    "Disconnected",
    "FloorStateChanged", "GroupJoined", "GroupGone", "GroupLeft", "GroupView", "IncomingCall",
    "KeyGrantReceived", "LinkReported", "LoginFailed", "PageAccepted", "PageReceived",
    "PageReported", "Participation", "PresenceChanged", "RequestFailed", "TalkerChanged",
]


class ConnState(Enum):
    DISCONNECTED = "disconnected"
    LOGGING_IN = "logging in"
    CONNECTED = "connected"


# --- events out --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Connected:
    session_id: int
    role: m.Role
    groups: list[str]


@dataclass(frozen=True, slots=True)
class Disconnected:
    reason: str
    # the server ended the session for good (e.g. the user signed in on too many devices): the
    # client does not log in again
    final: bool = False


@dataclass(frozen=True, slots=True)
class LoginFailed:
    message: str


@dataclass(frozen=True, slots=True)
class GroupJoined:
    state: m.GroupState


@dataclass(frozen=True, slots=True)
class GroupLeft:
    group: str


@dataclass(frozen=True, slots=True)
class GroupGone:
    """A coordinator removed this user from ``group`` or deleted it: the group is dropped from
    this client's view (a GroupLeft follows) and not joined again."""

    group: str
    reason: m.GoneReason


@dataclass(frozen=True, slots=True)
class TalkerChanged:
    group: str
    talker: str | None
    burst_id: int
    priority: m.Priority = m.Priority.NORMAL  # EMERGENCY: listeners sound the alert


@dataclass(frozen=True, slots=True)
class LinkReported:
    """The server's summary of what this client's listeners receive of its burst ``burst_id``
    (``messages.LinkReport`` in fractions and frames): what the talker adapts to."""

    group: str
    burst_id: int
    listeners: int
    loss: float  # the 90th-percentile listener's loss fraction
    worst: float
    mean_run: float  # mean run of lost frames (0.0 without loss)
    late: float = 0.0  # share of packets that came after their frame was played


@dataclass(frozen=True, slots=True)
class PresenceChanged:
    group: str
    user: str
    online: bool


@dataclass(frozen=True, slots=True)
class FloorStateChanged:
    """The participant state in ``group`` changed; ``detail`` carries the cause or position."""

    group: str
    state: Participation
    burst_id: int = 0
    position: int = 0
    deny_cause: m.DenyCause = m.DenyCause.NONE
    revoke_cause: m.RevokeCause | None = None
    max_talk_ms: int = 0
    reason: str = ""  # with RevokeCause.SESSION_LOST: why the session was lost


@dataclass(frozen=True, slots=True)
class RequestFailed:
    what: str
    group: str
    message: str
    code: m.ErrorCode | None = None
    txn: int = 0  # the request that failed (0: not known): admin requests run many at once


@dataclass(frozen=True, slots=True)
class IncomingCall:
    group: str
    peer: str


@dataclass(frozen=True, slots=True)
class CallOpened:
    group: str
    peer: str


@dataclass(frozen=True, slots=True)
class KeyGrantReceived:
    """The server handed over this member's opaque grant of ``group``'s key for ``epoch`` (in a
    ``Joined`` answer or a ``KeyGrant`` push). Give it to ``GroupKeyring.accept``, which checks
    it. A push the server resends because our Ack was lost is acked again but not re-emitted;
    a grant repeated in the answer to a later Join is emitted again (accepting it is harmless).
    """

    group: str
    epoch: int
    grant: bytes


@dataclass(frozen=True, slots=True)
class DeliveryReported:
    """The server's delivery report for one of this client's bursts (``m.DeliveryReport``)."""

    group: str
    burst_id: int
    frames: int
    heard: list[m.Receipt]
    silent: list[str]
    offline: list[str]
    # how many each list leaves out (a large group's report names at most m.REPORT_NAMES each)
    heard_more: int = 0
    silent_more: int = 0
    offline_more: int = 0


@dataclass(frozen=True, slots=True)
class AdminResult:
    txn: int
    result: dict[str, object] | None
    error: tuple[m.ErrorCode, str] | None


@dataclass(frozen=True, slots=True)
class PageAccepted:
    """The server stored this client's page (request ``txn``) as ``page_id``."""

    txn: int
    page_id: int
    recipients: int
    online: int


@dataclass(frozen=True, slots=True)
class PageReceived:
    """A page for this device (once per page id per connection); ``body`` is as the server
    keeps it (sealed for a keyed group: ``ptt.client.pages`` opens it)."""

    page: m.PagePush


@dataclass(frozen=True, slots=True)
class PageReported:
    """Who has this client's page ``page_id`` (``m.PageReport``)."""

    page_id: int
    target: str
    delivered: list[str]
    pending: list[str]
    offline: list[str]


ClientEvent = (
    Connected | Disconnected | LoginFailed | GroupJoined | GroupLeft | TalkerChanged
    | PresenceChanged | FloorStateChanged | RequestFailed | IncomingCall | CallOpened | AdminResult
    | GroupGone
    | KeyGrantReceived | LinkReported | DeliveryReported | PageAccepted | PageReceived
    | PageReported
)


@dataclass(slots=True)
class GroupView:
    """What this client knows of one joined group."""

    name: str
    state: m.GroupState | None = None
    talker: str | None = None
    talker_burst: int = 0
    participation: Participation = Participation.NO_PERMISSION
    my_burst: int = 0
    position: int = 0
    online: set[str] = field(default_factory=set)
    revoked: set[int] = field(default_factory=set)  # bursts known to be over
    asked: tuple[m.Priority, float] | None = None  # the open floor request: priority, when asked
    guessed_end: int = 0  # our burst whose end was inferred from the group's news, not told
    version: int = 0  # of the floor state this view shows (FloorTaken.version)
    queue: tuple[str, ...] = ()  # who waits for the floor, in order, as of ``version``

    def forget(self, burst: int) -> None:
        """Remember ``burst`` as over, so a late or resent grant for it is refused."""
        if len(self.revoked) > 64:
            self.revoked.clear()
        self.revoked.add(burst)
