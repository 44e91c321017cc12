"""``ptt server --cluster``: one server process as a node of a cluster.

Wires a :class:`~ptt.server.app.PttServer` to the bus: a
:class:`~ptt.protocol.cluster_routing.ClusterRouting` beside the server's core decides what
crosses (floor inputs to a group's home, the home's news to the nodes with members, voice once
per node with listeners) and :class:`~ptt.cluster.bus.Bus` carries it over NATS. The server calls
the node through its ``cluster`` hook (``ptt.server.app.ClusterHook``): after each turn of
its core (:meth:`ClusterNode.flush`), for each voice frame its relay accepted
(:meth:`ClusterNode.voice`), and at the routing's timer. What arrives on the bus goes to the
routing, then out through the server as its own output does.

Homes: with ``etcd`` in the file, from :class:`~ptt.cluster.ownership.Ownership` (etcd
leases; the claim's fencing number is the term every FloorNews carries), each node claiming the
groups :class:`~ptt.protocol.cluster_routing.StaticHomes` gives it (the file's ``[homes]``, else
the group name's CRC-32), and every node claiming a group whose home vanished (failover: the
winner takes the floor over, ``ClusterRouting.home_changed``); without it, the static rule alone
(term 1, no failover).

Access: with ``etcd``, the node holds ``/ptt/nodes/<id>`` (its client address) under its lease
and publishes where its clients are (``/ptt-access/<id>/<shard>``, not leased: it must outlive
the node; ``ptt.protocol.cluster_clients``: only the shards whose clients changed are written
again, all in one transaction, at most every ``CLIENTS_PUBLISH_EVERY``; departures alone wait
up to ``CLIENTS_GONE_WAIT`` for the next arrival); when a node's key vanishes (its lease expired) and has
not come back ``NOTICE_GRACE`` later (it died), every survivor reads that list (one range read
of the node's prefix) and sends its share of the addresses (``cluster_clients.told_by``: each
client is told by one survivor) the plain ``Error(NO_SESSION)``
a restarted server sends its last clients (``ServerCore.announce_restart``, repeated at
``ANNOUNCE_REPEATS``). Sooner, on NATS's word: nats-server's event that a connection under a
node's name closed (``Bus.on_left``; a SIGKILLed node's closes at once) makes every survivor
probe the node's subject, and tell its clients as above if nothing is subscribed there while
its key still stands: once when the node's own end closed the connection (its process exited
or was killed), else twice ``HINT_CONFIRM`` apart; group homes still wait for its lease. A client with a server list checks its session with its own node, and
moves to another node of its list after a jitter (``ptt.protocol.server_list``); one without a
list ignores it. Every Welcome carries the live nodes' addresses (``/ptt/nodes/``), so a client
configured with one node has the list from its first login. Directory: with ``postgres``, the PostgreSQL directory, followed into the
core (``PttServer.apply_change``); without it, the node's own SQLite database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Sequence
from typing import Any, Protocol

from ptt.cluster.bus import Bus
from ptt.cluster.config import ClusterConfig
from ptt.cluster.directory import Change as DirectoryChange
from ptt.cluster.directory import PgDirectory
from ptt.cluster.ownership import DEFAULT_TTL, Change, Ownership, OwnershipEvent
from ptt.errors import NetError, ProtocolError
from ptt.names import format_hostport
from ptt.protocol.cluster_clients import (
    ClientShards,
    decode_clients,
    move_spread,
    notice_times,
    told_by,
)
from ptt.protocol.cluster_peers import PeerPlane
from ptt.protocol.cluster_routing import TIMER_SLACK, ClusterRouting, HomeMap, StaticHomes
from ptt.protocol.server import GroupUpdated, ServerCore
from ptt.protocol.session import Addr
from ptt.wire.peer import CONTROL, MAX_PEER_DATAGRAM, VOICE, peer_key
from ptt.wire.voice import is_voice

__all__ = ["ClusterNode"]

log = logging.getLogger("ptt.cluster.node")

# s: a node writes where its clients are to etcd at most this often (one transaction of the
# shards that changed: a client that logged in since the last write is not told when the node
# dies, and notices it by its own heartbeat)
CLIENTS_PUBLISH_EVERY = 0.5
# s a change that only removed clients from the list may wait for a write that adds one (a
# stale line costs the survivors a needless notice, nothing else): under the churn bench's
# logins and logouts this halves the list's writes (~1.1 ms of the loop's CPU each, an aetcd
# transaction), and a client that logged in is still written within CLIENTS_PUBLISH_EVERY
CLIENTS_GONE_WAIT = 5.0
# reads of a dead node's list tried (each bounded by the etcd request timeout): at 100,000
# clients one survivor's read was not answered within 1 s while etcd took the dead node's
# groups' claims
LIST_READ_TRIES = 3
# shards written per transaction at most: under etcd's default --max-txn-ops (128)
SHARDS_PER_WRITE = 100
# s after a node's key vanished: its clients are told only if it has not come back by then. A
# node whose lease lapsed while it lives (starved of CPU past its 1 s TTL: seen at load 14 on 2
# cores) takes a new lease and puts its key again at once. Its clients' own check (a sealed
# heartbeat to it, ptt.protocol.client.CHECK_WINDOW) keeps them where they are if it answers;
# the grace spares them the check, and the node a burst of heartbeats
NOTICE_GRACE = 0.2
# a dead node's clients ranked (which survivor tells each: ``told_by``, ~2.7 us an address),
# and notices made and sent (~8 us to make, ~5 to send), in one turn of the event loop at most.
# A survivor's whole share at 100,000 clients (~8,400 of d's 25,000 ranked, then told) was one
# turn of ~0.2 s of CPU, three times over the notice and its repeats, and more than a second of
# wall time at load 12 on 2 cores, while its timers (its lease's sign among them) waited
RANKED_PER_TURN = 2_000
NOTICES_PER_TURN = 500
# The early route (docs/cluster.md "Detection"): NATS says a node's connection closed (a
# SIGKILLed node's closes at once) and its subject is probed; only if nats-server answers "no
# responders" are its clients told, before its lease runs out, and each of them asks the node
# itself (its sealed check) before it moves. The node's own end closed the connection (its
# socket shut or reset, ``bus.CLOSED_BY_CLIENT``: its process is gone): one probe. nats-server
# closed it (a live node, which connects again within milliseconds): a second probe this many s
# after the first, so a node connected again by then leaves its clients unbothered; nats-py
# tries another member at once, the same one at once too and then every reconnect_time_wait
# (0.2 s, ptt.cluster.bus)
HINT_CONFIRM = 0.3
# s a probe waits for the node's answer; none in time: it is connected (busy or paused), and
# its lease decides
PROBE_TIMEOUT = 0.25
# s after an early notice during which the lease's expiry does not tell the same clients
# again (the early notice's own repeats run on: ``notice_times``)
EARLY_HOLDS = 5.0
# groups homed here whose relay set a dead node leaves, in one turn at most: each is a roster
# change told to the group's members here and to the other nodes with members
# (``ClusterRouting.leave_relays``), and a dead node is in nearly every group's set
GROUPS_GONE_PER_TURN = 64
# s between two writes to the bus that carry no floor message: what comes meanwhile (presence,
# members, logins elsewhere) goes in the next write; a floor message goes at once with it all
BUS_GATHER = 0.01
# peer datagrams taken from the socket per wake-up at most (the rest at the next: the loop's
# other work is not starved by a flood on the peer port)
PEER_READS = 64
PEER_BUFFER = 4 << 20  # bytes of socket buffer each way: frames of many groups at once


def _resolve(future: asyncio.Future[None] | None) -> None:
    if future is not None and not future.done():
        future.set_result(None)


def clients_prefix(node: str) -> bytes:
    """Where ``node``'s client list lives in etcd: one key per shard under it."""
    return f"/ptt-access/{node}/".encode()


def shard_key(node: str, shard: int) -> bytes:
    return clients_prefix(node) + f"{shard:03x}".encode()


class NodeServer(Protocol):
    """What a node needs of its server (``ptt.server.app.PttServer``, which sits above this
    package and calls the node through its ``cluster`` hook)."""

    core: ServerCore
    cluster: Any

    @property
    def is_open(self) -> bool: ...

    def fan_out(self, data: bytes, targets: tuple[Addr, ...], now: float) -> None: ...

    def transmit(self, now: float) -> None: ...

    def rearm(self) -> None: ...

    def apply_change(self, kind: str, name: str) -> None: ...

    def drop(self, addr: Addr, reason: str, now: float) -> None: ...

    listeners: list[Any]

    @property
    def address(self) -> tuple[str, int]: ...

    def shared_secret(self) -> bytes: ...


class EtcdHomes:
    """The cluster's HomeMap from etcd ownership: a group's home and term are its claim's;
    while a group has no known home, the static rule's node with term 0 (which no node stamps
    or accepts)."""

    def __init__(self, ownership: Ownership, static: StaticHomes) -> None:
        self.ownership = ownership
        self.static = static

    @property
    def nodes(self) -> Sequence[str]:
        return self.static.nodes

    def home_of(self, group: str) -> tuple[str, int]:
        home = self.ownership.home(group)
        if home is None:
            return self.static.home_of(group)[0], 0
        return home.node, home.fencing

    def may_act(self, group: str, now: float) -> bool:
        return self.ownership.holds(group, now) is not None


class ClusterNode:
    """``node = ClusterNode(server, config)``; ``await node.start()`` once the server started;
    ``await node.close()``."""

    def __init__(self, server: NodeServer, config: ClusterConfig,
                 directory: PgDirectory | None = None) -> None:
        self.server = server
        self.config = config
        self.directory = directory
        self._follow: asyncio.Task[None] | None = None
        self._claims: set[asyncio.Task[None]] = set()
        self.static = StaticHomes(config.nodes, config.homes)
        self.ownership: Ownership | None = None
        homes: HomeMap = self.static
        if config.etcd:
            self.ownership = Ownership(config.etcd, config.node,
                                       ttl=config.lease_ttl or DEFAULT_TTL,
                                       on_event=self._on_ownership,
                                       address=format_hostport(*(config.address
                                                                  or server.address)),
                                       on_node=self._on_node)
            homes = EtcdHomes(self.ownership, self.static)
        # this life of the node: its peer datagrams' epoch, and the life its floor messages'
        # order is counted in (ptt.protocol.cluster_routing, "Order")
        self._epoch = int.from_bytes(os.urandom(8), "big") >> 1 or 1
        self.routing = ClusterRouting(config.node, server.core, homes, life=self._epoch)
        # text pages cross nodes only where every node reads them: the shared PostgreSQL (each
        # node's own SQLite gives ids of its own, which would collide)
        self.routing.shared_pages = directory is not None
        # nodes on copies of one database share its secret: each takes only its own nonces
        server.core.bind_nonces(config.node)
        self.bus = Bus(config.node, config.nats, self._on_bus, config.subject_prefix,
                       on_left=self._on_left if self.ownership is not None else None)
        # node -> when its clients were told early (NATS said it left, probes confirmed)
        self._told_early: dict[str, float] = {}
        # nodes whose hint is being checked: another event naming the node meanwhile (anything
        # else connected under its name closing too) is left to that check, or to the lease
        self._probing: set[str] = set()
        # NATS's hints that a node left: heard, acted on (its clients told before its lease
        # expired), ignored (the node answered or was still subscribed)
        self.hints = {"heard": 0, "acted": 0, "ignored": 0}
        self.bad_messages = 0
        # a server turn is due after this read of bus messages (_on_bus); how many ran
        self._turn_soon = False
        self.turns = 0
        # the bus's next write without a floor message waits until then (flush); its timer
        self._bus_next = 0.0
        self._bus_timer: asyncio.TimerHandle | None = None
        self._clients = ClientShards()
        self._arrived = asyncio.Event()  # a client came while only departures waited
        self._publishing: asyncio.Task[None] | None = None
        # when the client list's next write may go, and what the writer waits on meanwhile:
        # resolved in passing by a turn after that time (flush), else by a timer TIMER_SLACK
        # later (a loop that slept wakes for it alone)
        self._write_at: float | None = None
        self._write_due: asyncio.Future[None] | None = None
        # what the node wrote to etcd of its client list: bytes, transactions, failures
        self.clients_written = {"bytes": 0, "writes": 0, "shards": 0, "failed": 0}
        # dead nodes' clients: lists read (s from the death to each read), clients in them,
        # notices this node sent (each repeat counted)
        self.told: dict[str, Any] = {"read_after_s": [], "listed": 0, "notices": 0}
        # ownership events handled (claims, homes learned, vanished) and the time they took
        self.ownership_events = {"events": 0, "s": 0.0, "max_s": 0.0}
        # the media plane: voice to and from the other nodes by UDP (set up by start())
        self.peers: PeerPlane | None = None
        self._peer_sock: socket.socket | None = None
        # (node, epoch, kind) whose voice or floor messages came on the peer port
        self._peer_heard: set[tuple[str, int, int]] = set()
        self.peer_send_failed = 0  # sendto refused (a full buffer): lost, as UDP may lose it
        self._key_warned: set[str] = set()  # nodes whose other peer key was logged

    async def start(self) -> None:
        self._open_peer_port()
        await self.bus.start()
        if self.ownership is not None:
            await self.ownership.start()
            try:  # a list left by this node's previous life names clients it no longer has
                await self.ownership.delete_prefix(clients_prefix(self.config.node))
            except Exception as exc:  # noqa: BLE001 - stale entries cost a needless notice
                log.warning("cannot clear this node's old client list: %s", exc)
            await self.ownership.want(self._mine())
            self.server.listeners.append(self._on_server_event)
        if self.directory is not None:
            self._follow = asyncio.get_running_loop().create_task(
                self.directory.follow(self._on_directory_change))
        self.server.cluster = self
        now = asyncio.get_running_loop().time()
        self.routing.start(now)
        self.flush(now)
        self.server.rearm()
        log.info("cluster node %s of %s on NATS %s, peer port %s", self.config.node,
                 ", ".join(self.config.nodes), ", ".join(self.config.nats),
                 format_hostport(*self.peers.addr) if self.peers else "none")

    def _open_peer_port(self) -> None:
        """Bind the peer port and set up the media plane (ptt.protocol.cluster_peers): its key
        derived from the secret the nodes share, a new epoch for this life of the node."""
        host, port = self.config.peer
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                sock.setsockopt(socket.SOL_SOCKET, opt, PEER_BUFFER)
            sock.bind((host, port))
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            raise NetError(f"cannot listen on the peer port {format_hostport(host, port)}: "
                           f"{exc.strerror or exc}") from None
        # the address bound, not the file's name for it: the others' sendto resolves nothing
        bound = sock.getsockname()[:2]
        self.peers = PeerPlane(self.config.node, peer_key(self.server.shared_secret()),
                               self._epoch, (bound[0], bound[1]))
        self.routing.peers = self.peers
        self._peer_sock = sock
        asyncio.get_running_loop().add_reader(sock.fileno(), self._peer_readable)

    def _mine(self) -> list[str]:
        """The groups the static rule makes this node's, not claimed by anyone yet."""
        own = self.ownership
        return [g for g, e in self.server.core.groups.items()
                if not e.private and self.static.home_of(g)[0] == self.config.node
                and own is not None and own.home(g) is None and g not in own.wanted]

    def _claim_new_groups(self) -> None:
        """A group made while the cluster runs: its static home claims it."""
        if self.ownership is None:
            return
        mine = self._mine()
        if mine:
            self._spawn(self.ownership.want(mine))

    def _spawn(self, claim: Any) -> None:
        task = asyncio.get_running_loop().create_task(claim)
        self._claims.add(task)
        task.add_done_callback(self._claims.discard)

    def _on_server_event(self, ev: object, now: float) -> None:
        if isinstance(ev, GroupUpdated):
            self._claim_new_groups()

    def _on_directory_change(self, change: DirectoryChange) -> None:
        self.server.apply_change(change.kind, change.name)
        if change.kind in ("group", "all"):
            self._claim_new_groups()

    # --- access: a dead node's clients move ----------------------------------------------------

    def clients(self, added: dict[int, Addr], removed: set[int]) -> None:
        """Where this node's clients are changed (``PttServer``'s peers): publish it soon
        (within ``CLIENTS_PUBLISH_EVERY`` when a client came, ``CLIENTS_GONE_WAIT`` when
        clients only went)."""
        self._clients.change(added, removed)
        if self.ownership is None or not self._clients.dirty:
            return
        if self._clients.urgent:
            self._arrived.set()
        if self._publishing is None:
            self._publishing = asyncio.get_running_loop().create_task(self._publish_clients())

    def published_clients(self) -> bytes:
        """Every line this node publishes as where its clients are (``decode_clients``)."""
        return self._clients.everything()

    async def _publish_clients(self) -> None:
        own = self.ownership
        assert own is not None
        node = self.config.node
        stats = self.clients_written
        try:
            while self._clients.dirty:
                if not self._clients.urgent:  # departures alone: with the next arrival's write
                    self._arrived.clear()
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self._arrived.wait(), CLIENTS_GONE_WAIT)
                shards = list(self._clients.take().items())
                for i in range(0, len(shards), SHARDS_PER_WRITE):
                    batch = shards[i:i + SHARDS_PER_WRITE]
                    try:
                        await own.write({shard_key(node, k): v or None for k, v in batch})
                    except Exception as exc:  # noqa: BLE001 - any failure: retried below
                        log.warning("cannot publish where this node's clients are: %s", exc)
                        stats["failed"] += 1
                        self._clients.unwritten(k for k, _ in shards[i:])
                        break
                    stats["writes"] += 1
                    stats["shards"] += len(batch)
                    stats["bytes"] += sum(len(v) for _, v in batch)
                await self._until_write(CLIENTS_PUBLISH_EVERY)
        finally:
            self._publishing = None
            self._write_at = self._write_due = None

    async def _until_write(self, wait: float) -> None:
        """``wait`` s, ended by the first turn after it (:meth:`flush`) or, in a loop with no
        turn meanwhile, by a timer ``TIMER_SLACK`` later."""
        loop = asyncio.get_running_loop()
        due: asyncio.Future[None] = loop.create_future()
        self._write_at, self._write_due = loop.time() + wait, due
        timer = loop.call_at(self._write_at + TIMER_SLACK, _resolve, due)
        try:
            await due
        finally:
            timer.cancel()

    def _on_node(self, node: str, address: str | None) -> None:
        assert self.ownership is not None
        # every client is told the live nodes at login: only one address needs configuring
        self.server.core.set_access_servers(sorted(self.ownership.nodes.values()))
        self.routing.live = set(self.ownership.nodes)  # logins are told to these alone
        if self.config.steer:  # and each is steered to the node that homes its groups
            self.routing.addresses = dict(self.ownership.nodes)
        if node == self.config.node or address is not None:
            return
        self._spawn(self._tell_clients_of(node))

    def _on_left(self, node: str, by_client: bool) -> None:
        """NATS says a connection under ``node``'s name closed (``by_client``: its own end
        closed it): a hint, checked before use."""
        own = self.ownership
        if own is None or node not in own.nodes or not self.server.is_open:
            return  # not a live node's (or its lease already went: the lease route has it)
        self.hints["heard"] += 1
        if node in self._probing:
            return  # its probes already run; both would find it gone and tell its clients twice
        self._probing.add(node)
        self._spawn(self._check_hint(node, by_client))

    async def _check_hint(self, node: str, by_client: bool) -> None:
        """Tell ``node``'s clients now if nats-server finds nothing subscribed to its subject
        and its lease still stands (else the lease route tells them, as without the hint):
        once when the node's own end closed its connection (``by_client``: its process exited
        or was killed), else twice ``HINT_CONFIRM`` apart (nats-server closed a live node's
        connection, and it connects again). Group homes are not touched: etcd alone moves
        them."""
        try:
            await self._confirm_hint(node, by_client)
        finally:
            self._probing.discard(node)

    async def _confirm_hint(self, node: str, by_client: bool) -> None:
        own = self.ownership
        assert own is not None
        loop = asyncio.get_running_loop()
        heard = loop.time()
        if heard - self._told_early.get(node, -EARLY_HOLDS) < EARLY_HOLDS:
            return  # told already (a second event of the same death)
        listing: asyncio.Task[list[Addr] | None] | None = None
        try:
            for probe in range(1 if by_client else 2):
                if probe:
                    await asyncio.sleep(HINT_CONFIRM)
                answer = await self.bus.probe(node, PROBE_TIMEOUT)
                if answer is not False:
                    self.hints["ignored"] += 1
                    log.info("node %s: NATS said its connection closed, but it %s: its clients "
                             "stay", node, "answers on the bus" if answer else
                             "is still subscribed there (no answer in time; its lease decides)")
                    return
                if listing is None:  # read while the second probe waits: it costs a read
                    listing = loop.create_task(self._read_list(node))
            if node not in own.nodes or not self.server.is_open:
                return  # its lease went meanwhile: the lease route tells them
            self.hints["acted"] += 1
            self._told_early[node] = loop.time()
            assert listing is not None
            addrs = await listing
        finally:
            if listing is not None and not listing.done():
                listing.cancel()
        if addrs is not None:
            self.told["read_after_s"].append(round(loop.time() - heard, 3))
            await self._tell_listed(node, addrs, "NATS: its connection closed"
                                    f"{' by it' if by_client else ''}, nothing subscribed "
                                    f"{loop.time() - heard:.2f} s later; its lease not expired "
                                    "yet")

    async def _tell_clients_of(self, node: str) -> None:
        """``node`` died: tell its clients (its last published list), now and again."""
        assert self.ownership is not None
        loop = asyncio.get_running_loop()
        gone = loop.time()
        await asyncio.sleep(NOTICE_GRACE)
        if node in self.ownership.nodes:
            log.info("node %s lost its lease and took a new one: its clients stay", node)
            return
        if self.server.is_open:  # its calls end here, now
            now = loop.time()
            self.routing.node_gone(node, now, relays=False)
            self.server.transmit(now)
        # its users go offline in the groups homed here, beside the notices (not before them:
        # a slice a turn takes dozens of turns, seconds on a loop starved of CPU)
        self._spawn(self._leave_relays(node))
        if loop.time() - self._told_early.get(node, -EARLY_HOLDS) < EARLY_HOLDS:
            return  # its clients were told when NATS saw it go (the notices still repeat)
        await self._read_and_tell(node, gone, "its lease expired")

    async def _read_and_tell(self, node: str, gone: float, why: str) -> None:
        """Read where ``node``'s clients were and tell this node's share of them."""
        addrs = await self._read_list(node)
        if addrs is not None:
            self.told["read_after_s"].append(round(asyncio.get_running_loop().time() - gone, 3))
            await self._tell_listed(node, addrs, why)

    async def _read_list(self, node: str) -> list[Addr] | None:
        """Where ``node``'s clients were (its last published list); None: unreadable."""
        assert self.ownership is not None
        for attempt in range(LIST_READ_TRIES):  # etcd busy with the same death's claims
            try:
                shards = await self.ownership.get_prefix(clients_prefix(node))
            except Exception as exc:  # noqa: BLE001 - without the list its clients find out alone
                log.warning("node %s died; cannot read where its clients are (try %d of %d): "
                            "%s", node, attempt + 1, LIST_READ_TRIES, exc)
                continue
            return [a for data in shards for a in decode_clients(data)]
        return None

    async def _tell_listed(self, node: str, addrs: list[Addr], why: str) -> None:
        self.told["listed"] += len(addrs)
        if not addrs:
            log.info("node %s died (%s): no client of it to tell", node, why)
            return
        await self._tell(node, addrs, why)

    async def _leave_relays(self, node: str) -> None:
        """``node`` leaves the relay sets of the groups homed here, a slice a turn."""
        relayed = self.routing.relayed_by(node)
        for i in range(0, len(relayed), GROUPS_GONE_PER_TURN):
            if i:
                await asyncio.sleep(0)
            if not self.server.is_open:
                return
            now = asyncio.get_running_loop().time()
            self.routing.leave_relays(node, relayed[i:i + GROUPS_GONE_PER_TURN], now)
            self.server.transmit(now)

    async def _tell(self, node: str, addrs: list[Addr], why: str) -> None:
        """``node``'s clients told to move: this node's share, now and again, each asked to
        spread its login over the share's window at this node's login rate (``move_spread``);
        ranked and told a slice a turn (``RANKED_PER_TURN``, ``NOTICES_PER_TURN``)."""
        assert self.ownership is not None
        loop = asyncio.get_running_loop()
        first = loop.time()
        live: list[str] = []
        mine: list[Addr] = []
        spread = 0.0
        delays = [0.0]
        for delay in delays:  # the repeats follow the first notice's window (notice_times)
            await asyncio.sleep(max(0.0, first + delay - loop.time()))
            if not self.server.is_open:
                return
            # this node's share, ranked again when the live nodes changed: a survivor that
            # died since leaves its share to the others (the dead node is never counted live:
            # told early, its key outlives it by up to a lease)
            if sorted(set(self.ownership.nodes) - {node}) != live:
                live = sorted(set(self.ownership.nodes) - {node})
                mine = []
                for i in range(0, len(addrs), RANKED_PER_TURN):
                    if i:
                        await asyncio.sleep(0)
                    mine += told_by(addrs[i:i + RANKED_PER_TURN], node, self.config.node, live)
                spread = move_spread(len(mine))
                log.info("node %s died (%s): telling %d of its %d client(s) to move within "
                         "%.1f s (live: %s)", node, why, len(mine), len(addrs), spread,
                         ", ".join(live))
            if len(delays) == 1:  # ranked or not (no live node seen yet), the repeats follow
                delays += notice_times(spread)
            for i in range(0, len(mine), NOTICES_PER_TURN):
                if i:
                    await asyncio.sleep(0)
                    if not self.server.is_open:
                        return
                here = self.server.core.sessions.by_addr  # those back here already: not again
                now = loop.time()
                self.told["notices"] += self.server.core.announce_restart(
                    [a for a in mine[i:i + NOTICES_PER_TURN] if a not in here], now, spread,
                    repeat=delay > 0)
                self.server.transmit(now)

    async def close(self) -> None:
        if self._publishing is not None:
            self._publishing.cancel()
            self._publishing = None
        if self._follow is not None:
            self._follow.cancel()
            self._follow = None
        self._write_bus(0.0)  # what waited for BUS_GATHER
        self.server.cluster = None
        if self._peer_sock is not None:
            asyncio.get_running_loop().remove_reader(self._peer_sock.fileno())
            self._peer_sock.close()
            self._peer_sock = None
        if self.ownership is not None:
            await self.ownership.stop()  # the lease revoked: its groups free at once
        await self.bus.close()

    def _on_ownership(self, event: OwnershipEvent) -> None:
        started = time.perf_counter()
        try:
            self._home_event(event)
        finally:
            spent = time.perf_counter() - started
            stats = self.ownership_events
            stats["events"] += 1
            stats["s"] += spent
            stats["max_s"] = max(stats["max_s"], spent)

    def _home_event(self, event: OwnershipEvent) -> None:
        if event.home is not None and event.change in (Change.CLAIMED, Change.LEARNED):
            self.routing.learn_home(event.group, event.home.fencing)
        if event.change is Change.VANISHED and self.ownership is not None:
            # its home died: the survivors claim its groups, each its share first (Ownership),
            # etcd's transaction picks one where two try
            self.ownership.want_soon([event.group])
        elif self.server.is_open:
            now = asyncio.get_running_loop().time()
            self.routing.home_changed(event.group, now)
            self.server.transmit(now)
        log.info("group %s: %s%s", event.group, event.change.value,
                 f" (home {event.home.node}, fencing {event.home.fencing})" if event.home else "")

    # --- ClusterHook: called by the server ----------------------------------------------------

    def flush(self, now: float) -> None:
        """Send what the routing has to send (the core's turn just ended): its floor messages
        on the peer plane first (what a client waits on), then the bus's: at once with a floor
        message among them or when the bus was not written for ``BUS_GATHER``, else when that
        time is up: each write wakes nats-server on the same cores, and a survivor taking a
        dead node's clients would write once per batch of logins read (a tenth of its time
        under cProfile)."""
        if self.ownership is not None:  # the lease's sign without a wake-up of its own
            self.ownership.alive_in_passing()
        if self._write_at is not None and now >= self._write_at:  # the client list's next write
            self._write_at = None
            _resolve(self._write_due)
        routing = self.routing
        if routing.idle and not routing.due_in_passing(now):
            return  # no bus write waits either: one is made whenever the routing has one
        urgent = routing.floor_waiting
        routing.flush(now)
        datagrams = routing.datagrams_to_send()
        if datagrams:
            self._send_datagrams(datagrams)
        if urgent or routing.floor_waiting or now >= self._bus_next:
            self._write_bus(now)
        elif self._bus_timer is None and routing.has_output:
            self._bus_timer = asyncio.get_running_loop().call_at(self._bus_next, self._bus_due)

    def _write_bus(self, now: float) -> None:
        out = self.routing.messages_to_send()
        if out:
            self.bus.send_all(out)
            self._bus_next = now + BUS_GATHER
        if self._bus_timer is not None:
            self._bus_timer.cancel()
            self._bus_timer = None

    def _bus_due(self) -> None:
        self._bus_timer = None
        if self.server.is_open:
            self.flush(asyncio.get_running_loop().time())

    def _send_datagrams(self, datagrams: list[tuple[Addr, bytes]]) -> None:
        sock = self._peer_sock
        if sock is None:
            return
        for addr, data in datagrams:
            try:
                sock.sendto(data, addr)
            except OSError:  # a full buffer or no route: lost, as UDP may lose it (a request
                self.peer_send_failed += 1  # is sent again by its client; news has its bus copy)

    def urgent(self) -> bool:
        """A floor input or floor news waits: flushed at once, even inside a batch of reads."""
        return self.routing.floor_waiting

    def voice(self, data: bytes, now: float) -> None:
        """A frame the relay accepted (MAC removed): once to each other node with listeners,
        by one ``sendto`` to its peer port (sealed once for all of them), or over the bus to
        a node whose peer port is not settled (ptt.protocol.cluster_peers)."""
        nodes = self.routing.frame_nodes  # this frame's: the core's relay just set them
        if nodes:
            plane, sock = self.peers, self._peer_sock
            sealed = b""
            by_bus: list[tuple[str, bytes]] = []
            for node in nodes:
                addr = plane.route(node) if plane is not None else None
                if addr is None or sock is None:
                    by_bus.append((node, data))
                    continue
                if not sealed:
                    sealed = plane.seal(data)  # type: ignore[union-attr]
                try:
                    sock.sendto(sealed, addr)
                except OSError:  # a full buffer or no route: lost, as UDP may lose it
                    self.peer_send_failed += 1
            if by_bus:
                self.bus.send_all(by_bus)
        if self.routing.has_output:  # the home's ALIVE (four a second of the fifty frames)
            self.flush(now)

    def get_timer(self) -> float | None:
        return self.routing.get_timer()

    def handle_timer(self, now: float) -> None:
        self.routing.handle_timer(now)

    # --- the peer port -------------------------------------------------------------------------

    def _peer_readable(self) -> None:
        sock = self._peer_sock
        if sock is None:
            return
        for _ in range(PEER_READS):
            try:
                data, addr = sock.recvfrom(MAX_PEER_DATAGRAM + 1)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # an ICMP error of an earlier send: nothing to read
                log.debug("peer port: %s", exc)
                return
            self._on_peer(data, addr)

    def _on_peer(self, data: bytes, addr: Addr) -> None:
        """One datagram on the peer port: an authentic, current voice frame of another node
        goes to this node's listeners as one from the bus does, a floor message to the
        routing; anything else is dropped and counted (``Counters.drop_reasons``:
        ``peer_forged``, ``peer_replayed`` ...)."""
        plane = self.peers
        if plane is None or not self.server.is_open:
            return
        now = asyncio.get_running_loop().time()
        d = plane.accept(data, now)
        if d is None:
            self.server.drop(addr, f"peer_{plane.last_refusal}: {len(data)} bytes on the "
                             "peer port", now)
            if plane.ask:  # a node this one forgot: its Peer asked for (PeerPlane.accept)
                self.server.transmit(now)
            return
        if (d.node, d.epoch, d.kind) not in self._peer_heard:
            self._peer_heard.add((d.node, d.epoch, d.kind))
            log.info("voice from node %s comes on the peer port" if d.kind == VOICE
                     else "floor messages from node %s come on the peer port", d.node)
        if d.kind == CONTROL:
            try:
                self.routing.receive(d.frame, now, plane=True)
            except ProtocolError as exc:
                self.bad_messages += 1
                log.warning("bad floor message on the peer port from %s: %s", d.node, exc)
                return
            self.server.transmit(now)
            return
        try:
            targets = self.routing.receive_voice(d.frame, now)
        except ProtocolError as exc:
            self.bad_messages += 1
            log.warning("bad voice frame on the peer port from %s: %s", d.node, exc)
            return
        if targets:
            self.server.fan_out(d.frame, targets, now)

    def _warn_key(self) -> None:
        assert self.peers is not None
        for node in sorted(self.peers.key_differs - self._key_warned):
            log.warning("node %s derives another peer key than this node (their databases do "
                        "not share one secret: copies of one database, or one PostgreSQL "
                        "directory): voice to and from it goes over NATS", node)
        self._key_warned |= self.peers.key_differs

    # --- the bus ------------------------------------------------------------------------------

    def _on_bus(self, data: bytes) -> None:
        if not self.server.is_open:
            return
        now = asyncio.get_running_loop().time()
        try:
            if is_voice(data):
                targets = self.routing.receive_voice(data, now)
                if targets:
                    self.server.fan_out(data, targets, now)
                return
            self.routing.receive(data, now)
            if self.peers is not None and not self.peers.key_differs <= self._key_warned:
                self._warn_key()
        except ProtocolError as exc:
            self.bad_messages += 1
            log.warning("bad message on the bus: %s", exc)
            return
        # what the message gave this node's clients goes at once (floor news above all), as
        # does a floor message for the bus; a message that only changed what this node knows
        # (a member or a login elsewhere: most of a dead node's move, ~1.8 a moved client at
        # a survivor) waits for the rest of this read from NATS: one server turn per read,
        # not one per message
        if self.server.core.has_output() or self.routing.floor_waiting:
            self.server.transmit(now)
        elif not self._turn_soon:
            self._turn_soon = True
            asyncio.get_running_loop().call_soon(self._turn)

    def _turn(self) -> None:
        """The server's turn after a read of bus messages that sent nothing at once."""
        self._turn_soon = False
        self.turns += 1
        if self.server.is_open:
            self.server.transmit(asyncio.get_running_loop().time())
