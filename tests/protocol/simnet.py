"""An in-memory network for driving ServerCore and ClientCores with a virtual clock.

Every datagram may be lost, duplicated or delayed (which reorders them); nothing touches a socket.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Collection
from dataclasses import dataclass, field

from ptt.protocol import auth
from ptt.protocol import messages as m
from ptt.protocol.client import ClientCore
from ptt.protocol.server import ServerCore

SERVER = ("10.255.255.1", 7700)  # a label only: no packet leaves the process


@dataclass
class SimNet:
    seed: int = 1
    loss: float = 0.0
    dup: float = 0.0
    delay: tuple[float, float] = (0.001, 0.005)
    now: float = 0.0
    rng: random.Random = field(init=False)
    server: ServerCore = field(init=False)
    clients: dict[str, ClientCore] = field(default_factory=dict)
    addrs: dict[str, tuple[str, int]] = field(default_factory=dict)
    server_events: list[object] = field(default_factory=list)
    client_events: dict[str, list[object]] = field(default_factory=dict)
    _q: list[tuple[float, int, object, bytes]] = field(default_factory=list)
    _seq: int = 0
    _by_addr: dict[object, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.server = ServerCore(self.rng.randbytes)

    def add_user(self, name: str, role: m.Role = m.Role.VOLUNTEER) -> ClientCore:
        token = f"token-of-{name}-0123456789abcdef"
        creds = auth.make_credentials(token, self.rng.randbytes(16), auth.MIN_ITERATIONS)
        self.server.upsert_user(name, role, creds.salt, creds.iterations, creds.verifier)
        c = ClientCore(name, token, self.rng.randbytes)
        self.clients[name] = c
        self.addrs[name] = ("10.255.0.%d" % (len(self.addrs) + 2), 40000)
        self.client_events[name] = []
        return c

    def add_group(self, name: str, members: list[str], gid: int, max_talk: float = 30.0) -> None:
        self.server.upsert_group(name, gid, max_talk)
        for u in members:
            self.server.set_member(name, u)

    # --- the wire ---

    def _send(self, dest: object, data: bytes) -> None:
        if self.rng.random() < self.loss:
            return
        copies = 2 if self.rng.random() < self.dup else 1
        for _ in range(copies):
            self._seq += 1
            at = self.now + self.rng.uniform(*self.delay)
            heapq.heappush(self._q, (at, self._seq, dest, data))

    def flush(self) -> None:
        self.flush_from(self.clients)

    def flush_from(self, users: Collection[str]) -> None:
        """Send what the server and ``users`` (in the order of ``clients``) have to send; the
        others have sent nothing since their last flush. Subclasses acting as an adapter (pages
        stored, datagrams kept) extend this or :meth:`route`."""
        for data, addr in self.server.datagrams_to_send():
            self.route(data, addr)
        for user, c in self.clients.items():
            if user in users:
                for data in c.datagrams_to_send():
                    self._send(("server", self.addrs[user]), data)
                self.client_events[user].extend(c.events())
        self.server_events.extend(self.server.events())

    def route(self, data: bytes, addr: object) -> None:
        """A datagram from the server to ``addr``: onto the wire to the user there."""
        self._send(self._user_at(addr), data)

    def _user_at(self, addr: object) -> str:
        user = self._by_addr.get(addr)
        if user is None or self.addrs.get(user) != addr:
            self._by_addr = {a: u for u, a in self.addrs.items()}
            user = self._by_addr[addr]
        return user

    def run_until(self, t_end: float) -> None:
        """Deliver datagrams and fire timers in time order until ``t_end``.

        A client's timer depends on its state alone, so it is asked again only after the client
        received or fired something: with hundreds of clients, asking each of them at every
        step cost most of a large test's time. The order of sends (and so of the seeded random
        draws for loss and delay) is the same as asking all of them."""
        self.flush()  # the test may have called the clients' API since the last run
        timers = {u: c.get_timer() for u, c in self.clients.items()}
        while True:
            pending = [t for t in timers.values() if t is not None]
            if self._q:
                pending.append(self._q[0][0])
            st = self.server.get_timer()
            if st is not None:
                pending.append(st)
            if not pending or min(pending) > t_end:
                self.now = t_end
                return
            self.now = max(self.now, min(pending))
            touched: set[str] = set()
            while self._q and self._q[0][0] <= self.now:
                _, _, dest, data = heapq.heappop(self._q)
                if isinstance(dest, tuple):
                    targets = self.server.receive_datagram(data, dest[1], self.now)
                    for addr in targets or ():  # relayed voice, straight onto the wire
                        self._send(self._user_at(addr), data)
                elif dest in self.clients:  # not a client cut off (its process gone)
                    self.clients[dest].receive_datagram(data, self.now)  # type: ignore[index]
                    touched.add(dest)  # type: ignore[arg-type]
            st = self.server.get_timer()
            if st is not None and st <= self.now:
                self.server.handle_timer(self.now)
            for user, c in self.clients.items():
                ct = c.get_timer() if user in touched else timers[user]
                if ct is not None and ct <= self.now:
                    c.handle_timer(self.now)
                    touched.add(user)
            self.flush_from(touched)
            for user in touched:
                timers[user] = self.clients[user].get_timer()
