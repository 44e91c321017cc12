"""What a dead access node's client costs the survivor it moves to, in the core alone.

    .venv/bin/python bench/bench_login_cost.py                    # 1,700 clients
    .venv/bin/python bench/bench_login_cost.py --profile 25      # and the top of cProfile

One :class:`~ptt.protocol.server.ServerCore` as cluster node ``a`` of three (its
:class:`~ptt.protocol.cluster_routing.ClusterRouting` on static homes; the bus is a list),
``--clients`` users in groups of 10, and as many :class:`~ptt.protocol.client.ClientCore`\\ s
with the server list ``[b, a, c]`` logged in to ``b`` (another core, the dead node). Then
every client is told by ``a`` that ``b`` died, exactly as a survivor tells them, and moves to
``a``: its check of ``b`` goes unanswered, its jitter passes, it logs in to ``a`` and joins
its group again. Datagrams go straight from core to core, in rounds (everything the clients
sent is handed to the survivor's core as one batch, as its reader would, then the answers
back), and only the survivor's calls are timed (thread CPU): ``receive_datagram``,
``handle_timer``, the routing's flush and the bus messages' encoding, its datagrams and
events taken. No sockets, no event loop, no logging: the adapter's share is what
bench_access_failover measures on top of this.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import pstats
import random
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import msgpack  # noqa: E402

from ptt.protocol import auth  # noqa: E402
from ptt.protocol import client as cl  # noqa: E402
from ptt.protocol.cluster_clients import (  # noqa: E402
    NOTICE_REPEATS,
    move_spread,
    notice_times,
)
from ptt.protocol.cluster_routing import ClusterRouting, StaticHomes  # noqa: E402
from ptt.protocol.messages import MsgType  # noqa: E402
from ptt.protocol.server import ServerCore  # noqa: E402
from ptt.wire import cluster as wc  # noqa: E402

GROUP_SIZE = 10
NODES = ("a", "b", "c")
ADDR = {"a": ("127.0.0.1", 7001), "b": ("127.0.0.1", 7002), "c": ("127.0.0.1", 7003)}


class Survivor:
    """Node ``a``: its core and routing, and the CPU spent in them."""

    def __init__(self, core: ServerCore, routing: ClusterRouting,
                 prof: cProfile.Profile | None) -> None:
        self.core = core
        self.routing = routing
        self.cpu = 0.0
        self.prof = prof
        self.bus: list[tuple[str, bytes]] = []
        self.received: Counter[str] = Counter()

    def turn(self, datagrams: list[tuple[bytes, tuple[str, int]]], now: float,
             tell: list[tuple[str, int]] | None = None, spread: float = 0.0,
             repeat: bool = False
             ) -> list[tuple[bytes, Any]]:
        """One batch read from the socket, as the adapter handles it; ``tell``: a notice (or
        its repeat) to those of them not back here, as node.py's ``_tell`` sends it."""
        t0 = time.thread_time()
        if self.prof is not None:
            self.prof.enable()
        core = self.core
        if tell:
            here = core.sessions.by_addr
            core.announce_restart([ad for ad in tell if ad not in here], now, spread, repeat)
        for data, addr in datagrams:
            core.receive_datagram(data, addr, now)
        at = core.get_timer()
        if at is not None and at <= now:
            core.handle_timer(now)
        self.routing.flush(now)
        self.bus += self.routing.messages_to_send()
        out = core.datagrams_to_send()
        core.events()
        if self.prof is not None:
            self.prof.disable()
        self.cpu += time.thread_time() - t0
        # counted outside the timed part; sealed ones by their receiver, which can open them
        for data, _ in datagrams:
            self.received[_plain_type(data)] += 1
        return out


def _plain_type(data: bytes) -> str:
    """A plain control datagram's message type (``[version, type, ...]``), or ``sealed``."""
    try:
        return MsgType(msgpack.unpackb(data)[1]).name
    except Exception:  # not msgpack: sealed with the session's channel
        return "sealed"


class Opened:
    """The message types the clients open from the survivor's datagrams (the client's own
    ``decode_message``, wrapped while the survivor's datagrams are handed to them)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.on = False
        inner = cl.decode_message  # type: ignore[attr-defined]

        def counting(data: bytes) -> Any:
            msg = inner(data)
            if self.on:
                self.counts[type(msg).__name__] += 1
            return msg

        cl.decode_message = counting  # type: ignore[attr-defined]


def _per_client(counts: Counter[str], clients: int) -> dict[str, float]:
    return {k: round(v / clients, 2) for k, v in counts.most_common()}


def _core(rng: random.Random, node: str, users: list[str], creds: auth.Credentials
          ) -> tuple[ServerCore, ClusterRouting]:
    core = ServerCore(rng.randbytes)
    for u in users:
        core.upsert_user(u, cl.m.Role.VOLUNTEER, creds.salt, creds.iterations, creds.verifier)
    for g in range(-(-len(users) // GROUP_SIZE)):
        core.upsert_group(f"g{g}", g + 1, 60.0)
        for u in users[g * GROUP_SIZE:(g + 1) * GROUP_SIZE]:
            core.set_member(f"g{g}", u)
    core.events()
    routing = ClusterRouting(node, core, StaticHomes(NODES))
    core.set_access_servers([f"{h}:{p}" for h, p in ADDR.values()])
    routing.start(0.0)
    return core, routing


def run(clients: int, profile: int, fixed_repeats: bool) -> dict[str, Any]:
    rng = random.Random(1)
    token = "bench-token-0123456789abcdef0123"
    creds = auth.make_credentials(token, rng.randbytes(16), auth.MIN_ITERATIONS)
    users = [f"u{i}" for i in range(clients)]
    a, ra = _core(rng, "a", users, creds)
    b, rb = _core(rng, "b", users, creds)
    prof = cProfile.Profile() if profile else None
    survivor = Survivor(a, ra, None)
    opened = Opened()
    cores = []
    addr_of: dict[tuple[str, int], int] = {}
    verifier = (creds.salt, creds.iterations, creds.verifier)
    for i, u in enumerate(users):
        c = cl.ClientCore(u, token, rng.randbytes, f"bench/{u}",
                          servers=[ADDR["b"], ADDR["a"], ADDR["c"]])
        c._verifier_cache = verifier
        c.join(f"g{i // GROUP_SIZE}", 0.0)
        cores.append(c)
        addr_of[("10.1.%d.%d" % (i // 250, i % 250 + 1), 40000)] = i
    addrs = list(addr_of)
    now = 0.0

    def pump_b(now: float) -> None:
        """Everyone logs in to b (untimed)."""
        for _ in range(20):
            batch = [(d, addrs[i]) for i, c in enumerate(cores) for d in c.datagrams_to_send()]
            if not batch:
                return
            for d, ad in batch:
                b.receive_datagram(d, ad, now)
            rb.flush(now)
            rb.messages_to_send()
            for d, ad in b.datagrams_to_send():
                cores[addr_of[ad]].receive_datagram(d, now, source=ADDR["b"])
            b.events()

    for c in cores:
        c.connect(now)
    pump_b(now)
    assert all(c.conn is cl.ConnState.CONNECTED for c in cores), "not all on b"
    for c in cores:
        c.events()
    # b dies; a tells every client (as node.py's announce_restart does), then runs the clients
    # through their check and jitter in steps of 10 ms, each step one batch at a
    now = 10.0
    spread = move_spread(clients)  # a survivor's window for a share of this size
    repeats = [now + t for t in (NOTICE_REPEATS if fixed_repeats else notice_times(spread))]
    # both rules' runs as long (the heartbeats and their news in it alike), past the last repeat
    settled = now + max(notice_times(spread)[-1], NOTICE_REPEATS[-1]) + 0.05
    survivor.prof = prof
    gc.collect()  # as the server freezes its state (ptt.server.gcfreeze); the clients' too here
    gc.freeze()
    notices = survivor.turn([], now, addrs, spread)
    sent = len(notices)
    opened.on = True
    for d, ad in notices:
        cores[addr_of[ad]].receive_datagram(d, now, source=ADDR["a"])
    datagrams_in = 0
    end = settled + 5.0
    while now < end:
        now += 0.01
        batch = []
        for i, c in enumerate(cores):
            at = c.get_timer()
            if at is not None and at <= now:
                c.handle_timer(now)
            for d in c.datagrams_to_send():
                if c.server == ADDR["a"]:
                    batch.append((d, addrs[i]))
        datagrams_in += len(batch)
        tell = None
        if repeats and now >= repeats[0]:
            repeats.pop(0)
            tell = addrs
        out = survivor.turn(batch, now, tell, spread, repeat=True)
        sent += len(out)
        for d, ad in out:
            cores[addr_of[ad]].receive_datagram(d, now, source=ADDR["a"])
        if all(c.server == ADDR["a"] and c.conn is cl.ConnState.CONNECTED
               and all(g.state is not None for g in c.groups.values()) for c in cores) \
                and now >= settled:
            break
    back = sum(1 for c in cores if c.server == ADDR["a"] and c.conn is cl.ConnState.CONNECTED)
    res: dict[str, Any] = {
        "title": "A moved client's cost to the survivor's core (in-process)",
        "command": f".venv/bin/python bench/bench_login_cost.py --clients {clients}"
                   + (" --fixed-repeats" if fixed_repeats else ""),
        "notice window (s)": round(spread, 2),
        "clients": clients,
        "back on a": back,
        "datagrams from clients": datagrams_in,
        "datagrams per client": round(datagrams_in / clients, 2),
        "datagrams to clients": sent,
        "datagrams to clients per client": round(sent / clients, 2),
        "from clients per client, by type": _per_client(survivor.received, clients),
        "to clients per client, opened by type": _per_client(opened.counts, clients),
        "bus messages": len(survivor.bus),
        "bus messages per client, by type": _per_client(
            Counter(type(wc.decode(data)).__name__ for _, data in survivor.bus), clients),
        "survivor core CPU per client (us)": round(1e6 * survivor.cpu / clients, 1),
    }
    if prof is not None:
        text = io.StringIO()
        pstats.Stats(prof, stream=text).sort_stats("tottime").print_stats(profile)
        res["profile"] = text.getvalue()
    return res


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=1700)
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="cProfile the survivor's calls; print the top N by own time")
    parser.add_argument("--fixed-repeats", action="store_true",
                        help=f"repeat the notice {NOTICE_REPEATS} s after the first (the rule "
                        "before notice_times), not after the window it asked for")
    args = parser.parse_args()
    if args.clients < 1:
        parser.error("--clients must be at least 1")
    res = run(args.clients, args.profile, args.fixed_repeats)
    prof = res.pop("profile", None)
    print(json.dumps(res, indent=1))
    if prof:
        print(prof)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
