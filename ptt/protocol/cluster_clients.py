"""Where a cluster node's clients are, as the survivors of its death read it (issue #17).

A node publishes its clients' addresses so that, when it dies, the survivors can tell each of
them to move (``ptt.cluster.node``). The list is split into ``SHARDS`` shards by session id;
a session's coming, moving or going dirties only its shard, and only the dirty shards are
written again. Written whole, the list cost O(clients) per change: at 25,000 clients a node,
~500 KB every 0.5 s while clients came and went, which etcd did not keep up with (its lease
renewals failed) and kept as revisions (161 MiB in 4 min). Sharded, a change costs its shard:
~25 lines at 25,000 clients a node with 1,024 shards.

Sans-I/O: :class:`ClientShards` takes the changes and gives the shards to write; the node
writes them (``ptt.cluster.node``: one etcd key per shard, ``/ptt-access/<node>/<shard>``).

Who tells whom (:func:`told_by`): each of a dead node's clients is told to move by one survivor,
the live node that ranks first for it (rendezvous hashing of the dead node, the survivor and the
client's address), not by every survivor: each survivor sends its share of the notices, and
after a survivor's death too its share goes to the others at the next repeat (each repeat ranks
over the nodes live then). A client moves to the node that told it (``ptt.protocol.server_list``),
so a repeat leaves out the clients already back on the survivor (``ptt.cluster.node``: told, a
client would check its new session with a heartbeat). A survivor tells its whole share at once
and asks each client to spread its login over :func:`move_spread` of it (``SessionGone
.spread_ms``): the share at ``MOVE_RATE`` logins a second, so that its backlog of logins stays
within what it answers before a client gives up (``LOGIN_TRY``). Every survivor reads the same
list and ranks alike; two that see different live nodes for a moment tell some clients twice or, until
the next repeat, not at all.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence

from ptt.errors import ConfigError
from ptt.names import format_hostport, parse_hostport
from ptt.protocol.server_list import MIN_MOVE_SPREAD, move_window
from ptt.protocol.session import Addr

__all__ = ["MOVE_RATE", "NOTICE_REPEATS", "SHARDS", "ClientShards", "decode_clients",
           "encode_client", "move_spread", "notice_times", "shard_of", "survivor_for", "told_by"]

# shards per node: a change rewrites clients/SHARDS lines (~25 at 25,000 clients a node, ~400
# bytes); the survivors read all of a dead node's shards in one range read. Session ids are
# random 32-bit numbers, so the shards fill evenly.
SHARDS = 1024


# logins a second a survivor asks its share of a dead node's clients to arrive at (each draws
# its moment in a window of share / MOVE_RATE, at least MIN_MOVE_SPREAD). Told all at once within
# one second, 2,500 per survivor (5,000 on the dead node) left a backlog of more than LOGIN_TRY
# (2 s): 189-691 logins given up and begun again at the other survivor, 5-8 s for the last.
# More than a survivor serves beside the bench's clients on this machine's 2 cores (640-740 a
# second at 2,500 a survivor): a login answering a notice waits for its node up to LOGIN_TRY
# plus the window (ptt.protocol.client), which covers that backlog, and a longer window (1,000
# a second) only moved the wait from the backlog to the window (docs/benchmarks.md)
MOVE_RATE = 1500
# s after the end of the window a survivor asked its share to log in within (``move_spread``):
# the share is told again (those not back on it yet), so one lost notice does not leave a client
# on a dead node until its next heartbeat (``notice_times``)
NOTICE_REPEATS = (0.5, 1.5)


def shard_of(session: int, shards: int = SHARDS) -> int:
    """The shard a session's line is in."""
    return session % shards


def encode_client(addr: Addr) -> bytes:
    """One line of a node's published list."""
    return format_hostport(str(addr[0]), int(addr[1])).encode()


def decode_clients(data: bytes) -> list[Addr]:
    """The addresses of a published shard (or of several joined by newlines); a line that
    does not parse is skipped."""
    out: list[Addr] = []
    for line in data.decode(errors="replace").splitlines():
        try:
            out.append(parse_hostport(line))
        except Exception:  # noqa: BLE001 - a damaged entry costs that one client's notice
            continue
    return out


def told_by(addrs: Sequence[Addr], dead: str, me: str, live: Iterable[str]) -> list[Addr]:
    """Of ``dead``'s clients at ``addrs``, those ``me`` tells to move, ``live`` being the nodes
    alive now (``me`` counts as alive, ``dead`` as not): each address goes to the live node
    with the highest blake2b of (dead, node, address)."""
    nodes = sorted({*live, me} - {dead})
    if nodes == [me]:
        return list(addrs)
    keys = _rank_keys(dead, nodes)
    mine = nodes.index(me)
    return [addr for addr in addrs if _first(keys, encode_client(addr)) == mine]


def survivor_for(item: bytes, dead: str, live: Iterable[str]) -> str:
    """The node of ``live`` (less ``dead``) that ranks first for ``item`` of the dead node's:
    the rule :func:`told_by` applies to its clients, applied to anything else the survivors
    share out (its groups, ``ptt.cluster.ownership``)."""
    nodes = sorted(set(live) - {dead})
    if not nodes:
        raise ConfigError("no live node to take over from a dead one")
    return nodes[_first(_rank_keys(dead, nodes), item)]


def _rank_keys(dead: str, nodes: Sequence[str]) -> list[bytes]:
    return [f"{dead}\0{node}\0".encode() for node in nodes]


def _first(keys: Sequence[bytes], item: bytes) -> int:
    """Rendezvous hashing: the index of the key whose blake2b with ``item`` is highest."""
    ranks = [hashlib.blake2b(key + item, digest_size=8).digest() for key in keys]
    return max(range(len(ranks)), key=ranks.__getitem__)


def move_spread(share: int, rate: int = MOVE_RATE) -> float:
    """Seconds over which a survivor's ``share`` of a dead node's clients spread their logins:
    the share at ``rate`` logins a second, never less than ``MIN_MOVE_SPREAD``."""
    return max(MIN_MOVE_SPREAD, share / max(1, rate))


def notice_times(spread: float) -> tuple[float, ...]:
    """Seconds after its first notice at which a survivor tells its share again, ``spread``
    being the window that notice asked for: ``NOTICE_REPEATS`` after the window's end. Every
    client the notice reached has sent its Login by then (its moment is drawn inside the
    window, ``ServerList.move``), so a repeat goes only to one whose notice was lost or whose
    Login is not answered yet; inside the window it would go to every client still waiting for
    its moment, which has no use for it (at 2,500 clients a survivor, a 1.7 s window: ~70% of
    them at 0.5 s, a datagram made and sent by the survivor while its logins queue)."""
    window = move_window(spread)
    return tuple(window + r for r in NOTICE_REPEATS)


class ClientShards:
    """A node's clients by shard, and which shards changed since they were last taken.

    ``change(added, removed)`` with the sessions that came or moved (id -> address) and those
    that went; ``take()`` gives each dirty shard's whole content (``b""``: empty, delete it)
    and forgets that they were dirty; ``unwritten(shards)`` marks them dirty again when the
    write failed, so the next ``take()`` writes their content as it is by then.

    :attr:`urgent`: a shard gained or changed a line since the last ``take()``. Only then is
    the list wrong in a way that costs a client: one missing from it is not told when the
    node dies (it finds out by its own heartbeat, up to a minute later). A line left for a
    client that went costs only a needless notice, so shards that merely lost lines may wait
    and ride along with the next write (``ptt.cluster.node``: under churn about half the
    writes were for departures alone)."""

    def __init__(self, shards: int = SHARDS) -> None:
        if shards < 1:
            raise ConfigError("shards must be at least 1")
        self.shards = shards
        # shard -> session id -> its line, encoded once when the session comes
        self._lines: dict[int, dict[int, bytes]] = {}
        self._dirty: set[int] = set()
        self._grown: set[int] = set()  # dirty shards that gained or changed a line

    @property
    def dirty(self) -> frozenset[int]:
        return frozenset(self._dirty)

    @property
    def urgent(self) -> bool:
        """Does a shard hold a client the written list lacks (or has at another address)?"""
        return bool(self._grown)

    def __len__(self) -> int:
        return sum(len(lines) for lines in self._lines.values())

    def change(self, added: Mapping[int, Addr], removed: Iterable[int]) -> None:
        for sid in removed:
            shard = shard_of(sid, self.shards)
            lines = self._lines.get(shard)
            if lines is not None and lines.pop(sid, None) is not None:
                self._dirty.add(shard)
                if not lines:
                    del self._lines[shard]
        for sid, addr in added.items():
            shard = shard_of(sid, self.shards)
            line = encode_client(addr)
            lines = self._lines.setdefault(shard, {})
            if lines.get(sid) != line:
                lines[sid] = line
                self._dirty.add(shard)
                self._grown.add(shard)

    def content(self, shard: int) -> bytes:
        """What shard ``shard`` holds now, one line per client (``decode_clients``)."""
        return b"\n".join(self._lines.get(shard, {}).values())

    def take(self) -> dict[int, bytes]:
        """The dirty shards' contents, by shard; they are clean afterwards."""
        out = {shard: self.content(shard) for shard in sorted(self._dirty)}
        self._dirty.clear()
        self._grown.clear()
        return out

    def unwritten(self, shards: Iterable[int]) -> None:
        """These shards' write failed: write them again at the next ``take()`` (as urgent:
        what they held may have been new)."""
        shards = set(shards)
        self._dirty |= shards
        self._grown |= shards

    def everything(self) -> bytes:
        """Every client's line (``decode_clients``), all shards."""
        return b"\n".join(line for lines in self._lines.values() for line in lines.values())
