"""Group homes over etcd: one lease per node, claims by transaction, owners learned by a watch.

Each group's home is the node that holds ``/ptt/groups/<id>/home`` (value: the node id) under its
lease. A node:

- keeps one lease (``ttl`` seconds, renewed ``RENEWALS_PER_TTL`` times per TTL by a thread of
  its own while the event loop shows it is alive: ``ptt.cluster.lease``) and knows from
  :class:`~ptt.protocol.cluster_fencing.LeaseClock` until when it surely lives;
- claims a group with a transaction that creates the key only if it is absent, under its lease;
  the key's create revision is the claim's **fencing number** (cluster_fencing explains the rule);
- learns every group's home from one range read and a watch of the prefix from the revision after
  it, so no change is missed between the two;
- claims a group it wants whose key vanished (its home's lease expired or was revoked);
- when etcd says its own lease is gone, tells that it lost each group it held, takes a new lease
  and claims again the groups it wants that nobody holds.

Nodes: a node started with an ``address`` (where its clients log in) holds ``/ptt/nodes/<id>``
(value: that address) under the same lease, and every node follows those keys in the same read
and watch (``/ptt/``): ``nodes`` maps each live node to its address, and ``on_node(node,
address)`` tells of a node that appeared, or vanished (``address`` None) when its lease
expired: the survivors' signal that a node died, used to move its clients (``ptt.cluster.node``).

Events go to ``on_event`` (called in the event loop, must not block). ``holds(group, now)`` is what
a home asks before it stamps a grant or burst: the group is its own and its lease surely lives.

The client is etcd's JSON gateway from the loop (``ptt.cluster.gateway``): the claims, the reads,
:meth:`write` (the node's client list, ~1 a second under churn, the loop's only steady request)
and the watch, on HTTP/1.1 connections kept open; the renewer thread renews over the gateway too
(``ptt.cluster.lease``). aetcd on gRPC kept gRPC's event_engine thread waking 7-9 times a second
with no call and ~6 times per call; docs/cluster.md gives the measurements. etcd raises a lease's TTL
to its minimum, 1.5 election timeouts rounded up to a second (2 s with etcd's default timers): the
granted TTL is the one used.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, TypeVar
from urllib.parse import urlsplit

from ptt.cluster.gateway import (
    CompactedError,
    GatewayClient,
    GatewayError,
    Json,
    b64,
    created_at,
    delete_op,
    kvs,
    prefix_end,
    put_op,
    range_op,
    revision,
    txn_op,
    value_is,
)
from ptt.cluster.lease import RENEWALS_PER_TTL, LeaseRenewer, Members
from ptt.errors import ClusterError, ConfigError
from ptt.protocol.cluster_clients import survivor_for
from ptt.protocol.cluster_fencing import LeaseClock

PREFIX = "/ptt/groups/"
_SUFFIX = "/home"
NODES = "/ptt/nodes/"
_FOLLOWED = b"/ptt/"  # groups' homes and nodes, read and watched together
# the group home lease's TTL in seconds (etcd's TTLs are whole seconds)
DEFAULT_TTL = 1
# how long one request to etcd may take before it is abandoned and the next member tried: a
# request in flight when etcd's raft leader dies, or sent to a paused member, is never answered.
# A renewal gets a third of the TTL if shorter (the renewer thread's, ptt.cluster.lease); the
# loop's own requests (claims, reads, the node's client list) get all of it: at a third of a
# 1 s TTL, a node's list of clients went unpublished at a load of 12-25 ("etcd did not answer
# within 0.33 s"), and a dead node's clients missing from it were never told to move
# (bench_access_failover: 531 of 1,000 in one run). A member that stops answering is still left
# within a renewal's timeout: the renewer tells the loop (``_member_failed``).
REQUEST_TIMEOUT = 1.0
# groups claimed in one etcd transaction at most. Each claim is a transaction nested in it (the
# group's key created under the lease if absent, else read), so one request and one raft entry
# claims exactly the groups still free and learns who holds the others. etcd checks an outer
# transaction's operations against --max-txn-ops (128 by default) and each nested one's against
# what is left (two here: the put and its read). One transaction per group, 16 in flight, held
# etcd to ~53 raft proposals a second when three survivors each claimed a dead node's 2,520
# groups at 100,000 clients: 790 claimed in 66 s (docs/benchmarks.md)
CLAIMS_PER_TXN = 100
# claim transactions one node has in flight at most: a node that claims thousands of groups at
# once (its share at start, a dead node's on failover) sent them all together, etcd on a loaded
# machine answered few within the request timeout, and each abandoned call lived on while the
# sweep claimed its group again every TTL (20,000 clients, on aetcd: thousands of calls piled up per
# node, bench_cluster_churn --census)
CLAIM_TXNS_IN_FLIGHT = 4
# s after a group's home vanished: until then a survivor claims it only if it ranks first for it
# among the live nodes (``cluster_clients.survivor_for``, the rule that shares out the dead
# node's clients), so that the survivors claim disjoint shares in parallel instead of racing
# for the same keys; after it, any survivor claims what is still free (the first-ranked one
# died too, or is slow)
CLAIM_DEFER = 0.5
# changes of homes (the watch's events, a claim transaction's answers, a read of every home)
# applied in one turn of the event loop at most: each one has work at the node (a floor taken
# over and told to every node, the new home told who has members), 0.3-0.4 ms on average and up
# to 0.1 s at 100,000 clients (bench_cluster_big), and a watch answer holding a dead node's
# 2,520 deletions, or the claims of them, would otherwise be applied in one turn of ~1 s
EVENTS_PER_TURN = 32
# s: a node starting while etcd is slow (a loaded machine: one request unanswered in TTL/3)
# tries again for this long before it gives up; later, a lost lease is retried for ever
START_WITHIN = 15.0

_T = TypeVar("_T")


class Change(Enum):
    CLAIMED = "claimed"  # this node became the group's home
    LEARNED = "learned"  # another node is the group's home
    VANISHED = "vanished"  # the group has no home (its home's key is gone)
    LOST = "lost"  # this node is no longer the group's home


@dataclass(frozen=True)
class Home:
    """A group's home: the node and the fencing number of its claim."""

    group: str
    node: str
    fencing: int


@dataclass(frozen=True)
class OwnershipEvent:
    change: Change
    group: str
    home: Home | None  # None for VANISHED, and for LOST when no new home is known yet


@dataclass
class _Waiter:
    """A caller of ``Ownership.want``: the groups of its call not yet tried."""

    left: set[str]
    done: asyncio.Future[None]


def home_key(group: str) -> bytes:
    return f"{PREFIX}{group}{_SUFFIX}".encode()


def _group_of(key: bytes) -> str | None:
    text = key.decode(errors="replace")
    if text.startswith(PREFIX) and text.endswith(_SUFFIX):
        return text[len(PREFIX):-len(_SUFFIX)]
    return None


def node_key(node: str) -> bytes:
    return f"{NODES}{node}".encode()


def _node_of(key: bytes) -> str | None:
    text = key.decode(errors="replace")
    return text[len(NODES):] if text.startswith(NODES) else None


def parse_endpoints(endpoints: Sequence[str]) -> list[tuple[str, int]]:
    """(host, port) of each ``http://HOST:PORT`` (or ``HOST:PORT``) etcd endpoint."""
    if not endpoints:
        raise ConfigError("no etcd endpoint given")
    parsed = []
    for endpoint in endpoints:
        parts = urlsplit(endpoint if "//" in endpoint else f"http://{endpoint}")
        try:
            port = parts.port
        except ValueError:
            port = None
        if parts.scheme != "http" or not parts.hostname or not port:
            raise ConfigError(f"etcd endpoint {endpoint!r} is not http://HOST:PORT")
        parsed.append((parts.hostname, port))
    return parsed


class Ownership:
    """One node's claims and its view of every group's home."""

    def __init__(self, endpoints: Sequence[str], node: str, *, ttl: int = DEFAULT_TTL,
                 on_event: Callable[[OwnershipEvent], None] | None = None,
                 clock: Callable[[], float] = time.monotonic, address: str = "",
                 on_node: Callable[[str, str | None], None] | None = None) -> None:
        if ttl < 1:
            raise ConfigError(f"the lease TTL is a whole number of seconds >= 1, not {ttl}")
        self.node = node
        self.homes: dict[str, Home] = {}
        self.wanted: set[str] = set()
        self.lease_clock = LeaseClock(float(ttl))
        self._ttl = ttl
        self._on_event = on_event or (lambda event: None)
        self.address = address  # where this node's clients log in ("" : no node key)
        self.nodes: dict[str, str] = {}  # live node -> its address (module docstring)
        self._on_node = on_node or (lambda node, address: None)
        self._clock = clock
        endpoints_parsed = parse_endpoints(endpoints)
        self._members = Members(endpoints_parsed)
        self._client = self._connect()
        # a request etcd has not answered by then is abandoned and the next member tried
        self._timeout = REQUEST_TIMEOUT
        self._watching: asyncio.Task[None] | None = None
        self._lease_id = 0
        self._renewer = LeaseRenewer(endpoints_parsed, self.lease_clock, clock=clock,
                                     timeout=min(REQUEST_TIMEOUT, ttl / RENEWALS_PER_TTL),
                                     on_lost=self._on_lease_lost,
                                     on_member_failed=self._member_failed)
        self._regaining = False  # a lost lease is being replaced
        self._alive: asyncio.TimerHandle | None = None
        self._signed_at = float("-inf")  # the loop's last sign to the renewer (this clock)
        # the next sweep (``_sign``): the wanted groups without a home claimed again
        self._sweep_at = float("inf")
        self._tasks: set[asyncio.Task[None]] = set()
        # claims: waiting (group -> not before, this node's clock), in a transaction in flight,
        # and the callers of ``want`` waiting for their groups to be tried
        self._closed = False
        self._pending: dict[str, float] = {}
        self._claiming: set[str] = set()
        self._txns_in_flight = 0
        self._pump_due: asyncio.Handle | None = None
        self._pump_at = 0.0
        self._waiters: dict[str, list[_Waiter]] = {}
        self._vanished: dict[str, tuple[str, float]] = {}  # group -> (its last home, when)
        # what this node sent etcd to claim: transactions, groups in them, groups it got
        self.claims_sent = {"txns": 0, "groups": 0, "claimed": 0, "failed_txns": 0}
        self._revision = 0  # the store revision this node's view has reached

    # --- life -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Take a lease, read every home, then follow changes and keep the lease alive."""
        self._renewer.start(asyncio.get_running_loop())
        self._show_alive()
        give_up = self._clock() + START_WITHIN
        while True:
            try:
                await self._new_lease()
                await self._read_all()
                break
            except ClusterError as exc:
                if self._clock() >= give_up:
                    await self.stop(release=False)
                    raise ClusterError(f"etcd did not answer for {START_WITHIN:.0f} s: "
                                       f"{exc}") from exc
                await asyncio.sleep(self._timeout / 10)
        self._watching = self._spawn(self._watch_loop())
        self._sweep_at = self._clock() + self.lease_clock.ttl

    async def stop(self, *, release: bool = True) -> None:
        """Stop; with ``release``, revoke the lease so the node's groups free at once."""
        self._watching = None
        self._closed = True
        if self._alive is not None:
            self._alive.cancel()
        if self._pump_due is not None:
            self._pump_due.cancel()
            self._pump_due = None
        self._pending.clear()
        for group in list(self._waiters):
            self._settle(group)
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self._renewer.stop()
        if release and self._lease_id:
            with contextlib.suppress(ClusterError):
                await self._request(lambda etcd: etcd.post(
                    "/v3/lease/revoke", {"ID": str(self._lease_id)}, self._timeout))
        self._client.close()

    # --- queries ----------------------------------------------------------------------------

    @property
    def ttl(self) -> float:
        """The lease's TTL as etcd granted it."""
        return self.lease_clock.ttl

    def home(self, group: str) -> Home | None:
        return self.homes.get(group)

    @property
    def lease_stats(self) -> dict[str, float]:
        """The renewer's view of the loop: renewals withheld (the loop wedged), and the longest
        silence of the loop it renewed through, wall and charged (``ptt.protocol.loop_silence``)."""
        renewer = self._renewer
        wall, charged = renewer.longest_silence
        return {"withheld": renewer.withheld, "longest_silence_s": wall,
                "longest_charged_s": charged}

    def holds(self, group: str, now: float | None = None) -> Home | None:
        """This node's home of ``group`` if it is the home and its lease surely lives."""
        home = self.homes.get(group)
        now = self._clock() if now is None else now
        if home is None or home.node != self.node or not self.lease_clock.valid(now):
            return None
        return home

    # --- claims -----------------------------------------------------------------------------

    async def want(self, groups: Sequence[str]) -> None:
        """Claim these groups now where they have no home, and whenever their home vanishes;
        returns once each was tried. A claim etcd does not answer is tried again every TTL
        (the sweep, ``_sign``)."""
        for g in groups:
            self._key(g)  # a bad group id is the caller's error, before anything is claimed
        self.wanted.update(groups)
        todo = [g for g in groups if g not in self.homes]
        if not todo:
            return
        waiter = _Waiter(set(todo), asyncio.get_running_loop().create_future())
        for g in todo:
            self._waiters.setdefault(g, []).append(waiter)
        self._enqueue(todo)
        for g in todo:
            if g not in self._pending and g not in self._claiming:
                self._settle(g)
        await waiter.done

    def want_soon(self, groups: Sequence[str]) -> None:
        """``want`` without waiting: the groups join the next claim transactions."""
        for g in groups:
            self._key(g)
        self.wanted.update(groups)
        self._enqueue(groups)

    async def claim(self, group: str) -> Home | None:
        """Become ``group``'s home if it has none; return its home as this node knows it then."""
        await self.want([group])
        return self.homes.get(group)

    def _enqueue(self, groups: Iterable[str]) -> None:
        now = self._clock()
        added = False
        for g in groups:
            if g in self.homes or g in self._pending or g in self._claiming:
                continue
            self._pending[g] = self._not_before(g, now)
            added = True
        if added:
            self._pump_soon(now)

    def _not_before(self, group: str, now: float) -> float:
        """When this node may claim ``group``: at once, unless its home just vanished and
        another live node ranks first for it (``CLAIM_DEFER``). A node's own share sorts first."""
        gone = self._vanished.get(group)
        if gone is None:
            return now
        dead, at = gone
        first = survivor_for(group.encode(), dead, {*self.nodes, self.node})
        return at if first == self.node else max(now, at + CLAIM_DEFER)

    def _pump_soon(self, now: float, at: float | None = None) -> None:
        """Send the claims due at ``at`` (now: in the next turn of the loop, so that a watch's
        burst of deletions fills the transactions)."""
        at = now if at is None else at
        if self._closed:
            return
        if self._pump_due is not None:
            if self._pump_at <= at:
                return
            self._pump_due.cancel()
        self._pump_at = at
        self._pump_due = asyncio.get_running_loop().call_later(max(0.0, at - now), self._pump)

    def _pump(self) -> None:
        self._pump_due = None
        now = self._clock()
        for g in [g for g in self._pending if g in self.homes]:
            del self._pending[g]
            self._settle(g)
        while self._txns_in_flight < CLAIM_TXNS_IN_FLIGHT:
            due = sorted((t, g) for g, t in self._pending.items() if t <= now)
            if not due:
                break
            batch = [g for _, g in due[:CLAIMS_PER_TXN]]
            for g in batch:
                del self._pending[g]
                self._claiming.add(g)
            self._txns_in_flight += 1
            self._spawn(self._claim_batch(batch))
        later = [t for t in self._pending.values() if t > now]
        if later and self._txns_in_flight < CLAIM_TXNS_IN_FLIGHT:
            self._pump_soon(now, min(later))

    async def _claim_batch(self, groups: list[str]) -> None:
        try:
            await self.claim_batch(groups)
        except ClusterError:
            self.claims_sent["failed_txns"] += 1  # the wanted ones are claimed again by the sweep
        finally:
            self._txns_in_flight -= 1
            for g in groups:
                self._claiming.discard(g)
                self._settle(g)
            if self._pending:
                self._pump_soon(self._clock())

    async def claim_batch(self, groups: Sequence[str]) -> dict[str, Home]:
        """One transaction (at most ``CLAIMS_PER_TXN`` groups): each group's key created under
        this node's lease if etcd has none, whatever this node's view says (a survivor's view
        lags the others' claims), else read. Returns each group's home as etcd had it then (a
        group whose key went again between the compare and the read is left out: an event
        follows); this node's view learns them all."""
        if len(groups) > CLAIMS_PER_TXN:
            raise ConfigError(f"{len(groups)} claims in one transaction: at most "
                              f"{CLAIMS_PER_TXN}")
        node, lease = self.node.encode(), self._lease_id
        ops = []
        for g in groups:
            key = self._key(g)
            ops.append(txn_op(compare=[created_at(key, 0)],
                              success=[put_op(key, node, lease), range_op(key)],
                              failure=[range_op(key)]))
        stats = self.claims_sent
        stats["txns"] += 1
        stats["groups"] += len(groups)
        answer = await self._txn({"success": ops})
        responses = answer.get("responses", [])
        if len(responses) != len(groups):
            raise GatewayError(f"{len(responses)} answers to {len(groups)} claims",
                               unreachable=False)
        homes = {}
        for k, (g, response) in enumerate(zip(groups, responses, strict=True)):
            if k and k % EVENTS_PER_TURN == 0:
                await asyncio.sleep(0)
            txn = response.get("response_txn", {})
            found = kvs(txn.get("responses", [{}])[-1].get("response_range", {}))
            if not found:
                continue
            kv = found[0]
            home = homes[g] = Home(g, kv.value.decode(), kv.create_revision)
            if txn.get("succeeded"):
                stats["claimed"] += 1
            self._see(home)
        return homes

    def _settle(self, group: str) -> None:
        """``group``'s claim was tried: the callers of ``want`` waiting for it learn so."""
        for waiter in self._waiters.pop(group, ()):
            waiter.left.discard(group)
            if not waiter.left and not waiter.done.done():
                waiter.done.set_result(None)

    async def release(self, group: str) -> None:
        """Stop being ``group``'s home (deletes the key only if this claim still holds it)."""
        home = self.homes.get(group)
        self.wanted.discard(group)
        if home is None or home.node != self.node:
            return
        key = self._key(group)
        await self._txn({"compare": [created_at(key, home.fencing),
                                     value_is(key, self.node.encode())],
                         "success": [delete_op(key)]})

    # --- the view ---------------------------------------------------------------------------

    def _see(self, home: Home) -> None:
        old = self.homes.get(home.group)
        if old == home:
            return
        if old is not None and old.fencing > home.fencing:
            return  # an older claim read late: the view never goes back
        self.homes[home.group] = home
        self._vanished.pop(home.group, None)
        if old is not None and old.node == self.node and home.node != self.node:
            self._emit(Change.LOST, home.group, home)
        if home.node == self.node:
            self._emit(Change.CLAIMED, home.group, home)
        else:
            self._emit(Change.LEARNED, home.group, home)

    def _vanish(self, group: str, revision: int) -> None:
        old = self.homes.get(group)
        if old is None or old.fencing > revision:
            return
        del self.homes[group]
        if old.node != self.node:
            self._vanished[group] = (old.node, self._clock())
        else:
            self._emit(Change.LOST, group, None)
        self._emit(Change.VANISHED, group, None)
        if group in self.wanted:
            self._enqueue([group])

    def _emit(self, change: Change, group: str, home: Home | None) -> None:
        self._on_event(OwnershipEvent(change, group, home))

    def _see_node(self, node: str, address: str | None) -> None:
        if self.nodes.get(node) == address:
            return
        if address is None:
            self.nodes.pop(node, None)
        else:
            self.nodes[node] = address
        self._on_node(node, address)

    async def get(self, key: bytes) -> bytes | None:
        """The value of ``key`` (None if absent), read from the member in use."""
        found = kvs(await self._range(key))
        return found[0].value if found else None

    async def put(self, key: bytes, value: bytes) -> None:
        """Write ``key`` (not under the lease: it outlives this node)."""
        await self._request(lambda etcd: etcd.post(
            "/v3/kv/put", {"key": b64(key), "value": b64(value)}, self._timeout))

    async def write(self, changes: Mapping[bytes, bytes | None]) -> None:
        """Put each key (not under the lease) or delete it (``None``), in one transaction: one
        raft entry and one request however many keys (at most etcd's ``--max-txn-ops``, 128 by
        default). The request is written in the turn that calls this (no thread hop), its
        answer read when it comes; a member that does not answer within the request timeout
        is left, as ``_request`` leaves it."""
        body = json.dumps({"success": [
            delete_op(k) if v is None else put_op(k, v) for k, v in changes.items()]}).encode()
        try:
            status, answer = await self._request(lambda etcd: etcd.post_bytes(
                "/v3/kv/txn", body, self._timeout))
        except GatewayError as exc:
            raise ClusterError(f"etcd did not answer a write: {exc.details}") from None
        if status != 200:
            raise ClusterError(f"etcd refused a write: HTTP {status}: "
                               f"{answer[:200].decode(errors='replace')}")

    async def get_prefix(self, prefix: bytes) -> list[bytes]:
        """The values of every key under ``prefix``, in key order, from the member in use."""
        return [kv.value for kv in kvs(await self._range(prefix, prefix_end(prefix)))]

    async def delete_prefix(self, prefix: bytes) -> None:
        await self._request(lambda etcd: etcd.post(
            "/v3/kv/deleterange", {"key": b64(prefix), "range_end": b64(prefix_end(prefix))},
            self._timeout))

    async def _range(self, key: bytes, range_end: bytes | None = None) -> Json:
        body = {"key": b64(key)}
        if range_end is not None:
            body["range_end"] = b64(range_end)
        return await self._request(lambda etcd: etcd.post("/v3/kv/range", body, self._timeout))

    async def _txn(self, body: Json) -> Json:
        return await self._request(lambda etcd: etcd.post("/v3/kv/txn", body, self._timeout))

    async def _read_all(self) -> None:
        found = await self._range(_FOLLOWED, prefix_end(_FOLLOWED))
        present = set()
        live = set()
        for k, kv in enumerate(kvs(found)):
            if k and k % EVENTS_PER_TURN == 0:
                await asyncio.sleep(0)
            node = _node_of(kv.key)
            if node is not None:
                live.add(node)
                self._see_node(node, kv.value.decode())
            group = _group_of(kv.key)
            if group is not None:
                present.add(group)
                self._see(Home(group, kv.value.decode(), kv.create_revision))
        at = revision(found)
        for group in [g for g in self.homes if g not in present]:
            self._vanish(group, at)
        for node in [n for n in self.nodes if n not in live]:
            self._see_node(node, None)
        self._revision = max(self._revision, at)

    async def _watch_loop(self) -> None:
        while True:
            client = self._client
            try:
                seen = 0
                async for events in client.watch(_FOLLOWED, prefix_end(_FOLLOWED),
                                                 self._revision + 1, self._timeout):
                    for event in events:
                        seen += 1
                        if seen % EVENTS_PER_TURN == 0:
                            await asyncio.sleep(0)  # a burst of changes is not one long turn
                        kv = event.kv
                        group = _group_of(kv.key)
                        self._revision = max(self._revision, kv.mod_revision)
                        node = _node_of(kv.key)
                        if node is not None:
                            self._see_node(node, None if event.deleted else kv.value.decode())
                        if group is None:
                            continue
                        if event.deleted:
                            self._vanish(group, kv.mod_revision)
                        else:
                            self._see(Home(group, kv.value.decode(), kv.create_revision))
            except asyncio.CancelledError:
                raise
            except CompactedError:
                await self._retry_later(self._read_all)
            except GatewayError as exc:
                # the member went away: watch again from where the view is, on the next one
                if exc.unreachable:
                    self._move_on(client)
                await asyncio.sleep(self._timeout / 10)

    async def _retry_later(self, call: Callable[[], Any]) -> None:
        with contextlib.suppress(ClusterError):
            await call()

    # --- the lease --------------------------------------------------------------------------

    async def _new_lease(self) -> None:
        sent = self._clock()
        lease = await self._request(lambda etcd: etcd.post(
            "/v3/lease/grant", {"TTL": str(self._ttl)}, self._timeout))
        try:
            lease_id, ttl = int(lease["ID"]), int(lease["TTL"])
        except (KeyError, ValueError, TypeError) as exc:
            raise GatewayError(f"a lease grant not understood ({exc})",
                               unreachable=False) from None
        self._lease_id = lease_id
        self._renewer.begin(lease_id, sent, float(ttl))
        if self.address:  # this node lives as long as its lease
            await self._request(lambda etcd: etcd.post("/v3/kv/put", put_op(
                node_key(self.node), self.address.encode(), lease_id)["request_put"],
                self._timeout))

    def _show_alive(self) -> None:
        """Show the renewer thread that this loop runs (``ptt.cluster.lease``: a wedged loop
        lets its lease go). A timer callback, not a task: a task's wake-up from a sleep takes
        a second turn of the loop, each a second or more when the loop is busy."""
        self._sign(self._clock())

    def alive_in_passing(self) -> None:
        """The loop is running anyway (a node's turn after datagrams): give the sign here
        once half a renewal interval passed since the last, and put the sign's timer back a
        whole interval. A loop that serves datagrams then never wakes for the timer: each
        wake-up of a loop asleep for 10-100 ms cost 0.15-1.5 ms of its thread's CPU on the
        2-core VM of the benches (docs/cluster.md, "The client list off gRPC, the sign in
        passing"), three a second for the sign and one for the sweep. A loop with nothing
        to serve still signs from the timer."""
        now = self._clock()
        if now - self._signed_at >= self.lease_clock.ttl / RENEWALS_PER_TTL / 2:
            self._sign(now)

    def _sign(self, now: float) -> None:
        """The sign, the timer for the next one, and the sweep when due: the wanted groups
        without a home claimed again every TTL (a claim whose request failed, etcd slow or
        changing leader, has no event to bring it back)."""
        if self._closed:
            return
        self._renewer.loop_alive(now)
        self._signed_at = now
        if self._alive is not None:
            self._alive.cancel()
        self._alive = asyncio.get_running_loop().call_later(
            self.lease_clock.ttl / RENEWALS_PER_TTL, self._show_alive)
        if now >= self._sweep_at:
            self._sweep_at = now + self.lease_clock.ttl
            self._enqueue(sorted(self.wanted - set(self.homes)))

    def _on_lease_lost(self) -> None:
        """The renewer heard etcd say the lease is gone (called in the loop)."""
        if not self._regaining:
            self._regaining = True
            self._spawn(self._lease_gone())

    async def _lease_gone(self) -> None:
        """etcd no longer has this node's lease: every group it held is lost."""
        try:
            for home in [h for h in self.homes.values() if h.node == self.node]:
                del self.homes[home.group]
                self._emit(Change.LOST, home.group, None)
            while True:
                try:
                    await self._new_lease()
                    await self._read_all()
                    break
                except ClusterError:
                    await asyncio.sleep(self._timeout / 10)
        finally:
            self._regaining = False
        self._enqueue(sorted(self.wanted - set(self.homes)))

    # --- plumbing ---------------------------------------------------------------------------

    def _key(self, group: str) -> bytes:
        if not group or "/" in group:
            raise ConfigError(f"group id {group!r} must be non-empty and have no '/'")
        return home_key(group)

    def _connect(self) -> GatewayClient:
        return GatewayClient(self._members.current)

    async def _request(self, call: Callable[[GatewayClient], Awaitable[_T]]) -> _T:
        """``call`` on the member in use (each gateway request has the request timeout); if it
        does not answer in time or cannot be reached, the next member is used from then on (a
        member that is paused or hung holds its TCP connection open and answers nothing)."""
        client = self._client
        try:
            return await call(client)
        except GatewayError as exc:
            if not exc.unreachable:
                raise
            self._move_on(client)
            host, port = self._members.current
            raise GatewayError(f"etcd did not answer within {self._timeout:.2f} s: "
                               f"{exc.details} (next: {host}:{port})", unreachable=True) from None

    def _member_failed(self, endpoint: tuple[str, int]) -> None:
        """The renewer found ``endpoint`` unanswering (called in the loop): leave it too, or the
        watch would stay on a paused member that breaks nothing and sends nothing."""
        if self._members.current == endpoint:
            self._move_on(self._client)

    def _move_on(self, failed: GatewayClient) -> None:
        if failed is not self._client or not self._members.failed(self._clock()):
            return  # one member: the next request connects to it again
        self._client = self._connect()
        failed.close()
        # the watch stream of the old member may be stuck: open it again on the new one
        if self._watching is not None:
            self._watching.cancel()
            self._watching = self._spawn(self._watch_loop())

    def _spawn(self, coroutine: Any) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task
