"""The asyncio server: one UDP socket, the protocol core, the SQLite store and the voice relay.

The adapter is thin, in aioquic's style: each datagram feeds the core with the loop's monotonic
clock, the adapter sends what the core wants sent, runs the events (administration, logging,
recording hooks) and re-arms one timer at ``core.get_timer()``. The socket is read by a plain
``loop.add_reader`` callback that takes what the socket holds and handles voice and requests
before keepalives (``ptt.net.reader``; asyncio's datagram transport reads one datagram per turn
of the loop, in arrival order). The voice hot path: a header peek in the core, then one
``sendmmsg`` to every listener (``ptt.net.sendmmsg``; ``sendto`` per listener where it is
missing).

Multicast (``ptt.net.bridge``): when the configured interface routes the multicast network, the
server listens on the address of every group in ``multicast`` or ``auto`` mode. What it hears
there feeds the floor (silence timer) and is bridged to the group's relay members; a relay
talker's frames go once to the group address for its multicast members; probes are echoed.

Use::

    server = PttServer(config, gc_freeze=gc_freeze_wanted())
    await server.start()          # binds, loads the store, prints where credentials are
    await server.serve_forever()  # until close() or SIGINT/SIGTERM (see run())
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

from ptt.cluster.config import ClusterConfig
from ptt.config import ServerConfig, credentials_path, write_credentials
from ptt.errors import ConflictError, NetError, PttError
from ptt.names import format_hostport
from ptt.net.bridge import MulticastBridge
from ptt.net.multicast import DEFAULT_INTERFACE, MulticastOptions
from ptt.net.reader import PriorityReader
from ptt.net.sendmmsg import FanOutCache
from ptt.protocol import floor as fl
from ptt.protocol.directory import Directory
from ptt.protocol.messages import ErrorCode, Role
from ptt.protocol.server import (
    AdminCommand,
    Dropped,
    FloorEvent,
    GroupUpdated,
    MemberJoined,
    MemberLeft,
    PageDelivered,
    PageRead,
    PageSubmitted,
    ServerCore,
    ServerCoreConfig,
    ServerEvent,
    SessionEnded,
    SessionMoved,
    SessionStarted,
)
from ptt.protocol.server_state import PageEntry
from ptt.protocol.session import Addr
from ptt.server.admin import Admin, error_code, loggable_args
from ptt.server.droplog import DROP_LOG_PER_SECOND, DropLog
from ptt.server.gcfreeze import GC_CHECK_EVERY, FreezePolicy, GcStep, gc_freeze_wanted
from ptt.server.lock import DatabaseLock
from ptt.server.pagereceipts import PAGES_SAVE_EVERY, ReceiptChanges
from ptt.server.pagestore import PageStore
from ptt.server.peers import ANNOUNCE_REPEATS, PEERS_SAVE_EVERY, PeerChanges
from ptt.server.store import Store
from ptt.wire.voice import VoiceFlags, is_voice, peek_flags

log = logging.getLogger("ptt.server")

FIRST_COORDINATOR = "coordinator"
SHED_REASONS = ("rate_limit", "backlog_full", "repeated", "stale")  # PttServer.shed's keys
# s: a cluster's node compares its pages with the shared store this often (and expires them):
# what it missed of the other nodes' pages comes within this time
PAGES_SYNC_EVERY = 5.0
PAGES_EXPIRE_EVERY = 60.0  # s: pages past their retention are deleted this often (at most)


@dataclass
class Counters:
    """What the server did, for statistics, tests and metrics."""

    datagrams_in: int = 0
    voice_in: int = 0  # voice frames accepted from relay talkers
    voice_out: int = 0  # voice datagrams relayed to relay members (unicast)
    multicast_in: int = 0  # voice frames accepted from a group's multicast address
    multicast_out: int = 0  # relay talkers' frames sent on to a group's multicast address
    voice_dropped: int = 0  # voice refused: not the floor holder's current burst, or unknown
    voice_send_failed: int = 0  # relay sends the socket refused (full buffer, no route)
    dropped: int = 0
    grants: int = 0
    denials: int = 0
    revokes: int = 0
    drop_reasons: dict[str, int] = field(default_factory=dict)


def server_multicast_options(config: ServerConfig) -> MulticastOptions:
    """Multicast interface and TTL from the server config (``multicast_interface``: loopback
    unless set, so a default server multicasts nowhere but in a namespace routed for it)."""
    return MulticastOptions(config.multicast_interface, config.multicast_ttl)


class SharedPages(Protocol):
    """Text pages where every node of a cluster reads them (``ptt.cluster.pagestore``): the
    SQLite :class:`PageStore`'s interface, and what a node compares its own pages with."""

    def add(self, group: str, sender: str, to: str, body: bytes, epoch: int, urgent: bool,
            sent_ms: int, expires_ms: int, recipients: frozenset[str]) -> int: ...

    def save_receipts(self, delivered: list[tuple[int, str, str]],
                      read: list[tuple[int, str, str]],
                      cursors: dict[tuple[str, str], int]) -> None: ...

    def retained(self, now_ms: int) -> list[PageEntry]: ...

    def cursors(self) -> dict[tuple[str, str], int]: ...

    def old_grants(self, wanted: set[tuple[str, int]]
                   ) -> dict[tuple[str, int], dict[str, bytes]]: ...

    def expire(self, now_ms: int) -> list[int]: ...

    def retained_counts(self, now_ms: int) -> dict[int, tuple[int, int]]: ...

    def fetch(self, ids: Iterable[int]) -> list[PageEntry]: ...

    def close(self) -> None: ...


class ClusterHook(Protocol):
    """A cluster node wired to this server (``ptt.cluster.node.ClusterNode``)."""

    def flush(self, now: float) -> None:
        """The core's turn ended: publish what the cluster's routing has to send."""

    def urgent(self) -> bool:
        """Does something wait that must not wait for the end of a batch of reads (a floor
        request forwarded to its home, a home's floor news)?"""

    def voice(self, data: bytes, now: float) -> None:
        """The relay accepted this frame (MAC removed): to the other nodes with listeners."""

    def get_timer(self) -> float | None: ...

    def handle_timer(self, now: float) -> None: ...

    def clients(self, added: dict[int, tuple[str, int]], removed: set[int]) -> None:
        """Where this server's clients are changed (sessions started, moved, ended)."""


class PttServer:
    def __init__(
        self,
        config: ServerConfig,
        *,
        core_config: ServerCoreConfig | None = None,
        iterations: int | None = None,
        multicast: MulticastOptions | None = None,
        use_sendmmsg: bool | None = None,
        gc_freeze: bool = False,
        directory: Directory | None = None,
        page_store: SharedPages | None = None,
    ) -> None:
        """``use_sendmmsg``: relay with one ``sendmmsg`` per frame (default: where available,
        unless ``PTT_NO_SENDMMSG=1``), or ``sendto`` per listener (False). ``gc_freeze``: keep
        the long-lived state out of the garbage collector's scans (GC_CHECK_EVERY): it acts on
        the whole process, so ``run()`` (the ``ptt server`` process) turns it on, unless
        ``PTT_NO_GC_FREEZE=1``; an embedding program decides for itself
        (``ptt.server.gcfreeze``). ``directory``: users, groups, members and keys from there
        (a cluster's PostgreSQL directory, which the server closes), and the server's secret,
        instead of the database's SQLite store, which keeps text pages and the last run's
        clients. ``page_store``: text pages and their receipts there (a cluster's PostgreSQL,
        which every node reads; the server closes it), instead of the SQLite store."""
        self.config = config
        self.directory = directory
        self._shared_pages = page_store
        self._expire_at = 0.0  # time.time() of the next expiry of pages in the store
        self.core = ServerCore(
            os.urandom,
            core_config or ServerCoreConfig(heartbeat=config.heartbeat_interval,
                                            session_timeout=config.session_timeout,
                                            idle_heartbeat=config.idle_heartbeat_interval,
                                            idle_session_timeout=config.idle_session_timeout,
                                            max_devices=config.max_devices,
                                            emergency_roles=config.emergency_roles),
        )
        self.counters = Counters()
        self.store: Store | None = None
        self._lock: DatabaseLock | None = None  # this server's claim on its database
        self.admin: Admin | None = None
        self._iterations = iterations
        self._open = False  # the socket is bound and read (start() to close())
        self._sock: socket.socket | None = None
        self._fanouts: FanOutCache | None = None  # set by start(), with the socket
        self.use_sendmmsg = use_sendmmsg
        self.gc_freeze = gc_freeze
        self._gc_timer: asyncio.TimerHandle | None = None
        self._gc_policy = FreezePolicy(0.0)  # started again by start()
        self.gc_freezes = 0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._closed = asyncio.Event()
        self._drops = DropLog(DROP_LOG_PER_SECOND)
        self.listeners: list[Callable[[ServerEvent, float], None]] = []
        # called with every accepted voice datagram (recorders); keep them cheap: hot path
        self.voice_taps: list[Callable[[bytes, float], None]] = []
        # called once by close(), in the closing turn: what a listener kept (the event log's
        # lines of that turn) is out before the loop may stop
        self.on_close: list[Callable[[], None]] = []
        self.credentials_file: Path | None = None
        self.bridge = MulticastBridge(multicast or server_multicast_options(config),
                                      config.multicast_network, self._on_multicast,
                                      self._on_multicast_batch)
        self.multicast_off: str | None = None  # why the server does not use multicast
        self._groups_changed = False
        self._batching = False  # inside _read_ready: the timer is armed once, at the end
        self._turned = False  # a datagram of the batch went through _transmit (not voice alone)
        self._reader: PriorityReader | None = None  # set by start(), with the socket
        self._peers = PeerChanges()  # since the store last heard (PEERS_SAVE_EVERY)
        self._peers_timer: asyncio.TimerHandle | None = None
        self._announce_timers: list[asyncio.TimerHandle] = []
        self._resume: asyncio.Handle | None = None  # a backlog left for the next loop turn
        self.pages: PageStore | SharedPages | None = None
        self._receipts = ReceiptChanges()  # since the store last heard (PAGES_SAVE_EVERY)
        self._pages_timer: asyncio.TimerHandle | None = None
        self._expire_timer: asyncio.TimerHandle | None = None
        self.cluster: ClusterHook | None = None  # set by a cluster node (ptt server --cluster)

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        if str(self.config.db) != ":memory:":
            self._lock = DatabaseLock.acquire(Path(self.config.db))
        try:
            self.store = Store(self.config.db)
        except BaseException:
            self._release_lock()
            raise
        kwargs = {} if self._iterations is None else {"iterations": self._iterations}
        self.admin = Admin(self.directory or self.store, self.core,
                           self.config.multicast_port_base,
                           mcast_network=self.config.multicast_network, **kwargs)
        self.admin.load_all()
        # a cluster's nodes share it: a decoy salt that differed from node to node, where a real
        # user's salt does not, would tell which names are real
        self.core.set_secret(self.admin.store.secret("decoy"))
        self.pages = self._shared_pages or PageStore(self.store)
        self._load_pages()
        loop = asyncio.get_running_loop()
        try:
            # our own socket, so the relay sends on its fd directly (asyncio hands out a
            # wrapper without one): one sendmmsg per frame (ptt.net.sendmmsg)
            infos = socket.getaddrinfo(self.config.host, self.config.port, type=socket.SOCK_DGRAM)
            family, _, _, _, sockaddr = infos[0]
            sock = socket.socket(family, socket.SOCK_DGRAM)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
                sock.bind(sockaddr)
                sock.setblocking(False)
                self._reader = PriorityReader(sock, self._handle, loop.time,
                                              known=self.core.known_host,
                                              admit=self.core.plain_budget,
                                              patient=self.core.patient_login)
                loop.add_reader(sock.fileno(), self._read_ready)
            except BaseException:
                sock.close()
                raise
        except OSError as exc:
            self.store.close()
            self._release_lock()
            raise NetError(f"cannot listen on {format_hostport(*self.config.address)}: "
                           f"{exc.strerror or exc}") from None
        self._sock = sock
        self._open = True
        if self._lock is not None:
            self._lock.record(format_hostport(*self.address))
        self._fanouts = FanOutCache(sock, self.use_sendmmsg,
                                    split_last=self.bridge.dests.__contains__)
        self._first_start()  # after binding, so the credentials name the real port
        self._start_multicast()
        self._announce_restart()
        self._expire_timer = loop.call_later(self._expire_every(), self._expire_pages)
        if self.gc_freeze:
            self._gc_policy = FreezePolicy(loop.time())
            self._freeze()  # users, groups and the code loaded so far
            self._gc_timer = loop.call_later(GC_CHECK_EVERY, self._gc_check)

    def log_ready(self) -> None:
        """The readiness line: operators and scripts wait for it, so it comes last."""
        log.info("ptt server listening on %s (database %s)",
                 format_hostport(*self.address), self.config.db)

    def _announce_restart(self) -> None:
        """Tell the last run's clients their sessions are gone (ServerCore.announce_restart)."""
        assert self.store is not None
        try:
            peers = self.store.take_peers()
        except PttError as exc:  # the announcement is a courtesy: heartbeats find out anyway
            log.warning("cannot read the last run's clients: %s", exc)
            return
        told = self.core.announce_restart(peers, asyncio.get_running_loop().time())
        if told:
            log.info("told %d client(s) of the last run to log in again", told)
            self._send_out()
            loop = asyncio.get_running_loop()
            self._announce_timers = [loop.call_later(delay, self._announce_again, peers)
                                     for delay in ANNOUNCE_REPEATS]

    def _announce_again(self, peers: list[tuple[str, int]]) -> None:
        """The restart notice once more: an idle client that lost it would otherwise notice
        only at its next heartbeat (up to the idle interval, ptt.protocol.keepalive); one that
        is back already checks its session with one sealed heartbeat and stays."""
        if self._open:
            self.core.announce_restart(peers, asyncio.get_running_loop().time())
            self._send_out()

    def _save_peers_soon(self) -> None:
        if self._peers_timer is None and self._open:
            self._peers_timer = asyncio.get_running_loop().call_later(PEERS_SAVE_EVERY,
                                                                      self._save_peers)

    def _save_peers(self) -> None:
        """Where the clients are, for the next start: one transaction per PEERS_SAVE_EVERY."""
        self._peers_timer = None
        added, removed = self._peers.take()
        if self.cluster is not None:
            self.cluster.clients(added, removed)
        if self.store is None:
            return
        try:
            self.store.update_peers(added, removed)
        except PttError as exc:
            log.warning("cannot record where clients are: %s", exc)

    # --- text pages -----------------------------------------------------------------------------

    def _load_pages(self) -> None:
        """The retained pages, their receipts, the cursors and the old grants, into the core."""
        assert self.pages is not None
        self.core.forget_pages([])
        kept = self.pages.retained(int(time.time() * 1000))
        for p in kept:
            self.core.load_page(p)
        self.core.load_cursors(self.pages.cursors())
        wanted = {(p.group, p.epoch) for p in kept if p.epoch}
        for (group, epoch), grants in self.pages.old_grants(wanted).items():
            self.core.keep_grants(group, epoch, grants)
        if kept:
            log.info("%d text page(s) kept for offline members", len(kept))

    def _store_page(self, ev: PageSubmitted, now: float) -> None:
        """Commit the page, then let the core acknowledge and deliver it."""
        assert self.pages is not None
        sent_ms = int(time.time() * 1000)
        try:
            page_id = self.pages.add(ev.group, ev.user, ev.to, ev.body, ev.epoch, ev.urgent,
                                     sent_ms, sent_ms + int(self.config.page_retention * 1000),
                                     ev.recipients)
        except PttError as exc:
            log.error("cannot store a page from %s: %s", ev.user, exc)
            self.core.page_failed(ev, f"the server could not store the page: {exc}", now)
            return
        self.core.page_stored(ev, page_id, sent_ms, now)

    def _save_pages_soon(self) -> None:
        if self._pages_timer is None and self._open:
            self._pages_timer = asyncio.get_running_loop().call_later(PAGES_SAVE_EVERY,
                                                                      self._save_pages)

    def _save_pages(self) -> None:
        self._pages_timer = None
        delivered, read, cursors = self._receipts.take()
        if self.pages is None:
            return
        try:
            self.pages.save_receipts(delivered, read, cursors)
        except PttError as exc:
            log.warning("cannot record page receipts: %s", exc)

    def _expire_every(self) -> float:
        if self._shared_pages is not None:
            return PAGES_SYNC_EVERY
        return self._retention_every()

    def _retention_every(self) -> float:
        return min(PAGES_EXPIRE_EVERY, max(1.0, self.config.page_retention / 4))

    def _expire_pages(self) -> None:
        self._expire_timer = None
        if not self._open or self.pages is None:
            return
        gone: list[int] = []
        now_s = time.time()
        if now_s >= self._expire_at:  # every PAGES_SYNC_EVERY only the comparison, if shared
            self._expire_at = now_s + self._retention_every() - 0.5
            try:
                gone = self.pages.expire(int(now_s * 1000))
            except PttError as exc:
                log.warning("cannot delete expired pages: %s", exc)
        if self._shared_pages is not None:
            gone = self._sync_pages(self._shared_pages, gone)
        if gone:
            self.core.forget_pages(gone)
            log.info("%d text page(s) expired", len(gone))
        self._expire_timer = asyncio.get_running_loop().call_later(self._expire_every(),
                                                                   self._expire_pages)

    def _sync_pages(self, shared: SharedPages, gone: list[int]) -> list[int]:
        """The pages in memory made equal to the shared store's: those another node expired
        go (with ``gone``, the ones expired here), those stored while this node missed the
        other node's message (its NATS message lost, or that node killed between its commit
        and its message) come, with their receipts, and so do the receipts of a page kept
        here that the store has more of (another node's ``PageReceipts`` lost)."""
        try:
            counts = shared.retained_counts(int(time.time() * 1000))
            here = set(self.core.pages)
            short = self.core.paging.receipts_short(counts)
            read = shared.fetch((counts.keys() - here) | set(short))
        except PttError as exc:
            log.warning("cannot read the cluster's pages: %s", exc)
            return gone
        now = asyncio.get_running_loop().time()
        missed = [page for page in read if page.page_id not in here]
        for page in missed:  # with the receipts the store had: those devices are not given it
            self.core.paging.remote_page(page, now)
        self.core.paging.stored_receipts([page for page in read if page.page_id in here], now)
        if missed:
            log.info("%d text page(s) of other nodes read from the shared store", len(missed))
        if short:
            log.info("receipts of %d text page(s) read from the shared store (another node's "
                     "message of them lost)", len(short))
        if read:
            self._transmit(now)
        return sorted(set(gone) | (here - counts.keys()))

    def _start_multicast(self) -> None:
        self.multicast_off = self.bridge.start()
        if self.admin is not None:
            self.admin.multicast_off = self.multicast_off
        if self.multicast_off is None:
            assert self.bridge.iface is not None
            log.info("multicast on %s (%s), TTL %d", self.bridge.iface.name,
                     self.bridge.iface.address, self.bridge.opts.ttl)
            self._sync_multicast()
        else:
            configured = self.bridge.opts.interface != DEFAULT_INTERFACE
            log.log(logging.WARNING if configured else logging.INFO,
                    "multicast off, every group uses the relay: %s", self.multicast_off)

    def _sync_multicast(self) -> None:
        """Listen on the groups that may use multicast; tell the core which ones it can bridge."""
        wanted = {name: (g.mcast_addr, g.mcast_port) for name, g in self.core.groups.items()
                  if g.mode != "relay" and g.mcast_addr is not None and not g.private}
        opened, closed = self.bridge.sync(wanted)  # type: ignore[arg-type]
        if self._fanouts is not None and (opened or closed):
            self._fanouts.clear()  # which address is the bridge's changed
        for name in closed:
            self.core.set_multicast_ready(name, False)
        for name in opened:
            self.core.set_multicast_ready(name, True)

    def _first_start(self) -> None:
        assert self.store is not None and self.admin is not None
        if self.admin.store.list_users():
            return
        try:
            name, token = self.admin.create_user(FIRST_COORDINATOR, Role.COORDINATOR)
        except ConflictError:  # a cluster's node that started at the same moment made it
            return
        self.credentials_file = credentials_path(self.config.db)
        write_credentials(self.credentials_file, format_hostport(*self.address), name, token)
        log.warning("first start: created user '%s'; its credentials are in %s (mode 0600)",
                    name, self.credentials_file)

    def shared_secret(self) -> bytes:
        """The secret a cluster's nodes share (its PostgreSQL directory's, or that of copies of
        one database): the one the decoy salts come from; a cluster node derives keys of its
        own from it (``ptt.wire.peer.peer_key``)."""
        assert self.admin is not None, "the server is started"
        return self.admin.store.secret("decoy")

    @property
    def address(self) -> tuple[str, int]:
        if self._sock is None:
            return self.config.address
        host, port = self._sock.getsockname()[:2]
        return host, port

    def _freeze(self) -> None:
        gc.collect()  # what is garbage now is not frozen with the state
        gc.freeze()
        self._gc_policy.frozen(len(self.core.sessions))
        self.gc_freezes += 1

    def _gc_check(self) -> None:
        if not self._open:
            return
        loop = asyncio.get_running_loop()
        step = self._gc_policy.check(loop.time(), len(self.core.sessions))
        if step is GcStep.THAW:
            gc.unfreeze()  # the next freeze's collection looks at everything once
        if step is not GcStep.KEEP:
            self._freeze()
        self._gc_timer = loop.call_later(GC_CHECK_EVERY, self._gc_check)

    def close(self) -> None:
        hooks, self.on_close = self.on_close, []
        for hook in hooks:
            hook()
        if self._gc_timer is not None:
            self._gc_timer.cancel()
            self._gc_timer = None
        self.bridge.close()
        if self._open:
            self._open = False
            assert self._sock is not None
            try:
                asyncio.get_running_loop().remove_reader(self._sock.fileno())
            except RuntimeError:  # no loop running any more: nothing to remove it from
                pass
            self._sock.close()
        if self._timer is not None:
            self._timer.cancel()
        if self._resume is not None:
            self._resume.cancel()
            self._resume = None
        if self._peers_timer is not None:
            self._peers_timer.cancel()
            self._peers_timer = None
        for handle in self._announce_timers:
            handle.cancel()
        for timer in (self._pages_timer, self._expire_timer):
            if timer is not None:
                timer.cancel()
        self._expire_timer = None
        if self.store is not None:
            self._save_pages()
            self.pages = None
            if self._shared_pages is not None:
                self._shared_pages.close()
                self._shared_pages = None
            self._save_peers()  # the sessions of this run, for the next start's announcement
            self.store.close()
            self.store = None
        if self.directory is not None:
            self.directory.close()
            self.directory = None
        self._release_lock()
        self._closed.set()

    def _release_lock(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    async def wait_closed(self) -> None:
        await self._closed.wait()

    async def serve_forever(self) -> None:
        await self._closed.wait()

    async def __aenter__(self) -> PttServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    # --- the adapter --------------------------------------------------------------------------

    def _read_ready(self) -> None:
        """The socket is readable (or a backlog is left): voice and requests first, keepalives
        after (ptt.net.reader); the timer is re-armed once per call, not per datagram, and not
        after a batch of forwarded voice frames alone (they move no timer earlier, and this is
        the relay's hot path: a cluster's voice frame leaves for the other nodes before it)."""
        self._batching = True
        self._turned = False
        try:
            more = self._reader.run()  # type: ignore[union-attr]
        finally:
            self._batching = False
        if not self._open:
            return  # an admin command or a listener closed the server
        if more and self._resume is None:
            self._resume = asyncio.get_running_loop().call_soon(self._resume_reading)
        if not self._turned:
            return
        if self.cluster is not None:  # what the batch's datagrams gave the bus: one write
            self.cluster.flush(asyncio.get_running_loop().time())
        self._arm(self._next_timer())

    def drop(self, addr: Addr, reason: str, now: float) -> None:
        """A datagram refused outside the core (a cluster node's peer port): counted, logged
        and exported as the core's own drops are (``reason``: ``key: why``)."""
        self._on_event(Dropped(addr, reason), now)

    def shed(self) -> dict[str, int]:
        """Plain datagrams the reader dropped unparsed, by reason: the rate limit would refuse
        them, their backlog was full, a copy from the same address was waiting, or they waited
        until their sender had given up. They count as received but never reach the core."""
        r = self._reader
        if r is None:
            return dict.fromkeys(SHED_REASONS, 0)
        return {"rate_limit": r.plain_refused, "backlog_full": r.plain_dropped,
                "repeated": r.plain_repeated, "stale": r.plain_stale}

    def served_late(self) -> int:
        """Plain datagrams the reader served past its ``plain_max_wait`` (``LOGIN_TRY``): a
        Login answering this node's notice whose client still waits, resending
        (``PriorityReader.plain_late``)."""
        return 0 if self._reader is None else self._reader.plain_late

    def _resume_reading(self) -> None:
        self._resume = None
        if self._open:
            self._read_ready()

    def _handle(self, data: bytes, addr: Any, now: float) -> bool:
        self._on_datagram(data, addr, now)
        return self._open  # an admin command or a listener may have closed the server

    def _on_datagram(self, data: bytes, addr: Any, now: float | None = None) -> None:
        if now is None:
            now = asyncio.get_running_loop().time()
        c = self.counters
        c.datagrams_in += 1
        targets = self.core.receive_datagram(data, addr, now)
        if targets is not None:  # an accepted voice frame
            data = self.core.relayed  # without the talker's session MAC
            c.voice_in += 1
            if self.cluster is not None:  # the other nodes' listeners have the longer way
                self.cluster.voice(data, now)
            self.fan_out(data, targets, now)
            if not self.core.has_output():
                return  # a forwarded frame changes no timer that is due earlier
        elif is_voice(data):
            c.voice_dropped += 1
        self._transmit(now)

    def fan_out(self, data: bytes, targets: tuple[Any, ...], now: float) -> None:
        """A voice frame (MAC removed) to this server's listeners ``targets``; also heard from
        another node of a cluster."""
        c = self.counters
        route = self._fanouts.get(targets)  # type: ignore[union-attr]
        if route.extra is not None:  # also to the multicast members, who check its signature
            self.bridge.send(self.core.relayed_signed, route.extra)
            c.multicast_out += 1
        if route.count:
            c.voice_send_failed += route.send(data)
            c.voice_out += route.count
        for tap in self.voice_taps:
            tap(data, now)

    @property
    def is_open(self) -> bool:
        return self._open

    def transmit(self, now: float) -> None:
        """Send what the core has to send and run its events (after input from elsewhere than
        the socket: a cluster's bus)."""
        if self._open:
            self._transmit(now)

    def rearm(self) -> None:
        """Arm the timer again (a cluster node was wired in, with timers of its own)."""
        self._arm(self._next_timer())

    def _next_timer(self) -> float | None:
        at = self.core.get_timer()
        if self.cluster is not None:
            other = self.cluster.get_timer()
            if other is not None and (at is None or other < at):
                at = other
        return at

    def apply_change(self, kind: str, name: str) -> None:
        """Another node changed a user or group (``kind``, ``name``; ``all`` after a reload)
        in the shared directory, which holds it already: bring the core to it, and tell the
        members what changed for them."""
        if not self._open or self.admin is None:
            return
        now = asyncio.get_running_loop().time()
        self.admin.apply_change(kind, name, now)
        self._groups_changed = self.bridge.enabled or self._groups_changed
        self._transmit(now)

    def _on_multicast(self, data: bytes, addr: Any) -> None:
        """A datagram heard on a group's multicast address (not one of our own)."""
        now = asyncio.get_running_loop().time()
        targets = self.core.receive_multicast(data, addr, now)
        c = self.counters
        if targets is None:
            flags = peek_flags(data)
            if flags is not None and not flags & VoiceFlags.PROBE:
                c.voice_dropped += 1
            return
        c.multicast_in += 1
        data = self.core.relayed  # without the talker's session MAC
        if targets:  # bridged to the relay members
            c.voice_send_failed += self._fanouts.get(targets).send(data)  # type: ignore[union-attr]
        c.voice_out += len(targets)
        for tap in self.voice_taps:
            tap(data, now)

    def _on_multicast_batch(self) -> None:
        if self.core.has_output():
            self._transmit(asyncio.get_running_loop().time())

    def _send_out(self) -> None:
        out = self.core.datagrams_to_send()
        if not out or not self._open:
            return
        send = self._sock.sendto  # type: ignore[union-attr]
        dests = self.bridge.dests
        for data, addr in out:
            if addr in dests:  # probe echoes
                self.bridge.send(data, addr)
                continue
            try:
                send(data, addr)
            except OSError as exc:  # a full buffer or no route: lost, as UDP may lose it
                log.debug("send to %s failed: %s", format_hostport(*addr[:2]), exc)

    def _transmit(self, now: float) -> None:
        # inside a batch of datagrams the bus is written once, at its end (_read_ready): a
        # write is a system call and a wake-up of NATS (a fifth of a survivor's CPU while a
        # dead node's clients logged in to it, one write per login, join and heartbeat); a
        # batch lasts at most the reader's budget (ptt.net.reader.BUDGET). A floor request
        # forwarded to its home, or a home's news, goes at once: it would wait for the rest
        # of the batch and the reader's last look at the socket (~40 us on a request alone,
        # traced at load 3)
        self._turned = True
        if self.cluster is not None and (not self._batching or self.cluster.urgent()):
            self.cluster.flush(now)
        self._send_out()
        events = self.core.events()
        while events:  # events may cause more (an admin command changes groups)
            for ev in events:
                self._on_event(ev, now)
            if self._groups_changed:
                self._groups_changed = False
                self._sync_multicast()
            self._send_out()  # admin answers and their side effects
            events = self.core.events()
        if not self._batching:  # else once at the end of the batch
            self._arm(self._next_timer())

    def _arm(self, at: float | None) -> None:
        if at is None or (self._timer_at is not None and self._timer_at <= at):
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = at
        self._timer = asyncio.get_running_loop().call_at(at, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        if not self._open:
            return
        now = asyncio.get_running_loop().time()
        self.core.handle_timer(now)
        if self.cluster is not None:
            at = self.cluster.get_timer()
            if at is not None and at <= now:
                self.cluster.handle_timer(now)
        self._transmit(now)

    def _on_event(self, ev: ServerEvent, now: float) -> None:
        if isinstance(ev, AdminCommand):
            self._run_admin(ev, now)
        elif isinstance(ev, PageSubmitted):
            self._store_page(ev, now)
        elif isinstance(ev, (PageDelivered, PageRead)):
            self._receipts.note(ev)
            self._save_pages_soon()
        elif isinstance(ev, Dropped):
            self._log_drop(ev, now)
        elif isinstance(ev, FloorEvent):
            self._log_floor(ev.event)
        elif isinstance(ev, (SessionStarted, SessionMoved, SessionEnded)):
            if isinstance(ev, SessionStarted):
                log.debug("%s logged in from %s", ev.user, format_hostport(*ev.addr[:2]))
            elif isinstance(ev, SessionMoved):
                log.info("%s's client moved to %s", ev.user, format_hostport(*ev.addr[:2]))
            else:
                log.debug("%s's session ended (%s)", ev.user, ev.reason)
            self._peers.note(ev)
            self._save_peers_soon()
        elif isinstance(ev, GroupUpdated):
            self._groups_changed = self.bridge.enabled
        elif isinstance(ev, (MemberJoined, MemberLeft)):
            log.debug("%s %s %s", ev.user, "joined" if isinstance(ev, MemberJoined) else "left",
                      ev.group)
        for listener in self.listeners:
            listener(ev, now)

    def _run_admin(self, cmd: AdminCommand, now: float) -> None:
        assert self.admin is not None
        try:
            result = self.admin.execute(cmd.op, cmd.args, now, cmd.user, cmd.role)
        except PttError as exc:
            self.core.admin_reply(cmd, now, error=(error_code(exc), str(exc)))
            return
        except Exception as exc:  # never let one bad command take the server down
            log.exception("admin operation %s failed", cmd.op)
            self.core.admin_reply(cmd, now, error=(ErrorCode.INTERNAL, f"internal error: {exc}"))
            return
        log.debug("%s: %s %s", cmd.user, cmd.op, loggable_args(cmd.args))
        self.core.admin_reply(cmd, now, result=result)

    def _log_drop(self, ev: Dropped, now: float) -> None:
        c = self.counters
        c.dropped += 1
        key = ev.reason.split(":")[0]
        c.drop_reasons[key] = c.drop_reasons.get(key, 0) + 1
        if self._drops.allow(now):
            log.debug("dropped a datagram from %s: %s", format_hostport(*ev.addr[:2]), ev.reason)

    def _log_floor(self, ev: object) -> None:
        c = self.counters
        if isinstance(ev, fl.Granted):
            c.grants += 1
        elif isinstance(ev, fl.Denied):
            c.denials += 1
        elif isinstance(ev, fl.Revoked):
            c.revokes += 1
        if not log.isEnabledFor(logging.DEBUG):  # the lines below read enums' names
            return
        if isinstance(ev, fl.Granted):
            log.debug("[%s] floor granted to %s (burst %d, %s)", ev.group, ev.user, ev.burst_id,
                      ev.priority.name.lower())
        elif isinstance(ev, fl.Denied):
            log.debug("[%s] floor denied to %s (%s)", ev.group, ev.user, ev.cause.name.lower())
        elif isinstance(ev, fl.Revoked):
            log.debug("[%s] floor revoked from %s (%s)", ev.group, ev.user, ev.cause.name.lower())
        elif isinstance(ev, fl.Queued):
            log.debug("[%s] %s queued at #%d", ev.group, ev.user, ev.position)
        elif isinstance(ev, fl.BurstEnded):
            log.debug("[%s] %s's burst %d ended (%s)", ev.group, ev.user, ev.burst_id,
                      ev.reason.name.lower())
        elif isinstance(ev, fl.Idle):
            log.debug("[%s] floor idle", ev.group)


async def run(config: ServerConfig, ready: Callable[[PttServer], None] | None = None,
              cluster: ClusterConfig | None = None) -> int | None:
    """Run a server until SIGINT or SIGTERM, then shut down cleanly; returns the signal that
    stopped it (None when something else closed it). With ``cluster``, as a node of it."""
    directory = None
    shared_pages = None
    if cluster is not None and cluster.postgres is not None:
        from ptt.cluster.directory import open_directory  # psycopg: cluster mode only
        from ptt.cluster.pagestore import PgPageStore

        directory = open_directory(cluster.postgres)
        try:
            shared_pages = PgPageStore(cluster.postgres)
        except BaseException:
            directory.close()
            raise
    server = PttServer(config, gc_freeze=gc_freeze_wanted(), directory=directory,
                       page_store=shared_pages)
    try:
        await server.start()
    except BaseException:
        if directory is not None:
            directory.close()
        if shared_pages is not None:
            shared_pages.close()
        raise
    node = None
    if cluster is not None:
        from ptt.cluster.node import ClusterNode  # it builds on this module

        node = ClusterNode(server, cluster, directory)
        try:
            await node.start()
        except BaseException:
            await node.close()
            server.close()
            raise
    loop = asyncio.get_running_loop()
    caught: list[int] = []

    def on_signal(sig: int) -> None:
        caught.append(sig)
        server.close()

    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, on_signal, sig)
        except (NotImplementedError, RuntimeError):
            pass
    if ready is not None:
        ready(server)
    server.log_ready()  # after ready(): the first-start hint and metrics come before it
    try:
        await server.serve_forever()
    finally:
        if node is not None:
            await node.close()
        server.close()
        log.info("ptt server stopped")
    return caught[0] if caught else None
