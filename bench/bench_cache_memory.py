"""Server memory held by the response cache after a login burst, and when it is freed.

One ServerCore and N ClientCores on a virtual clock (no sockets), each client logging in with
one group's join folded into its Login (groups of 10). tracemalloc's traced bytes per session
and the cache's entries are read 1 s after the logins, then at each time given (the cache keeps
an answer ``CACHE_TTL``, 8 s; an idle client's first heartbeat is at 55 s).

    .venv/bin/python bench/bench_cache_memory.py --clients 1000
"""

from __future__ import annotations

import argparse
import gc
import random
import tracemalloc

from ptt.protocol import auth
from ptt.protocol import messages as m
from ptt.protocol.client import ClientCore, ConnState
from ptt.protocol.server import ServerCore

SERVER = ("127.0.0.1", 9)
TOKEN = "token-of-a-bench-user-0123456789"


class Net:
    def __init__(self, clients: int) -> None:
        rng = random.Random(1)
        self.core = ServerCore(rng.randbytes)
        creds = auth.make_credentials(TOKEN, rng.randbytes(16), auth.MIN_ITERATIONS)
        self.clients: dict[tuple[str, int], ClientCore] = {}
        self.groups: dict[tuple[str, int], str] = {}
        for k in range(clients):
            user, group = f"u{k:06d}", f"g{k // 10:05d}"
            self.core.upsert_user(user, m.Role.VOLUNTEER, creds.salt, creds.iterations,
                                  creds.verifier)
            if k % 10 == 0:
                self.core.upsert_group(group, 1, 30.0)
            self.core.set_member(group, user)
            addr = (f"10.{k // 62500}.{k // 250 % 250}.{k % 250}", 40000)
            self.clients[addr] = ClientCore(user, TOKEN, rng.randbytes, "dev", servers=[SERVER])
            self.groups[addr] = group
        self.now = 0.0

    def pump(self) -> None:
        for _ in range(20):
            moved = False
            for addr, c in self.clients.items():
                for data in c.datagrams_to_send():
                    self.core.receive_datagram(data, addr, self.now)
                    moved = True
            for data, dest in self.core.datagrams_to_send():
                self.clients[dest].receive_datagram(data, self.now, source=SERVER)
                moved = True
            for c in self.clients.values():
                c.events()
            if not moved:
                return

    def run(self, until: float) -> None:
        while True:
            ts = [t for t in [c.get_timer() for c in self.clients.values()]
                  + [self.core.get_timer()] if t is not None and t <= until]
            if not ts:
                break
            self.now = max(self.now, min(ts))
            for c in self.clients.values():
                c.handle_timer(self.now)
            self.core.handle_timer(self.now)
            self.pump()
        self.now = until


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clients", type=int, default=1000, help="sessions (default 1000)")
    ap.add_argument("--at", type=float, nargs="+", default=[12.0, 40.0, 70.0],
                    help="virtual seconds to read memory at (default 12 40 70)")
    args = ap.parse_args()
    net = Net(args.clients)
    tracemalloc.start()
    gc.collect()
    base = tracemalloc.get_traced_memory()[0]
    for addr, c in net.clients.items():
        c.connect(net.now)
        c.join(net.groups[addr], net.now)
    net.pump()
    for at in [1.0, *args.at]:
        net.run(at)
        gc.collect()
        online = sum(c.conn is ConnState.CONNECTED for c in net.clients.values())
        kib = (tracemalloc.get_traced_memory()[0] - base) / 1024 / args.clients
        print(f"at {at:g} s: {online} online, {kib:.2f} KiB traced per session, "
              f"{len(net.core.outbox.cache)} cache entries")


if __name__ == "__main__":
    main()
