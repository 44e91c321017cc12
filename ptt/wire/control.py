"""Control messages to bytes and back.

A control datagram is a msgpack array ``[version, type, field1, field2, ...]`` with the fields in
the message dataclass's declaration order. Decoding validates every field against the dataclass
annotations, so ``decode_message`` returns a well-typed message or raises
:class:`~ptt.errors.ProtocolError`, and nothing else, for any input bytes.

The messages themselves are the protocol's vocabulary (``ptt.protocol.messages``, which binds them
to a :class:`ControlCodec` and exports its functions): this module owns how any of them becomes
bytes, and is handed the table of type numbers, so it imports nothing of the protocol.

Voice datagrams are not msgpack: they start with ``VOICE_MAGIC`` (``ptt.wire.voice``), which no
msgpack array starts with, so one socket can carry both.
"""

from __future__ import annotations

import dataclasses
import operator
import types
import typing
from collections.abc import Callable, Mapping
from enum import IntEnum
from functools import cache
from typing import Any, Generic, Protocol, TypeVar

import msgpack

from ptt.errors import ProtocolError

MAX_DATAGRAM = 60_000  # no control message comes near; anything larger is dropped unread
MAX_STR = 1_000
MAX_BYTES = 4_096
MAX_ITEMS = 10_000

_Conv = Callable[[Any], Any]
M = TypeVar("M")
K = TypeVar("K", bound=int)


class ControlCodec(Generic[M]):
    """The control messages of one protocol version: ``types`` maps each message type number to
    its dataclass (``M`` is their union); ``heartbeat`` and ``heartbeat_ack`` are the type
    numbers of the two messages with a fast path."""

    def __init__(self, version: int, types: Mapping[K, type], heartbeat: int,
                 heartbeat_ack: int) -> None:
        self.version = version
        self._types = {int(t): cls for t, cls in types.items()}
        self._type_of = {cls: int(t) for t, cls in types.items()}
        # closures, not methods: these run for most of a big server's datagrams
        self.decode_heartbeat = _heartbeat_decoder(bytes((0x94, version, int(heartbeat))))
        self.encode_heartbeat_ack = _heartbeat_ack_encoder(bytes((0x94, version,
                                                                  int(heartbeat_ack))))

    def encode_message(self, msg: M) -> bytes:
        """Serialise one control message."""
        cls: type = type(msg)
        try:
            mtype = self._type_of[cls]
        except KeyError:
            raise ProtocolError(f"not a control message: {cls.__name__}") from None
        plain = _PLAIN
        values = _record_values(cls)
        assert values is not None  # every message type is a record
        data: bytes = msgpack.packb(
            [self.version, mtype, *[v if type(v) in plain else _to_wire(v) for v in values(msg)]],
            use_bin_type=True,
        )
        return data

    def encoder_of(self, msg: M) -> Callable[[int, Any], bytes]:
        """``f(txn, last)``: the same bytes as ``encode_message`` of ``msg`` with that ``txn``
        and that value of its last field, the fields between encoded once. For one message
        pushed to many sessions (a page to a group: its txn differs per session, its key grant
        per member), where the generic path would encode every field again for each."""
        cls: type = type(msg)
        fields = _fields(cls)
        if fields[0].name != "txn" or len(fields) < 2:
            raise ProtocolError(f"{cls.__name__} has no txn first and a field after it")
        packer = msgpack.Packer(use_bin_type=True)
        head = (packer.pack_array_header(2 + len(fields)) + packer.pack(self.version)
                + packer.pack(self._type_of[cls]))
        middle = b"".join(packer.pack(_to_wire(getattr(msg, f.name))) for f in fields[1:-1])
        pack = packer.pack
        return lambda txn, last: head + pack(txn) + middle + pack(_to_wire(last))

    def decode_message(self, data: bytes) -> M:
        """Parse one control datagram; raises ProtocolError for anything malformed."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise ProtocolError("datagram is not bytes")
        if len(data) > MAX_DATAGRAM:
            raise ProtocolError(f"datagram too large ({len(data)} bytes)")
        if not data:
            raise ProtocolError("empty datagram")
        try:
            items = msgpack.unpackb(
                data,
                raw=False,
                use_list=True,
                strict_map_key=True,
                max_str_len=MAX_STR * 4,
                max_bin_len=MAX_BYTES,
                max_array_len=MAX_ITEMS,
                max_map_len=MAX_ITEMS,
                max_ext_len=0,
            )
        except Exception as exc:  # msgpack raises many types; all mean "malformed"
            raise ProtocolError(f"malformed datagram: {type(exc).__name__}") from None
        if not isinstance(items, list) or len(items) < 2:
            raise ProtocolError("datagram is not a message array")
        version, mtype = items[0], items[1]
        if version != self.version or type(version) is not int:
            raise ProtocolError(f"unsupported protocol version {version!r}")
        cls = self._types.get(mtype) if type(mtype) is int else None
        if cls is None:
            raise ProtocolError(f"unknown message type {mtype!r}")
        return typing.cast(M, _record_converter(cls)(items[2:]))


def _heartbeat_decoder(prefix: bytes) -> Callable[[bytes], tuple[int, int] | None]:
    unpackb = msgpack.unpackb

    def decode_heartbeat(data: bytes) -> tuple[int, int] | None:
        """(txn, session_id) of a Heartbeat, or None for anything else (use decode_message then).

        Heartbeats are most of a big server's control traffic; this skips the generic validation
        for the one message whose shape is ``[version, HEARTBEAT, txn, session_id]``."""
        if data[:3] != prefix or len(data) > 32:
            return None
        try:
            items = unpackb(data)
        except Exception:
            return None
        if len(items) != 4 or type(items[2]) is not int or type(items[3]) is not int:
            return None
        return items[2], items[3]

    return decode_heartbeat


class _AckEncoder(Protocol):
    def __call__(self, txn: int, digest: int = 0) -> bytes: ...


def _heartbeat_ack_encoder(prefix: bytes) -> _AckEncoder:
    packb = msgpack.packb

    def encode_heartbeat_ack(txn: int, digest: int = 0) -> bytes:
        """The same bytes as ``encode_message(HeartbeatAck(txn, digest))``, without the generic
        path."""
        ack: bytes = prefix + packb(txn) + packb(digest)
        return ack

    return encode_heartbeat_ack


# --- encoding ----------------------------------------------------------------------------------


# msgpack takes these as they are; checked by exact type first because a Join answer of a large
# group has thousands of member records, each a few of these (an IntEnum is none of them)
_PLAIN = frozenset({str, int, float, bytes, bool, type(None)})


def _to_wire(value: Any) -> Any:
    t: type = type(value)
    if t in _PLAIN:
        return value
    values = _record_values(t)
    if values is not None:
        # a Joined answers every join, its members records of plain fields: one C call gets a
        # record's fields, and only a field that is not plain costs a call
        plain = _PLAIN
        return [v if type(v) in plain else _to_wire(v) for v in values(value)]
    if isinstance(value, IntEnum):
        return int(value)
    if isinstance(value, list):
        return [v if type(v) in _PLAIN else _to_wire(v) for v in value]
    if isinstance(value, dict):
        return {k: _to_wire(v) for k, v in value.items()}
    return value


@cache
def _record_values(t: type) -> Callable[[Any], tuple[Any, ...]] | None:
    """A record (dataclass) type's fields as a tuple, in wire order (``f(record)``); None for
    anything else."""
    if not dataclasses.is_dataclass(t):
        return None
    names = [f.name for f in _fields(t)]
    if not names:
        return lambda _: ()
    if len(names) == 1:
        name = names[0]
        return lambda r: (getattr(r, name),)
    return operator.attrgetter(*names)


# --- decoding with validation ------------------------------------------------------------------


@cache
def _fields(cls: type) -> tuple[dataclasses.Field[Any], ...]:
    return dataclasses.fields(cls)


@cache
def _record_converter(cls: type) -> _Conv:
    hints = typing.get_type_hints(cls)
    fields = _fields(cls)
    convs = [(f.name, _converter(hints[f.name])) for f in fields]
    required = sum(
        1
        for f in fields
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    )

    def conv(value: Any) -> Any:
        if not isinstance(value, list):
            raise ProtocolError(f"{cls.__name__}: expected an array")
        if not required <= len(value) <= len(convs):
            raise ProtocolError(f"{cls.__name__}: expected {required}-{len(convs)} fields")
        kwargs = {}
        for (name, c), v in zip(convs, value):
            try:
                kwargs[name] = c(v)
            except ProtocolError as exc:
                raise ProtocolError(f"{cls.__name__}.{name}: {exc}") from None
        return cls(**kwargs)

    return conv


def _converter(tp: Any) -> _Conv:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        convs = [_converter(o) for o in options if o is not type(None)]
        allow_none = type(None) in options

        def union(v: Any) -> Any:
            if v is None:
                if allow_none:
                    return None
                raise ProtocolError("unexpected nil")
            for c in convs:
                try:
                    return c(v)
                except ProtocolError:
                    continue
            raise ProtocolError(f"value of type {type(v).__name__} fits no option")

        return union
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        item = _converter(item_tp)

        def lst(v: Any) -> Any:
            if not isinstance(v, list):
                raise ProtocolError("expected an array")
            return [item(x) for x in v]

        return lst
    if origin is dict:
        _, val_tp = typing.get_args(tp)
        val = _converter(val_tp)

        def dct(v: Any) -> Any:
            if not isinstance(v, dict):
                raise ProtocolError("expected a map")
            out = {}
            for k, x in v.items():
                if not isinstance(k, str) or len(k) > MAX_STR:
                    raise ProtocolError("map keys must be short strings")
                out[k] = val(x)
            return out

        return dct
    if isinstance(tp, type) and issubclass(tp, IntEnum):
        enum_tp = tp
        members = {int(e): e for e in tp}  # a dict's lookup: calling the enum is ~0.3 us

        def enum(v: Any) -> Any:
            member = members.get(v) if type(v) is int else None
            if member is None:
                raise ProtocolError(f"invalid {enum_tp.__name__} {v!r}")
            return member

        return enum
    if dataclasses.is_dataclass(tp):
        return _record_converter(typing.cast(type, tp))
    if tp is bool:
        return _exact(bool)
    if tp is int:
        return _exact(int)
    if tp is float:

        def flt(v: Any) -> Any:
            if type(v) not in (int, float):
                raise ProtocolError("expected a number")
            return float(v)

        return flt
    if tp is str:

        def string(v: Any) -> Any:
            if type(v) is not str or len(v) > MAX_STR:
                raise ProtocolError("expected a short string")
            return v

        return string
    if tp is bytes:
        return _exact(bytes)
    raise TypeError(f"unsupported annotation {tp!r}")  # a bug in a message definition


def _exact(t: type) -> _Conv:
    def conv(v: Any) -> Any:
        if type(v) is not t:
            raise ProtocolError(f"expected {t.__name__}, got {type(v).__name__}")
        return v

    return conv


def encode_value(value: Any) -> bytes:
    """One field's value on its own (enums as ints, records as arrays), as in a message."""
    data: bytes = msgpack.packb(_to_wire(value), use_bin_type=True)
    return data


def decode_value(tp: Any, data: bytes, max_size: int, max_items: int) -> Any:
    """Parse and validate one value of annotation ``tp`` (a message field's type) from bytes
    that are not one datagram: ``max_size`` and ``max_items`` are the caller's ceilings,
    enforced before anything is allocated for them. ProtocolError for anything else."""
    if len(data) > max_size:
        raise ProtocolError(f"value too large ({len(data)} bytes)")
    try:
        value = msgpack.unpackb(data, raw=False, use_list=True, strict_map_key=True,
                                max_str_len=MAX_STR * 4, max_bin_len=MAX_BYTES,
                                max_array_len=max_items, max_map_len=max_items, max_ext_len=0)
    except Exception as exc:  # msgpack raises many types; all mean "malformed"
        raise ProtocolError(f"malformed value: {type(exc).__name__}") from None
    return _converter(tp)(value)
