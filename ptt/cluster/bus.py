"""Node-to-node messages over NATS: the thin adapter under ``ptt.cluster.node``.

Each node subscribes to one subject, ``<prefix>.node.<id>``, and publishes to the subject of
the node a message is for: the home a floor input goes to, each node of a relay set a voice
frame or floor news goes to (``ptt.protocol.cluster_routing`` decides which; the bytes are
``ptt.wire.cluster``'s or a relayed voice frame). Core NATS publish, not request/reply: every
answer is itself a message the home publishes (FloorNews naming the request it answers), and a
lost one is recovered the way a lost datagram is (the client resends its request; floor news is
repeated), so no message waits on an inbox. Measured on this machine (issue #17):
publish->subscriber 156/362 us p50/p99, request/reply 0.65/2.4 ms.

:meth:`Bus.send` is synchronous, for the server's datagram handlers, and puts the message on
the connection's socket at once, in the loop turn that made it: the floor request a client
sent, the home's answer and a voice frame leave before the rest of that turn's work (answers
to other clients, the event log, the timers), and no task of ours or of nats-py's stands in
between (traced on a cross-node floor request: the writer task's turn and nats-py's flusher
came after 0.2-0.4 ms of that work, on each of the two nodes). nats-py has no synchronous
publish, so this writes the protocol's ``PUB`` line to its transport as nats-py itself writes a
``PING``; only while nothing waits in nats-py's buffer or ours and the socket's own buffer is
empty, so the order of messages holds. Otherwise (reconnecting, NATS slow to read) the message
waits in a queue that one writer task hands to ``publish``, which buffers it across a
reconnection and waits for the socket to drain.

Receiving: ``on_message`` runs in nats-py's read loop, in the turn that parsed the message. A
subscription with a callback puts each message in a queue for a task of its own, one more loop
turn per message (50-90 us a message, traced on a cross-node floor request: twice on its way,
once on a voice frame's). The subscription is instead made with nats-py's ``future`` parameter
(public in ``Client.subscribe``, meant for a one-off reply), given a :class:`_Deliver` that
takes every message: nats-py 2.x hands each message of such a subscription to
``future.set_result(msg)`` once ``future.cancelled()`` is false, in its read loop, in arrival
order, and starts no task for it. That is all this relies on; ``tests/cluster/test_bus.py``
checks it against the installed nats-py.

Another node gone from NATS (:meth:`Bus.probe`, ``on_left``): nats-server publishes, in its
system account, an event each time a client's connection closes
(``$SYS.ACCOUNT.<account>.DISCONNECT``, naming the client); a SIGKILLed node's TCP connection
closes at once and the event reaches every node within milliseconds (2.5-3 ms measured here,
across a cluster of three members too). The server must export that subject from its system
account to the nodes' account (``ptt.cluster.engines.nats_config``); without it the
subscription simply hears nothing. The event is only a hint: anyone in the account may connect
under a node's name, and a node whose connection dropped reconnects within milliseconds. So
each node also answers requests on ``<prefix>.alive.<id>``, and :meth:`probe` asks it: an
answer means it is there; nats-server's own "no responders" (no subscription to the subject
anywhere in the NATS cluster) means it is not connected now; no answer in time means it is
connected but not answering (busy, or paused with its TCP connection open): the lease decides.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from collections.abc import Callable, Sequence

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg

from ptt.errors import NetError

__all__ = ["CLIENT_NAME", "CLOSED_BY_CLIENT", "CONNECT_TIMEOUT", "MAX_QUEUED", "Bus"]

log = logging.getLogger("ptt.cluster.bus")

CONNECT_TIMEOUT = 5.0  # s for the first connection; after it nats-py reconnects for ever
MAX_QUEUED = 100_000  # messages waiting for the writer; beyond, the oldest are dropped
CLIENT_NAME = "ptt-node-"  # + the node's id: the name its NATS connection gives the server
# nats-server's event of a client connection closing, in any account that imports it
DISCONNECT_EVENTS = "$SYS.ACCOUNT.*.DISCONNECT"
# the event's reasons that say the client's own end closed the connection: its socket shut
# ("Client Closed": EOF, as a SIGKILLed process's kernel closes it) or reset ("Read Error": the
# same with unread data in the socket, measured here). Every other reason is nats-server
# closing a connection whose process lives (slow consumer, stale connection, its shutdown...),
# which nats-py connects again within milliseconds
CLOSED_BY_CLIENT = frozenset({"Client Closed", "Read Error"})


class _Deliver:
    """What nats-py takes for a subscription's ``future``: each message it would set as the
    future's result goes to ``take`` at once (see the module docstring): no task waits on the
    subscription."""

    __slots__ = ("_take",)

    def __init__(self, take: Callable[[Msg], None]) -> None:
        self._take = take

    def cancelled(self) -> bool:
        return False

    def set_result(self, msg: Msg) -> None:
        self._take(msg)


class Bus:
    """``Bus(node, urls, on_message)``; ``await start()``, ``send(node, data)``, ``await
    close()``. ``on_message(data)`` runs for every message to this node, in arrival order."""

    def __init__(self, node: str, urls: Sequence[str], on_message: Callable[[bytes], None],
                 prefix: str = "ptt",
                 on_left: Callable[[str, bool], None] | None = None) -> None:
        self.node = node
        self.urls = list(urls)
        self.prefix = prefix
        self.on_message = on_message
        # called with a node's id when nats-server says a connection under its name closed,
        # and whether its own end closed it (CLOSED_BY_CLIENT)
        self.on_left = on_left
        self._nc: Client | None = None
        self._queue: deque[tuple[str, bytes]] = deque()
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._stream: asyncio.WriteTransport | None = None  # the socket's, for writing at once
        self._subjects: dict[str, bytes] = {}  # node -> its subject as the PUB line names it
        self._answering: set[asyncio.Task[None]] = set()  # answers to probes, being sent
        self.sent = 0
        self.received = 0
        self.dropped = 0  # sends dropped: the queue was full (NATS unreachable for long)
        self._last_error: Exception | None = None  # of the first connection, for its message

    def subject(self, node: str) -> str:
        return f"{self.prefix}.node.{node}"

    def alive_subject(self, node: str) -> str:
        return f"{self.prefix}.alive.{node}"

    async def start(self) -> None:
        try:
            self._nc = await asyncio.wait_for(nats.connect(
                servers=self.urls, name=f"{CLIENT_NAME}{self.node}", connect_timeout=2,
                allow_reconnect=True, max_reconnect_attempts=-1, reconnect_time_wait=0.2,
                error_cb=self._on_error, disconnected_cb=self._on_disconnected,
                reconnected_cb=self._on_reconnected), CONNECT_TIMEOUT)
        except (OSError, asyncio.TimeoutError, nats.errors.Error) as exc:
            why = self._last_error or exc or type(exc).__name__
            raise NetError(f"cannot reach NATS at {', '.join(self.urls)} within "
                           f"{CONNECT_TIMEOUT:g} s: {why}") from None
        await self._nc.subscribe(self.subject(self.node),
                                 future=_Deliver(self._received))  # type: ignore[arg-type]
        await self._nc.subscribe(self.alive_subject(self.node),
                                 future=_Deliver(self._answer_probe))  # type: ignore[arg-type]
        if self.on_left is not None:
            await self._nc.subscribe(
                DISCONNECT_EVENTS,
                future=_Deliver(self._on_disconnect_event))  # type: ignore[arg-type]
        await self._nc.flush()  # the subscription is in place before anyone is told we run
        self._writer = asyncio.get_running_loop().create_task(self._write())

    def _socket(self) -> asyncio.WriteTransport | None:
        """The connection's socket transport while a message may go straight to it, else None.
        nats-py keeps it private (``Client._transport``, a ``TcpTransport`` over a
        ``StreamWriter``): any other shape (a websocket, another release of it) is left to
        ``publish``."""
        nc = self._nc
        if nc is None or not nc.is_connected or getattr(nc, "_pending_data_size", None) != 0:
            return None  # something of nats-py's own waits: it goes first
        writer = getattr(getattr(nc, "_transport", None), "_io_writer", None)
        stream = getattr(writer, "transport", None)
        if stream is not self._stream:  # a new connection (reconnected): checked once
            self._stream = stream if isinstance(stream, asyncio.WriteTransport) else None
        return self._stream

    def send(self, node: str, data: bytes) -> None:
        self.send_all(((node, data),))

    def send_all(self, messages: Sequence[tuple[str, bytes]]) -> None:
        """``(node, data)`` each, in order, in one write to the socket: a home's news to every
        node with members costs one system call (each is a point where a busy machine may
        take the CPU from this process before the next)."""
        if not messages:
            return
        if not self._queue:
            stream = self._socket()
            if (stream is not None and not stream.is_closing()
                    and not stream.get_write_buffer_size()):
                pub = self._subject
                stream.write(b"".join(b"PUB %s %d\r\n%s\r\n" % (pub(node), len(data), data)
                                      for node, data in messages))
                self.sent += len(messages)
                return
        for item in messages:
            if len(self._queue) >= MAX_QUEUED:
                self._queue.popleft()
                self.dropped += 1
            self._queue.append(item)
        self._wake.set()

    def _subject(self, node: str) -> bytes:
        subject = self._subjects.get(node)
        if subject is None:
            subject = self._subjects[node] = self.subject(node).encode()
        return subject

    async def _write(self) -> None:
        queue, nc = self._queue, self._nc
        assert nc is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            while queue:
                node, data = queue.popleft()
                try:
                    await nc.publish(self.subject(node), data)
                    self.sent += 1
                except nats.errors.Error as exc:  # closed or draining: lost, like a datagram
                    self.dropped += 1
                    log.debug("bus publish to %s failed: %s", node, exc)

    def _received(self, msg: Msg) -> None:
        """In nats-py's read loop: what escaped from here would break its connection."""
        self.received += 1
        try:
            self.on_message(msg.data)
        except Exception:  # as nats-py does with a callback's: logged, the next one comes
            log.exception("bus message handler failed")

    def _answer_probe(self, msg: Msg) -> None:
        """Another node asks whether this one is there (rare: only on a hint that it left)."""
        nc = self._nc
        if msg.reply and nc is not None:
            task = asyncio.get_running_loop().create_task(nc.publish(msg.reply, b""))
            self._answering.add(task)
            task.add_done_callback(self._answering.discard)

    def _on_disconnect_event(self, msg: Msg) -> None:
        """nats-server's event of a connection closing: a node's, by its name, to ``on_left``
        with whether the node's end closed it (its reason in ``CLOSED_BY_CLIENT``). Anything
        else (another client, a body that is not the event) is ignored."""
        try:
            event = json.loads(msg.data)
            name = event["client"]["name"]
        except (ValueError, KeyError, TypeError):
            return
        if (isinstance(name, str) and name.startswith(CLIENT_NAME)
                and self.on_left is not None):
            node = name[len(CLIENT_NAME):]
            if node and node != self.node:
                self.on_left(node, event.get("reason") in CLOSED_BY_CLIENT)

    async def probe(self, node: str, timeout: float) -> bool | None:
        """Is ``node`` connected to NATS? True: it answered; False: nats-server said no
        subscription to its subject exists; None: no answer within ``timeout`` (connected but
        busy or paused, or NATS itself unreachable from here)."""
        nc = self._nc
        if nc is None or not nc.is_connected:
            return None
        try:
            await nc.request(self.alive_subject(node), b"", timeout=timeout)
        except nats.errors.NoRespondersError:
            return False
        except (nats.errors.Error, asyncio.TimeoutError):
            return None
        return True

    async def _on_error(self, exc: Exception) -> None:
        if self._writer is None:  # still trying the first connection: said once, if it fails
            self._last_error = exc
        else:
            log.warning("NATS: %s", exc)

    async def _on_disconnected(self) -> None:
        if self._writer is not None:  # not our own close
            log.warning("NATS: disconnected; reconnecting")

    async def _on_reconnected(self) -> None:
        log.info("NATS: reconnected to %s", self._nc.connected_url.netloc if self._nc
                 and self._nc.connected_url else "?")

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.cancel()
            self._writer = None
        if self._nc is not None:
            nc, self._nc = self._nc, None
            try:
                await asyncio.wait_for(nc.close(), 2.0)
            except (asyncio.TimeoutError, nats.errors.Error):
                pass
