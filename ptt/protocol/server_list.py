"""The client's server list: which access node it logs in to, when, and when it stops trying.

A cluster's nodes are identical for a client (any node accepts any client), so a client
configured with several (``servers`` in its config, ``PTT_SERVERS``) moves to another one when
its node dies. Sans-I/O: addresses are opaque values, the caller passes ``now`` in and a seed
of entropy at construction, and every choice below is derived from that seed (no randomness
here), so a test replays a client's moves exactly.

- **Moving** (:meth:`ServerList.move`): the session was lost (its node stopped answering, or a
  surviving node told the client its node died and the client's sealed check went unanswered).
  The client picks one of the *other* servers, uniformly, and logs in after a jitter drawn
  uniformly from ``[0, MOVE_JITTER)`` (from the time it was told, when another node told it):
  the clients of a dead node arrive at the survivors spread
  over that window and over the survivors, not all at one node at once (Zello's 2012 outage was
  every client logging in again at once). A client told by a surviving node moves to that node:
  the survivors split the notices evenly (``ptt.protocol.cluster_clients.told_by``), so its
  clients spread as evenly, each onto a node that has just shown it lives, and a survivor's
  repeated notices skip the clients already back on it.
- **A login that gets no answer** (:meth:`ServerList.login_failed`): the next server in the
  list, after the client's own re-login back-off (``ptt.protocol.client``). A login to one
  server is given up after ``LOGIN_TRY`` seconds (the retransmissions of one request go on
  for ``RETRY_TOTAL``, far longer than a client should wait on a dead node).
- **Steering** (:meth:`ServerList.steer`): a cluster node's Welcome may name the node that
  homes most of the user's groups (``Welcome.home``): there a group's floor, voice and presence
  stay on one node instead of crossing the bus (MCPTT's controlling server, LiveKit's room
  node). The client moves there once, after a jitter drawn from ``[0, STEER_JITTER)`` (a
  burst of logins does not move all at once) and only while idle (the caller waits for a
  quiet floor). The rule never loops and never chases: after a steer, hints are ignored until
  the session is lost (a node died: :meth:`move`) and ``STEER_AGAIN`` has passed, so a home
  that moved later (failover) does not pull its clients after it, and two nodes naming each
  other cannot bounce a client. A steered login that gets no answer goes back to the server
  the client came from (:meth:`login_failed`), which has just answered, and it stays there.
- **Giving up**: a client never gives up a session it had (a pager keeps trying: the back-off
  caps at ``RELOGIN_CAP``); a first login (``ptt talk``, ``ptt listen`` starting) has tried
  every server once when :attr:`ServerList.exhausted` says so, and the caller reports failure.
"""

from __future__ import annotations

import hashlib
from collections.abc import Hashable, Sequence
from typing import Generic, TypeVar

__all__ = ["LOGIN_TRY", "MAX_MOVE_SPREAD", "MIN_MOVE_SPREAD", "MOVE_JITTER", "STEER_AGAIN", "STEER_JITTER",
           "ServerList", "move_window"]

A = TypeVar("A", bound=Hashable)

# s: a dead node's clients spread their logins over this window. Detection (the lease's expiry,
# 0.9-1.4 s after the kill with 1 s leases, and the survivors' 0.2 s grace) + this + the login
# fit "95% back within 3 s" (docs/cluster.md, bench/bench_access_failover.py); a client told by
# another node counts the window from that notice, so its sealed check (0.3 s) runs inside it
# (ptt.protocol.client). At 3,000 clients and two survivors each takes ~1,500 logins a second,
# which its gate's aggregate budget (4,000/s) holds
MOVE_JITTER = 1.0
# s: the longest window a node's notice may ask its clients to spread their logins over
# (SessionGone.spread_ms): a survivor's share of a dead node's clients at its login rate;
# more than this is a forgery or a mistake, and a client would wait for nothing
MAX_MOVE_SPREAD = 30.0
# s: the shortest window a notice may ask for: a survivor with a small share (500 clients at
# its 1,500 logins/s) has them back sooner than in the client's own 1 s window, not all at once
MIN_MOVE_SPREAD = 0.5
# s: a login (Hello, Challenge, Login, Welcome) to one server of a list not answered by then is
# given up for the next server; a node that lives answers in milliseconds
LOGIN_TRY = 2.0
# s: a steered client moves within this window after its Welcome. Clients log in to a cluster
# spread over time (a node's clients moving after its death, 1 s; a restart's backlog), so
# spreading their second login over 2 s keeps the extra logins at about half the login rate
STEER_JITTER = 2.0
# s: after a steer, no other before a session lost and at least this long: a node that keeps
# dropping a steered client costs it one extra login per this period, not a loop
STEER_AGAIN = 60.0


def move_window(spread: float) -> float:
    """The window a moved client draws its login's moment in: ``spread``, what the node that
    told it asked for (0: none asked, ``MOVE_JITTER``), within ``MIN_MOVE_SPREAD`` and
    ``MAX_MOVE_SPREAD``."""
    return min(max(spread or MOVE_JITTER, MIN_MOVE_SPREAD), MAX_MOVE_SPREAD)


class ServerList(Generic[A]):
    """``ServerList([a, b, c], seed)``: the client starts at ``a`` (the one configured first)."""

    def __init__(self, servers: Sequence[A], seed: bytes) -> None:
        unique = list(dict.fromkeys(servers))
        if not unique:
            raise ValueError("a server list needs at least one server")
        self.servers: tuple[A, ...] = tuple(unique)
        self.index = 0
        self._seed = bytes(seed)
        self._draws = 0
        self._failed: set[int] = set()  # servers whose login failed since the last success
        self._steered_at: float | None = None  # the last steer (None: never)
        self._may_steer = True  # no steer since the last session lost
        self._origin: int | None = None  # a steered login's way back: the server it left

    def __len__(self) -> int:
        return len(self.servers)

    @property
    def current(self) -> A:
        return self.servers[self.index]

    def knows(self, addr: A) -> bool:
        """Is ``addr`` one of the list's servers (whose notices a client heeds)?"""
        return addr in self.servers

    def add(self, servers: Sequence[A]) -> None:
        """Servers learned later (a cluster's access addresses): appended, order kept."""
        self.servers = tuple(dict.fromkeys((*self.servers, *servers)))

    def connected(self) -> None:
        """A login to the current server succeeded."""
        self._failed.clear()
        self._origin = None

    def steer(self, home: A, now: float) -> float | None:
        """The Welcome of the current server named ``home`` as where the user's groups are
        homed: when to move there (``now`` plus the jitter), or None to stay. Once per session
        lost, at most every ``STEER_AGAIN`` seconds; never to the server already in use."""
        if home == self.current or not self._may_steer or (
                self._steered_at is not None and now - self._steered_at < STEER_AGAIN):
            return None
        self._may_steer = False
        self._steered_at = now
        return now + self._draw() * STEER_JITTER

    def go(self, home: A) -> None:
        """Move to ``home`` now (the steer's time came): the next login goes there, and if it
        gets no answer, back to the server left."""
        self.add([home])
        self._origin = self.index
        self.index = self.servers.index(home)
        self._failed.clear()

    @property
    def exhausted(self) -> bool:
        """Has a login to every server failed since the last successful one?"""
        return len(self._failed) >= len(self.servers)

    def move(self, now: float, to: A | None = None, spread: float = MOVE_JITTER) -> float:
        """The session on the current server is lost: switch to another server (``to``, the
        node that told us ours died, when it is another of the list; else uniformly among the
        others) and return when to log in there (``now`` plus the jitter, drawn from
        ``[0, spread)``: the window the node that told us asked for, its share of the dead
        node's clients at its login rate; ``MOVE_JITTER`` when no node told us; never less
        than ``MIN_MOVE_SPREAD`` nor more than ``MAX_MOVE_SPREAD``)."""
        if to is not None and to in self.servers and to != self.current:
            self._draw()  # the same draws whichever way: a test replays the jitter
            self.index = self.servers.index(to)
        elif len(self.servers) > 1:
            step = 1 + int(self._draw() * (len(self.servers) - 1))
            self.index = (self.index + step) % len(self.servers)
        self._failed.clear()
        self._origin = None
        self._may_steer = True  # where the groups are homed may differ on the next node
        return now + self._draw() * move_window(spread)

    def login_failed(self) -> None:
        """The login to the current server got no answer: the next one in the list, or, for
        a steered login, the server the client left (it answered just before)."""
        self._failed.add(self.index)
        if self._origin is not None:
            self.index, self._origin = self._origin, None
            return
        self.index = (self.index + 1) % len(self.servers)

    def _draw(self) -> float:
        """A number in [0, 1) derived from the seed and the count of draws so far."""
        self._draws += 1
        digest = hashlib.blake2b(self._draws.to_bytes(8, "big"), key=self._seed[:64],
                                 digest_size=8).digest()
        return int.from_bytes(digest, "big") / 2**64
