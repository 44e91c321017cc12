"""Floor control and voice across the nodes of a cluster: what an access node forwards to a
group's home, and how a home's output is addressed to nodes. Sans-I/O.

Roles (3GPP MCPTT's participating and controlling functions). Every node is an *access* node for
the clients logged in to it: logins, sealed sessions, heartbeats, its own clients' fan-out. Each
group is *homed* on one node (``HomeMap.home_of``), whose :class:`~ptt.protocol.floor.FloorSet`
alone decides that group's floor with today's rules. One :class:`ClusterRouting` per node sits
beside its :class:`~ptt.protocol.server.ServerCore` (as ``state.home``, the parts'
:class:`~ptt.protocol.server_state.FloorHome`) and turns the core's floor inputs and outputs into
node-to-node messages (``ptt.wire.cluster``)::

    access node                              home node
    FloorRequest from a client  -- FloorInput(REQUEST, ref) -->  FloorSet.request
    FloorRelease, session lost  -- FloorInput(RELEASE|LOST) -->  FloorSet.release|participant_lost
    holder's voice (every ALIVE_EVERY) -- FloorInput(ALIVE) -->  FloorSet.voice (T1)
    first/last joined session   -- Presence -------------------> relay set of the group
    a user's first/last session -- Members -------------------->  the group's roster per node
                                <-- Members (forwarded, term) -- to the other nodes with members
                                <-- FloorNews(events, floor, relay set, origin+ref) --
    answer the requester (FloorControl.answer_request), the news to its own clients
    (FloorControl.floor_events), the mirror floor follows (FloorSet.follow)

Who gets what:

* a request at an access node becomes exactly one FloorInput to the home, nothing else; the
  requester's answer waits for the home's FloorNews naming its ``ref``;
* a home's floor events (of a forwarded input, of its own clients' requests, of its timers) go
  as one FloorNews to each node of the group's *relay set* (the nodes with a session joined to
  the group) and to the node whose request it answers; never to a node without members, and
  never to itself (its own clients got them from ``FloorControl`` as in a single server);
* a voice frame the relay accepted goes once to each other node of the relay set
  (:meth:`ClusterRouting.voice_nodes`), which fans it out to its own joined sessions
  (:meth:`ClusterRouting.receive_voice`) while its mirror floor says that burst is current.
  It goes by UDP to the node's peer port (the peer plane, ``ptt.protocol.cluster_peers``,
  whose ``Peer`` messages cross the bus with the rest: :attr:`ClusterRouting.peers`), over
  the bus to a node whose peer port is not settled yet;
* each node's mirror of a remote floor is only ever moved by its home's news, so the relay's
  per-frame floor check and the floor news every client sees follow the home.

Fencing: every FloorNews carries the home's ``term`` for the group (``HomeMap``: the fencing
number of its lease; 1 under :class:`StaticHomes`); a node refuses news with a term lower than
the highest it has seen for the group, so a stale home's decisions are never applied.

Paths: the floor messages a client waits on go by UDP on the peer plane
(``ptt.protocol.cluster_peers``) to a node that knows this node's epoch, by the bus to any
other (and when one does not fit in a datagram): a forwarded request and the holder's ALIVE by
the plane alone (a lost request is sent again by its client, which waits for the answer; an
ALIVE comes again within ``ALIVE_EVERY``); a release or lost participant by the plane and the
bus (its client was answered at once and sends nothing again); every FloorNews by the plane to
each node it reaches (the listeners' nodes too, so each mirror moves before the new talker's
voice, which comes the longer way, reaches it) and by the bus to every node (a news
datagram lost leaves no mirror behind). Everything else goes by the bus.

Order: the bus delivered one node's messages to another in the order sent; UDP need not, and a
message and its copy by the other path come twice, in either order. So each node numbers the
floor messages it sends (``life``: its peer epoch, new at each start; ``seq``: counted within
it), and:

* a node applies a group's FloorNews only if it is newer than the latest it applied: a higher
  term (fencing, above), the same term from another life of the home (a home restarted under
  a static term; an earlier life's datagrams are refused by the plane once the new one is
  announced, and a dead process publishes nothing more), or the same term and life and a
  higher ``seq``. Each news carries the whole floor (state, holder, burst, queue), so the
  newest one alone is the floor; a stale one's events are not told either (the newer news
  told this node's clients where the floor stands, and the heartbeat digest catches a client
  up), and a stale answer leaves its requester to send again and be answered again;
* a home takes a user's inputs to a group from one node in that node's order: an input whose
  ``seq`` is not above the latest it took of that user, group and node life (kept
  ``INPUT_ORDER_KEEP``) is dropped, so a release is never undone by its own late copy, and a
  request sent after a release is not taken before it.

Both count what they drop (:attr:`ClusterRouting.out_of_order`: stale ones and copies).

Presence: who of a group is online, on any node. An access node tells the home (``Members``)
when a user's first session in the group joins there or its last leaves: only on change. The
home keeps, per group, the users online on each other node, and forwards each change to the
other nodes of the relay set; a node that joins the relay set gets the whole roster of every
node. Each node keeps the users online elsewhere in ``GroupEntry.remote``, which the roster,
the presence news and the delivery report read beside its own sessions. A node whose etcd lease
went (:meth:`ClusterRouting.node_gone`), or whose periodic ``Presence`` stops for
:data:`NODE_LEASE` (dead, cut off; the rule without etcd), loses its place in the relay sets
and its users go offline; a restarted node's first ``Presence`` (empty) does the same at once.

Receipts and loss feedback: a listener's node sends them straight to the talker's node (the
node the roster shows the talker online on), not through the home: one message per listener
node per burst for receipts (``Receipts``, its listeners' all at once) and per
``LINK_REPORT_INTERVAL`` for loss (``LinkWindow``, its listeners' reports summed up as the
histogram the talker's node merges), where through the home every one would cross twice and the
home would gain nothing it needs.

Group affinity: a login's Welcome names the access address of the node that homes most of
the user's groups (:meth:`ClusterRouting.placement`), and the client moves there once
(``ptt.protocol.server_list``, "Steering"). A group whose members sit on its home keeps its
voice, floor and presence off the bus; the cross-node paths above stay for the members that
are elsewhere (a tie, a client whose home did not answer, a group homed where a user's other
groups are not).

One session per device: a login tells every other live node (``Login``: one message per other
node per batch of logins, nothing per heartbeat; none to a node known dead), and a session of
that user and device there ends as a second login from one device ends the first on one server.

Failover: when a group's home changes (:meth:`ClusterRouting.home_changed`), the node that
became its home takes over the floor it mirrored (the old grant and queue are void, the talker
revoked with cause FAILOVER, the floor idle) and tells every node. Every term starts idle: a
node that learns of a newer term (its watch, or the new home's news) ends its own copy of the
floor at once, so its talker stops even when the new home never mirrored that burst. A home
whose lease is unsure (``HomeMap.may_act``) decides nothing, its own clients' inputs and its
floor timers included; inputs it cannot decide wait at the node (never dropped: a release is
sent once) until its lease is sure again or the node knows the new home.

One-to-one calls: a call group is homed on the node where it was made (the caller's), for
its whole life: no lease, no claim, term ``CALL_TERM``; its id comes from that node's own slice
of the private ids (:func:`call_id_slice`), so the nodes agree on it without asking. That node
tells every other live node to ring the callee (``Call``), each keeps a copy of the call
(members, id, home), rings the callee's devices there at once and on a login while the call
lasts; from then on the call is a group like any other: its floor decided at its home, news,
voice and presence through the paths above. The home ends the call when nobody is in it on any
node (``CallEnd``); a node that learns its home died ends its copy and tells the sessions in it
(``GroupGone``, ``CALL_LOST``): a call does not fail over; so does a node that learns its home
restarted (a ``Peer`` of another life than the call's). Two calls of one pair made at once
on two nodes (each calling the other) are one on every node: each keeps the lower id's
(:meth:`ClusterRouting._on_call`).

Text pages: a page is stored where every node reads it (the cluster's PostgreSQL, by the
adapter) before it is acknowledged; the node that stored it tells every other live node
(``Page``: pages are rare, rate-limited per sender, and every node keeps the retained pages for
its users' later logins), and each pushes it to its devices that show it. Every device's
receipt (delivered, read) goes to every other live node, those of :data:`PAGE_MARKS_EVERY` in
one message (``PageReceipts``): the delivered mark is what keeps another node from giving that
device the page again, and the sender's node counts it in its delivery report.

Not here (docs/cluster.md says what is left): multicast bridging across nodes, the limit on a
user's devices (``max_devices``) counted over every node.
"""

from __future__ import annotations

import zlib
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from ptt.errors import ProtocolError, ValidationError
from ptt.names import call_members
from ptt.protocol import floor as fl
from ptt.protocol import messages as m
from ptt.protocol.cluster_fencing import FencingView, Stamp, Verdict
from ptt.protocol.cluster_peers import PeerPlane
from ptt.protocol.feedback import LinkCounts
from ptt.protocol.server import ServerCore
from ptt.protocol.server_state import (
    ASKED_ELSEWHERE,
    PRIVATE_GROUP_BASE,
    GroupEntry,
    PageEntry,
)
from ptt.protocol.session import Addr, Session
from ptt.wire import cluster as wc
from ptt.wire.peer import CONTROL
from ptt.wire.voice import peek_frame

__all__ = [
    "ALIVE_EVERY",
    "PRESENCE_EVERY",
    "ClusterRouting",
    "NODE_LEASE",
    "PAGE_MARKS_EVERY",
    "HomeMap",
    "StaticHomes",
    "TIMER_SLACK",
    "CALL_TERM",
    "call_id_slice",
    "from_wire",
    "placement_node",
    "to_wire",
]

# the holder's voice reaches its home at least this often: well inside T1 (FloorConfig.silence,
# 1.5 s), and at 4 messages a second per talker instead of the 50 frames
ALIVE_EVERY = 0.25
# every node tells every home, this often, the whole list of its groups with members: a home that
# restarted or lost a Presence learns its relay sets again within this time
PRESENCE_EVERY = 2.0
# a node not heard from (its periodic Presence) for this long is gone: its users go offline
NODE_LEASE = 2.5 * PRESENCE_EVERY
# s: inputs and news held while this node's lease on their group is unsure are tried again this
# often (its lease clock is sure again once a renewal's answer comes, with no event of its own)
HELD_RETRY = 0.05
# s: a floor timer this late means the node's loop stalled; the inputs queued meanwhile are read
# first (a home waking from a 1-2 s stall ended bursts by silence whose ALIVEs and releases it
# read 0.2-1.8 s later: bench_cluster_churn at 8,000 clients, load 20-26)
STALL = 0.2
MAX_STALL_WAIT = 2.0
_NEVER = float("-inf")
# the term of a call's news: a call never changes home (it ends with its node), so there is no
# claim and no fencing number; a new call under the same name has a new id
CALL_TERM = 1
# earlier lives of each node remembered: a message of one (its old process's, on a bus
# connection of its own, in no order with the new life's) may arrive after the new life's
PAST_LIVES_KEPT = 8
# s: the page receipts of this node's devices go to the other nodes this often at most, in one
# message (a page to 2,000 members brings 2,000 within a second); well inside the sender's wait
# for its report (server_pages.PAGE_REPORT_WAIT, 1 s)
PAGE_MARKS_EVERY = 0.05
PAGE_MARKS_PER_MESSAGE = 1_000  # receipts in one PageReceipts (~150 KB at most, MAX_MESSAGE)
MAX_PENDING = 10_000  # forwarded requests awaiting their home's answer (clients resend)
_REMOTE_TARGETS = 1 << 64  # GroupEntry.targets key of frames from another node (above any sid)
# s a home remembers the latest input it took of a user in a group (for the input order rule,
# "Order"): the copy of an input by the other path comes within milliseconds; a node whose
# messages lag by a lease is taken for dead anyway
INPUT_ORDER_KEEP = NODE_LEASE
# inputs whose loss nobody repairs (the client is answered by its node at once and never sends
# them again): they cross the bus as well as the plane
_SURE_INPUTS = frozenset({wc.InputKind.RELEASE, wc.InputKind.LOST})
# s: the bus copies of floor messages sent by the plane leave this long after them, all that
# gathered in one write. Sent at once, a copy's bus hop wakes nats-server and then every
# addressee a second time while the answer it copies is still on its way through them: on 2
# cores that cost the cross-node floor access most of what the plane saves (1.95 ms p50, +1.68
# over its UDP floor, against 2.15 and +1.26 over the bus's own floor by the bus alone;
# bench_cluster, load 0.4-1.7). A lost datagram's mirror is right 20 ms later, far below what
# a listener notices
BUS_COPY_DELAY = 0.02
# s the timers that tolerate lateness (the bus copies, the page receipts, presence) may wait past
# their time for a turn the node runs anyway (:meth:`ClusterRouting.flush`, after each batch of
# datagrams: under churn every 2-3 ms) before their own timer wakes the loop: each wake-up of a
# loop that slept costs 0.15-1.5 ms of CPU on the benches' VM (docs/cluster.md, "Where a node's
# CPU goes"). A bus copy then leaves 20-40 ms after its datagram, a Presence every 2.0-2.02 s
TIMER_SLACK = 0.02


class HomeMap(Protocol):
    """Which node is each group's home, and the fencing number of that ownership."""

    @property
    def nodes(self) -> Sequence[str]: ...

    def home_of(self, group: str) -> tuple[str, int]:
        """``(node, term)``: the home of ``group`` and the term it holds the group under (its
        fencing number; 0 while no home is known)."""
        ...

    def may_act(self, group: str, now: float) -> bool:
        """May this node, ``group``'s home, decide and stamp for it now (its lease surely
        lives)? A home that may not stays silent: its inputs are dropped, clients resend."""
        ...


class StaticHomes:
    """Homes by a fixed rule, where no leases decide them: the group name's CRC-32 modulo the
    number of nodes, over the nodes in sorted order, the same in every process; ``pinned``
    places chosen groups by hand. No failover: term 1 for ever."""

    def __init__(self, nodes: Iterable[str], pinned: dict[str, str] | None = None) -> None:
        self._nodes = tuple(sorted(set(nodes)))
        if not self._nodes:
            raise ProtocolError("a cluster has at least one node")
        self.pinned = dict(pinned or {})
        unknown = set(self.pinned.values()) - set(self._nodes)
        if unknown:
            raise ProtocolError(f"groups pinned to unknown nodes: {', '.join(sorted(unknown))}")

    @property
    def nodes(self) -> Sequence[str]:
        return self._nodes

    def home_of(self, group: str) -> tuple[str, int]:
        node = self.pinned.get(group)
        if node is None:
            node = self._nodes[zlib.crc32(group.encode()) % len(self._nodes)]
        return node, 1

    def may_act(self, group: str, now: float) -> bool:
        return True


def placement_node(groups: Iterable[str], homes: HomeMap, here: str) -> str | None:
    """The node a user of ``groups`` is best served from: the home of most of them (groups
    with no known home, term 0, do not count). ``here`` wins a tie it is part of, so a client
    is never moved between equally good nodes; otherwise the tie goes to the first node in
    sorted order, the same on every node. None: no group has a known home."""
    count: dict[str, int] = {}
    for g in groups:
        node, term = homes.home_of(g)
        if term > 0:
            count[node] = count.get(node, 0) + 1
    if not count:
        return None
    best = max(count.values())
    if count.get(here) == best:
        return here
    return min(n for n, c in count.items() if c == best)


def call_id_slice(node: str, nodes: Sequence[str]) -> tuple[int, int]:
    """``[first, end)``: the call group ids ``node`` gives out, by its place in the sorted node
    list (the same list on every node): no two nodes' calls share an id."""
    ordered = sorted(set(nodes))
    first_all = PRIVATE_GROUP_BASE + 1
    size = ((1 << 32) - first_all) // len(ordered)
    first = first_all + ordered.index(node) * size
    return first, first + size


@dataclass
class _Pending:
    session_id: int
    addr: Addr
    txn: int
    group: str


def to_wire(ev: fl.FloorEvent) -> wc.EventTuple:
    """A floor event as it crosses the bus."""
    K = wc.EventKind
    if isinstance(ev, fl.Granted):
        return (K.GRANTED, ev.user, ev.burst_id, int(ev.priority), float(ev.max_talk),
                ev.from_queue)
    if isinstance(ev, fl.Queued):
        return (K.QUEUED, ev.user, ev.position)
    if isinstance(ev, fl.Denied):
        return (K.DENIED, ev.user, int(ev.cause))
    if isinstance(ev, fl.Revoked):
        return (K.REVOKED, ev.user, ev.burst_id, int(ev.cause), float(ev.grace))
    if isinstance(ev, fl.BurstEnded):
        return (K.ENDED, ev.user, ev.burst_id, ev.reason.value)
    if isinstance(ev, fl.Idle):
        return (K.IDLE, ev.burst_id)
    return (K.QUEUE, ev.queue)


# the enums' members by value: a dict's lookup, where calling the enum costs ~0.3 us on each
# floor event and news at every node it crosses
_PRIORITIES = {int(p): p for p in m.Priority}
_STATES = {s.value: s for s in fl.FloorState}


def from_wire(group: str, e: wc.EventTuple) -> fl.FloorEvent:
    """A floor event from the bus; ProtocolError when a number or name is not one we know."""
    K = wc.EventKind
    try:
        kind = e[0]
        if kind == K.GRANTED:
            priority = _PRIORITIES.get(e[3])
            if priority is None or type(e[3]) is not int:
                raise ValueError(f"{e[3]!r} is not a valid Priority")
            return fl.Granted(group, e[1], e[2], priority, e[4], e[5])
        if kind == K.QUEUED:
            return fl.Queued(group, e[1], e[2])
        if kind == K.DENIED:
            return fl.Denied(group, e[1], m.DenyCause(e[2]))
        if kind == K.REVOKED:
            return fl.Revoked(group, e[1], e[2], m.RevokeCause(e[3]), e[4])
        if kind == K.ENDED:
            return fl.BurstEnded(group, e[1], e[2], fl.EndReason(e[3]))
        if kind == K.IDLE:
            return fl.Idle(group, e[1])
        return fl.QueueChanged(group, tuple(e[1]))
    except ValueError as exc:
        raise ProtocolError(f"floor event from the bus: {exc}") from None


class ClusterRouting:
    """One node's routing: the core's ``FloorHome`` and its node-to-node messages.

    Drive it like the core: :meth:`receive` a message from the bus, :meth:`receive_voice` a
    frame from the bus, :meth:`flush` after every call into the core (it publishes the news of
    this node's floors), :meth:`handle_timer` at :meth:`get_timer`; read
    :meth:`messages_to_send` (``(node, bytes)``) and, for each voice frame the relay accepted,
    :meth:`voice_nodes`."""

    def __init__(self, node: str, core: ServerCore, homes: HomeMap, life: int = 1) -> None:
        if node not in homes.nodes:
            raise ProtocolError(f"node '{node}' is not one of the cluster's nodes")
        if not 0 < life < 2**63:
            raise ProtocolError("a node's life is a number from 1 to 2**63 - 1")
        self.node = node
        # this process's life (the adapter's peer epoch) and its count of floor messages sent
        # in it: the order of its inputs and news, whichever path each takes ("Order")
        self.life = life
        self._seq = 0
        self.core = core
        self.homes = homes
        core.state.home = self
        core.floors.log = []
        core.floors.defer = self._defer_timers
        self._out: list[tuple[str, bytes]] = []
        self._plane_out: list[tuple[Addr, bytes]] = []  # floor messages sealed for the plane
        self._copies: list[tuple[str, bytes]] = []  # their bus copies, sent at _copies_at
        self._copies_at: float | None = None
        # the earliest of _retry_at, _presence_at, _marks_at and _copies_at (get_timer, read
        # after every turn of the server): lowered where one is set, worked out again when the
        # timer ran; one that went past unchanged only makes a turn of handle_timer early
        self._timer_at: float | None = None
        # the earliest time of the timers that tolerate lateness: a flush from then on runs
        # them in passing (their timer is TIMER_SLACK later, in _timer_at)
        self._passing_at: float | None = None
        self._floor_out = False  # _out holds a floor input or floor news (floor_waiting)
        self._ref = 0
        self._pending: dict[int, _Pending] = {}
        # inputs for a group whose home is not known, or that this node (its home) may not
        # decide yet (its lease unsure), by (kind, user): sent or decided once it is known
        self._homeless: dict[str, dict[tuple[wc.InputKind, str], wc.FloorInput]] = {}
        self._retry_at: float | None = None  # held inputs and news tried again then
        # per group: the term this node's copy of its floor was decided under (as its home, or
        # by the news it mirrors); a newer term starts from an idle floor
        self._term: dict[str, int] = {}
        # per group: the burst this node ended itself on learning of a newer term, so the new
        # home's news ending it too is not told to the clients twice
        self._voided: dict[str, tuple[int, int]] = {}  # group -> (term, burst)
        # per group: the node whose news came under a newer term than this node's ownership
        # watch had named, and that term, until the watch names it too. The node that took a
        # dead home's group over tells every node at once; the watch names it 0.3-0.5 s later
        # on a survivor busy with the dead node's clients (bench_cluster_churn's failover,
        # 20,000 clients), and an input held that long waited as long for its grant
        self._news_home: dict[str, tuple[str, int]] = {}
        # group -> (the late deadline, until when its wait runs, the latest it may run to)
        self._stalled: dict[str, tuple[float, float, float]] = {}
        self.fencing = FencingView()  # the highest term seen per group, from news or claims
        # per group this node is home of: the nodes with a joined session (itself included)
        self._relay: dict[str, set[str]] = {}
        # per group homed elsewhere: the relay set of its home's latest news, without this node
        self._known_relay: dict[str, tuple[str, ...]] = {}
        self._alive: dict[str, tuple[int, float]] = {}  # group -> (burst, last ALIVE sent)
        self._presence_at: float | None = None
        # per group: the users online on each other node (from the home's forwards, or at the
        # home from the access nodes); GroupEntry.remote counts them per user
        self._remote: dict[str, dict[str, set[str]]] = {}
        self._remote_id: dict[str, int] = {}  # the group id those users were online in
        self._heard: dict[str, float] = {}  # node -> when its last Presence came (the home's lease)
        self.refused_news = 0  # news from an older term (a stale home): counted, not applied
        # per group: (term, life, seq) of the latest news applied; per (group, user): (origin,
        # life, seq, when) of the latest input taken at this home ("Order")
        self._news_order: dict[str, tuple[int, int, int]] = {}
        self._input_order: dict[tuple[str, str], tuple[str, int, int, float]] = {}
        # floor messages not applied for their order: "stale" (older than one applied: came
        # late, by the other path), "copies" (the second copy of one, plane and bus)
        self.out_of_order = {"news stale": 0, "news copies": 0, "inputs stale": 0,
                             "inputs copies": 0}
        # Call messages of a group name that is not a call here, or of a call from an earlier
        # life of its home (counted, nothing rung)
        self.refused_calls = 0
        # two calls of one pair made at once on two nodes, each crossing seen here ("_on_call")
        self.crossed_calls = 0
        # node -> its access address (HOST:PORT), as the nodes publish it: where a Welcome
        # steers a client (placement); a node not in it is never named
        self.addresses: dict[str, str] = {}
        # the nodes alive now (the adapter's view, from etcd; None: every configured node):
        # news that only the living can act on (logins) goes to them alone
        self.live: set[str] | None = None
        self._logins: list[tuple[str, str]] = []  # (user, device) logged in since the flush
        # one-to-one calls this node has a copy of: group -> its home (where it was made), and
        # the home's life that made it (Call.life)
        self._calls: dict[str, str] = {}
        self._call_lives: dict[str, int] = {}
        # node -> its latest life seen (its Peer's epoch, a Call's life): calls of its earlier
        # lives are over; and the lives it had before that one (at most PAST_LIVES_KEPT)
        self._lives: dict[str, int] = {}
        self._past_lives: dict[str, deque[int]] = {}
        # pages and their receipts cross nodes only when the adapter stores them where every
        # node reads them (page ids from one store, unique across nodes)
        self.shared_pages = True
        self._page_marks: list[tuple[int, str, str, bool]] = []  # to the other nodes
        self._marks_at: float | None = None  # when they go
        core.directory.call_ids(*call_id_slice(node, homes.nodes))
        # the peer plane (voice and floor messages between nodes by UDP,
        # ptt.protocol.cluster_peers): its Peer messages go and come here with the rest; None:
        # everything crosses on the bus
        self.peers: PeerPlane | None = None
        # the other nodes the frame the relay accepted last goes to (voice_nodes of its group,
        # worked out once, in voice: the adapter reads it for the frame the core just took)
        self.frame_nodes: tuple[str, ...] = ()

    # --- outputs ------------------------------------------------------------------------------

    def messages_to_send(self) -> list[tuple[str, bytes]]:
        """``(node, bytes)`` to send over the bus, in order."""
        out, self._out = self._out, []
        self._floor_out = False
        return out

    def datagrams_to_send(self) -> list[tuple[Addr, bytes]]:
        """``(peer address, sealed datagram)`` to send by UDP on the peer plane (before the
        bus's: what a client waits on)."""
        out, self._plane_out = self._plane_out, []
        return out

    @property
    def has_output(self) -> bool:
        """Would :meth:`flush`, :meth:`messages_to_send` or :meth:`datagrams_to_send` give
        anything? (the relay's hot path asks after each frame)"""
        return bool(self._out) or bool(self._plane_out) or bool(self.core.floors.log)

    @property
    def idle(self) -> bool:
        """Nothing for :meth:`flush` to publish and nothing to send: with every member of
        the node's groups on it, the end of nearly every turn (the adapter's stops there)."""
        return not (self._out or self._plane_out or self.core.floors.log or self._logins
                    or self.peers is not None and self.peers.ask)

    def due_in_passing(self, now: float) -> bool:
        """Is a timer that tolerates lateness due (``TIMER_SLACK``)? :meth:`flush` runs it
        now, in a turn the node runs anyway, rather than its timer later."""
        return self._passing_at is not None and now >= self._passing_at

    @property
    def floor_waiting(self) -> bool:
        """Does a floor input or floor news wait to be sent (in the messages, or in the core's
        floor events that :meth:`flush` publishes)? Someone waits on those; the rest (presence,
        members, logins) may wait for the end of a batch."""
        return self._floor_out or bool(self.core.floors.log)

    def voice_nodes(self, group_id: int) -> tuple[str, ...]:
        """The other nodes a frame of ``group_id`` the relay accepted here must go to, once each."""
        g = self.core.state.by_id.get(group_id)
        if g is None:
            return ()
        return self._voice_nodes(g.name, self.elsewhere(g.name))

    def _voice_nodes(self, group: str, away: bool) -> tuple[str, ...]:
        if away:
            return self._known_relay.get(group, ())
        relay = self._relay.get(group)
        if not relay:
            return ()
        if self.node not in relay:  # no member here: nothing to leave out
            return tuple(relay)
        if len(relay) == 1:  # every member here: nothing crosses
            return ()
        return tuple(n for n in relay if n != self.node)

    def get_timer(self) -> float | None:
        """The routing's next deadline: the held inputs' retry, and the others
        ``TIMER_SLACK`` after their time (a flush before then runs them in passing)."""
        return self._timer_at

    def _due(self, at: float) -> None:
        """A deadline was set at ``at``: the timer runs then at the latest."""
        if self._timer_at is None or at < self._timer_at:
            self._timer_at = at

    def _due_in_passing(self, at: float) -> None:
        """A timer that tolerates lateness was set at ``at``: run by a flush from then on,
        else by the timer ``TIMER_SLACK`` later."""
        if self._passing_at is None or at < self._passing_at:
            self._passing_at = at
        self._due(at + TIMER_SLACK)

    def _timers_moved(self) -> None:
        passing = None
        for t in (self._presence_at, self._marks_at, self._copies_at):
            if t is not None and (passing is None or t < passing):
                passing = t
        self._passing_at = passing
        at = None if passing is None else passing + TIMER_SLACK
        if self._retry_at is not None and (at is None or self._retry_at < at):
            at = self._retry_at
        self._timer_at = at

    def handle_timer(self, now: float) -> None:
        self._in_passing(now)
        if self._retry_at is not None and now >= self._retry_at:
            self._retry_at = None
            for group in list(self._homeless):
                self._send_homeless(group, now)
            self.flush(now)
        self._timers_moved()

    def _in_passing(self, now: float) -> None:
        """What of the timers that tolerate lateness (``TIMER_SLACK``) is due by ``now``."""
        if self._copies_at is not None and now >= self._copies_at:
            self._out.extend(self._copies)
            self._copies.clear()
            self._copies_at = None
        if self._marks_at is not None and now >= self._marks_at:
            self._send_page_marks()
        if self._presence_at is not None and now >= self._presence_at:
            self._send_presence_full()
            self._send_peers()
            self._expire_nodes(now)
            self._forget_inputs(now)
            self._presence_at = now + PRESENCE_EVERY
        self._timers_moved()

    def start(self, now: float) -> None:
        """Tell every home which of its groups have members here (none yet at start)."""
        self._send_presence_full()
        self._send_peers()
        self._presence_at = now + PRESENCE_EVERY
        self._timers_moved()

    # --- FloorHome: the core's parts hand over the inputs of floors homed elsewhere -------------

    def _home_of(self, group: str) -> tuple[str, int]:
        """``HomeMap.home_of``, and for a call its maker, under ``CALL_TERM``."""
        home = self._calls.get(group)
        return (home, CALL_TERM) if home is not None else self.homes.home_of(group)

    def _may_act(self, group: str, now: float) -> bool:
        """``HomeMap.may_act``; a call's home always may (no lease: it ends with its node)."""
        return group in self._calls or self.homes.may_act(group, now)

    def elsewhere(self, group: str, now: float | None = None) -> bool:
        """Is ``group``'s floor decided on another node (or nowhere yet)? With ``now``: also
        while this node is its home but may not decide (its lease may have lapsed)."""
        g = self.core.state.groups.get(group)
        if g is None:
            return False
        if g.private:  # a call: decided on the node that made it, as long as it lasts
            return self._calls.get(group, self.node) != self.node
        # term 0: nobody holds the group (its home died, no claim yet). The node the static
        # rule names is not its home either: deciding on its mirror would queue or grant
        # where the next home never hears of it. A term below one seen in news: a newer home
        # claimed the group, and this node's watch has not said so yet
        node, term = self._home_of(group)
        if node != self.node or term < 1 or term < self.fencing.highest.get(group, 0):
            return True
        # a home whose lease may have lapsed decides nothing, even for its own clients: a
        # survivor may have claimed the group and granted someone else already
        return now is not None and not self._may_act(group, now)

    def request(self, s: Session, g: GroupEntry, txn: int, priority: m.Priority,
                now: float) -> None:
        self._ref = (self._ref + 1) & 0x7FFF_FFFF or 1
        pending = self._pending
        if len(pending) >= MAX_PENDING:  # a home that never answers: forget the oldest
            del pending[next(iter(pending))]
        pending[self._ref] = _Pending(s.session_id, s.addr, txn, g.name)
        self._input(wc.InputKind.REQUEST, g.name, s.user, int(priority), 0, self._ref, now,
                    s.device)

    def release(self, group: str, user: str, device: str, burst_id: int, now: float) -> None:
        self._input(wc.InputKind.RELEASE, group, user, 0, burst_id, 0, now, device)

    def left(self, group: str, user: str, device: str, lost: bool, now: float) -> None:
        kind = wc.InputKind.LOST if lost else wc.InputKind.RELEASE
        self._input(kind, group, user, 0, 0, 0, now, device)

    def voice(self, group: str, user: str, burst_id: int, now: float) -> None:
        """The relay accepted a frame (it calls this for each, before it hands the frame on):
        :attr:`frame_nodes` is set for it."""
        away = self.elsewhere(group)
        self.frame_nodes = self._voice_nodes(group, away)
        if not away:
            return
        last = self._alive.get(group)
        if last is None or last[0] != burst_id or now - last[1] >= ALIVE_EVERY:
            self._alive[group] = (burst_id, now)
            self._input(wc.InputKind.ALIVE, group, user, 0, burst_id, 0, now)

    def members_changed(self, g: GroupEntry, now: float) -> None:
        home = self._home_of(g.name)[0]
        online = bool(g.joined)
        if home == self.node:
            self._set_relay(g.name, self.node, online, now)
        else:
            self._send(home, wc.Presence(self.node, (g.name,) if online else (),
                                         () if online else (g.name,), False))
            if not online:  # no longer in the relay set: the home's forwards stop coming
                for node in list(self._roster(g)):
                    self._set_remote(g, node, (), True, now)

    def presence(self, g: GroupEntry, user: str, online: bool, now: float) -> None:
        home = self._home_of(g.name)[0]
        came: tuple[str, ...] = (user,) if online else ()
        went: tuple[str, ...] = () if online else (user,)
        if home != self.node:
            self._send(home, wc.Members(g.name, self.node, 0, "", came, went, False))
        else:
            self._forward_members(g.name, self.node, came, went, False, (), now)

    def placement(self, groups: Sequence[str]) -> str:
        """For the Welcome of a user of ``groups``: the access address of the node that homes
        most of them, "" when it is this node (or ties with it), unknown, or has no address."""
        node = placement_node([g for g in groups if g not in self._calls], self.homes,
                              self.node)
        if node is None or node == self.node:
            return ""
        return self.addresses.get(node, "")

    def logged_in(self, user: str, device: str, now: float) -> None:
        """Told to the other live nodes at the next flush, with the batch's other logins."""
        self._logins.append((user, device))

    def receipts(self, g: GroupEntry, burst_id: int, talker: str,
                 receipts: Sequence[m.Receipt], now: float) -> None:
        msg = wc.Receipts(g.name, burst_id, self.node, tuple(r.user for r in receipts),
                          tuple(r.received for r in receipts),
                          tuple(r.expected for r in receipts))
        for node in self._nodes_of(g.name, talker):
            self._send(node, msg)

    def link_counts(self, g: GroupEntry, burst_id: int, talker: str, counts: LinkCounts,
                    now: float) -> None:
        msg = wc.LinkWindow(g.name, burst_id, self.node, counts.bins, counts.listeners,
                            counts.frames, counts.lost, counts.runs, counts.late, counts.worst)
        for node in self._nodes_of(g.name, talker):
            self._send(node, msg)

    def _nodes_of(self, group: str, user: str) -> list[str]:
        """The other nodes ``user`` is online on in ``group``, as the roster shows."""
        g = self.core.state.groups.get(group)
        return [] if g is None else [n for n, users in self._roster(g).items() if user in users]

    def _input(self, kind: wc.InputKind, group: str, user: str, priority: int, burst_id: int,
               ref: int, now: float, device: str = "") -> None:
        self._seq += 1
        msg = wc.FloorInput(kind, group, user, priority, burst_id, self.node, ref, self.life,
                            self._seq, device)
        home = self._known_home(group)
        if home is None or home == self.node:
            # sent when the home is known (home_changed), decided here when this node's lease
            # is sure again (the retry timer): the latest per kind and user
            self._hold(msg, now)
            return
        self._send_input(home, msg, now)

    def _hold(self, msg: wc.FloorInput, now: float) -> None:
        waiting = self._homeless.setdefault(msg.group, {})
        waiting.pop((msg.kind, msg.user), None)
        waiting[(msg.kind, msg.user)] = msg
        if self._retry_at is None:
            self._retry_at = now + HELD_RETRY
            self._due(self._retry_at)

    def _known_home(self, group: str) -> str | None:
        """``group``'s home: the ownership watch's, or the node whose news came under a newer
        term than the watch has named yet (a request sent to the watch's home would go to the
        dead one); None while neither names a live one (its home died, no claim yet: term 0)."""
        home, term = self._home_of(group)
        highest = self.fencing.highest.get(group, 0)
        if term >= 1 and term >= highest:
            return home
        news = self._news_home.get(group)
        if news is None or news[1] < highest or self.live is not None and (
                news[0] not in self.live):
            return None
        return news[0]

    def _send_homeless(self, group: str, now: float) -> None:
        """The inputs that waited for ``group``'s home, now that it is known (decided here
        when it is this node and its lease is sure; held again otherwise)."""
        home = self._known_home(group)
        if home is None:
            return
        for msg in self._homeless.pop(group, {}).values():
            if home == self.node:
                self._on_input(msg, now)
            else:
                self._send_input(home, msg, now)

    def _to_live(self, data: bytes) -> None:
        """``data`` to every other node alive now (none to a node known dead)."""
        live = self.live
        self._out.extend((n, data) for n in self.homes.nodes
                         if n != self.node and (live is None or n in live))

    def _send(self, node: str, msg: wc.Message) -> None:
        self._out.append((node, wc.encode(msg)))

    def _send_input(self, home: str, msg: wc.FloorInput, now: float) -> None:
        """A floor input to its group's home: by the plane where it reaches the home (a
        release or lost participant by the bus as well: nobody sends those again), else by
        the bus."""
        self._floor_to((home,), wc.encode(msg), msg.kind in _SURE_INPUTS, now)

    def _floor_to(self, nodes: Iterable[str], data: bytes, bus_too: bool, now: float) -> None:
        """A floor message (``data``) to ``nodes``, in their order: sealed once for the plane
        and sent by UDP to each node it reaches (``PeerPlane.route``), with a copy over the
        bus ``BUS_COPY_DELAY`` later when ``bus_too``; over the bus alone, at once, to every
        other node, or when it does not fit in a datagram."""
        self._floor_out = True
        plane = self.peers
        if plane is None or not plane.fits(data):
            self._out.extend((node, data) for node in nodes)
            return
        sealed = b""
        for node in nodes:
            addr = plane.route(node)
            if addr is not None:
                if not sealed:
                    sealed = plane.seal(data, CONTROL)
                self._plane_out.append((addr, sealed))
                if bus_too:
                    self._copies.append((node, data))
                    if self._copies_at is None:
                        self._copies_at = now + BUS_COPY_DELAY
                        self._due_in_passing(self._copies_at)
                continue
            self._out.append((node, data))

    def _forget_inputs(self, now: float) -> None:
        """The input order entries older than ``INPUT_ORDER_KEEP``: no copy comes that late."""
        order = self._input_order
        for key in [k for k, v in order.items() if now - v[3] > INPUT_ORDER_KEEP]:
            del order[key]

    def _news_copy(self, data: bytes) -> bool:
        """Is ``data`` a FloorNews this node applied already, or one older than it (by its
        order: "Order")? Counted as ``_in_order`` counts it, and not decoded: the bus's copy
        of news that came by the plane (two of them each floor change on each node with
        members, each ~7 us to decode whole for nothing)."""
        order = wc.news_order(data)
        if order is None:
            return False
        group, term, life, seq = order
        last = self._news_order.get(group)
        if last is None or seq < 1 or (term, life) != last[:2] or seq > last[2]:
            return False  # new news, or none of this version's: decoded whole
        self.out_of_order["news copies" if seq == last[2] else "news stale"] += 1
        return True

    def _in_order(self, msg: wc.FloorInput | wc.FloorNews, now: float) -> bool:
        """The order rule ("Order"): is ``msg`` newer than the latest of its kind applied here
        (a news of its group; an input of its group and user)? If so it becomes the latest;
        if not it is counted (stale, or the other path's copy) and must not be applied."""
        if msg.seq < 1 or msg.life < 1:
            raise ProtocolError(f"{type(msg).__name__} without its sender's life and sequence")
        if isinstance(msg, wc.FloorNews):
            last = self._news_order.get(msg.group)
            if last is None or (msg.term, msg.life) != last[:2] or msg.seq > last[2]:
                self._news_order[msg.group] = (msg.term, msg.life, msg.seq)
                return True
            self.out_of_order["news copies" if msg.seq == last[2] else "news stale"] += 1
            return False
        key = (msg.group, msg.user)
        seen = self._input_order.get(key)
        if seen is None or (msg.origin, msg.life) != seen[:2] or msg.seq > seen[2]:
            self._input_order[key] = (msg.origin, msg.life, msg.seq, now)
            return True
        self.out_of_order["inputs copies" if msg.seq == seen[2] else "inputs stale"] += 1
        return False

    def _send_presence_full(self) -> None:
        per_home: dict[str, list[str]] = {n: [] for n in self.homes.nodes}
        for g in self.core.state.groups.values():
            if g.joined:
                per_home.setdefault(self._home_of(g.name)[0], []).append(g.name)
        for home, groups in per_home.items():
            if home == self.node:
                continue
            self._send(home, wc.Presence(self.node, tuple(groups), (), True))

    def _send_peers(self) -> None:
        """This node's peer port to every other node, again with each Presence (a lost one,
        or a node that missed it, learns it within PRESENCE_EVERY)."""
        if self.peers is None:
            return
        for node in self.homes.nodes:
            if node != self.node and (self.live is None or node in self.live):
                self._send(node, self.peers.hello(node))

    def _ask_peers(self, plane: PeerPlane) -> None:
        """This node's Peer to each node whose datagrams came under an epoch not known here, if
        it is one of the cluster's and alive (its answer tells its epoch at once)."""
        asked, plane.ask = plane.ask, []
        live = self.live
        for node in dict.fromkeys(asked):
            if node in self.homes.nodes and (live is None or node in live):
                self._send(node, plane.hello(node))

    # --- messages from the bus ----------------------------------------------------------------

    def receive(self, data: bytes, now: float, plane: bool = False) -> None:
        """One node-to-node message (ProtocolError when it is not one); ``plane``: it came by
        UDP on the peer plane, which carries floor inputs and news alone."""
        if not plane and self._news_copy(data):
            self.flush(now)
            return
        msg = wc.decode(data)
        if plane and not isinstance(msg, (wc.FloorInput, wc.FloorNews)):
            raise ProtocolError(f"a {type(msg).__name__} on the peer plane, which carries floor "
                                "inputs and news alone")
        if isinstance(msg, wc.FloorInput):
            self._on_input(msg, now)
        elif isinstance(msg, wc.FloorNews):
            self._on_news(msg, now)
        elif isinstance(msg, wc.Members):
            self._on_members(msg, now)
        elif isinstance(msg, wc.Receipts):
            if not len(msg.users) == len(msg.received) == len(msg.expected):
                raise ProtocolError("Receipts: as many users, received and expected counts")
            self.core.delivery.on_remote_receipts(
                msg.group, msg.burst_id,
                [m.Receipt(*r) for r in zip(msg.users, msg.received, msg.expected,
                                            strict=True)], now)
        elif isinstance(msg, wc.Login):
            if len(msg.users) != len(msg.devices):
                raise ProtocolError("Login: as many users as devices")
            if msg.node != self.node:
                on_device = self.core.state.sessions.on_device
                for user, device in zip(msg.users, msg.devices):
                    old = on_device(user, device)
                    if old is not None:
                        self.core.directory.end_session(old, "replaced", now, moved=True)
        elif isinstance(msg, wc.Call):
            self._on_call(msg, now)
        elif isinstance(msg, wc.CallEnd):
            if (msg.home != self.node and self._calls.get(msg.group) == msg.home
                    and self._id_of(msg.group) == msg.group_id):
                self.core.directory.end_call(msg.group, now)
        elif isinstance(msg, wc.Peer):
            # a Peer of an earlier life: the peer plane keeps the epoch it has too
            if not self._life_seen(msg.node, msg.epoch, now):
                return
            if self.peers is not None and self.peers.on_peer(msg):
                self._send(msg.node, self.peers.hello(msg.node))
        elif isinstance(msg, wc.Page):
            self._on_page(msg, now)
        elif isinstance(msg, wc.PageReceipts):
            self._on_page_receipts(msg, now)
        elif isinstance(msg, wc.LinkWindow):
            self.core.feedback.on_remote_counts(
                msg.group, msg.burst_id, LinkCounts(msg.bins, msg.listeners, msg.frames,
                                                    msg.lost, msg.runs, msg.late, msg.worst),
                now)
        else:
            self._on_presence(msg, now)
        self.flush(now)

    def receive_voice(self, data: bytes, now: float) -> tuple[Addr, ...]:
        """A frame another node's relay accepted: this node's joined sessions to send it to,
        while the mirror (or own) floor says that burst is the current one."""
        group_id, sender, burst_id, _ = peek_frame(data)
        g = self.core.state.by_id.get(group_id)
        if g is None or not g.joined:
            return ()
        f = self.core.floors.floor(g.name)
        if f.holder is None or f.burst_id != burst_id:
            self.core.relay.voice_refused += 1
            return ()
        if not self.elsewhere(g.name):  # the home hears its holder directly: T1
            f.voice(f.holder, burst_id, now)
        key = _REMOTE_TARGETS + sender
        t = g.targets.get(key)
        if t is None:
            t = g.targets[key] = tuple(o.addr for sid, o in g.joined.items()
                                       if sid not in g.mcast_members)
        return t

    def learn_home(self, group: str, term: int) -> None:
        """A claim seen by the ownership watch: news of older terms is refused from now on."""
        if term >= 1:
            self.fencing.learn_owner(Stamp(group, term))

    def home_changed(self, group: str, now: float) -> None:
        """``group``'s home changed (a claim, a loss; ``HomeMap`` says the new one). A node that
        became the home of a floor it mirrored takes it over and tells every node (it does not
        know the relay set yet: each node's next Presence trims it); a node that lost it
        mirrors its floor until the new home's news; every other node tells the new home
        whether it has members."""
        g = self.core.state.groups.get(group)
        if g is None or g.private:
            return
        floors = self.core.floors
        term = self._home_of(group)[1]
        newer = term > self._term.get(group, 0)
        news = self._news_home.get(group)
        if news is not None and term >= news[1]:
            # the watch caught up. Until then a group it says vanished keeps the news' home:
            # the watch tells a key's creation before its deletion, so that was an older key's
            del self._news_home[group]
        if not self.elsewhere(group):
            if floors.is_mirror(group) or newer and group in self._term:
                # a claim after another term (a home that died or lapsed, this node's own
                # included): that term's grant and queue are void, the new term starts idle,
                # and every node is told so at once, even a take-over with nothing to end (a
                # mirror no news reached) or to tell (no member here). A home never keeps a
                # mirror, whose burst nobody times: also when its own term comes back after a
                # moment without a known home
                self._relay[group] = set(self.homes.nodes)
                for node in self.homes.nodes:  # each on a lease from now: the dead one ends
                    self._heard.setdefault(node, now)
                if not g.joined:
                    self._relay[group].discard(self.node)
                log = floors.log
                held = [ev for ev in log if ev.group == group] if log else []
                events = floors.take_over(group, now)
                if log:  # told below under the new term, with what the old one left unsent
                    log[:] = [ev for ev in log if ev.group != group]
                self.core.floor_control.floor_events(events, now)
                self._publish(group, [*held, *events], "", 0, now)
            self._term[group] = max(term, self._term.get(group, 0))
            self._voided.pop(group, None)
            self._send_homeless(group, now)
            return
        if newer and term >= 1:
            self._void(group, term, now)
        if not floors.is_mirror(group):
            f = floors.floor(group)
            floors.follow(group, f.state, f.holder, f.burst_id, f.holder_priority, f.queue)
            self._relay.pop(group, None)
        self.members_changed(g, now)
        if g.online:  # the new home learns who is online here
            self._send(self._home_of(group)[0],
                       wc.Members(group, self.node, 0, "", tuple(g.online), (), True))
        self._send_homeless(group, now)

    def _defer_timers(self, group: str, now: float) -> float | None:
        """A floor timer of a group homed here comes due while the lease is unsure, or while
        inputs held then wait for their retry: it waits (a silence timer would end a burst
        whose ALIVEs, or whose release, are held), until after the held inputs' next retry.
        One that fires more than ``STALL`` late waits as long again, and again while the wait
        fires late too (at most ``MAX_STALL_WAIT`` in all)."""
        if self.elsewhere(group):
            return None
        due = self.core.floors.floor(group).get_timer()
        if not self._may_act(group, now):
            self._stalled[group] = (due or 0.0, _NEVER, _NEVER)  # waited here already
            return now + 2 * HELD_RETRY
        if group in self._homeless and self._retry_at is not None:
            # sure again, but the inputs held meanwhile are decided at the retry: before this
            return max(now, self._retry_at) + HELD_RETRY / 2
        if due is not None and now - due > STALL:
            # this node's loop stalled past the deadline: what reached it meanwhile (ALIVEs,
            # voice, a release) waits in its sockets and is read after its timers. Judged once
            # that had as long to be read as the stall lasted, and again while the loop still
            # lags (the wait itself fired late: the backlog is still being read)
            seen = self._stalled.get(group)
            if seen is None or seen[0] != due:
                until = now + min(now - due, MAX_STALL_WAIT)
                self._stalled[group] = (due, until, now + MAX_STALL_WAIT)
                return until
            if now - seen[1] > STALL and now < seen[2]:
                until = min(now + (now - seen[1]), seen[2])
                self._stalled[group] = (due, until, seen[2])
                return until
        self._stalled.pop(group, None)
        return None

    def _void(self, group: str, term: int, now: float) -> None:
        """This node learned of ``term``, newer than its copy of ``group``'s floor, which
        another node decides: what the older term granted or queued is void. Its own clients
        are told at once (the talker revoked with cause FAILOVER), not when, or if, the new
        home's news comes: the new home may never have mirrored that burst."""
        self._term[group] = term
        floors = self.core.floors
        f = floors.floor(group)
        if f.holder is None and not f.queue:
            return
        if not floors.is_mirror(group):  # this node was the home: no timers of its own now
            floors.follow(group, f.state, f.holder, f.burst_id, f.holder_priority, f.queue)
        if f.holder is not None:
            self._voided[group] = (term, f.burst_id)
        self.core.floor_control.floor_events(floors.void(group, now), now)

    def _on_input(self, msg: wc.FloorInput, now: float) -> None:
        g = self.core.state.groups.get(msg.group)
        if g is None:
            return
        if self.elsewhere(msg.group, now):
            # not ours, no longer, not yet, or our lease is unsure: never dropped (a release is
            # sent once). Decided here once the lease is sure again, or handed to the home this
            # node knows at the next retry (not at once: two nodes whose watches disagree for a
            # moment would bounce it between them at the bus's speed)
            self._hold(msg, now)
            return
        if msg.origin != self.node and not self._in_order(msg, now):
            return
        floors = self.core.floors
        self.flush(now)  # earlier news goes out first, without this input's origin
        user = msg.user
        forwarded = msg.kind is wc.InputKind.REQUEST and msg.origin != self.node
        # the user's device here holds the floor, which the asking node did not know yet
        busy = forwarded and self.core.state.held_by_another_device(g, user, ASKED_ELSEWHERE,
                                                                    msg.device)
        if forwarded and not busy:
            g.requesters[user] = ASKED_ELSEWHERE  # the user's devices here are not told of it
            g.asked_from[user] = msg.device
        if msg.kind in (wc.InputKind.RELEASE, wc.InputKind.LOST) and msg.device and (
                self.core.state.floor_device(g, user) not in ("", msg.device)):
            # another device of the user gave up: one its node forwarded and the home told
            # busy, which that node had not heard yet; the user's floor is the holder's device's
            return
        events: list[fl.FloorEvent]
        if busy:
            events = [fl.Denied(g.name, user, m.DenyCause.RETRY_LATER)]
        elif user not in floors.floor(g.name).members:
            events = ([fl.Denied(g.name, user, m.DenyCause.NOT_MEMBER)]
                      if msg.kind is wc.InputKind.REQUEST else [])
        elif msg.kind is wc.InputKind.REQUEST:
            events = floors.request(g.name, user, m.Priority(msg.priority), now)
        elif msg.kind is wc.InputKind.RELEASE:
            events = floors.release(g.name, user, now, msg.burst_id)
        elif msg.kind is wc.InputKind.LOST:
            events = floors.participant_lost(g.name, user, now)
        else:
            floors.voice(g.name, user, msg.burst_id, now)
            return
        if floors.log is not None:
            floors.log.clear()  # published below, with the origin it answers
        pending = (self._pending.pop(msg.ref, None) if msg.ref and msg.origin == self.node
                   else None)  # this node's own client's request, held while the lease was unsure
        s = self.core.sessions.by_id.get(pending.session_id) if pending is not None else None
        if pending is not None and s is not None and s.addr == pending.addr:
            self.core.floor_control.answer_request(s, pending.txn, g, events, now)
        else:
            self.core.floor_control.floor_events(events, now)  # this node's own clients
        self._publish(g.name, events, msg.origin if msg.ref else "", msg.ref, now)

    # --- one-to-one calls across nodes ---------------------------------------------------------

    def call_made(self, g: GroupEntry, caller: str, callee: str, now: float) -> None:
        """A call made here is homed here; either way every other live node rings ``callee``
        (calls are rare: one message per node, not a search for where the callee is)."""
        home = self._calls.setdefault(g.name, self.node)
        life = self._call_lives.setdefault(g.name, self.life)
        self._to_live(wc.encode(wc.Call(g.name, g.group_id, home, caller, callee, self.node,
                                        life)))

    def call_over(self, g: GroupEntry) -> bool:
        """Only the home ends a call: when no other node has anyone in it (its relay set)."""
        home = self._calls.get(g.name, self.node)
        return home == self.node and not self._relay.get(g.name, set()) - {self.node}

    def call_open(self, g: GroupEntry) -> bool:
        """A copy of a call lasts as long as the call (its home removes it); at the home, the
        call is open while another node has someone in it."""
        home = self._calls.get(g.name)
        if home is None:
            return False
        return home != self.node or bool(self._relay.get(g.name, set()) - {self.node})

    def call_removed(self, g: GroupEntry, now: float) -> None:
        home = self._calls.pop(g.name, None)
        self._call_lives.pop(g.name, None)
        for per_group in (self._relay, self._known_relay, self._alive, self._homeless,
                          self._term, self._voided, self._news_home, self._stalled,
                          self._news_order):
            per_group.pop(g.name, None)
        if home != self.node:
            return
        self._to_live(wc.encode(wc.CallEnd(g.name, g.group_id, self.node)))

    # --- text pages across nodes ---------------------------------------------------------------

    def page_stored(self, page: PageEntry, now: float) -> None:
        """Stored in the shared store here: every other live node delivers it to its devices
        (a node down now reads it from the store when it starts)."""
        if not self.shared_pages:
            return
        self._to_live(wc.encode(wc.Page(
            self.node, page.page_id, page.group, page.sender, page.to, page.body, page.epoch,
            page.urgent, page.sent_ms, tuple(sorted(page.recipients)))))

    def page_receipt(self, page_id: int, user: str, device: str, read: bool,
                     now: float) -> None:
        if not self.shared_pages:
            return
        self._page_marks.append((page_id, user, device, read))
        if self._marks_at is None:
            self._marks_at = now + PAGE_MARKS_EVERY
            self._due_in_passing(self._marks_at)

    def _send_page_marks(self) -> None:
        marks, self._page_marks, self._marks_at = self._page_marks, [], None
        for i in range(0, len(marks), PAGE_MARKS_PER_MESSAGE):
            ids, users, devices, read = zip(*marks[i:i + PAGE_MARKS_PER_MESSAGE], strict=True)
            self._to_live(wc.encode(wc.PageReceipts(self.node, ids, users, devices,
                                                    tuple(map(int, read)))))

    def _on_page(self, msg: wc.Page, now: float) -> None:
        if msg.node not in self.homes.nodes or msg.node == self.node:
            raise ProtocolError(f"Page: from '{msg.node}', not another node of the cluster")
        if bool(msg.group) == bool(msg.to) or not msg.recipients:
            raise ProtocolError("Page: to a group or to a user, with recipients")
        self.core.paging.remote_page(PageEntry(
            msg.page_id, msg.group, msg.sender, msg.to, msg.body, msg.epoch, msg.urgent,
            msg.sent_ms, frozenset(msg.recipients)), now)

    def _on_page_receipts(self, msg: wc.PageReceipts, now: float) -> None:
        if not len(msg.page_ids) == len(msg.users) == len(msg.devices) == len(msg.read):
            raise ProtocolError("PageReceipts: as many pages, users, devices and kinds")
        if msg.node != self.node:
            self.core.paging.remote_receipts(
                [(p, u, d, bool(r)) for p, u, d, r in zip(msg.page_ids, msg.users, msg.devices,
                                                          msg.read, strict=True)], now)

    def _id_of(self, group: str) -> int:
        g = self.core.state.groups.get(group)
        return g.group_id if g is not None else -1

    def _on_call(self, msg: wc.Call, now: float) -> None:
        """Another node's call rings ``callee`` here: the copy is made if new (its home and id
        as the message says), and the callee's devices here ring at once.

        Two users calling each other from two nodes at once (within a bus delivery) make two
        calls of one name, each on its caller's node, and each node gets both ``Call``
        messages. Every node keeps the one of the lower id, so all pick the same with no
        message more: the other gives way where it was made or copied, silently (no
        ``CallEnd``: each node drops it on its own), and the sessions that were in it are rung
        into the one kept, as a second call of one pair is answered on one server (both sides
        rung into one call)."""
        if msg.home not in self.homes.nodes or msg.home == self.node and (
                self._calls.get(msg.group) != self.node):
            return  # a call homed here that ended meanwhile, or a home we do not know
        try:
            members = call_members(msg.group)
        except ValidationError as exc:
            raise ProtocolError(f"Call: {exc}") from None
        if {msg.caller, msg.callee} != set(members):
            raise ProtocolError("Call: its caller and callee are not the call's two members")
        if msg.life < 1 or msg.node not in self.homes.nodes:
            raise ProtocolError("Call without its home's life, or from no node of the cluster")
        first, end = call_id_slice(msg.home, self.homes.nodes)
        if not first <= msg.group_id < end:
            raise ProtocolError(f"Call: id {msg.group_id} is not {msg.home}'s to give")
        if msg.node == msg.home and not self._life_seen(msg.home, msg.life, now):
            self.refused_calls += 1  # made by an earlier life of its home, delivered late
            return
        if msg.node != msg.home and self._lives.get(msg.home, msg.life) != msg.life:
            self.refused_calls += 1  # a callback in a copy of a call its home's restart ended
            return
        directory = self.core.directory
        g = self.core.state.groups.get(msg.group)
        moved: list[Session] = []
        if g is not None and not g.private:
            self.refused_calls += 1
            return
        if g is not None and g.group_id != msg.group_id:
            crossing = msg.home != self._calls.get(g.name)
            self.crossed_calls += crossing
            # the lower id, or its home's newer call of this pair: the call here gives way
            # (else it stands, and the callee is rung into it below)
            if not crossing or msg.group_id < g.group_id:
                moved = list(g.joined.values())
                self._calls.pop(g.name, None)  # dropped without a CallEnd
                directory.remove_group(g.name, now)
                g = None
        if g is None:
            old = self.core.state.by_id.get(msg.group_id)
            if old is not None:
                if not old.private or self._calls.get(old.name) != msg.home:
                    raise ProtocolError(f"Call: id {msg.group_id} is in use here")
                # that home restarted and gives out ids again: its call from before is over
                directory.end_call(old.name, now)
            if any(u not in self.core.state.users for u in members):
                return  # a user removed meanwhile (the directory follows): no call
            g = directory.make_call(msg.group, msg.group_id)
            self._calls[msg.group] = msg.home
            self._call_lives[msg.group] = msg.life
        sessions = self.core.state.sessions
        for s in sessions.devices(msg.callee):
            directory.ring(g, s, msg.caller, now)
        for s in moved:
            if sessions.by_id.get(s.session_id) is s and s.session_id not in g.joined:
                directory.ring(g, s, members[1] if s.user == members[0] else members[0], now)

    def _life_seen(self, node: str, life: int, now: float) -> bool:
        """``node`` is in ``life`` (its Peer's epoch, a Call it made): the copies of its
        calls made in another life are over. A node restarted within its lease's grace is not
        taken for dead, and its calls from before died with its process: their copies here end
        at once (the sessions in them told ``CALL_LOST``), not when an id is given again.
        False, and nothing changed, for an earlier life of ``node`` than the one known."""
        known = self._lives.get(node)
        if node == self.node or known == life:
            return True
        past = self._past_lives.setdefault(node, deque(maxlen=PAST_LIVES_KEPT))
        if life in past:
            return False
        if known is not None:
            past.append(known)
        self._lives[node] = life
        for group in [c for c, home in self._calls.items()
                      if home == node and self._call_lives.get(c, life) != life]:
            self.core.directory.end_call(group, now)
        return True

    def _on_presence(self, msg: wc.Presence, now: float) -> None:
        if msg.node not in self.homes.nodes or msg.node == self.node:
            return
        self._heard[msg.node] = now
        if msg.full:  # a walk of every group homed here: only for the whole list
            online = set(msg.online)
            for name in [n for n, relay in self._relay.items()
                         if msg.node in relay and n not in online]:
                self._set_relay(name, msg.node, False, now)
        for name in msg.online:
            if self._set_relay(name, msg.node, True, now) and msg.full:
                # a node the home did not know had members (the home restarted, or a message
                # was lost): it is shown the home's roster of itself, and corrects it
                known = tuple(self._roster(self.core.state.groups[name]).get(msg.node, ()))
                self._send(msg.node, wc.Members(name, msg.node, self._home_of(name)[1],
                                                self.node, known, (), True))
        for name in msg.offline:
            self._set_relay(name, msg.node, False, now)

    def _set_relay(self, group: str, node: str, online: bool, now: float) -> bool:
        """A node gained or lost its members in ``group``: the relay set changes, and the nodes
        in it (the newcomer above all: its mirror starts from this) are told; a newcomer gets
        the roster of every other node, a node that left takes its users offline. True when
        the set changed."""
        g = self.core.state.groups.get(group)
        if g is None or self.elsewhere(group):
            return False
        relay = self._relay.setdefault(group, set())
        if (node in relay) == online:
            return False
        (relay.add if online else relay.discard)(node)
        self._publish(group, [], "", 0, now)
        if node == self.node:
            return True
        if g.private and not online and not g.joined and self.call_over(g):
            self.core.directory.remove_group(group, now)  # its last member elsewhere left
            return True
        term = self._home_of(group)[1]
        if online:
            rosters = [(self.node, tuple(g.online))]
            rosters += [(n, tuple(users)) for n, users in self._roster(g).items()
                        if n != node and users]
            for n, users in rosters:
                if users:
                    self._send(node, wc.Members(group, n, term, self.node, users, (), True))
        elif self._roster(g).get(node):
            self._set_remote(g, node, (), True, now)
            self._forward_members(group, node, (), (), True, (node,), now)
        return True

    def _expire_nodes(self, now: float) -> None:
        """The home's lease on each node: one whose Presence stopped leaves every relay set."""
        for node in [n for n, t in self._heard.items() if now - t > NODE_LEASE]:
            self.node_gone(node, now)

    def node_gone(self, node: str, now: float, relays: bool = True) -> None:
        """``node`` is dead (its etcd lease went, or its Presence stopped): the calls it was
        the home of end here, their sessions told (a call does not fail over); with ``relays``
        it also leaves every relay set of the groups homed here at once (the node adapter
        passes False and leaves them a slice a turn: :meth:`leave_relays`)."""
        self._heard.pop(node, None)
        if node == self.node:
            return
        if self.peers is not None:  # until it tells its peer port again: voice by the bus
            self.peers.forget(node)
        for group in [c for c, home in self._calls.items() if home == node]:
            self.core.directory.end_call(group, now)
        if relays:
            self.leave_relays(node, self.relayed_by(node), now)

    def leave_relays(self, node: str, groups: Iterable[str], now: float) -> None:
        """``node`` leaves the relay sets of ``groups`` homed here: its users go offline there
        on every node. A dead node is in the relay set of nearly every group homed here (2,500
        a node at 100,000 clients), each a roster change told to its members and to the other
        nodes: the adapter takes :meth:`relayed_by` once and spreads it over turns of its loop."""
        for group in groups:
            relay = self._relay.get(group)
            if relay is not None and node in relay:
                self._set_relay(group, node, False, now)

    def relayed_by(self, node: str) -> list[str]:
        """The groups whose relay set, as this node keeps it, holds ``node``."""
        return [group for group, relay in self._relay.items() if node in relay]

    # --- presence across nodes ------------------------------------------------------------

    def _on_members(self, msg: wc.Members, now: float) -> None:
        g = self.core.state.groups.get(msg.group)
        if g is None or msg.node not in self.homes.nodes:
            return
        if not msg.home:  # an access node's change, to this node as the group's home
            if self.elsewhere(msg.group) or msg.node == self.node:
                return
            online, offline = self._set_remote(g, msg.node, msg.online, msg.full, now,
                                               msg.offline)
            if msg.full or online or offline:
                if msg.full:
                    online, offline = msg.online, ()
                self._forward_members(g.name, msg.node, online, offline, msg.full, (), now)
            return
        if (msg.home == self.node or msg.term < 1
                or self.fencing.check(Stamp(msg.group, msg.term)) is Verdict.REFUSED
                or g.private and self._calls.get(g.name) != msg.home):
            self.refused_news += 1
            return
        if msg.node == self.node:  # the home's roster of this node: corrected if wrong
            if msg.full and set(msg.online) != set(g.online):
                self._send(msg.home, wc.Members(g.name, self.node, 0, "", tuple(g.online), (),
                                                True))
            return
        self._set_remote(g, msg.node, msg.online, msg.full, now, msg.offline)

    def _forward_members(self, group: str, node: str, online: tuple[str, ...],
                         offline: tuple[str, ...], full: bool, skip: tuple[str, ...],
                         now: float) -> None:
        """The home tells the other nodes with members of ``group`` who came or went on
        ``node`` (never that node itself, nor ``skip``)."""
        term = self._home_of(group)[1]
        if term < 1 or not self._may_act(group, now):
            return
        to = self._relay.get(group, set()) - {self.node, node, *skip}
        if not to:
            return
        data = wc.encode(wc.Members(group, node, term, self.node, online, offline, full))
        self._out.extend((n, data) for n in sorted(to))

    def _roster(self, g: GroupEntry) -> dict[str, set[str]]:
        """The users of ``g`` online on each other node; none for a group made again under the
        name of one deleted (its members online were the old group's)."""
        if self._remote_id.get(g.name) != g.group_id:
            self._remote_id[g.name] = g.group_id
            self._remote[g.name] = {}
        return self._remote[g.name]

    def _set_remote(self, g: GroupEntry, node: str, online: Iterable[str], full: bool,
                    now: float, offline: Iterable[str] = ()
                    ) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """Who of ``g`` is online on ``node`` (another node): ``online`` came (``full``: they
        alone are), ``offline`` went. Members whose presence on any node changed are news to
        this node's members. Returns the users that came and went."""
        users = self._roster(g).setdefault(node, set())
        came = [u for u in online if u not in users]
        went = [u for u in offline if u in users]
        if full:
            keep = set(online)
            went = [u for u in users if u not in keep]
        remote = g.remote
        directory = self.core.directory
        for u in came:
            users.add(u)
            before = g.is_online(u)
            remote[u] = remote.get(u, 0) + 1
            if not before:
                directory.presence_changed(g, u, now)
        for u in went:
            users.discard(u)
            left = remote.get(u, 1) - 1
            if left:
                remote[u] = left
            else:
                remote.pop(u, None)
                if u not in g.online:
                    directory.presence_changed(g, u, now)
        if not users:
            del self._remote[g.name][node]
        return tuple(came), tuple(went)

    def _on_news(self, msg: wc.FloorNews, now: float) -> None:
        g = self.core.state.groups.get(msg.group)
        if g is None:
            return
        if (msg.term < 1 or msg.home == self.node
                or self.fencing.check(Stamp(msg.group, msg.term)) is Verdict.REFUSED
                or g.private and self._calls.get(g.name) != msg.home):
            # the last: news of a call that gave way to one of another home ("_on_call")
            self.refused_news += 1
            return
        if not self._in_order(msg, now):
            return
        holder = msg.holder or None
        state = _STATES.get(msg.state)
        priority = _PRIORITIES.get(msg.holder_priority) if holder is not None else None
        if state is None or holder is not None and priority is None:
            raise ProtocolError(f"floor news from the bus: state {msg.state!r}, holder's "
                                f"priority {msg.holder_priority!r}")
        try:
            events = [from_wire(g.name, e) for e in msg.events]
        except ValueError as exc:
            raise ProtocolError(f"floor news from the bus: {exc}") from None
        newer = msg.term > self._term.get(g.name, 0)
        if newer:  # the first news of a newer home
            f = self.core.floors.floor(g.name)
            ended = {e.burst_id for e in events if isinstance(e, fl.BurstEnded)}
            if f.holder is not None and f.burst_id not in ended or f.queue:
                self._void(g.name, msg.term, now)  # what the new home's news does not end
            self._term[g.name] = msg.term
            if msg.term > self._home_of(g.name)[1]:  # its claim beat this node's watch
                self._news_home[g.name] = (msg.home, msg.term)
        voided = self._voided.get(g.name)
        if voided is not None and msg.term >= voided[0]:
            # this node ended that burst itself on learning of the new term: told once
            del self._voided[g.name]
            events = [e for e in events if not (
                isinstance(e, (fl.BurstEnded, fl.Idle, fl.Revoked)) and e.burst_id == voided[1])]
        queued = self.core.floors.floor(g.name).queue
        self.core.floors.follow(g.name, state, holder, msg.burst_id, priority, msg.queue)
        # without this node: what voice_nodes gives for each frame, left out once a news
        relay = msg.relay
        self._known_relay[g.name] = (relay if self.node not in relay
                                     else tuple(n for n in relay if n != self.node))
        if msg.origin != self.node:
            # a user queued, or granted from outside the queue, asked just now: on another
            # node (an answer to this node's request names it as origin)
            for e in events:
                if isinstance(e, fl.Queued) or isinstance(e, fl.Granted) and (
                        e.user not in queued):
                    g.requesters[e.user] = ASKED_ELSEWHERE
                    g.asked_from.pop(e.user, None)  # the news names no device: the home knows
        pending = self._pending.pop(msg.ref, None) if msg.origin == self.node else None
        s = (self.core.sessions.by_id.get(pending.session_id) if pending is not None else None)
        if pending is not None and s is not None and s.addr == pending.addr:
            self.core.floor_control.answer_request(s, pending.txn, g, events, now)
        elif events:
            self.core.floor_control.floor_events(events, now)
        if newer:  # the inputs held for want of a home go to this one now
            self._send_homeless(g.name, now)

    # --- the home's own news ------------------------------------------------------------------

    def flush(self, now: float) -> None:
        """Publish the floor events of this node's groups the core produced since the last call
        (its own clients' requests, its timers, its sessions lost), and the logins since then
        (one Login message to each other live node), and a ``Peer`` to each node the plane
        asks about (:attr:`PeerPlane.ask`); and what of the timers that tolerate lateness is
        due (``TIMER_SLACK``): a turn the node runs anyway spares the loop their wake-ups."""
        if self._passing_at is not None and now >= self._passing_at:
            self._in_passing(now)
        if self.peers is not None and self.peers.ask:
            self._ask_peers(self.peers)
        if self._logins:
            users, devices = zip(*self._logins)
            self._logins.clear()
            self._to_live(wc.encode(wc.Login(self.node, users, devices)))
        log = self.core.floors.log
        if not log:
            return
        batch: dict[str, list[fl.FloorEvent]] = {}
        for ev in log:
            batch.setdefault(ev.group, []).append(ev)
        log.clear()
        for group, events in batch.items():
            if group in self.core.state.groups and not self.elsewhere(group):
                if not self._may_act(group, now):
                    # decided while the lease was unsure (its timers): told when it is sure
                    # again, or under the next term if another claim comes first
                    log.extend(events)
                    if self._retry_at is None:
                        self._retry_at = now + HELD_RETRY
                        self._due(self._retry_at)
                    continue
                self._publish(group, events, "", 0, now)

    def _publish(self, group: str, events: Sequence[fl.FloorEvent], origin: str,
                 ref: int, now: float) -> None:
        relay = self._relay.get(group, set())
        to = set(relay)
        if origin:
            to.add(origin)
        to.discard(self.node)
        if not to:  # every member here: the news is for nobody (asked first: the usual case)
            return
        term = self._home_of(group)[1]
        if term < 1 or not self._may_act(group, now):
            return  # a home whose lease may be gone stamps nothing (cluster_fencing)
        f = self.core.floors.floor(group)
        self._seq += 1
        news = wc.FloorNews(group, term, self.node, origin, ref, tuple(map(to_wire, events)),
                            f.state.value, f.holder or "", f.burst_id,
                            int(f.holder_priority or m.Priority.NORMAL), f.queue,
                            tuple(sorted(relay)), self.life, self._seq)
        # the node whose client waits for this answer first (a write's messages go in order),
        # and the other nodes' copies only update their mirrors; by the plane to each node it
        # reaches, and by the bus to every node ("Order")
        order = sorted(to)
        if origin in to and order[0] != origin:
            order.remove(origin)
            order.insert(0, origin)
        self._floor_to(order, wc.encode(news), True, now)
