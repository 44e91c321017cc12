"""Coordinator requests and answers of any size, carried in parts of one datagram each.

A control datagram holds at most ``wire.MAX_DATAGRAM`` (60,000) bytes, but what a coordinator
sends or reads grows with the event: a re-key of a 5,000-member group carries 5,000 signed grants
(~1.4 MB), ``user list`` of 100,000 users several megabytes. Such an ``Admin`` travels in parts:

* **Request.** The client encodes the arguments (:func:`encode_args`); above :data:`PART_BYTES`
  it sends them as ``Admin("admin.part", {"upload", "index", "count", "total", "data"})``
  requests, one after the other, each answered before the next goes, then the operation itself
  as ``Admin(op, {PARTS_KEY: upload})``. The server keeps the parts (:class:`Uploads`) and runs
  the operation only once all of them are in, with the arguments put back together: it stays one
  request, one transaction (a membership change and its key grants included).
* **Answer.** An answer above :data:`PART_BYTES` is kept by the server (:class:`Results`) and
  the client is told ``{PARTS_KEY: id, "count": n, "total": bytes}``; it fetches each part with
  ``Admin("admin.fetch", {"id", "index"})``.

Why parts of admin requests rather than fragments of sealed datagrams, or paging: each part is an
ordinary request, answered, retransmitted and cached by the machinery every request has, and sent
only when the one before it was answered. Loss costs one part's resend, and a sender never puts
megabytes into a receive buffer at once (on loopback, 1,100 fragments of 1,200 bytes sent in one
go overflow the default 208 KiB socket buffer, and the whole message must then be sent again).
Paging would give list answers the same, but not an atomic request with thousands of grants, and
every list operation would need its own cursor. Floor control, voice and keepalives never come
near the ceiling, so nothing on their path changes.

Limits (explicit, tested in tests/protocol/test_parts.py): a part carries at most
:data:`PART_BYTES` bytes in chunks of at most ``wire.MAX_BYTES``; one upload at most
:data:`MAX_TOTAL` bytes; a user at most :data:`MAX_UPLOADS_PER_USER` unfinished uploads and the
server at most :data:`MAX_UPLOAD_BYTES` bytes of them; an upload not completed within
:data:`UPLOAD_TTL` seconds is forgotten, and so is a kept answer; at most :data:`MAX_RESULTS`
answers and :data:`MAX_RESULT_BYTES` bytes of them are kept (the oldest go first). A part that
breaks a rule is refused, and what was refused takes no memory.

Sans-I/O: the caller passes ``now``.
"""

from __future__ import annotations

import typing
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from ptt.errors import ProtocolError
from ptt.protocol import messages as m
from ptt.wire.control import MAX_BYTES, decode_value, encode_value

__all__ = [
    "CHUNK_BYTES",
    "FETCH_OP",
    "MAX_PARTS",
    "MAX_TOTAL",
    "MAX_UPLOADS_PER_USER",
    "MAX_UPLOAD_BYTES",
    "PARTS_KEY",
    "PART_BYTES",
    "PART_OP",
    "UPLOAD_TTL",
    "Results",
    "Uploads",
    "decode_args",
    "decode_result",
    "encode_args",
    "join_chunks",
    "split",
]

PART_OP = "admin.part"
FETCH_OP = "admin.fetch"
PARTS_KEY = "~parts"  # no operation's argument or result starts with "~"
CHUNK_BYTES = MAX_BYTES - 96  # one bytes value of a part: under wire.MAX_BYTES
PART_BYTES = 12 * CHUNK_BYTES  # 48,000: a part's datagram stays under wire.MAX_DATAGRAM
MAX_TOTAL = 32 * 1024 * 1024  # one request or answer, encoded: 100,000 users' list is ~8 MB
MAX_PARTS = -(-MAX_TOTAL // PART_BYTES)
MAX_ITEMS = 1_000_000  # entries of one list or map in a request or answer put back together
MAX_UPLOADS_PER_USER = 2
MAX_UPLOAD_BYTES = 64 * 1024 * 1024  # unfinished uploads of all users together
UPLOAD_TTL = 60.0  # seconds from an upload's first part to its operation
MAX_RESULTS = 16  # answers kept for fetching, all users together (oldest forgotten first)
MAX_RESULT_BYTES = 128 * 1024 * 1024  # ... and their bytes together

_ARGS_TYPE = typing.get_type_hints(m.Admin)["args"]
_RESULT_TYPE = typing.get_type_hints(m.AdminResponse)["result"]


def encode_args(args: dict[str, Any]) -> bytes:
    """An Admin's arguments as the bytes that travel in parts."""
    return encode_value(args)


def decode_args(data: bytes) -> dict[str, Any]:
    """Arguments put back together, validated as an Admin's ``args`` field is."""
    return decode_value(_ARGS_TYPE, data, MAX_TOTAL, MAX_ITEMS)  # type: ignore[no-any-return]


def decode_result(data: bytes) -> dict[str, Any]:
    """An answer put back together, validated as an AdminResponse's ``result`` field is."""
    value = decode_value(_RESULT_TYPE, data, MAX_TOTAL, MAX_ITEMS)
    if not isinstance(value, dict):
        raise ProtocolError("an answer in parts is not a map")
    return value


def split(data: bytes) -> list[dict[str, bytes]]:
    """``data`` as parts of at most PART_BYTES, each a map of chunks "0", "1", ... in order."""
    parts = []
    for start in range(0, max(len(data), 1), PART_BYTES):
        piece = data[start:start + PART_BYTES]
        parts.append({str(i): piece[j:j + CHUNK_BYTES]
                      for i, j in enumerate(range(0, len(piece), CHUNK_BYTES))})
    return parts


def join_chunks(chunks: Any) -> bytes:
    """One part's bytes from its map of chunks; ProtocolError unless it is one that
    :func:`split` makes."""
    if not isinstance(chunks, dict) or not 0 < len(chunks) <= PART_BYTES // CHUNK_BYTES:
        raise ProtocolError("a part is a map of 1 to 12 chunks")
    out = []
    for i in range(len(chunks)):
        chunk = chunks.get(str(i))
        if not isinstance(chunk, bytes) or not 0 < len(chunk) <= CHUNK_BYTES:
            raise ProtocolError("a part's chunks are numbered from 0, each 1 to "
                                f"{CHUNK_BYTES} bytes")
        out.append(chunk)
    return b"".join(out)


@dataclass
class _Upload:
    count: int
    total: int
    expires: float
    parts: dict[int, bytes] = field(default_factory=dict)
    size: int = 0


def _int(args: dict[str, Any], key: str, low: int, high: int) -> int:
    v = args.get(key)
    if type(v) is not int or not low <= v <= high:
        raise ProtocolError(f"'{key}' must be an integer from {low} to {high}")
    return v


class Uploads:
    """Unfinished requests in parts, by (user, upload id), bounded in bytes, count and time."""

    def __init__(self, max_total: int = MAX_TOTAL, max_per_user: int = MAX_UPLOADS_PER_USER,
                 max_bytes: int = MAX_UPLOAD_BYTES, ttl: float = UPLOAD_TTL) -> None:
        self.max_total = max_total
        self.max_per_user = max_per_user
        self.max_bytes = max_bytes
        self.ttl = ttl
        self._uploads: dict[tuple[str, int], _Upload] = {}
        self.held = 0  # bytes of all unfinished uploads

    def __len__(self) -> int:
        return len(self._uploads)

    def expire(self, now: float) -> None:
        for key in [k for k, u in self._uploads.items() if u.expires <= now]:
            self._forget(key)

    def _forget(self, key: tuple[str, int]) -> None:
        up = self._uploads.pop(key, None)
        if up is not None:
            self.held -= up.size

    def add(self, user: str, args: dict[str, Any], now: float) -> int:
        """Keep one ``admin.part``; returns how many parts of its upload are in. Refused
        (ProtocolError, nothing kept) when it breaks a limit or disagrees with earlier parts."""
        self.expire(now)
        upload = _int(args, "upload", 1, 2**31 - 1)
        total = _int(args, "total", 1, self.max_total)
        count = _int(args, "count", 1, -(-self.max_total // PART_BYTES))
        index = _int(args, "index", 0, count - 1)
        if count != -(-total // PART_BYTES):
            raise ProtocolError(f"{total} bytes make {-(-total // PART_BYTES)} parts, not {count}")
        data = join_chunks(args.get("data"))
        want = PART_BYTES if index < count - 1 else total - PART_BYTES * (count - 1)
        if len(data) != want:
            raise ProtocolError(f"part {index} must hold {want} bytes, not {len(data)}")
        key = (user, upload)
        up = self._uploads.get(key)
        if up is None:
            if sum(1 for u, _ in self._uploads if u == user) >= self.max_per_user:
                raise ProtocolError(f"at most {self.max_per_user} unfinished uploads at once")
            up = _Upload(count, total, now + self.ttl)
        elif up.count != count or up.total != total:
            raise ProtocolError("a part that disagrees with its upload's earlier parts")
        if index in up.parts:
            return len(up.parts)  # a resend whose answer was lost
        if self.held + len(data) > self.max_bytes:
            raise ProtocolError("the server holds too many unfinished uploads: try again later")
        self._uploads[key] = up
        up.parts[index] = data
        up.size += len(data)
        self.held += len(data)
        return len(up.parts)

    def take(self, user: str, upload: Any, now: float) -> bytes:
        """A complete upload's bytes, forgotten here; ProtocolError if it is not complete."""
        self.expire(now)
        key = (user, upload) if type(upload) is int else None
        up = self._uploads.get(key) if key is not None else None
        if up is None or key is None:
            raise ProtocolError("no such upload (unknown, or not completed in time)")
        if len(up.parts) != up.count:
            raise ProtocolError(f"upload incomplete: {len(up.parts)} of {up.count} parts")
        self._forget(key)
        return b"".join(up.parts[i] for i in range(up.count))


class Results:
    """Answers too large for one datagram, kept for their user to fetch part by part."""

    def __init__(self, max_results: int = MAX_RESULTS, ttl: float = UPLOAD_TTL,
                 max_bytes: int = MAX_RESULT_BYTES) -> None:
        self.max_results = max_results
        self.max_bytes = max_bytes
        self.ttl = ttl
        self._kept: OrderedDict[int, tuple[str, float, bytes]] = OrderedDict()
        self._next = 0
        self.held = 0  # bytes of all kept answers

    def __len__(self) -> int:
        return len(self._kept)

    def expire(self, now: float) -> None:
        for key in [k for k, (_, until, _) in self._kept.items() if until <= now]:
            self.held -= len(self._kept.pop(key)[2])

    def put(self, user: str, data: bytes, now: float) -> dict[str, Any]:
        """Keep ``data``; returns what the client is answered instead."""
        if len(data) > min(MAX_TOTAL, self.max_bytes):
            raise ProtocolError(f"answer too large ({len(data)} bytes)")
        self.expire(now)
        while self._kept and (len(self._kept) >= self.max_results
                              or self.held + len(data) > self.max_bytes):
            self.held -= len(self._kept.popitem(last=False)[1][2])
        self._next = (self._next + 1) & 0x7FFFFFFF or 1
        self._kept[self._next] = (user, now + self.ttl, data)
        self.held += len(data)
        return {PARTS_KEY: self._next, "count": -(-len(data) // PART_BYTES), "total": len(data)}

    def get(self, user: str, args: dict[str, Any], now: float) -> dict[str, Any]:
        """``{"data": chunks}`` of one part of a kept answer of ``user``'s."""
        self.expire(now)
        kept_id = args.get("id")
        kept = self._kept.get(kept_id) if type(kept_id) is int else None
        if kept is None or kept[0] != user:
            raise ProtocolError("no such answer (unknown, or fetched too late)")
        data = kept[2]
        index = _int(args, "index", 0, -(-len(data) // PART_BYTES) - 1)
        return {"data": split(data[index * PART_BYTES:(index + 1) * PART_BYTES])[0]}
