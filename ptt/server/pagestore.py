"""Text pages in the server's SQLite database (the tables of schema version 5, ``ptt.server.store``).

::

    pages = PageStore(store)
    page_id = pages.add(group, sender, to, body, epoch, urgent, sent_ms, expires_ms, recipients)
    pages.save_receipts(delivered, read, cursors)   # one transaction for a batch
    pages.retained(now_ms) -> [PageEntry]; pages.expire(now_ms) -> [page ids]

``add`` commits before it returns: the server acknowledges a page only after it (a SIGKILL after
the acknowledgement loses nothing). Receipts and cursors are saved in batches (at most one
transaction every ``ptt.server.app.PAGES_SAVE_EVERY``): a receipt lost with a killed server
at worst makes a device be given that page once more.
"""

from __future__ import annotations

import msgpack

from ptt.protocol.server_state import PageEntry
from ptt.server.store import Store


class PageStore:
    """The pages, receipts, cursors and old key grants of one :class:`Store`."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def add(self, group: str, sender: str, to: str, body: bytes, epoch: int, urgent: bool,
            sent_ms: int, expires_ms: int, recipients: frozenset[str]) -> int:
        """Store one page (committed when this returns); its id, ascending."""
        with self.store._write() as db:
            cur = db.execute(
                "INSERT INTO pages (group_name, sender, to_user, body, epoch, urgent, sent_ms, "
                "expires_ms, recipients) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (group, sender, to, bytes(body), epoch, int(urgent), sent_ms, expires_ms,
                 msgpack.packb(sorted(recipients))))
            return int(cur.lastrowid or 0)

    def save_receipts(self, delivered: list[tuple[int, str, str]],
                      read: list[tuple[int, str, str]],
                      cursors: dict[tuple[str, str], int]) -> None:
        """Receipts (page, user, device) and cursors ((user, device) -> page id), at once."""
        if not delivered and not read and not cursors:
            return
        with self.store._write() as db:
            db.executemany("INSERT OR IGNORE INTO page_receipts (page_id, user, device, read) "
                           "SELECT ?, ?, ?, 0 WHERE EXISTS (SELECT 1 FROM pages WHERE id = ?)",
                           [(p, u, d, p) for p, u, d in delivered])
            db.executemany("INSERT OR IGNORE INTO page_receipts (page_id, user, device, read) "
                           "SELECT ?, ?, ?, 1 WHERE EXISTS (SELECT 1 FROM pages WHERE id = ?)",
                           [(p, u, d, p) for p, u, d in read])
            db.executemany("INSERT INTO page_cursors (user, device, cursor) VALUES (?, ?, ?) "
                           "ON CONFLICT (user, device) DO UPDATE SET cursor = "
                           "max(cursor, excluded.cursor)",
                           [(u, d, c) for (u, d), c in cursors.items()])

    def retained(self, now_ms: int) -> list[PageEntry]:
        """The pages not expired at ``now_ms``, oldest first, with their receipts."""
        db = self.store._db
        pages: dict[int, PageEntry] = {}
        for row in db.execute(
                "SELECT id, group_name, sender, to_user, body, epoch, urgent, sent_ms, recipients "
                "FROM pages WHERE expires_ms > ? ORDER BY id", (now_ms,)):
            pages[int(row[0])] = PageEntry(
                int(row[0]), str(row[1]), str(row[2]), str(row[3]), bytes(row[4]), int(row[5]),
                bool(row[6]), int(row[7]), frozenset(msgpack.unpackb(row[8])))
        for pid, user, device, read in db.execute(
                "SELECT page_id, user, device, read FROM page_receipts"):
            page = pages.get(int(pid))
            if page is not None:
                (page.read if read else page.delivered).setdefault(str(user), set()).add(
                    str(device))
        return list(pages.values())

    def cursors(self) -> dict[tuple[str, str], int]:
        return {(str(u), str(d)): int(c) for u, d, c in self.store._db.execute(
            "SELECT user, device, cursor FROM page_cursors")}

    def old_grants(self, wanted: set[tuple[str, int]]) -> dict[tuple[str, int], dict[str, bytes]]:
        """The stored grants of each (group, epoch) in ``wanted``."""
        out: dict[tuple[str, int], dict[str, bytes]] = {}
        for name, epoch, user, grant in self.store._db.execute(
                "SELECT g.name, h.epoch, h.user, h.grant FROM grant_history h "
                "JOIN groups g ON g.id = h.group_id"):
            key = (str(name), int(epoch))
            if key in wanted:
                out.setdefault(key, {})[str(user)] = bytes(grant)
        return out

    def expire(self, now_ms: int) -> list[int]:
        """Delete the pages whose time is over, with their receipts and the key grants no
        retained page needs any more; their ids."""
        with self.store._write() as db:
            ids = [int(r[0]) for r in db.execute("SELECT id FROM pages WHERE expires_ms <= ?",
                                                 (now_ms,))]
            if ids:
                db.executemany("DELETE FROM page_receipts WHERE page_id = ?",
                               [(i,) for i in ids])
                db.execute("DELETE FROM pages WHERE expires_ms <= ?", (now_ms,))
            db.execute(
                "DELETE FROM grant_history WHERE epoch < (SELECT key_epoch FROM groups g "
                "WHERE g.id = grant_history.group_id) AND NOT EXISTS (SELECT 1 FROM pages p "
                "JOIN groups g ON g.name = p.group_name WHERE g.id = grant_history.group_id "
                "AND p.epoch = grant_history.epoch)")
        return ids
