"""Sessions on the server: who is logged in, from where, and until when.

A session is created by a successful login and bound to the client's address; it holds the
session's :class:`~ptt.crypto.channel.SecureChannel`, through which every later control datagram
in either direction goes. Every datagram from that address that opens refreshes it; a session
not heard from for its timeout expires, the timeout following the cadence its client is on
(:class:`ptt.protocol.keepalive.Cadence`: short while one of its groups is busy, long while idle).
Expiry is found with a heap of deadlines checked lazily and rounded up to
``keepalive.EXPIRY_GRID``, so heartbeats cost a dict lookup, one AEAD open and an assignment, and
the checks of many sessions share a timer wake-up.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass, field

from ptt.crypto.channel import SecureChannel
from ptt.protocol.keepalive import Cadence, expiry_check_at
from ptt.protocol.messages import Role

Addr = tuple[str, int] | tuple[str, int, int, int]

MAX_DEVICES = 4  # sessions one user may have at once; a login beyond ends the oldest


@dataclass(slots=True, eq=False)
class Session:
    session_id: int
    user: str
    role: Role
    addr: Addr
    last_seen: float
    key: bytes = b""
    channel: SecureChannel | None = None  # seals and opens every control datagram after login
    device: str = ""  # the client's device id: a user may be online from several devices
    notice_at: float = 0.0  # last "you do not hold the floor" notice (rate limit)
    path_check_at: float = -1.0  # last PathCheck sent to a new address (rate limit)
    joined: set[str] = field(default_factory=set)
    voice_key: bytes = b""  # checks the MAC on its voice (ptt.wire.voice.open_mac)
    check_at: float = 0.0  # the earliest expiry check of it in the table's heap


class SessionTable:
    """Sessions by id, by address, and by user and device: a user may be online from several
    devices at once (a login from a device that has a session replaces it); ``by_user`` holds
    each user's newest session, ``devices`` all of them, oldest first.

    ``busy_since(session)``: since when the session's client is on the busy cadence (one of its
    groups has a talker), or None while it is idle; the server's floor state answers it."""

    def __init__(self, cadence: Cadence = Cadence(),
                 busy_since: Callable[[Session], float | None] = lambda s: None) -> None:
        self.cadence = cadence
        self.busy_since = busy_since
        self.by_id: dict[int, Session] = {}
        self.by_addr: dict[Addr, Session] = {}
        self.by_user: dict[str, Session] = {}
        self._devices: dict[str, list[Session]] = {}
        self._heap: list[tuple[float, int]] = []

    def __len__(self) -> int:
        return len(self.by_id)

    def add(self, session: Session) -> None:
        self.by_id[session.session_id] = session
        self.by_addr[session.addr] = session
        self.by_user[session.user] = session
        self._devices.setdefault(session.user, []).append(session)
        self._arm(session, expiry_check_at(self.deadline(session)))

    def deadline(self, session: Session) -> float:
        """When ``session`` expires unless heard from again."""
        return self.cadence.deadline(session.last_seen, self.busy_since(session))

    def tightened(self, session: Session) -> None:
        """``session`` should go onto the busy cadence: it is checked again when the busy
        timeout could first expire it (before the check the heap holds for it)."""
        at = expiry_check_at(max(session.last_seen, self.busy_since(session) or 0.0)
                             + self.cadence.busy_timeout)
        if at < session.check_at:
            self._arm(session, at)

    def _arm(self, session: Session, at: float) -> None:
        session.check_at = at
        heapq.heappush(self._heap, (at, session.session_id))

    def remove(self, session: Session) -> None:
        if self.by_id.get(session.session_id) is session:
            del self.by_id[session.session_id]
        if self.by_addr.get(session.addr) is session:
            del self.by_addr[session.addr]
        devices = self._devices.get(session.user, [])
        if session in devices:
            devices.remove(session)
        if self.by_user.get(session.user) is session:
            if devices:
                self.by_user[session.user] = devices[-1]
            else:
                del self.by_user[session.user]
        if not devices:
            self._devices.pop(session.user, None)

    def devices(self, user: str) -> list[Session]:
        """The user's sessions, oldest first."""
        return list(self._devices.get(user, ()))

    def on_device(self, user: str, device: str) -> Session | None:
        return next((s for s in self._devices.get(user, ()) if s.device == device), None)

    def move(self, session: Session, addr: Addr) -> None:
        """The session's client sends from ``addr`` now."""
        if self.by_addr.get(session.addr) is session:
            del self.by_addr[session.addr]
        session.addr = addr
        self.by_addr[addr] = session

    def lookup(self, session_id: int, addr: Addr) -> Session | None:
        """The session with this id, only if the datagram came from its address."""
        s = self.by_id.get(session_id)
        if s is None or s.addr != addr:
            return None
        return s

    def get_timer(self) -> float | None:
        return self._heap[0][0] if self._heap else None

    def expired(self, now: float) -> list[Session]:
        """Sessions whose deadline passed; still-live ones are re-armed at their real deadline
        (one check per session in the heap: a check superseded by an earlier one is dropped)."""
        out: list[Session] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            at, sid = heapq.heappop(heap)
            s = self.by_id.get(sid)
            if s is None or at != s.check_at:
                continue
            deadline = self.deadline(s)
            if deadline <= now:
                s.check_at = float("inf")  # its other checks (if any) are spent
                out.append(s)
            else:
                self._arm(s, expiry_check_at(deadline))
        return out
