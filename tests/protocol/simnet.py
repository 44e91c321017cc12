"""An in-memory network for driving ServerCore and ClientCores with a virtual clock.

Every datagram may be lost, duplicated or delayed (which reorders them); nothing touches a socket.
"""

from __future__ import annotations

import heapq
import random
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
        for data, addr in self.server.datagrams_to_send():
            user = next(u for u, a in self.addrs.items() if a == addr)
            self._send(user, data)
        for user, c in self.clients.items():
            for data in c.datagrams_to_send():
                self._send(("server", self.addrs[user]), data)
            self.client_events[user].extend(c.events())
        self.server_events.extend(self.server.events())

    def next_time(self) -> float | None:
        ts = [t for t in [self._q[0][0] if self._q else None, self.server.get_timer(),
                          *(c.get_timer() for c in self.clients.values())] if t is not None]
        return min(ts) if ts else None

    def run_until(self, t_end: float) -> None:
        """Deliver datagrams and fire timers in time order until ``t_end``."""
        self.flush()
        while True:
            t = self.next_time()
            if t is None or t > t_end:
                self.now = t_end
                return
            self.now = max(self.now, t)
            while self._q and self._q[0][0] <= self.now:
                _, _, dest, data = heapq.heappop(self._q)
                if isinstance(dest, tuple):
                    targets = self.server.receive_datagram(data, dest[1], self.now)
                    for addr in targets or ():
                        user = next(u for u, a in self.addrs.items() if a == addr)
                        self._send(user, data)
                else:
                    self.clients[dest].receive_datagram(data, self.now)
            st = self.server.get_timer()
            if st is not None and st <= self.now:
                self.server.handle_timer(self.now)
            for c in self.clients.values():
                ct = c.get_timer()
                if ct is not None and ct <= self.now:
                    c.handle_timer(self.now)
            self.flush()
