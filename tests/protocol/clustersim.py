"""SimNet for a cluster: several ServerCores, each with its ClusterRouting, their clients, and an
in-memory bus between the nodes, on one virtual clock. Nothing touches a socket.

Every node-to-node message is kept in :attr:`ClusterSim.bus_log` as ``(from, to, message)``
(voice frames as ``("voice", group id, burst id)``), so tests can say exactly what crossed.
With ``planes``, each node has a peer plane (``ptt.protocol.cluster_peers``, a loopback-like
address of its own) and the floor messages its routing sends by UDP cross it, kept in
:attr:`ClusterSim.plane_log` (voice stays on the bus). ``fate`` may drop or delay any
node-to-node message on either path."""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from ptt.protocol import auth
from ptt.protocol import messages as m
from ptt.protocol.client import ClientCore
from ptt.protocol.cluster_peers import PeerPlane
from ptt.protocol.cluster_routing import ClusterRouting, HomeMap, StaticHomes
from ptt.protocol.server import PageSubmitted, ServerCore
from ptt.wire import cluster as wc
from ptt.wire.peer import open_datagram, peer_key
from ptt.wire.voice import VoiceHeader, add_mac, encode_voice, is_voice, peek_frame

STEP = 0.02
PEER_KEY = peer_key(b"the cluster's shared secret")


@dataclass
class ClusterSim:
    nodes: tuple[str, ...] = ("A", "B", "C")
    pinned: dict[str, str] = field(default_factory=dict)
    seed: int = 1
    delay: tuple[float, float] = (0.001, 0.003)
    bus_delay: tuple[float, float] = (0.0002, 0.0006)
    now: float = 0.0
    rng: random.Random = field(init=False)
    cores: dict[str, ServerCore] = field(init=False)
    routing: dict[str, ClusterRouting] = field(init=False)
    clients: dict[str, ClientCore] = field(default_factory=dict)
    node_of: dict[str, str] = field(default_factory=dict)
    addrs: dict[str, tuple[str, int]] = field(default_factory=dict)
    heard: dict[str, int] = field(default_factory=dict)  # voice frames delivered per user
    events: dict[str, list[object]] = field(default_factory=dict)  # each client's events
    bus_log: list[tuple[str, str, object]] = field(default_factory=list)
    server_events: dict[str, list[object]] = field(default_factory=dict)  # each core's events
    dead: set[str] = field(default_factory=set)  # nodes killed: they take and send nothing
    # node -> until when its loop is stalled: what reaches it waits, its timers too; on waking
    # it runs its due timers first and reads what waited after (asyncio's order after a stall
    # when the bus's reader task drains its backlog)
    stalled: dict[str, float] = field(default_factory=dict)
    _backlog: dict[str, list[tuple[str, object, bytes]]] = field(default_factory=dict)
    homes: HomeMap | None = None  # default: StaticHomes(nodes, pinned)
    pages_stored: list[PageSubmitted] = field(default_factory=list)  # the shared page store
    planes: bool = False  # each node a peer plane: floor messages by UDP where it reaches
    peer_delay: tuple[float, float] = (0.00005, 0.00015)
    # (path "peer" or "bus", from, to, message) -> None: dropped; a number >= 0: its delay
    # instead of the path's; < 0: as the path delays it
    fate: Callable[[str, str, str, object], float | None] | None = None
    plane_log: list[tuple[str, str, object]] = field(default_factory=list)
    _peer_of: dict[tuple[str, int], str] = field(default_factory=dict)
    _q: list[tuple[float, int, str, object, bytes]] = field(default_factory=list)
    _seq: int = 0

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        homes = self.homes or StaticHomes(self.nodes, self.pinned)
        self.cores = {n: ServerCore(self.rng.randbytes) for n in self.nodes}
        self.routing = {n: ClusterRouting(n, c, homes, life=i + 1)
                        for i, (n, c) in enumerate(self.cores.items())}
        if self.planes:
            for i, (n, r) in enumerate(self.routing.items()):
                addr = ("10.254.0.%d" % (i + 1), 7800)
                r.peers = PeerPlane(n, PEER_KEY, r.life, addr)  # one number, as node.py
                self._peer_of[addr] = n
        for r in self.routing.values():
            r.start(self.now)

    # --- the directory, the same on every node -----------------------------------------------

    def add_user(self, name: str, node: str, role: m.Role = m.Role.VOLUNTEER) -> ClientCore:
        token = f"token-of-{name}-0123456789abcdef"
        creds = auth.make_credentials(token, self.rng.randbytes(16), auth.MIN_ITERATIONS)
        for core in self.cores.values():
            core.upsert_user(name, role, creds.salt, creds.iterations, creds.verifier)
        c = self.clients[name] = ClientCore(name, token, self.rng.randbytes)
        self.node_of[name] = node
        self.addrs[name] = ("10.255.0.%d" % (len(self.addrs) + 2), 40000)
        self.heard[name] = 0
        self.events[name] = []
        return c

    def add_group(self, name: str, gid: int, members: list[str]) -> None:
        for core in self.cores.values():
            core.upsert_group(name, gid, 30.0)
            for u in members:
                core.set_member(name, u)

    def connect(self, groups: dict[str, list[str]]) -> None:
        for u, c in self.clients.items():
            c.connect(self.now)
            for g, members in groups.items():
                if u in members:
                    c.join(g, self.now)

    # --- the wires ----------------------------------------------------------------------------

    def _push(self, kind: str, dest: object, data: bytes, delay: tuple[float, float]) -> None:
        self._seq += 1
        heapq.heappush(self._q, (self.now + self.rng.uniform(*delay), self._seq, kind, dest,
                                 data))

    def _to_bus(self, src: str, dest: str, data: bytes) -> None:
        if src in self.dead or dest in self.dead:
            return
        if is_voice(data):
            gid, _, burst, _ = peek_frame(data)
            msg: object = ("voice", gid, burst)
        else:
            msg = wc.decode(data)
        self.bus_log.append((src, dest, msg))
        self._fated("bus", src, dest, msg, data, self.bus_delay)

    def _to_plane(self, src: str, dest: str, data: bytes) -> None:
        if src in self.dead or dest in self.dead:
            return
        msg = wc.decode(open_datagram(PEER_KEY, data).frame)
        self.plane_log.append((src, dest, msg))
        self._fated("peer", src, dest, msg, data, self.peer_delay)

    def _fated(self, path: str, src: str, dest: str, msg: object, data: bytes,
               delay: tuple[float, float]) -> None:
        fate = self.fate(path, src, dest, msg) if self.fate is not None else -1.0
        if fate is not None:
            self._push(path, (src, dest), data, delay if fate < 0 else (fate, fate))

    def _flush_node(self, node: str) -> None:
        core, routing = self.cores[node], self.routing[node]
        routing.flush(self.now)
        by_addr = {a: u for u, a in self.addrs.items()}
        for data, addr in core.datagrams_to_send():
            self._push("client", by_addr[addr], data, self.delay)
        events = core.events()
        self.server_events.setdefault(node, []).extend(events)
        for addr, data in routing.datagrams_to_send():
            self._to_plane(node, self._peer_of[addr], data)
        for dest, data in routing.messages_to_send():
            self._to_bus(node, dest, data)
        submitted = [ev for ev in events if isinstance(ev, PageSubmitted)]
        for ev in submitted:  # the shared store: ids across the nodes, in commit order
            self.pages_stored.append(ev)
            core.page_stored(ev, len(self.pages_stored), 1_700_000_000_000 + int(self.now * 1000),
                             self.now)
        if submitted:
            self._flush_node(node)

    def _deliver_voice(self, node: str, data: bytes, targets: tuple[object, ...]) -> None:
        by_addr = {a: u for u, a in self.addrs.items()}
        for addr in targets:
            self._push("client", by_addr[addr], data, self.delay)

    def send_voice(self) -> None:
        """Every holder sends a frame with its session's MAC, as the media path would."""
        for u, c in self.clients.items():
            for g in c.groups:
                route = c.talk_route(g)
                if route is not None:
                    frame = add_mac(c.voice_key, encode_voice(VoiceHeader(*route, 0, 0), b"\0"))
                    self._push("server", u, frame, self.delay)

    def flush_clients(self) -> None:
        for u, c in self.clients.items():
            for data in c.datagrams_to_send():
                self._push("server", u, data, self.delay)
            self.events[u].extend(c.events())

    def cut_off(self, key: str) -> ClientCore:
        """Client ``key`` goes silent (its process killed, or its link to its node broken while
        the node lives): it sends nothing more, and what is sent to it is lost."""
        self.flush_clients()
        return self.clients.pop(key)

    def claim_seen(self, node: str, group: str, term: int) -> None:
        """``node``'s ownership watch reports a claim of ``group`` (its HomeMap already says
        the new home): what ``ptt.cluster.node`` does with it, then the node's output sent."""
        self.routing[node].learn_home(group, term)
        self.routing[node].home_changed(group, self.now)
        self._flush_node(node)

    def run_until(self, t_end: float) -> None:
        self.flush_clients()
        while True:
            times = [t for t in (
                self._q[0][0] if self._q else None, *self.stalled.values(),
                *(c.get_timer() for n, c in self.cores.items()
                  if n not in self.dead and n not in self.stalled),
                *(r.get_timer() for n, r in self.routing.items()
                  if n not in self.dead and n not in self.stalled),
                *(c.get_timer() for c in self.clients.values())) if t is not None]
            if not times or min(times) > t_end:
                self.now = t_end
                return
            self.now = max(self.now, min(times))
            for node, until in list(self.stalled.items()):
                if until <= self.now:  # it wakes: its timers first, then what waited
                    del self.stalled[node]
                    self._run_timers(node)
                    for kind, dest, data in self._backlog.pop(node, []):
                        self._push(kind, dest, data, (0.0, 0.0))
            while self._q and self._q[0][0] <= self.now:
                _, _, kind, dest, data = heapq.heappop(self._q)
                to = (self.node_of[str(dest)] if kind == "server"
                      else dest[1] if kind in ("bus", "peer") else None)  # type: ignore[index]
                if to in self.stalled:
                    self._backlog.setdefault(str(to), []).append((kind, dest, data))
                    continue
                if kind == "server":  # a client's datagram reaches its node
                    user = str(dest)
                    node = self.node_of[user]
                    if node in self.dead:
                        continue
                    core = self.cores[node]
                    targets = core.receive_datagram(data, self.addrs[user], self.now)
                    if targets is not None:
                        relayed = core.relayed
                        self._deliver_voice(node, relayed, targets)
                        # the adapter's way (ptt.cluster.node.ClusterNode.voice): the nodes
                        # the routing worked out as the core's relay took the frame
                        routing = self.routing[node]
                        assert routing.frame_nodes == routing.voice_nodes(
                            peek_frame(relayed)[0])
                        for other in routing.frame_nodes:
                            self._to_bus(node, other, relayed)
                    self._flush_node(node)
                elif kind == "peer":
                    _, node = dest  # type: ignore[misc]
                    routing = self.routing[node]
                    assert routing.peers is not None
                    got = routing.peers.accept(data, self.now)
                    if got is not None:
                        routing.receive(got.frame, self.now, plane=True)
                    self._flush_node(node)
                elif kind == "bus":
                    _, node = dest  # type: ignore[misc]
                    if is_voice(data):
                        self._deliver_voice(node, data,
                                            self.routing[node].receive_voice(data, self.now))
                    else:
                        self.routing[node].receive(data, self.now)
                    self._flush_node(node)
                else:
                    user = str(dest)
                    client = self.clients.get(user)
                    if client is None:  # cut off: its process or its link is gone
                        continue
                    if is_voice(data):
                        self.heard[user] += 1
                    client.receive_datagram(data, self.now)
            for node in self.nodes:
                if node not in self.dead and node not in self.stalled:
                    self._run_timers(node)
            for c in self.clients.values():
                t = c.get_timer()
                if t is not None and t <= self.now:
                    c.handle_timer(self.now)
            self.flush_clients()

    def _run_timers(self, node: str) -> None:
        core, routing = self.cores[node], self.routing[node]
        t = core.get_timer()
        if t is not None and t <= self.now:
            core.handle_timer(self.now)
        t = routing.get_timer()
        if t is not None and t <= self.now:
            routing.handle_timer(self.now)
        self._flush_node(node)

    def talk(self, seconds: float) -> None:
        """Run ``seconds`` with every holder sending a frame each STEP."""
        end = self.now + seconds
        while self.now < end - 1e-9:
            self.send_voice()
            self.run_until(self.now + STEP)

    def sent_since(self, mark: int) -> list[tuple[str, str, object]]:
        return self.bus_log[mark:]


def bench_layout(planes: bool = False, settle: float = 1.0) -> ClusterSim:
    """``bench_cluster``'s layout: the talker ann on A, the listener bob on B, their group
    ``g`` (id 1) homed on C, where neither is; logged in, joined, run to ``settle``."""
    sim = ClusterSim(pinned={"g": "C"}, planes=planes)
    sim.add_user("ann", "A")
    sim.add_user("bob", "B")
    sim.add_group("g", 1, ["ann", "bob"])
    sim.connect({"g": ["ann", "bob"]})
    sim.run_until(settle)
    return sim
