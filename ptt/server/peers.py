"""Where the clients are, kept for the server's next start.

A (re)started server tells the clients of its last run at once that their sessions are gone
(``ServerCore.announce_restart``), so it must know where they were. Sessions start, move (a NAT
rebound the port) and end far more often than the store should be written: :class:`PeerChanges`
gathers them, and the adapter hands the store what it took once per PEERS_SAVE_EVERY, in one
transaction. A session that starts and ends between two saves never reaches the store. Sans-I/O.
"""

from __future__ import annotations

from ptt.protocol.server import SessionEnded, SessionMoved, SessionStarted

PEERS_SAVE_EVERY = 0.25  # s: where clients are reaches the store this often at most
# s after a start: the restart notice is sent again at these delays, so one lost copy does not
# leave an idle client believing in its session until its next heartbeat
ANNOUNCE_REPEATS = (0.5, 2.0)


class PeerChanges:
    """Sessions started or moved (by id: where the client is) and ended since the last save."""

    def __init__(self) -> None:
        self._added: dict[int, tuple[str, int]] = {}
        self._removed: set[int] = set()

    def note(self, ev: SessionStarted | SessionMoved | SessionEnded) -> None:
        if isinstance(ev, SessionEnded):
            if self._added.pop(ev.session_id, None) is None:
                self._removed.add(ev.session_id)
        else:
            self._added[ev.session_id] = (str(ev.addr[0]), int(ev.addr[1]))

    def take(self) -> tuple[dict[int, tuple[str, int]], set[int]]:
        """What the store has not heard yet, ``(added, removed)``; forgotten here."""
        added, removed = self._added, self._removed
        self._added, self._removed = {}, set()
        return added, removed
