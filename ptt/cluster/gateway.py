"""etcd's JSON gateway from the event loop: HTTP/1.1 requests on kept connections, and the watch.

etcd (3.4 and later) serves its v3 API as JSON on the client port (``/v3/kv/range``,
``/v3/kv/txn``, ``/v3/lease/grant``, ``/v3/watch``, ...). :class:`GatewayClient` speaks it to one
member from the node's loop, on asyncio's own transports: a request is written in the turn that
makes it (no thread hop), its answer read when it arrives, and nothing wakes between requests.
aetcd on gRPC, its alternative, kept gRPC's ``event_engine`` thread waking 7-9 times a second with
no call at all and 6 times per unary call, each wake-up of a process that slept costing
0.15-1.5 ms of CPU on the benches' VM (docs/cluster.md, "Where a node's CPU goes").

HTTP/1.1 carries one request at a time per connection: requests in flight together each take a
connection (idle ones are kept, at most :data:`IDLE_KEPT`), and the watch has one of its own, its
answer a stream of JSON objects, one a line, in chunks. Every request has a deadline: a member
that is paused or hung holds its connection open and answers nothing, so a request not answered
in time closes its connection (a late answer on it could not be told from the next request's)
and fails as ``unreachable``, for the caller to try the next member. What etcd answers with an
error (an HTTP status other than 200) fails as not ``unreachable``.

The JSON is protobuf's mapping, as etcd's gateway writes it: field names as in the ``.proto``
files (``create_revision``), 64-bit integers as strings, bytes in base64, fields at their default
value left out (an event's ``type`` PUT, a transaction's ``succeeded`` false, a range's ``kvs``
when empty).
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ptt.errors import ClusterError

# idle connections kept per member between requests: the claims' transactions in flight at most
# (ownership.CLAIM_TXNS_IN_FLIGHT) plus the client list's write
IDLE_KEPT = 5
# an answer's head (status line and headers) longer than this is not etcd's
_MAX_HEAD = 16384
_HEADERS = b"Content-Type: application/json\r\n"

Json = dict[str, Any]


class GatewayError(ClusterError):
    """A request to etcd's JSON gateway not answered: ``unreachable`` when the member gave no
    answer (none in time, the connection refused or closed), else an answer that was an
    error."""

    def __init__(self, details: str, unreachable: bool) -> None:
        super().__init__(details)
        self.details = details
        self.unreachable = unreachable


class CompactedError(GatewayError):
    """A watch from a revision etcd has compacted away: read everything again, then watch from
    after that read."""

    def __init__(self, compact_revision: int) -> None:
        super().__init__(f"revisions up to {compact_revision} compacted", unreachable=False)
        self.compact_revision = compact_revision


@dataclass(frozen=True)
class KeyValue:
    key: bytes
    value: bytes
    create_revision: int
    mod_revision: int


@dataclass(frozen=True)
class WatchEvent:
    deleted: bool  # else a put
    kv: KeyValue


def b64(data: bytes) -> str:
    """Bytes as etcd's JSON gateway takes them (protobuf's JSON mapping of ``bytes``)."""
    return base64.b64encode(data).decode()


def prefix_end(prefix: bytes) -> bytes:
    """The ``range_end`` that makes a range of every key starting with ``prefix``."""
    end = bytearray(prefix)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return b"\x00"  # every key


def key_value(kv: Json) -> KeyValue:
    return KeyValue(base64.b64decode(kv.get("key", "")), base64.b64decode(kv.get("value", "")),
                    int(kv.get("create_revision", 0)), int(kv.get("mod_revision", 0)))


def kvs(answer: Json) -> list[KeyValue]:
    """The keys of a range's answer (``/v3/kv/range``, or a ``response_range`` in a txn)."""
    return [key_value(kv) for kv in answer.get("kvs", ())]


def revision(answer: Json) -> int:
    """The store's revision an answer was made at (its header's)."""
    return int(answer.get("header", {}).get("revision", 0))


# --- a transaction's parts (``/v3/kv/txn``) -------------------------------------------------

def put_op(key: bytes, value: bytes, lease: int = 0) -> Json:
    put: Json = {"key": b64(key), "value": b64(value)}
    if lease:
        put["lease"] = str(lease)
    return {"request_put": put}


def range_op(key: bytes) -> Json:
    return {"request_range": {"key": b64(key)}}


def delete_op(key: bytes) -> Json:
    return {"request_delete_range": {"key": b64(key)}}


def txn_op(compare: Sequence[Json], success: Sequence[Json], failure: Sequence[Json]) -> Json:
    """A transaction nested in another."""
    return {"request_txn": {"compare": list(compare), "success": list(success),
                            "failure": list(failure)}}


def created_at(key: bytes, create_revision: int) -> Json:
    """Compare: ``key`` was created at ``create_revision`` (0: ``key`` is absent)."""
    return {"target": "CREATE", "result": "EQUAL", "key": b64(key),
            "create_revision": str(create_revision)}


def value_is(key: bytes, value: bytes) -> Json:
    return {"target": "VALUE", "result": "EQUAL", "key": b64(key), "value": b64(value)}


# --- HTTP/1.1 on an asyncio transport ---------------------------------------------------------

class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection: one request at a time, its answer whole, or a stream of lines
    (the watch)."""

    def __init__(self, on_lost: Callable[[_Connection], None]) -> None:
        self._on_lost = on_lost
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._buf = bytearray()
        self._answer: asyncio.Future[tuple[int, bytes]] | None = None
        self._lines: Callable[[bytes], None] | None = None  # a stream's reader of each line
        self._line = bytearray()  # a stream's line not yet ended
        self._status = 0
        self._length = -1  # the body's Content-Length; -1: chunked, or not read yet
        self._chunked = False
        self._head_done = False
        self._body = bytearray()
        self._keep = True  # the answer lets the connection be used again
        self.answered_any = False  # some byte of an answer came on this connection

    # the transport's side
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(GatewayError(f"the connection closed{f': {exc}' if exc else ''}",
                                unreachable=True))
        self._on_lost(self)

    def data_received(self, data: bytes) -> None:
        self.answered_any = True
        self._buf += data
        try:
            self._parse()
        except (ValueError, IndexError) as exc:
            self._fail(GatewayError(f"an answer not understood ({exc})", unreachable=True))
            self.close()

    def eof_received(self) -> bool:
        return False  # the transport closes; connection_lost fails what is open

    # the caller's side
    def request(self, path: str, body: bytes,
                lines: Callable[[bytes], None] | None = None) -> asyncio.Future[tuple[int, bytes]]:
        """Send a request: the future ends with the answer's status and body. With ``lines``
        the answer is a stream: each line of its body goes to ``lines`` as it comes, and the
        future ends when the stream does (or at once with an answer that is not 200)."""
        assert self.transport is not None and self._answer is None
        self._lines = lines
        self._answer = asyncio.get_running_loop().create_future()
        self._start_answer()
        self.transport.write(b"POST %s HTTP/1.1\r\nHost: etcd\r\n%sContent-Length: %d\r\n\r\n%s"
                             % (path.encode(), _HEADERS, len(body), body))
        return self._answer

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _fail(self, error: GatewayError) -> None:
        answer, self._answer = self._answer, None
        if answer is not None and not answer.done():
            answer.set_exception(error)

    def _start_answer(self) -> None:
        self._status, self._length, self._chunked = 0, -1, False
        self._head_done, self._keep = False, True
        self._body.clear()
        self._line.clear()

    def _parse(self) -> None:
        buf = self._buf
        while buf:
            if self._answer is None:
                raise ValueError("an answer to no request")
            if not self._head_done:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    if len(buf) > _MAX_HEAD:
                        raise ValueError("an answer's head too long")
                    return
                self._head(bytes(buf[:end]))
                del buf[:end + 4]
                if self._length == 0:
                    self._done()
                continue
            if not self._chunked:
                take = min(len(buf), self._length - len(self._body))
                self._got(buf[:take])
                del buf[:take]
                if len(self._body) == self._length:
                    self._done()
                continue
            # chunked: a size line, the chunk, its CRLF; size 0 ends it (and an empty trailer)
            eol = buf.find(b"\r\n")
            if eol < 0:
                return
            size = int(bytes(buf[:eol]).split(b";", 1)[0], 16)
            if size == 0:
                if len(buf) < eol + 4:
                    return
                del buf[:eol + 4]
                self._done()
                continue
            if len(buf) < eol + 2 + size + 2:
                return
            self._got(buf[eol + 2:eol + 2 + size])
            del buf[:eol + 2 + size + 2]

    def _head(self, head: bytes) -> None:
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        if not parts[0].startswith(b"HTTP/1."):
            raise ValueError(f"status line {lines[0][:60]!r}")
        self._status = int(parts[1])
        self._head_done = True
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                self._length = int(value)
            elif name == b"transfer-encoding":
                self._chunked = b"chunked" in value.lower()
            elif name == b"connection":
                self._keep = b"close" not in value.lower()
        if not self._chunked and self._length < 0:
            raise ValueError("an answer with neither a length nor chunks")

    def _got(self, data: bytearray | bytes) -> None:
        if self._lines is None or self._status != 200:
            self._body += data
            return
        line = self._line
        line += data
        start = 0
        while True:
            end = line.find(b"\n", start)
            if end < 0:
                break
            if end > start:
                self._lines(bytes(line[start:end]))
            start = end + 1
        del line[:start]

    def _done(self) -> None:
        answer, self._answer = self._answer, None
        if not self._keep:
            self.close()
        if answer is not None and not answer.done():
            answer.set_result((self._status, bytes(self._body)))


class GatewayClient:
    """etcd's JSON gateway on one member (``(host, port)``), from the running event loop."""

    def __init__(self, member: tuple[str, int]) -> None:
        self.member = member
        self._idle: list[_Connection] = []
        self._busy: set[_Connection] = set()
        self._closed = False

    async def post(self, path: str, body: Json, timeout: float) -> Json:
        """POST ``body`` to ``path``: etcd's answer. Raises :class:`GatewayError`:
        ``unreachable`` when no answer came within ``timeout`` (the connection is then
        closed), else when the answer was an error."""
        status, answer = await self.post_bytes(path, json.dumps(body).encode(), timeout)
        try:
            result = json.loads(answer) if answer else {}
        except ValueError as exc:
            raise GatewayError(f"HTTP {status}: an answer not understood ({exc})",
                               unreachable=False) from None
        if status != 200 or not isinstance(result, dict):
            raise GatewayError(f"HTTP {status}: {_message(result, answer)}", unreachable=False)
        return result

    async def post_bytes(self, path: str, body: bytes, timeout: float) -> tuple[int, bytes]:
        """POST ``body`` (JSON) to ``path``: the answer's status and body, whatever the status."""
        loop = asyncio.get_running_loop()
        until = loop.time() + timeout
        kept = bool(self._idle)
        while True:
            conn = await self._connection(until)
            answer = conn.request(path, body)
            timer = loop.call_at(until, self._time_out, conn, answer)
            try:
                status, data = await answer
            except GatewayError:
                # a kept connection etcd closed since its last answer (reset, or closed before
                # any answer) is opened again once within the time left; a new one that fails,
                # or no answer in time, fails the request
                conn.close()
                self._busy.discard(conn)
                if kept and not conn.answered_any and loop.time() < until and not self._closed:
                    kept = False
                    continue
                raise
            except BaseException:  # cancelled: the answer would come to no one
                conn.close()
                self._busy.discard(conn)
                raise
            finally:
                timer.cancel()
            self._busy.discard(conn)
            if conn.closed or self._closed or len(self._idle) >= IDLE_KEPT:
                conn.close()
            else:
                self._idle.append(conn)
            return status, data

    async def watch(self, key: bytes, range_end: bytes, start_revision: int,
                    timeout: float) -> AsyncIterator[list[WatchEvent]]:
        """Follow the keys in [key, range_end) from ``start_revision`` on a connection of its
        own: each answer's events, in order. ``timeout`` bounds the connecting and etcd's first
        answer (the watch created); a stream after that may stay quiet for ever, and a member
        that stops answering is the caller's to leave. Raises :class:`CompactedError` when
        ``start_revision`` is compacted, :class:`GatewayError` when the stream ends: as
        ``unreachable`` if the watch was never created (no connection, no answer in time)."""
        loop = asyncio.get_running_loop()
        results: asyncio.Queue[Json | GatewayError] = asyncio.Queue()

        def line(text: bytes) -> None:
            try:
                message = json.loads(text)
                result = message["result"] if "result" in message else message
                if not isinstance(result, dict):
                    raise TypeError(type(result).__name__)
            except (ValueError, KeyError, TypeError) as exc:
                results.put_nowait(GatewayError(f"a watch answer not understood ({exc})",
                                                unreachable=False))
                return
            results.put_nowait(result)

        until = loop.time() + timeout
        conn = await self._connection(until)
        body = json.dumps({"create_request": {"key": b64(key), "range_end": b64(range_end),
                                              "start_revision": str(start_revision)}}).encode()
        ended = conn.request("/v3/watch", body, line)

        def end(done: asyncio.Future[tuple[int, bytes]]) -> None:
            if done.cancelled():
                return
            error = done.exception()
            if error is None:
                status, data = done.result()
                error = GatewayError(f"the watch ended: HTTP {status}: {_message(None, data)}",
                                     unreachable=status == 200)
            assert isinstance(error, GatewayError)
            results.put_nowait(error)

        ended.add_done_callback(end)
        created = loop.call_at(until, self._time_out, conn, ended)
        try:
            while True:
                result = await results.get()
                if isinstance(result, GatewayError):
                    if created.cancelled() and result.unreachable:
                        raise GatewayError(f"the watch ended: {result.details}",
                                           unreachable=False)
                    raise result
                created.cancel()
                if result.get("canceled"):
                    compacted = int(result.get("compact_revision", 0))
                    if compacted:
                        raise CompactedError(compacted)
                    raise GatewayError(f"etcd cancelled the watch: "
                                       f"{result.get('cancel_reason', '')}", unreachable=False)
                events = result.get("events")
                if events:
                    yield [WatchEvent(event.get("type") == "DELETE", key_value(event["kv"]))
                           for event in events]
        finally:
            created.cancel()
            conn.close()
            self._busy.discard(conn)

    def close(self) -> None:
        """Close every connection; requests in flight fail as ``unreachable``."""
        self._closed = True
        for conn in [*self._idle, *self._busy]:
            conn.close()
        self._idle.clear()

    async def _connection(self, until: float) -> _Connection:
        while self._idle:
            conn = self._idle.pop()
            if not conn.closed:
                self._busy.add(conn)
                conn.answered_any = False
                return conn
        if self._closed:
            raise GatewayError("the client is closed", unreachable=True)
        loop = asyncio.get_running_loop()
        connecting = loop.create_task(loop.create_connection(
            lambda: _Connection(self._lost), *self.member))
        timer = loop.call_at(until, connecting.cancel)
        try:
            _, conn = await connecting
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if not connecting.cancelled() or (task is not None and task.cancelling()):
                raise
            raise GatewayError("no connection in time", unreachable=True) from None
        except OSError as exc:
            raise GatewayError(f"{type(exc).__name__}: {exc}", unreachable=True) from None
        finally:
            timer.cancel()
        if self._closed:
            conn.close()
            raise GatewayError("the client is closed", unreachable=True)
        self._busy.add(conn)
        return conn

    def _lost(self, conn: _Connection) -> None:
        if conn in self._idle:
            self._idle.remove(conn)

    @staticmethod
    def _time_out(conn: _Connection, answer: asyncio.Future[tuple[int, bytes]]) -> None:
        if not answer.done():
            answer.set_exception(GatewayError("no answer in time", unreachable=True))
        conn.close()


def _message(result: object, raw: bytes) -> str:
    """What an error answer says: etcd's ``message`` (or ``error``), else the raw text."""
    if result is None:
        try:
            result = json.loads(raw)
        except ValueError:
            result = None
    if isinstance(result, Mapping):
        error = result.get("error", result)
        if isinstance(error, Mapping):
            return str(error.get("message", error))
        return str(result.get("message", error))
    return raw[:200].decode(errors="replace")
