"""Node-to-node messages of a cluster, to bytes and back.

Twelve messages cross the bus between ``ptt server --cluster`` nodes (what each means and who
sends it: ``ptt.protocol.cluster_routing``):

* :class:`FloorInput`, access node -> home: a floor request, a release, a lost participant, or
  "the holder is still talking" (the home's silence timer, T1);
* :class:`FloorNews`, home -> the nodes with members online: the floor events of one decision,
  the floor as it stands after them (the access nodes' mirror), the relay set (the nodes with
  members online, where voice must go) and, for a request, which forwarded request it answers;
* :class:`Presence`, access node -> home: the groups in which this node gained or lost its last
  online member (``full``: the whole list, sent again periodically so a restarted home learns
  it);
* :class:`Members`, who of a group is online on one node: access node -> home when one of its
  users comes or goes (``home`` empty), and the home's forward of it (``home``, ``term`` set) ->
  the other nodes with members (``full``: the whole list of that node, not a change);
* :class:`Receipts` and :class:`LinkWindow`, a node whose listeners heard a talker of another
  node -> the talker's node: their end-of-burst receipts (for the delivery report), and a
  window of their loss reports summed up (for the talker's protection);
* :class:`Login`, a node -> every other node: users logged in here, each from a device; a session
  of that user and device on another node ends (one session per device, as on one server);
* :class:`Call`, the node a ``Call`` reached -> every other live node: ring ``callee`` in this
  one-to-one call (its group id, its home and the home's life with it), and ring it there when
  it logs in while the call lasts;
* :class:`CallEnd`, a call's home -> every other live node: nobody is in the call any more;
* :class:`Peer`, a node -> every other node: where its peer port is (voice between nodes goes
  there by UDP, ``ptt.wire.peer``), the epoch its datagrams carry, and the epoch it knows of the
  node it tells (``ptt.protocol.cluster_peers``);
* :class:`Page`, the node that stored a text page -> every other live node: the page as stored
  (its id, given by the shared store; the body still ciphertext in an encrypted group);
* :class:`PageReceipts`, a node -> every other live node: which devices of its users had or
  read which pages (the per-device marks every node needs, so no device gets a page twice).

Each is a msgpack array ``[CLUSTER_VERSION, type, field1, ...]`` (fields in declaration order),
validated field by field on decoding: :func:`decode` returns one of the twelve or raises
:class:`~ptt.errors.ProtocolError`, nothing else, for any bytes. A voice frame crosses the bus
(until the peer port of the node it goes to is known) as the relay forwards it
(``ptt.wire.voice``, MAC removed, still ciphertext): it starts with ``VOICE_MAGIC``, which no msgpack array starts with, so ``ptt.wire.voice.is_voice`` tells the
two apart.

Floor events travel as plain tuples (:data:`EventTuple`, a kind number then the event's fields
as ints, floats and strings): this layer sits below the protocol and knows none of its enums;
``cluster_routing`` converts them both ways.
"""

from __future__ import annotations

import typing
from collections.abc import Callable
from dataclasses import dataclass, fields
from enum import IntEnum
from operator import attrgetter, itemgetter
from typing import Any

import msgpack

from ptt.errors import ProtocolError

__all__ = [
    "CLUSTER_VERSION",
    "Call",
    "CallEnd",
    "Page",
    "PageReceipts",
    "MAX_MESSAGE",
    "EventKind",
    "EventTuple",
    "FloorInput",
    "FloorNews",
    "InputKind",
    "LinkWindow",
    "Login",
    "Members",
    "Peer",
    "Presence",
    "Receipts",
    "decode",
    "encode",
    "news_order",
]

CLUSTER_VERSION = 4
MAX_MESSAGE = 256 * 1024  # a full Presence of 2,000 groups is ~30 KB; NATS' default is 1 MB
_MAX_ITEMS = 20_000
_MAX_STR = 1_000
_MAX_BIN = 8_192  # a page's body (ptt.crypto.pages.MAX_PAGE_BODY: ~4 KB sealed)

EventTuple = tuple[Any, ...]


class InputKind(IntEnum):
    REQUEST = 1  # priority: the one the requester's role gives (checked on the access node)
    RELEASE = 2  # burst_id: the burst given back (0: whatever the user holds or asked for)
    LOST = 3  # the user's last session in the group ended or expired (participant lost)
    ALIVE = 4  # the holder's voice reached its access node (burst_id): feeds T1 at the home


class EventKind(IntEnum):
    GRANTED = 1  # (kind, user, burst_id, priority, max_talk, from_queue)
    QUEUED = 2  # (kind, user, position)
    DENIED = 3  # (kind, user, cause)
    REVOKED = 4  # (kind, user, burst_id, cause, grace)
    ENDED = 5  # (kind, user, burst_id, reason)
    IDLE = 6  # (kind, burst_id)
    QUEUE = 7  # (kind, queue)


@dataclass(frozen=True, slots=True)
class FloorInput:
    kind: InputKind
    group: str
    user: str
    priority: int
    burst_id: int
    origin: str  # the access node
    ref: int  # the access node's number for a request (0 otherwise), echoed in its answer
    # the sender's life and its count of floor messages in that life: the home takes a user's
    # inputs in this order whichever path each came by (ptt.protocol.cluster_routing, "Order")
    life: int = 0
    seq: int = 0
    # the device's id ("" if it sent none; ALIVE names none): on a request the home tells a
    # second device of the holder (RETRY_LATER) from the holder's own device come back through
    # another node; on a RELEASE or LOST it ignores one from another device than the one that
    # holds or asked for the user's floor
    device: str = ""


@dataclass(frozen=True, slots=True)
class FloorNews:
    group: str
    term: int  # the home's fencing number for the group: news from an older term is refused
    home: str
    origin: str  # the node whose request this answers ("" for news of the home's own making)
    ref: int
    events: tuple[EventTuple, ...]
    state: str  # the floor after the events: ptt.protocol.floor.FloorState's value
    holder: str
    burst_id: int
    holder_priority: int
    queue: tuple[str, ...]
    relay: tuple[str, ...]  # the nodes with members online in the group
    # the home's life and its count of floor messages in that life: a node applies a group's
    # news in this order within a term, whichever path each came by (cluster_routing, "Order")
    life: int = 0
    seq: int = 0


@dataclass(frozen=True, slots=True)
class Presence:
    node: str
    online: tuple[str, ...]
    offline: tuple[str, ...]
    full: bool  # online lists every group of this home the node has members in


@dataclass(frozen=True, slots=True)
class Members:
    group: str
    node: str  # the node these users are online on
    term: int  # the forwarding home's fencing number for the group (0 from an access node)
    home: str  # the forwarding home ("" from an access node, to its group's home)
    online: tuple[str, ...]  # came online on ``node`` (``full``: every user online there)
    offline: tuple[str, ...]  # went offline on ``node`` (empty when ``full``)
    full: bool


@dataclass(frozen=True, slots=True)
class Receipts:
    group: str
    burst_id: int
    node: str  # the listeners' node
    users: tuple[str, ...]  # a receipt per user: users[i] received[i] of expected[i] frames
    received: tuple[int, ...]
    expected: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class LinkWindow:
    group: str
    burst_id: int
    node: str  # the listeners' node
    bins: tuple[int, ...]  # ptt.protocol.feedback.LinkCounts, field by field
    listeners: int
    frames: int
    lost: int
    runs: int
    late: int
    worst: int


@dataclass(frozen=True, slots=True)
class Login:
    """Users that logged in on ``node`` (each from the device at the same index): one message
    per batch of logins, not per login (a dead node's thousands of clients log in again at the
    survivors within a second or two)."""

    node: str  # where the users logged in
    users: tuple[str, ...]
    devices: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Call:
    """Ring ``callee`` in the one-to-one call ``group`` (``ptt.names.call_group_name``), which
    ``caller`` asked for: every node keeps the call (under ``group_id``, the id its voice frames
    carry, chosen by ``home`` from its own slice) until its home says it ended."""

    group: str
    group_id: int
    home: str  # the node whose floor decides the call: where it was made
    caller: str
    callee: str
    node: str  # the node that sends it: the home, or a node with a copy (a callback)
    # the home's life (its peer epoch) that made the call: a copy ends when another life of
    # its home shows (a restart within its lease's grace, which no node takes for a death)
    life: int


@dataclass(frozen=True, slots=True)
class CallEnd:
    """The call ``group`` (``group_id``) has nobody in it on any node: its copies go."""

    group: str
    group_id: int
    home: str


@dataclass(frozen=True, slots=True)
class Peer:
    """Where ``node``'s peer port is, and the epoch of its peer datagrams (``ptt.wire.peer``)."""

    node: str
    host: str
    port: int
    epoch: int  # this life of the node (never 0)
    seen: int  # the epoch of the node told that ``node`` knows (0: none yet)
    key_check: int  # ptt.wire.peer.key_check of its peer key: voice by UDP only where equal


@dataclass(frozen=True, slots=True)
class Page:
    """A text page ``node`` stored in the cluster's shared store (committed before this is
    sent), as ``ptt.protocol.server_pages.PageEntry`` holds it, without receipts."""

    node: str
    page_id: int
    group: str  # "" for a direct page
    sender: str
    to: str
    body: bytes  # sealed with the group key in an encrypted group
    epoch: int
    urgent: bool
    sent_ms: int
    recipients: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PageReceipts:
    """Devices of ``node``'s users that had (``read[i]`` 0) or read (1) page ``page_ids[i]``:
    ``users[i]``'s device ``devices[i]``."""

    node: str
    page_ids: tuple[int, ...]
    users: tuple[str, ...]
    devices: tuple[str, ...]
    read: tuple[int, ...]


Message = (FloorInput | FloorNews | Presence | Members | Receipts | LinkWindow | Login | Call
           | CallEnd | Peer | Page | PageReceipts)
_TYPES: dict[int, type] = {1: FloorInput, 2: FloorNews, 3: Presence, 4: Members, 5: Receipts,
                           6: LinkWindow, 7: Login, 8: Call, 9: CallEnd, 10: Peer, 11: Page,
                           12: PageReceipts}
_TYPE_OF = {cls: t for t, cls in _TYPES.items()}
_EVENT_FIELDS: dict[int, tuple[type, ...]] = {
    EventKind.GRANTED: (str, int, int, float, bool),
    EventKind.QUEUED: (str, int),
    EventKind.DENIED: (str, int),
    EventKind.REVOKED: (str, int, int, float),
    EventKind.ENDED: (str, int, str),
    EventKind.IDLE: (int,),
    EventKind.QUEUE: (tuple,),
}


def _values_of(cls: type) -> Callable[[Any], tuple[Any, ...]]:
    names = [f.name for f in fields(cls)]
    get = attrgetter(*names)
    return (lambda msg: (get(msg),)) if len(names) == 1 else get


def encode(msg: Message) -> bytes:
    data: bytes = msgpack.packb([CLUSTER_VERSION, _TYPE_OF[type(msg)], *_VALUES[type(msg)](msg)],
                                use_bin_type=True)
    return data


def decode(data: bytes) -> Message:
    """One node-to-node message, validated; ProtocolError for anything else."""
    if len(data) > MAX_MESSAGE:
        raise ProtocolError(f"cluster message too large: {len(data)} bytes")
    try:
        raw = msgpack.unpackb(data, use_list=False, raw=False, strict_map_key=True,
                              max_array_len=_MAX_ITEMS, max_str_len=_MAX_STR,
                              max_bin_len=_MAX_BIN, max_map_len=0)
    except Exception as exc:  # msgpack raises many types for bad input
        raise ProtocolError(f"not a cluster message: {exc}") from None
    if not isinstance(raw, tuple) or len(raw) < 2:
        raise ProtocolError("a cluster message is an array [version, type, ...]")
    if raw[0] != CLUSTER_VERSION:
        raise ProtocolError(f"cluster message version {raw[0]!r}, expected {CLUSTER_VERSION}")
    cls = _TYPES.get(raw[1]) if type(raw[1]) is int else None
    if cls is None:
        raise ProtocolError(f"unknown cluster message type {raw[1]!r}")
    values = raw[2:]
    fast = _FAST[cls](values)
    if fast is not None:
        return cls(*fast)  # type: ignore[no-any-return]
    want = _CHECKS[cls]
    if len(values) != len(want):
        raise ProtocolError(f"{cls.__name__} has {len(want)} fields, got {len(values)}")
    return cls(*[check(v) for check, v in zip(want, values)])  # type: ignore[no-any-return]


def news_order(data: bytes) -> tuple[str, int, int, int] | None:
    """A FloorNews' ``(group, term, life, seq)``, read without checking its other fields; None
    for any other message, or one whose four are not of their types. For a node to tell the
    bus's copy of news it applied from the plane (``cluster_routing``, "Order") before paying
    for the whole decoding of what it drops: :func:`decode` is the check of anything used."""
    if len(data) > MAX_MESSAGE:
        return None
    try:
        raw = msgpack.unpackb(data, use_list=False, raw=False, strict_map_key=True,
                              max_array_len=_MAX_ITEMS, max_str_len=_MAX_STR,
                              max_bin_len=_MAX_BIN, max_map_len=0)
    except Exception:  # noqa: BLE001 - msgpack raises many types for bad input: decode's to say
        return None
    if (type(raw) is not tuple or len(raw) != 2 + _NEWS_FIELDS or raw[0] != CLUSTER_VERSION
            or raw[1] != _NEWS_TYPE or type(raw[1]) is not int):
        return None
    group, term, life, seq = raw[2], raw[3], raw[-2], raw[-1]
    if type(group) is not str or not (_is_count(term) and _is_count(life) and _is_count(seq)):
        return None
    return group, term, life, seq


def _is_count(v: Any) -> bool:
    return type(v) is int and 0 <= v < 2**63


# a field type's test and what a value that fails it must be
_PLAIN: list[tuple[Any, Callable[[Any], bool], str]] = [
    (str, lambda v: type(v) is str, "must be a string"),
    (int, _is_count, "must be a non-negative integer"),
    (bool, lambda v: type(v) is bool, "must be true or false"),
    (bytes, lambda v: type(v) is bytes, "must be bytes"),
    (tuple[str, ...], lambda v: type(v) is tuple and all(type(u) is str for u in v),
     "must be a list of strings"),
    (tuple[int, ...], lambda v: type(v) is tuple and all(_is_count(u) for u in v),
     "must be a list of non-negative integers"),
]


def _plain_check(refusal: str, ok: Callable[[Any], bool]) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if not ok(value):
            raise ProtocolError(refusal)
        return value
    return check


def _checker(where: str, hint: Any) -> Callable[[Any], Any]:
    """The check of one field (``Owner.name``) of type ``hint``: the value, or ProtocolError
    naming the field."""
    for plain, ok, must in _PLAIN:
        if hint is plain or hint == plain:
            return _plain_check(f"{where} {must}", ok)
    if hint is InputKind:
        def kind(value: Any) -> Any:
            try:
                return InputKind(value)
            except ValueError:
                raise ProtocolError(f"{where}: unknown input kind {value!r}") from None
        return kind
    if hint == tuple[EventTuple, ...]:
        def events(value: Any) -> Any:
            if type(value) is not tuple:
                raise ProtocolError(f"{where} must be a list of events")
            return tuple(_event(where, e) for e in value)
        return events
    raise AssertionError(f"no check for {where}")  # a field added without its check


# each message's field checks, made once from the fields' types (typing.get_type_hints
# evaluates the annotations' strings every call: 70-250 us a message), and its fields' getter
_CHECKS: dict[type, tuple[Callable[[Any], Any], ...]] = {
    cls: tuple(_checker(f"{cls.__name__}.{f.name}", typing.get_type_hints(cls)[f.name])
               for f in fields(cls))
    for cls in _TYPES.values()}
_VALUES: dict[type, Callable[[Any], tuple[Any, ...]]] = {
    cls: _values_of(cls) for cls in _TYPES.values()}


def _fast_check(cls: type) -> Callable[[tuple[Any, ...]], tuple[Any, ...] | None]:
    """``cls``'s field checks for a message that passes them all, in a few C calls: every
    field's exact type at once, the integers' range at once, then the fields that hold more
    than one value. None for a message that fails any: the checks of :data:`_CHECKS`, field
    by field, say which field and why (a floor message is decoded at each of its three node
    turns; the field-by-field checks were half of a FloorNews' decoding)."""
    hints = typing.get_type_hints(cls)
    shape: list[type] = []
    counts: list[int] = []
    deep: list[tuple[int, Callable[[Any], Any]]] = []
    names: list[int] = []  # lists of strings: every item's type at once
    checks = _CHECKS[cls]
    for i, f in enumerate(fields(cls)):
        hint = hints[f.name]
        if hint in (str, bool, bytes):
            shape.append(hint)
        elif hint == tuple[str, ...]:
            shape.append(tuple)
            names.append(i)
        elif hint is int:
            shape.append(int)
            counts.append(i)
        elif hint is InputKind:
            shape.append(int)
            deep.append((i, _input_kind))
        else:  # the tuples: their items checked by the field's own check
            shape.append(tuple)
            deep.append((i, checks[i]))
    exact = tuple(shape)
    some: Callable[[tuple[Any, ...]], Any] = (
        itemgetter(*counts) if len(counts) > 1
        else (lambda v: (v[counts[0]],)) if counts else (lambda v: ()))
    top = 2**63
    just_str = {str}

    def check(values: tuple[Any, ...]) -> tuple[Any, ...] | None:
        if tuple(map(type, values)) != exact:
            return None
        if counts:
            ints = some(values)
            if min(ints) < 0 or max(ints) >= top:
                return None
        for i in names:
            if values[i] and set(map(type, values[i])) != just_str:
                return None
        if not deep:
            return values
        out = list(values)
        try:
            for i, conv in deep:
                out[i] = conv(out[i])
        except ProtocolError:
            return None
        return tuple(out)
    return check


def _input_kind(value: int) -> InputKind:
    kind = _INPUT_KINDS.get(value)
    if kind is None:
        raise ProtocolError(f"unknown input kind {value!r}")
    return kind


_INPUT_KINDS = {int(k): k for k in InputKind}
_EVENT_KINDS = {int(k): k for k in EventKind}
_FAST = {cls: _fast_check(cls) for cls in _TYPES.values()}
_NEWS_TYPE = _TYPE_OF[FloorNews]
_NEWS_FIELDS = len(fields(FloorNews))


def _event_range(kinds: tuple[type, ...]) -> Callable[[EventTuple], bool] | None:
    """The range check of an event of these field types whose fields are all of their exact
    types (None for one with a queue: its names are checked one by one by ``_event``)."""
    if tuple in kinds:
        return None
    ints = [i for i, k in enumerate(kinds, 1) if k is int]
    floats = [i for i, k in enumerate(kinds, 1) if k is float]
    top = 2**63

    def in_range(e: EventTuple) -> bool:
        for i in ints:
            if not 0 <= e[i] < top:
                return False
        for i in floats:
            if not 0.0 <= e[i] < 1e9:  # NaN fails too
                return False
        return True
    return in_range


_EVENT_FAST = {k: _event_range(kinds) for k, kinds in _EVENT_FIELDS.items()}


def _in_range(v: Any) -> bool:
    if type(v) is int:
        return 0 <= v < 2**63
    if type(v) is float:
        return 0.0 <= v < 1e9  # NaN is refused too
    return True


def _event(where: str, e: Any) -> EventTuple:
    if type(e) is not tuple or not e or type(e[0]) is not int or e[0] not in _EVENT_FIELDS:
        raise ProtocolError(f"{where}: an event is [kind, ...] with a known kind")
    kinds = _EVENT_FIELDS[e[0]]
    fast = _EVENT_FAST[e[0]]
    if fast is not None and tuple(map(type, e[1:])) == kinds and fast(e):
        return (_EVENT_KINDS[e[0]], *e[1:])  # every field of its exact type and in range
    if len(e) - 1 != len(kinds):
        raise ProtocolError(f"{where}: event kind {e[0]} has {len(kinds)} fields")
    out: list[Any] = [_EVENT_KINDS[e[0]]]
    for kind, v in zip(kinds, e[1:]):
        if kind is float and type(v) is int:
            v = float(v)
        if kind is tuple:
            if type(v) is not tuple or any(type(u) is not str for u in v):
                raise ProtocolError(f"{where}: a queue is a list of user names")
        elif type(v) is not kind or not _in_range(v):
            raise ProtocolError(f"{where}: event kind {e[0]}: bad field {v!r}")
        out.append(v)
    return tuple(out)
