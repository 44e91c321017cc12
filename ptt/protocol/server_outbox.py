"""The server core's one way out: datagrams to send, events to report, and acknowledged pushes.

Every part of :class:`~ptt.protocol.server.ServerCore` sends through the one :class:`Outbox` it is
given, sealed with the session's channel: one datagram (:meth:`Outbox.send`), the answer to a
request, cached for its resends (:meth:`Outbox.answer`), the same news to a whole group
(:meth:`Outbox.announce`), or a push resent until acknowledged and resealed every time
(:meth:`Outbox.send_reliable`). What happened is reported with :meth:`Outbox.emit` (a dropped
datagram with :meth:`Outbox.drop`). The adapter takes both out through ``ServerCore``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Container

from ptt.protocol import messages as m
from ptt.protocol.messages import encode_message
from ptt.protocol.server_events import Dropped, ServerEvent
from ptt.protocol.server_state import GroupEntry
from ptt.protocol.session import Addr, Session
from ptt.protocol.transactions import ResponseCache, Retransmitter


class Outbox:
    """Datagrams and events out, the response cache, and the pushes awaiting their acks."""

    def __init__(self) -> None:
        self.datagrams: list[tuple[bytes, Addr]] = []
        self.events: deque[ServerEvent] = deque()
        # answers by (addr, txn) for plain requests, by (session id, txn) for sealed ones
        self.cache: ResponseCache[tuple[object, int]] = ResponseCache()
        self.reliable: Retransmitter[tuple[int, int]] = Retransmitter()  # plaintext, to a Session
        self._txn = 0

    def take_datagrams(self) -> list[tuple[bytes, Addr]]:
        out, self.datagrams = self.datagrams, []
        return out

    def take_events(self) -> list[ServerEvent]:
        ev = list(self.events)
        self.events.clear()
        return ev

    def emit(self, event: ServerEvent) -> None:
        self.events.append(event)

    def drop(self, addr: Addr, reason: str) -> None:
        """Report a dropped datagram. ``reason`` is "kind" or "kind: detail": the kind comes from
        a fixed set (counters key on it), only the detail may echo what the peer sent."""
        self.events.append(Dropped(addr, reason))

    @staticmethod
    def seal(s: Session, plain: bytes) -> bytes:
        assert s.channel is not None  # every session is made with its channel
        return s.channel.seal(plain)

    def send(self, s: Session, msg: m.Message) -> None:
        """One sealed datagram to a session, not cached nor retransmitted."""
        self.datagrams.append((self.seal(s, encode_message(msg)), s.addr))

    def answer(self, s: Session, txn: int, msg: m.Message, now: float) -> None:
        """Answer a session's request; a retransmission of it gets the same sealed bytes, which
        the client's replay window accepts once (it takes them only if the first copy was lost)."""
        data = self.seal(s, encode_message(msg))
        self.cache.put((s.session_id, txn), data, now)
        self.datagrams.append((data, s.addr))

    def announce(self, g: GroupEntry, msg: m.Message, skip: Session | None = None,
                 skip_user: str | None = None, skip_sessions: Container[int] = ()) -> None:
        """``msg`` to every session joined to ``g`` but ``skip``, ``skip_user``'s and those
        in ``skip_sessions`` (by id)."""
        if not g.joined:  # a cluster's home with no member of its own: nothing to encode
            return
        data = encode_message(msg)  # encoded once, sealed per member
        seal = self.seal
        self.datagrams.extend((seal(s, data), s.addr) for sid, s in g.joined.items()
                              if s is not skip and s.user != skip_user
                              and sid not in skip_sessions)

    def send_reliable(self, s: Session, make: Callable[[int], m.Message], now: float
                      ) -> tuple[int, int]:
        """Send until acked; the plaintext is kept and sealed anew for every resend."""
        return self.send_reliable_bytes(s, lambda txn: encode_message(make(txn)), now)

    def send_reliable_bytes(self, s: Session, encode: Callable[[int], bytes], now: float
                            ) -> tuple[int, int]:
        """:meth:`send_reliable` of a message already encoded but for its txn
        (``ptt.protocol.messages.encoder_of``)."""
        self._txn = m.next_txn(self._txn)
        plain = encode(self._txn)
        key = (s.session_id, self._txn)
        self.reliable.add(key, plain, s, now)
        self.datagrams.append((self.seal(s, plain), s.addr))
        return key
