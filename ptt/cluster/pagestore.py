"""Text pages of a cluster in the directory's PostgreSQL, where every node reads them.

::

    pages = PgPageStore(dsn)      # the tables created if absent
    page_id = pages.add(group, sender, to, body, epoch, urgent, sent_ms, expires_ms, recipients)
    pages.save_receipts(delivered, read, cursors)   # one transaction for a batch
    pages.retained(now_ms) -> [PageEntry]; pages.expire(now_ms) -> [page ids]
    pages.retained_counts(now_ms) -> {id: (delivered, read)}; pages.fetch(ids) -> [PageEntry]
                                  # a node catching up: pages and receipts it missed

It lives beside the directory (``ptt.cluster.directory``, opened first: the old key grants of
sealed pages are its key history). The interface of the SQLite :class:`ptt.server.pagestore.PageStore` (single-server mode), so
the server uses either. ``add`` commits (``synchronous_commit=on``) before it returns: a node
acknowledges a page only once PostgreSQL has it, so a node killed after the acknowledgement
loses nothing, and every other node can still read it. Ids come from a counter row locked
from the bump to the commit (as the directory's versions): unique across nodes, gap-free and
ascending in commit order. Receipts are rows per page, user, device and kind (delivered,
read), written by whichever node the device is on; a device's *cursor* is not kept here: it is
each node's own summary of the receipts it knows (``ptt.protocol.server_pages``), rebuilt from
them, since a cursor written by one node could pass a page another node stored a moment
before and this one had not heard of yet.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import psycopg

from ptt.cluster.directory import _why, connect
from ptt.errors import StoreError
from ptt.protocol.server_state import PageEntry

__all__ = ["PgPageStore"]

PAGES_SCHEMA_LOCK = 0x70747450  # advisory lock: two nodes starting at once create it once

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS ptt_meta (
        key         TEXT PRIMARY KEY,
        value       BIGINT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS ptt_pages (
        id          BIGINT PRIMARY KEY,
        group_name  TEXT NOT NULL,
        sender      TEXT NOT NULL,
        to_user     TEXT NOT NULL,
        body        BYTEA NOT NULL,
        epoch       BIGINT NOT NULL,
        urgent      BOOLEAN NOT NULL,
        sent_ms     BIGINT NOT NULL,
        expires_ms  BIGINT NOT NULL,
        recipients  TEXT[] NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS ptt_pages_expiry ON ptt_pages (expires_ms)",
    # no foreign key: a receipt racing its page's expiry is an orphan the next expiry deletes,
    # not a failed batch
    """CREATE TABLE IF NOT EXISTS ptt_page_receipts (
        page_id     BIGINT NOT NULL,
        user_name   TEXT NOT NULL,
        device      TEXT NOT NULL,
        read        BOOLEAN NOT NULL,
        PRIMARY KEY (page_id, user_name, device, read)
    )""",
    "INSERT INTO ptt_meta (key, value) VALUES ('pages', 0) ON CONFLICT DO NOTHING",
)

_PAGE_COLS = "id, group_name, sender, to_user, body, epoch, urgent, sent_ms, recipients"


class PgPageStore:
    """The cluster's pages and their receipts; see the module's docstring."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self._db = self._connect()
        try:
            with self._db.transaction():
                self._db.execute("SELECT pg_advisory_xact_lock(%s)", (PAGES_SCHEMA_LOCK,))
                for statement in SCHEMA:
                    self._db.execute(statement)
        except psycopg.Error as exc:
            self._db.close()
            raise StoreError(f"cannot use the page tables: {_why(exc)}") from None
        except BaseException:
            self._db.close()
            raise

    def _connect(self) -> psycopg.Connection[tuple[Any, ...]]:
        return connect(self.dsn, "the page database")

    def _conn(self) -> psycopg.Connection[tuple[Any, ...]]:
        if self._db.broken or self._db.closed:
            self._db.close()
            self._db = self._connect()
        return self._db

    def close(self) -> None:
        self._db.close()

    def add(self, group: str, sender: str, to: str, body: bytes, epoch: int, urgent: bool,
            sent_ms: int, expires_ms: int, recipients: frozenset[str]) -> int:
        """Store one page (committed when this returns); its id, ascending in commit order."""
        try:
            db = self._conn()
            with db.transaction():
                row = db.execute("UPDATE ptt_meta SET value = value + 1 WHERE key = 'pages' "
                                 "RETURNING value").fetchone()
                if row is None:
                    raise StoreError("the page counter is missing")
                page_id = int(row[0])
                db.execute(
                    "INSERT INTO ptt_pages (id, group_name, sender, to_user, body, epoch, urgent, "
                    "sent_ms, expires_ms, recipients) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, "
                    "%s, %s)",
                    (page_id, group, sender, to, bytes(body), epoch, urgent, sent_ms,
                     expires_ms, sorted(recipients)))
            return page_id
        except psycopg.Error as exc:
            raise StoreError(f"database is unavailable: {_why(exc)}") from None

    def save_receipts(self, delivered: list[tuple[int, str, str]],
                      read: list[tuple[int, str, str]],
                      cursors: dict[tuple[str, str], int]) -> None:
        """Receipts (page, user, device) at once; ``cursors`` are not kept (module docstring)."""
        marks = [(p, u, d, False) for p, u, d in delivered] + [(p, u, d, True)
                                                               for p, u, d in read]
        if not marks:
            return
        try:
            self._conn().execute(
                "INSERT INTO ptt_page_receipts (page_id, user_name, device, read) "
                "SELECT k.p, k.u, k.d, k.r FROM unnest(%s::bigint[], %s::text[], %s::text[], "
                "%s::boolean[]) AS k (p, u, d, r) WHERE EXISTS (SELECT 1 FROM ptt_pages "
                "WHERE id = k.p) ON CONFLICT DO NOTHING",
                [list(col) for col in zip(*marks, strict=True)])
        except psycopg.Error as exc:
            raise StoreError(f"database is unavailable: {_why(exc)}") from None

    def retained(self, now_ms: int) -> list[PageEntry]:
        """The pages not expired at ``now_ms``, oldest first, with their receipts."""
        return self._load("expires_ms > %s", (now_ms,), "r.page_id IN (SELECT id FROM "
                          "ptt_pages WHERE expires_ms > %s)", (now_ms,))

    def retained_counts(self, now_ms: int) -> dict[int, tuple[int, int]]:
        """Per page not expired at ``now_ms``: how many receipts it has, delivered and read
        (what a node compares with its own: pages it missed, receipts it missed)."""
        try:
            return {int(r[0]): (int(r[1]), int(r[2])) for r in self._conn().execute(
                "SELECT p.id, count(r.page_id) FILTER (WHERE NOT r.read), "
                "count(r.page_id) FILTER (WHERE r.read) FROM ptt_pages p "
                "LEFT JOIN ptt_page_receipts r ON r.page_id = p.id "
                "WHERE p.expires_ms > %s GROUP BY p.id", (now_ms,))}
        except psycopg.Error as exc:
            raise StoreError(f"database is unavailable: {_why(exc)}") from None

    def fetch(self, ids: Iterable[int]) -> list[PageEntry]:
        """The pages ``ids`` (those still stored), oldest first, with their receipts."""
        wanted = sorted(set(ids))
        if not wanted:
            return []
        return self._load("id = ANY(%s)", (wanted,), "r.page_id = ANY(%s)", (wanted,))

    def _load(self, where: str, args: tuple[Any, ...], where_receipts: str,
              args_receipts: tuple[Any, ...]) -> list[PageEntry]:
        try:
            db = self._conn()
            pages: dict[int, PageEntry] = {}
            for row in db.execute(f"SELECT {_PAGE_COLS} FROM ptt_pages WHERE {where} "
                                  "ORDER BY id", args):
                pages[int(row[0])] = PageEntry(
                    int(row[0]), str(row[1]), str(row[2]), str(row[3]), bytes(row[4]),
                    int(row[5]), bool(row[6]), int(row[7]), frozenset(row[8]))
            for pid, user, device, read in db.execute(
                    "SELECT r.page_id, r.user_name, r.device, r.read FROM ptt_page_receipts r "
                    f"WHERE {where_receipts}", args_receipts):
                page = pages.get(int(pid))
                if page is not None:
                    (page.read if read else page.delivered).setdefault(str(user), set()).add(
                        str(device))
        except psycopg.Error as exc:
            raise StoreError(f"database is unavailable: {_why(exc)}") from None
        return list(pages.values())

    def cursors(self) -> dict[tuple[str, str], int]:
        """None kept: each node rebuilds its own from the receipts (module docstring)."""
        return {}

    def old_grants(self, wanted: set[tuple[str, int]]) -> dict[tuple[str, int], dict[str, bytes]]:
        """The stored grants of each (group, epoch) in ``wanted`` (the directory's history)."""
        out: dict[tuple[str, int], dict[str, bytes]] = {}
        if not wanted:
            return out
        try:
            rows = self._conn().execute(
                "SELECT g.name, h.epoch, h.user_name, h.sealed FROM grant_history h "
                "JOIN groups g ON g.id = h.group_id WHERE g.name = ANY(%s)",
                (sorted({g for g, _ in wanted}),)).fetchall()
        except psycopg.Error as exc:
            raise StoreError(f"database is unavailable: {_why(exc)}") from None
        for name, epoch, user, grant in rows:
            key = (str(name), int(epoch))
            if key in wanted:
                out.setdefault(key, {})[str(user)] = bytes(grant)
        return out

    def expire(self, now_ms: int) -> list[int]:
        """Delete the pages whose time is over, with their receipts and the old key grants no
        retained page needs any more; their ids (any node may run it: it is idempotent)."""
        try:
            db = self._conn()
            with db.transaction():
                ids = [int(r[0]) for r in db.execute(
                    "DELETE FROM ptt_pages WHERE expires_ms <= %s RETURNING id", (now_ms,))]
                db.execute("DELETE FROM ptt_page_receipts r WHERE NOT EXISTS "
                           "(SELECT 1 FROM ptt_pages p WHERE p.id = r.page_id)")
                db.execute(
                    "DELETE FROM grant_history h WHERE h.epoch < (SELECT key_epoch FROM groups g "
                    "WHERE g.id = h.group_id) AND NOT EXISTS (SELECT 1 FROM ptt_pages p "
                    "JOIN groups g ON g.name = p.group_name WHERE g.id = h.group_id "
                    "AND p.epoch = h.epoch)")
        except psycopg.Error as exc:
            raise StoreError(f"database is unavailable: {_why(exc)}") from None
        return sorted(ids)
