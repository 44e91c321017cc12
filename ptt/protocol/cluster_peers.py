"""The peer plane between cluster nodes: who may be sent voice and floor messages by UDP, and
which peer datagrams a node takes.

Each node has a peer port (``ptt.cluster.config``: ``peer``) and an *epoch*, a number its
adapter picks at each start. It tells every other node both over the bus
(``ptt.wire.cluster.Peer``, with the epoch it knows of the node it tells, ``seen``, and its
key's check number), at start and with every periodic Presence, and answers a ``Peer`` that
shows a new life of its sender or that its sender does not know this node's current epoch.
So on a start or restart of either end, two messages each way settle it::

    a -> b  Peer(a, epoch A, seen 0)      b learns A; b's answer:
    b -> a  Peer(b, epoch B, seen A)      a learns B, and that b takes its datagrams: voice
                                          a -> b goes by UDP from now on; a's answer:
    a -> b  Peer(a, epoch A, seen B)      likewise for b -> a

A node sends a voice frame or a floor message by UDP (:meth:`PeerPlane.route`) only to a node
that said it knows this node's current epoch and holds the same peer key (equal
``key_check``); to any other node (not told yet, a restarted one that has not answered, a key
that differs) it goes over the bus, so nothing is lost while the plane settles and
nothing is sent where it would be refused. Which floor messages go by UDP, and the order rule
that makes their path not matter, are the routing's (``ptt.protocol.cluster_routing``,
"Order").

Receiving (:meth:`PeerPlane.accept`): the tag first (``ptt.wire.peer``: a datagram not made
with the cluster's key is *forged*), then the sender's epoch must be the one it announced (an
*unknown* sender or a datagram of an earlier life, recorded and sent again, is refused), then
its counter must be new in that epoch's replay window (RFC 4303's, ``ptt.crypto.replay``:
a *replayed* datagram is refused) and the payload what its kind says (a voice frame, or not
one). Every refusal is counted by reason (:attr:`PeerPlane.refused`), never raised. An
authentic datagram of a node whose epoch this node does not know (it took that node for dead
and forgot it, while the sender still takes it for knowing it) puts the sender in
:attr:`PeerPlane.ask`: the routing sends it a ``Peer`` (with ``seen`` 0), which it answers at
once, so the two settle in three bus messages, not at the sender's next periodic ``Peer``
(up to ``PRESENCE_EVERY``, 2 s, of its datagrams refused); at most once per ``ASK_EVERY`` per
node, so recorded datagrams sent again cannot make this node chatty (forged ones never get
this far). An accepted
voice frame goes on to the routing's mirror check (``ClusterRouting.receive_voice``: "that
burst is current") like a frame from the bus, a floor message to ``ClusterRouting.receive``.

Sans-I/O: the adapter (``ptt.cluster.node``) owns the socket, picks the epoch and derives the
key.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ptt.crypto.replay import ReplayWindow
from ptt.errors import ProtocolError
from ptt.protocol.session import Addr
from ptt.wire import cluster as wc
from ptt.wire.peer import (
    CONTROL,
    VOICE,
    ForgedDatagram,
    PeerDatagram,
    fits,
    key_check,
    open_datagram,
    seal,
)
from ptt.wire.voice import HEADER_SIZE, is_voice

__all__ = ["ASK_EVERY", "REFUSALS", "PeerPlane"]

# why a peer datagram was refused: PeerPlane.refused's keys
REFUSALS = ("forged", "malformed", "unknown", "replayed")
# counters a receiver remembers per sender's epoch: datagrams reordered by more than this are
# refused as too old (voice between two nodes on one network is reordered by a few at most)
WINDOW = 1024
# s: a node whose datagrams come under an epoch not known here is asked for its Peer at most
# this often (the exchange takes a few ms; recorded datagrams replayed ask no more than this)
ASK_EVERY = 0.5


@dataclass
class _Peer:
    addr: Addr
    epoch: int
    knows: bool  # it said it knows this node's current epoch, and holds the same key
    window: ReplayWindow = field(default_factory=lambda: ReplayWindow(WINDOW))


class PeerPlane:
    """``PeerPlane(node, key, epoch, addr)``: :meth:`hello` the ``Peer`` to tell a node,
    :meth:`on_peer` one received (True: answer it with :meth:`hello`), :meth:`route` and
    :meth:`seal` to send a frame, :meth:`accept` a datagram received."""

    def __init__(self, node: str, key: bytes, epoch: int, addr: Addr) -> None:
        if not 0 < epoch < 2**63:
            raise ProtocolError("a peer epoch is a number from 1 to 2**63 - 1")
        self.node = node
        self.key = key
        self.epoch = epoch
        self.addr = addr
        self.check = key_check(key)
        self._counter = 0
        self._peers: dict[str, _Peer] = {}
        self.sealed = 0
        self.accepted = 0
        self.refused = dict.fromkeys(REFUSALS, 0)
        self.last_refusal = ""  # the reason of the latest refusal (one of REFUSALS)
        self.key_differs: set[str] = set()  # nodes whose key check is not ours (said once each)
        # nodes to send a Peer now (their datagrams came under an epoch not known here), and
        # when each was last put there
        self.ask: list[str] = []
        self._asked: dict[str, float] = {}

    def hello(self, node: str) -> wc.Peer:
        """What to tell ``node`` of this node's peer port."""
        p = self._peers.get(node)
        return wc.Peer(self.node, self.addr[0], self.addr[1], self.epoch,
                       p.epoch if p is not None else 0, self.check)

    def on_peer(self, msg: wc.Peer) -> bool:
        """Another node's ``Peer``: its address and epoch learned. True when it must be
        answered (a new life of it, or it does not know this node's epoch yet)."""
        if msg.node == self.node:
            return False
        if not 0 < msg.port < 65536 or not msg.host or msg.epoch == 0:
            raise ProtocolError(f"Peer from {msg.node}: bad address or epoch")
        p = self._peers.get(msg.node)
        new = p is None or p.epoch != msg.epoch
        if p is None or new:  # a new life: its counters start again
            p = self._peers[msg.node] = _Peer((msg.host, msg.port), msg.epoch, False)
        p.addr = (msg.host, msg.port)
        same_key = msg.key_check == self.check
        if not same_key:
            self.key_differs.add(msg.node)
        else:
            self.key_differs.discard(msg.node)
        p.knows = same_key and msg.seen == self.epoch
        return new or (same_key and not p.knows)

    def route(self, node: str) -> Addr | None:
        """Where to send ``node`` a voice frame or a floor message by UDP; None: over the bus."""
        p = self._peers.get(node)
        return p.addr if p is not None and p.knows else None

    def fits(self, payload: bytes) -> bool:
        """Does ``payload`` fit in one of this node's datagrams? (else: over the bus)"""
        return fits(self.node, payload)

    def seal(self, frame: bytes, kind: int = VOICE) -> bytes:
        """``frame`` (a voice frame, or a cluster message with ``kind`` CONTROL) as a peer
        datagram of this node (one counter, for every node it goes to)."""
        self._counter += 1
        self.sealed += 1
        return seal(self.key, self.node, self.epoch, self._counter, frame, kind)

    def accept(self, data: bytes, now: float) -> PeerDatagram | None:
        """The datagram if it is a current, authentic voice frame or floor message of a known
        node; else None, counted in :attr:`refused` (an authentic one of an epoch not known
        here puts its sender in :attr:`ask`, at most once per ``ASK_EVERY``)."""
        try:
            d = open_datagram(self.key, data)
        except ForgedDatagram:
            return self._refuse("forged")
        except ProtocolError:
            return self._refuse("malformed")
        p = self._peers.get(d.node)
        if p is None or p.epoch != d.epoch:
            if d.node != self.node and now - self._asked.get(d.node, -ASK_EVERY) >= ASK_EVERY:
                self._asked[d.node] = now
                self.ask.append(d.node)
            return self._refuse("unknown")
        if not p.window.check(d.counter):
            return self._refuse("replayed")
        voice = len(d.frame) >= HEADER_SIZE and is_voice(d.frame)
        if voice != (d.kind == VOICE) or d.kind == CONTROL and not d.frame:
            return self._refuse("malformed")
        p.window.commit(d.counter)
        self.accepted += 1
        return d

    def _refuse(self, reason: str) -> PeerDatagram | None:
        self.refused[reason] += 1
        self.last_refusal = reason
        return None

    def forget(self, node: str) -> None:
        """``node`` is gone: nothing goes to it by UDP until it tells its peer port again."""
        self._peers.pop(node, None)

    def knows_epoch(self, node: str) -> int:
        """The epoch of ``node`` this node takes datagrams of (0: none)."""
        p = self._peers.get(node)
        return p.epoch if p is not None else 0
