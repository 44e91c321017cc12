"""Control messages: frozen dataclasses, one per message type.

Every control datagram is one of these. ``ptt.wire.control`` turns them into bytes and back; the
codec bound to them here (:data:`CODEC`) is what the rest of ptt calls: :func:`encode_message`,
:func:`decode_message` and the fast paths.
Requests from a client carry ``txn`` (a transaction id, unique per session) so that the server can
answer retransmissions from its response cache; unsolicited server messages that matter
(``FloorGranted`` from the queue, ``FloorRevoked``) carry a server ``txn`` and are resent until the
client answers with ``Ack``.

Field types are restricted to what the wire validator understands: ``int``, ``float``, ``str``,
``bytes``, ``bool``, ``X | None``, ``list[X]``, ``dict[str, X]``, IntEnums and the nested record
dataclasses defined here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

from ptt.wire.control import ControlCodec

PROTOCOL_VERSION = 1


class MsgType(IntEnum):
    """The first element after the version in every control datagram."""

    # session
    HELLO = 1
    CHALLENGE = 2
    LOGIN = 3
    WELCOME = 4
    HEARTBEAT = 5
    HEARTBEAT_ACK = 6
    BYE = 7
    ACK = 8
    ERROR = 9
    SESSION_CLOSED = 10
    PATH_CHECK = 11
    SESSION_GONE = 12
    # groups
    JOIN = 20
    JOINED = 21
    LEAVE = 22
    LEFT = 23
    PRESENCE = 24
    KEY_GRANT = 25
    PRESENCE_BATCH = 26
    # floor
    FLOOR_REQUEST = 40
    FLOOR_RESPONSE = 41
    FLOOR_RELEASE = 42
    FLOOR_RELEASED = 43
    FLOOR_GRANTED = 44
    FLOOR_REVOKED = 45
    FLOOR_TAKEN = 46
    FLOOR_IDLE = 47
    QUEUE_POSITION = 48
    # loss feedback (listeners -> server -> talker)
    RECEIVER_REPORT = 50
    LINK_REPORT = 51
    # delivery: how much of a burst each listener received, and the talker's report of it
    BURST_RECEIPT = 55
    DELIVERY_REPORT = 56
    # one-to-one calls
    CALL = 60
    CALL_RESPONSE = 61
    INCOMING_CALL = 62
    # membership news
    GROUP_GONE = 63
    # text pages: kept by the server, delivered to each device once, with receipts
    PAGE_SEND = 70
    PAGE_ACCEPTED = 71
    PAGE_PUSH = 72
    PAGE_RECEIPT = 73
    PAGE_REPORT = 74
    PAGE_SUBSCRIBE = 75
    # administration (coordinator)
    ADMIN = 80
    ADMIN_RESPONSE = 81


class Priority(IntEnum):
    """Floor priorities: a higher value pre-empts a lower holder."""

    NORMAL = 0
    HIGH = 1  # coordinator, dispatcher
    EMERGENCY = 2


class FloorResult(IntEnum):
    GRANTED = 0
    QUEUED = 1
    DENIED = 2


class DenyCause(IntEnum):
    NONE = 0
    NOT_MEMBER = 1
    LISTEN_ONLY = 2
    QUEUE_FULL = 3
    RETRY_LATER = 4
    NOT_ALLOWED = 5  # priority not permitted for this role
    NO_SESSION = 6


class RevokeCause(IntEnum):
    PREEMPTED = 1
    MAX_TALK_TIME = 2
    SILENCE = 3  # no voice from the holder for T1
    SESSION_LOST = 4
    REMOVED = 5  # removed from the group
    NO_START = 6  # granted from the queue but never started talking (T132-like)
    GROUP_DELETED = 7
    FAILOVER = 8  # the group's home node died; the node that took the group over freed the floor


class GoneReason(IntEnum):
    """Why a member is no longer in a group (``GroupGone``)."""

    REMOVED = 1  # a coordinator removed it from the group
    DELETED = 2  # a coordinator deleted the group
    CALL_LOST = 3  # a one-to-one call ended by its home node (it died) while this session was in it


class Role(IntEnum):
    VOLUNTEER = 0
    DISPATCHER = 1
    COORDINATOR = 2


class ErrorCode(IntEnum):
    """Codes of ``Error`` answers; the CLI maps them to one-line messages."""

    BAD_REQUEST = 1
    NO_SESSION = 2
    AUTH_FAILED = 3
    FORBIDDEN = 4
    NOT_FOUND = 5
    CONFLICT = 6
    INVALID = 7
    NOT_MEMBER = 8
    INTERNAL = 9
    RATE_LIMITED = 10


# --- nested records ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MemberInfo:
    user: str
    online: bool
    listen_only: bool = False


@dataclass(frozen=True, slots=True)
class GroupState:
    """What a member learns when joining a group (and what ``group show`` prints)."""

    group: str
    group_id: int
    members: list[MemberInfo]
    talker: str | None = None
    burst_id: int = 0
    queue: list[str] = field(default_factory=list)
    max_talk_ms: int = 30_000
    mode: str = "relay"
    mcast_addr: str | None = None
    mcast_port: int = 0
    key_epoch: int = 0  # the group key's epoch (0: the group has no key yet)
    version: int = 0  # of the floor state (talker, idle): see FloorTaken.version
    # how many members the group has when ``members`` lists only some of them (the Join answer
    # of a group too large for one datagram: online members first); 0: all are listed
    members_total: int = 0
    # the server hears the group address and bridges relay talkers onto it: any burst may be
    # heard by multicast there, where only a talker's signature tells it from a member's forgery
    bridged: bool = False


@dataclass(frozen=True, slots=True)
class PresenceChange:
    """One member's presence in a ``PresenceBatch``: online when it has a device in the group."""

    user: str
    online: bool


# --- session -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Hello:
    """First step of login: the client names itself and sends its nonce.

    ``pad`` makes the datagram at least ``ptt.protocol.limits.MIN_HELLO_SIZE`` bytes, so the
    Challenge it draws is never larger (no amplification); the server ignores its content.
    """

    txn: int
    user: str
    client_nonce: bytes
    pad: bytes = b""


@dataclass(frozen=True, slots=True)
class Challenge:
    txn: int
    server_nonce: bytes
    salt: bytes
    iterations: int


@dataclass(frozen=True, slots=True)
class Login:
    """Second step: proof = HMAC(verifier, "ptt-login" || client_nonce || server_nonce || user).

    The token never travels; see ``ptt.protocol.auth``.
    """

    txn: int
    user: str
    client_nonce: bytes
    server_nonce: bytes
    proof: bytes
    # the client's device id: a user may be online from several devices at once, and a login
    # from a device that has a session replaces that one only
    device: str = ""
    # groups to join with the login: the k-th is answered by a sealed Joined (or Error) with
    # txn login_txn + 1 + k (``join_txn``) right after the Welcome, as if the client had sent
    # that Join; as many as fit in a plain datagram (the client sends Joins for the rest)
    joins: list[str] = field(default_factory=list)


# Bytes of Joined answers folded into one Welcome: the Welcome stays one unfragmented datagram
# on an Ethernet path (a group of 10 is ~95 bytes; a large group's Joined comes on its own)
WELCOME_JOINED_BYTES = 1_200


def next_txn(txn: int) -> int:
    """The transaction id after ``txn``: ids are 31-bit and never 0."""
    return (txn + 1) & 0x7FFFFFFF or 1


def join_txn(login_txn: int, k: int) -> int:
    """The txn answering the ``k``-th group of a Login's ``joins`` (0-based)."""
    return (login_txn + k) % 0x7FFFFFFF + 1  # next_txn k + 1 times: ids 1..2**31-1 in a ring


@dataclass(frozen=True, slots=True)
class Welcome:
    txn: int
    session_id: int
    role: Role
    heartbeat_ms: int  # the busy cadence (ptt.protocol.keepalive)
    session_timeout_ms: int
    groups: list[str]
    idle_heartbeat_ms: int = 0  # the idle cadence; 0: heartbeat_ms always
    # a cluster's access nodes (HOST:PORT), for the client's server list: its session moves
    # to another of them when its node dies (ptt.protocol.server_list); empty on a lone server
    servers: list[str] = field(default_factory=list)
    # a cluster node's hint: the access address (HOST:PORT) of the node that homes most of the
    # user's groups, where its floor, voice and presence need not cross the bus; the client
    # moves there once (ptt.protocol.server_list, "Steering"). Empty: stay
    home: str = ""
    # the answers to the Login's joins, each an encoded ``Joined`` as its own datagram would
    # carry it (txn ``join_txn``), sealed once with the Welcome: a moved client's one datagram
    # back is answered by one. As many as fit in ``WELCOME_JOINED_BYTES``; the other joins are
    # answered each in its own Joined after the Welcome (a client takes both)
    joined: list[bytes] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Heartbeat:
    txn: int
    session_id: int


@dataclass(frozen=True, slots=True)
class HeartbeatAck:
    txn: int
    # the sum (mod 2**32) of the floor-state versions of the groups this session joined: a
    # client whose own sum differs missed an announcement and asks for the state again
    digest: int = 0


@dataclass(frozen=True, slots=True)
class Bye:
    txn: int
    session_id: int


@dataclass(frozen=True, slots=True)
class Ack:
    """Acknowledges a request without payload, or an unsolicited server message by its txn."""

    txn: int
    session_id: int = 0


@dataclass(frozen=True, slots=True)
class Error:
    txn: int
    code: ErrorCode
    message: str


@dataclass(frozen=True, slots=True)
class SessionClosed:
    """Sealed, server to client: the server ended this session for ``reason`` (e.g. the user
    signed in on more devices than allowed); the client stops and does not log in again. Sent
    until the client acknowledges ``txn`` (an Ack), at most ``RETRY_TOTAL``; 0: not resent."""

    reason: str
    txn: int = 0


@dataclass(frozen=True, slots=True)
class SessionGone:
    """Plain, server to client, unasked: the session this address had is gone (a restarted
    server tells the clients of its last run; a surviving cluster node, a dead node's clients).
    Anyone could send one, so a client takes it as a hint, as it takes ``Error(NO_SESSION)``.
    ``nonce``: a server nonce for the client's next Login to the server that sent it
    (``ptt.protocol.auth.invite_nonce``), so it logs in without a Hello first. ``spread_ms``:
    a cluster node's notice says over how long its share of a dead node's clients spread their
    logins (``ptt.protocol.server_list.ServerList.move``); 0: the client's own window."""

    nonce: bytes
    spread_ms: int = 0


@dataclass(frozen=True, slots=True)
class PathCheck:
    """Sealed, server to client: a session's voice came from a new address (a NAT rebound its
    port). The client answers with a heartbeat; a sealed datagram with a newer sequence number
    from that address moves the session there."""

    nonce: int = 0


# --- groups ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Join:
    txn: int
    session_id: int
    group: str


@dataclass(frozen=True, slots=True)
class Joined:
    """Answer to ``Join``; ``grant`` is the joining member's opaque group-key grant for
    ``state.key_epoch`` (``ptt.crypto.groupkeys``), empty when it has none."""

    txn: int
    state: GroupState
    grant: bytes = b""


@dataclass(frozen=True, slots=True)
class Leave:
    txn: int
    session_id: int
    group: str


@dataclass(frozen=True, slots=True)
class Left:
    txn: int
    group: str


@dataclass(frozen=True, slots=True)
class Presence:
    """A member came online or went offline (announced to the group, not acknowledged)."""

    group: str
    user: str
    online: bool


@dataclass(frozen=True, slots=True)
class PresenceBatch:
    """The members of ``group`` whose presence changed since the group's last batch, each as it
    is when the batch leaves (announced to the group, not acknowledged). The server gathers them
    for a while (``ptt.protocol.server_groups.PRESENCE_INTERVAL``): N members joining at once
    cost a few batches to each member, not N ``Presence`` each. ``Presence`` is what older
    servers send; clients take both."""

    group: str
    changes: list[PresenceChange]


@dataclass(frozen=True, slots=True)
class KeyGrant:
    """Unsolicited, acknowledged with ``Ack``: the member's opaque grant of ``group``'s key for
    ``epoch``, sent when a coordinator uploads a new epoch. The server cannot open it."""

    txn: int
    group: str
    epoch: int
    grant: bytes


# --- floor -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FloorRequest:
    txn: int
    session_id: int
    group: str
    priority: Priority = Priority.NORMAL


@dataclass(frozen=True, slots=True)
class FloorResponse:
    txn: int
    group: str
    result: FloorResult
    burst_id: int = 0
    position: int = 0
    cause: DenyCause = DenyCause.NONE
    max_talk_ms: int = 0


@dataclass(frozen=True, slots=True)
class FloorRelease:
    txn: int
    session_id: int
    group: str
    burst_id: int = 0  # 0 also withdraws a queued request


@dataclass(frozen=True, slots=True)
class FloorReleased:
    txn: int
    group: str


@dataclass(frozen=True, slots=True)
class FloorGranted:
    """Unsolicited grant (from the queue, or after pre-emption); acknowledged with ``Ack``."""

    txn: int
    group: str
    burst_id: int
    max_talk_ms: int
    start_within_ms: int


@dataclass(frozen=True, slots=True)
class FloorRevoked:
    """The holder must stop within ``grace_ms``; acknowledged with ``Ack``."""

    txn: int
    group: str
    burst_id: int
    cause: RevokeCause
    grace_ms: int


@dataclass(frozen=True, slots=True)
class FloorTaken:
    """Announced to every member: ``talker`` now holds the floor with ``burst_id``."""

    group: str
    talker: str
    burst_id: int
    priority: Priority
    max_talk_ms: int
    # counts the group's floor changes (taken, idle, the queue); news with an older version is
    # stale
    version: int = 0
    # who waits, in order: with the version, the news is the whole floor state, so a member that
    # lost earlier news (a queue change included) is caught up by the latest
    queue: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class FloorIdle:
    """Announced to every member: nobody holds the floor; ``burst_id`` is the burst that ended."""

    group: str
    burst_id: int
    version: int = 0  # see FloorTaken.version


@dataclass(frozen=True, slots=True)
class QueuePosition:
    group: str
    position: int  # 1-based; 0 means no longer queued


# --- loss feedback -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReceiverReport:
    """A listener's reception of ``burst_id`` in ``group`` since its previous report (about one a
    second while the burst plays): frames that fell due, how many of them arrived missing, in how
    many runs, and packets that came after their frame was played. Not acknowledged: the next
    report supersedes a lost one. The server aggregates them (``ptt.protocol.server_feedback``)."""

    session_id: int
    group: str
    burst_id: int
    frames: int
    lost: int
    runs: int
    late: int = 0


@dataclass(frozen=True, slots=True)
class LinkReport:
    """The server's summary of ``group``'s listeners, to the talker of ``burst_id``: ``loss`` is
    the 90th-percentile listener's loss and ``worst`` the worst one's (per mille), ``run`` the mean
    length of a run of lost frames (tenths of a frame; 0 without loss), ``late`` the share of late
    packets (per mille), over ``listeners`` reports. Not acknowledged."""

    group: str
    burst_id: int
    listeners: int
    loss: int
    worst: int
    run: int
    late: int = 0


# --- delivery ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Receipt:
    """One listener's share of a burst: ``received`` of ``expected`` frames."""

    user: str
    received: int
    expected: int


RECEIPT_WAIT = 1.0  # after a burst ends, how long the server waits for the listeners' receipts


@dataclass(frozen=True, slots=True)
class BurstReceipt:
    """A listener, at the end of a burst: how many of its frames reached it (distinct
    sequence numbers) and how many it knows were sent (the highest sequence number + 1). Answered
    with ``Ack``."""

    txn: int
    session_id: int
    group: str
    burst_id: int
    received: int
    expected: int


REPORT_NAMES = 40  # per list of a DeliveryReport: 40 long names and receipts fit a datagram


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """Unsolicited, acknowledged with ``Ack``: who received the talker's burst ``burst_id``.
    ``heard`` are the receipts of the members online at the burst's end; ``silent`` were online
    but sent none in time; ``offline`` were not online; ``frames`` is what the relay accepted.
    In a large group each list holds at most ``REPORT_NAMES`` entries (the receipts that got
    least first) and ``*_more`` count those left out, so the report fits one datagram."""

    txn: int
    group: str
    burst_id: int
    frames: int
    heard: list[Receipt]
    silent: list[str]
    offline: list[str]
    heard_more: int = 0
    silent_more: int = 0
    offline_more: int = 0


# --- one-to-one calls --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Call:
    """Ask for a private two-member group with ``peer``; answered with ``CallResponse``."""

    txn: int
    session_id: int
    peer: str


@dataclass(frozen=True, slots=True)
class CallResponse:
    txn: int
    group: str


@dataclass(frozen=True, slots=True)
class IncomingCall:
    """Unsolicited, acknowledged: ``peer`` opened the private group ``group`` with you."""

    txn: int
    group: str
    peer: str


@dataclass(frozen=True, slots=True)
class GroupGone:
    """Unsolicited, acknowledged: you are no longer a member of ``group`` (``reason``), told
    at once so a client stops showing, playing and re-joining it."""

    txn: int
    group: str
    reason: GoneReason


# --- text pages --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PageSend:
    """A text page to ``group``, or to the user ``to`` when ``group`` is empty. ``body`` is the
    UTF-8 text for a plain group or a direct page, the sealed text for a keyed group (sealed with
    its key of ``epoch``, ``ptt.crypto.pages``). Answered with ``PageAccepted`` once the server
    has stored it, or ``Error``."""

    txn: int
    session_id: int
    group: str
    to: str
    body: bytes
    epoch: int = 0
    urgent: bool = False


@dataclass(frozen=True, slots=True)
class PageAccepted:
    """The page is stored as ``page_id``: it will reach its ``recipients`` (members other than
    the sender), ``online`` of whom have a device showing pages now."""

    txn: int
    page_id: int
    recipients: int
    online: int


@dataclass(frozen=True, slots=True)
class PagePush:
    """Unsolicited, acknowledged with ``Ack`` (the device has it: *delivered*). ``grant`` is the
    recipient's grant of the group key of ``epoch`` (empty for plain pages), so a page sent
    before a re-key still opens. ``sent_ms``: the server's wall clock when it stored the page."""

    txn: int
    page_id: int
    group: str
    sender: str
    to: str
    body: bytes
    epoch: int
    urgent: bool
    sent_ms: int
    grant: bytes = b""


@dataclass(frozen=True, slots=True)
class PageReceipt:
    """A device showed page ``page_id`` to its person (*read*). Answered with ``Ack``."""

    txn: int
    session_id: int
    page_id: int


@dataclass(frozen=True, slots=True)
class PageReport:
    """Unsolicited, acknowledged: who of the recipients has page ``page_id`` on a device
    (``delivered``), who was online but confirmed nothing in time (``pending``), and who was
    offline (``offline``: they get it when they log in)."""

    txn: int
    page_id: int
    group: str
    delivered: list[str]
    pending: list[str]
    offline: list[str]


@dataclass(frozen=True, slots=True)
class PageSubscribe:
    """This session shows pages (a listening client): the server pushes it the pages of the
    groups it joined, and pages to its user, that ``device`` has not had yet. Answered with
    ``Ack``. ``device`` is the client's lasting device id (one per config), not the session's."""

    txn: int
    session_id: int
    device: str


# --- administration ----------------------------------------------------------------------------


VOICE_PATH_OP = "member.voice_path"  # the one Admin operation any member may send (any role)


@dataclass(frozen=True, slots=True)
class Admin:
    """A coordinator's command: ``op`` such as "group.create", ``args`` its arguments."""

    txn: int
    session_id: int
    op: str
    args: dict[str, str | int | float | bool | bytes | list[str] | dict[str, bytes] | None]


@dataclass(frozen=True, slots=True)
class AdminResponse:
    txn: int
    result: dict[str, str | int | bool | bytes | list[str] | dict[str, bytes]
                 | list[dict[str, str | int | bool | bytes | None]] | None]


Message = (
    Hello | Challenge | Login | Welcome | Heartbeat | HeartbeatAck | Bye | Ack | Error
    | SessionClosed | PathCheck | SessionGone
    | Join | Joined | Leave | Left | Presence | KeyGrant | PresenceBatch
    | FloorRequest | FloorResponse | FloorRelease | FloorReleased | FloorGranted | FloorRevoked
    | FloorTaken | FloorIdle | QueuePosition | ReceiverReport | LinkReport | BurstReceipt
    | DeliveryReport | Call | CallResponse | IncomingCall | GroupGone | Admin
    | AdminResponse | PageSend | PageAccepted | PagePush | PageReceipt | PageReport
    | PageSubscribe
)

MESSAGE_TYPES: dict[MsgType, type] = {
    MsgType.HELLO: Hello,
    MsgType.CHALLENGE: Challenge,
    MsgType.LOGIN: Login,
    MsgType.WELCOME: Welcome,
    MsgType.HEARTBEAT: Heartbeat,
    MsgType.HEARTBEAT_ACK: HeartbeatAck,
    MsgType.BYE: Bye,
    MsgType.ACK: Ack,
    MsgType.ERROR: Error,
    MsgType.SESSION_CLOSED: SessionClosed,
    MsgType.PATH_CHECK: PathCheck,
    MsgType.SESSION_GONE: SessionGone,
    MsgType.JOIN: Join,
    MsgType.JOINED: Joined,
    MsgType.LEAVE: Leave,
    MsgType.LEFT: Left,
    MsgType.PRESENCE: Presence,
    MsgType.KEY_GRANT: KeyGrant,
    MsgType.PRESENCE_BATCH: PresenceBatch,
    MsgType.FLOOR_REQUEST: FloorRequest,
    MsgType.FLOOR_RESPONSE: FloorResponse,
    MsgType.FLOOR_RELEASE: FloorRelease,
    MsgType.FLOOR_RELEASED: FloorReleased,
    MsgType.FLOOR_GRANTED: FloorGranted,
    MsgType.FLOOR_REVOKED: FloorRevoked,
    MsgType.FLOOR_TAKEN: FloorTaken,
    MsgType.FLOOR_IDLE: FloorIdle,
    MsgType.QUEUE_POSITION: QueuePosition,
    MsgType.RECEIVER_REPORT: ReceiverReport,
    MsgType.LINK_REPORT: LinkReport,
    MsgType.BURST_RECEIPT: BurstReceipt,
    MsgType.DELIVERY_REPORT: DeliveryReport,
    MsgType.CALL: Call,
    MsgType.CALL_RESPONSE: CallResponse,
    MsgType.INCOMING_CALL: IncomingCall,
    MsgType.GROUP_GONE: GroupGone,
    MsgType.PAGE_SEND: PageSend,
    MsgType.PAGE_ACCEPTED: PageAccepted,
    MsgType.PAGE_PUSH: PagePush,
    MsgType.PAGE_RECEIPT: PageReceipt,
    MsgType.PAGE_REPORT: PageReport,
    MsgType.PAGE_SUBSCRIBE: PageSubscribe,
    MsgType.ADMIN: Admin,
    MsgType.ADMIN_RESPONSE: AdminResponse,
}

TYPE_OF: dict[type, MsgType] = {cls: t for t, cls in MESSAGE_TYPES.items()}

CODEC: ControlCodec[Message] = ControlCodec(PROTOCOL_VERSION, MESSAGE_TYPES, MsgType.HEARTBEAT,
                                            MsgType.HEARTBEAT_ACK)
encode_message = CODEC.encode_message
decode_message = CODEC.decode_message
encoder_of = CODEC.encoder_of
decode_heartbeat = CODEC.decode_heartbeat
encode_heartbeat_ack = CODEC.encode_heartbeat_ack
