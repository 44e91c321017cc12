"""The server's persistent directory: users, groups and memberships in SQLite (stdlib ``sqlite3``).

::

    store = Store(default_db_path())            # creates directories, file (0600) and schema
    store.add_user("alice", Role.VOLUNTEER, salt, iterations, verifier)
    store.create_group("volunteers", max_talk=30)
    store.add_member("volunteers", "alice")
    store.members("volunteers"); store.groups_of("alice")

Calls are synchronous and sub-millisecond: the asyncio server calls them directly on its loop.
Each write is one ``BEGIN IMMEDIATE ... COMMIT`` transaction; reads see only committed data.

Durability: WAL journal with ``synchronous=NORMAL``. A committed operation survives the process
being killed at any moment (the WAL is written before ``COMMIT`` returns); after a power cut or an
OS crash the last few commits may be rolled back, never half-applied. ``Store(path, durable=True)``
uses ``synchronous=FULL`` for an fsync per commit when that matters more than latency.

Names are mapped (PRECIS: case, width, normalization) and validated by :mod:`ptt.names` before
any query, so the ``UNIQUE`` name columns compare mapped forms: ``Zoë`` and ``ＺＯË`` are one row.
Names stored under the older ASCII-only rule are their own mapped forms, so no migration rewrites
them. User names, group names and roles on the way out are always canonical. Group ids are the ``group_id`` of the voice header:
``AUTOINCREMENT`` keeps them from ever being reused, so a stale voice datagram can never reach a
group created after its own was deleted. Verifiers are password-equivalent (see
``ptt.protocol.auth``), so the database file and its directory are created private (0600/0700).

Errors: :class:`~ptt.errors.NotFoundError`, :class:`~ptt.errors.ConflictError`,
:class:`~ptt.errors.ValidationError`, and :class:`~ptt.errors.StoreError` for a file that cannot
be opened or is not a ptt database.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from ptt.config import default_db_path
from ptt.errors import ConflictError, NotFoundError, StoreError
from ptt.names import group_name, parse_role, role_name, user_name
from ptt.protocol import directory as rules
from ptt.protocol.directory import (
    DEFAULT_MAX_TALK,
    GROUP_MODES,
    MAX_TALK_LIMIT,
    GroupKey,
    GroupRecord,
    MemberChange,
    MemberRecord,
    UserRecord,
    check_credentials,
    check_max_talk,
    check_mode,
    group_settings,
)
from ptt.protocol.directory import any_group_name as _any_group_name
from ptt.protocol.messages import Role

__all__ = [
    "GROUP_MODES",
    "MAX_TALK_LIMIT",
    "SCHEMA_VERSION",
    "GroupKey",
    "GroupRecord",
    "MemberChange",
    "MemberRecord",
    "Store",
    "UserRecord",
    "default_db_path",
]

BUSY_TIMEOUT_MS = 5_000  # another process writing (an offline `ptt user add`): wait, don't fail

# Each version's statements run once, in order, inside one transaction. Never edit a released
# version: append version N+1 with ALTER TABLE / new tables and bump SCHEMA_VERSION.
MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        """CREATE TABLE users (
            id          INTEGER PRIMARY KEY,
            name        TEXT NOT NULL UNIQUE,
            role        TEXT NOT NULL CHECK (role IN ('volunteer', 'dispatcher', 'coordinator')),
            salt        BLOB NOT NULL,
            iterations  INTEGER NOT NULL CHECK (iterations > 0),
            verifier    BLOB NOT NULL,
            created     REAL NOT NULL
        )""",
        """CREATE TABLE groups (
            id          INTEGER PRIMARY KEY AUTOINCREMENT,
            name        TEXT NOT NULL UNIQUE,
            max_talk    REAL NOT NULL DEFAULT 30 CHECK (max_talk > 0),
            mode        TEXT NOT NULL DEFAULT 'auto' CHECK (mode IN ('relay', 'multicast', 'auto')),
            record      INTEGER NOT NULL DEFAULT 0 CHECK (record IN (0, 1)),
            private     INTEGER NOT NULL DEFAULT 0 CHECK (private IN (0, 1)),
            created     REAL NOT NULL
        )""",
        """CREATE TABLE memberships (
            group_id    INTEGER NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
            user_id     INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
            listen_only INTEGER NOT NULL DEFAULT 0 CHECK (listen_only IN (0, 1)),
            PRIMARY KEY (group_id, user_id)
        ) WITHOUT ROWID""",
        "CREATE INDEX memberships_by_user ON memberships (user_id)",
    ),
    # end-to-end group voice: members' public identities, which groups are encrypted,
    # and the coordinator-signed grants of each group's current key epoch. Groups that existed
    # before stay plain (they have no key); new groups are encrypted unless made --plain.
    2: (
        "ALTER TABLE users ADD COLUMN public BLOB",
        ("ALTER TABLE groups ADD COLUMN encrypted INTEGER NOT NULL DEFAULT 0 "
        "CHECK (encrypted IN (0, 1))"),
        ("ALTER TABLE groups ADD COLUMN key_epoch INTEGER NOT NULL DEFAULT 0 "
        "CHECK (key_epoch >= 0)"),
        """CREATE TABLE grants (
            group_id    INTEGER NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
            user_id     INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
            epoch       INTEGER NOT NULL CHECK (epoch > 0),
            grant       BLOB NOT NULL,
            PRIMARY KEY (group_id, user_id)
        ) WITHOUT ROWID""",
        "CREATE INDEX grants_by_user ON grants (user_id)",
    ),
    # where the clients of the running server are (one row per session), so a restarted server
    # can tell them at once that their sessions are gone (they log in again at once instead of
    # at their next heartbeat, or after their re-login back-off)
    3: (
        """CREATE TABLE peers (
            session_id  INTEGER PRIMARY KEY,
            host        TEXT NOT NULL,
            port        INTEGER NOT NULL CHECK (port BETWEEN 1 AND 65535)
        )""",
    ),
    # the server's long-term secrets (the decoy secret: unknown names get the same decoy salt
    # before and after a restart, as real users keep their real salt)
    4: (
        """CREATE TABLE secrets (
            name        TEXT PRIMARY KEY,
            value       BLOB NOT NULL
        ) WITHOUT ROWID""",
    ),
    # text pages, kept for the retention time: each stored before it is acknowledged, with who
    # it is for, the receipts per device and each device's cursor; and the grants of every key
    # epoch, so a page sealed before a re-key still opens for a member who comes online after
    5: (
        """CREATE TABLE pages (
            id          INTEGER PRIMARY KEY AUTOINCREMENT,
            group_name  TEXT NOT NULL,
            sender      TEXT NOT NULL,
            to_user     TEXT NOT NULL,
            body        BLOB NOT NULL,
            epoch       INTEGER NOT NULL,
            urgent      INTEGER NOT NULL CHECK (urgent IN (0, 1)),
            sent_ms     INTEGER NOT NULL,
            expires_ms  INTEGER NOT NULL,
            recipients  BLOB NOT NULL
        )""",
        "CREATE INDEX pages_by_expiry ON pages (expires_ms)",
        """CREATE TABLE page_receipts (
            page_id     INTEGER NOT NULL REFERENCES pages (id) ON DELETE CASCADE,
            user        TEXT NOT NULL,
            device      TEXT NOT NULL,
            read        INTEGER NOT NULL CHECK (read IN (0, 1)),
            PRIMARY KEY (page_id, user, device, read)
        ) WITHOUT ROWID""",
        """CREATE TABLE page_cursors (
            user        TEXT NOT NULL,
            device      TEXT NOT NULL,
            cursor      INTEGER NOT NULL,
            PRIMARY KEY (user, device)
        ) WITHOUT ROWID""",
        """CREATE TABLE grant_history (
            group_id    INTEGER NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
            epoch       INTEGER NOT NULL,
            user        TEXT NOT NULL,
            grant       BLOB NOT NULL,
            PRIMARY KEY (group_id, epoch, user)
        ) WITHOUT ROWID""",
    ),
}
SCHEMA_VERSION = max(MIGRATIONS)


_USER_COLS = "u.name, u.role, u.salt, u.iterations, u.verifier, u.created, u.public"
_GROUP_COLS = ("g.id, g.name, g.max_talk, g.mode, g.record, g.private, g.created, g.encrypted, "
               "g.key_epoch")


def _user(row: tuple[Any, ...]) -> UserRecord:
    name, role, salt, iterations, verifier, created, public = row
    return UserRecord(str(name), parse_role(role), bytes(salt), int(iterations), bytes(verifier),
                      float(created), None if public is None else bytes(public))


def _group(row: tuple[Any, ...]) -> GroupRecord:
    gid, name, max_talk, mode, record, private, created, encrypted, key_epoch = row
    return GroupRecord(int(gid), str(name), float(max_talk), str(mode), bool(record),
                       bool(private), float(created), bool(encrypted), int(key_epoch))


def _damaged(target: str, problem: str) -> str:
    return (f"database {target} is damaged ({problem}): stop every ptt server using it, move it "
            f"and any {target}-wal and {target}-shm beside it away, and restore it from a backup "
            f"(a -wal file belongs to its own database only)")


def _text_or_damaged(target: str) -> Callable[[bytes], str]:
    """The connection's text factory: a stored name that is not UTF-8 can only be damage (every
    write goes through the name rules), and it is named as such wherever it is read, not
    reported as an internal error."""
    def text(raw: bytes) -> str:
        try:
            return raw.decode()
        except UnicodeDecodeError:
            raise StoreError(_damaged(target, "a stored text is not UTF-8")) from None
    return text


class Store:
    """Users, groups and memberships; one SQLite connection, used from one thread."""

    def __init__(self, path: str | Path, *, durable: bool = False) -> None:
        self.path = path if str(path) == ":memory:" else Path(path).expanduser()
        target = str(self.path)
        try:
            if isinstance(self.path, Path):
                self._create_private(self.path)
            self._db = sqlite3.connect(target, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
            self._db.text_factory = _text_or_damaged(target)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open database {target}: {exc}") from None
        try:
            self._db.execute("PRAGMA foreign_keys = ON")
            self._db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute(f"PRAGMA synchronous = {'FULL' if durable else 'NORMAL'}")
            self._check_intact(target)
            self._migrate()
        except sqlite3.DatabaseError as exc:
            self._db.close()
            if "malformed" in str(exc):
                raise StoreError(_damaged(target, str(exc))) from None
            raise StoreError(f"cannot use {target} as a ptt database: {exc}") from None
        except UnicodeDecodeError:
            # SQLite's own message quotes the damaged bytes (a schema entry's name), and Python
            # cannot decode that message into the DatabaseError it would have raised.
            self._db.close()
            raise StoreError(_damaged(target, "its schema holds bytes that are not text")) from None
        except StoreError:
            self._db.close()
            raise

    def _check_intact(self, target: str) -> None:
        """StoreError naming the file if SQLite finds it damaged (``PRAGMA quick_check``:
        every page and index entry read once, milliseconds for a ptt directory), so a damaged
        database stops the server at start with what to do, not in the middle of a request."""
        rows = self._db.execute("PRAGMA quick_check(3)").fetchall()
        problems = [line.strip() for r in rows for line in str(r[0]).splitlines()
                    if line.strip() and not line.startswith("*** in database")]
        if problems != ["ok"]:
            raise StoreError(_damaged(target, "; ".join(problems[:3])))

    @staticmethod
    def _create_private(path: Path) -> None:
        # The verifiers inside are password-equivalent: no group/other access, even briefly.
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not path.exists():
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))

    # --- lifecycle -----------------------------------------------------------------------------

    def close(self) -> None:
        """Close the connection (checkpointing the WAL). Idempotent."""
        self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def journal_mode(self) -> str:
        return str(self._db.execute("PRAGMA journal_mode").fetchone()[0])

    @property
    def schema_version(self) -> int:
        return self._version()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: BEGIN IMMEDIATE takes the write lock up front (no upgrade
        deadlock between two writers), COMMIT on success, ROLLBACK on any error."""
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise StoreError(f"database is unavailable: {exc}") from None
        try:
            yield self._db
            self._db.execute("COMMIT")
        except BaseException as exc:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            if isinstance(exc, sqlite3.IntegrityError):
                raise ConflictError(f"the change conflicts with stored data: {exc}") from None
            if isinstance(exc, sqlite3.Error):
                raise StoreError(f"could not save the change: {exc}") from None
            raise

    def _version(self) -> int:
        has_table = self._db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
        ).fetchone()
        if not has_table:
            return 0
        row = self._db.execute("SELECT max(version) FROM schema_version").fetchone()
        return int(row[0] or 0)

    def _migrate(self) -> None:
        if self._version() == SCHEMA_VERSION:
            return  # the common case: no write lock needed to open
        with self._write() as db:
            current = self._version()
            if current > SCHEMA_VERSION:
                raise StoreError(
                    f"database {self.path} has schema version {current}, newer than this ptt "
                    f"understands ({SCHEMA_VERSION}): upgrade ptt"
                )
            if current == 0:
                user_tables = db.execute(
                    "SELECT count(*) FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'"
                ).fetchone()[0]
                if user_tables:
                    raise StoreError(f"{self.path} is an SQLite database, but not ptt's")
                db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
                db.execute("INSERT INTO schema_version (version) VALUES (0)")
            for version in range(current + 1, SCHEMA_VERSION + 1):
                for statement in MIGRATIONS[version]:
                    db.execute(statement)
                db.execute("UPDATE schema_version SET version = ?", (version,))

    # --- users ---------------------------------------------------------------------------------

    def add_user(
        self, name: str, role: Role | str, salt: bytes, iterations: int, verifier: bytes,
        public: bytes | None = None,
    ) -> UserRecord:
        """Create a user from credentials made by ``ptt.protocol.auth.make_credentials`` and,
        for end-to-end voice, its 64-byte public identity (``ptt.crypto.identity``)."""
        name, role = user_name(name), parse_role(role)
        check_credentials(salt, iterations, verifier, public)
        with self._write() as db:
            if db.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone():
                raise ConflictError(f"user '{name}' already exists")
            db.execute(
                "INSERT INTO users (name, role, salt, iterations, verifier, created, public) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (name, role_name(role), bytes(salt), int(iterations), bytes(verifier), time.time(),
                 None if public is None else bytes(public)),
            )
        return self.get_user(name)

    def get_user(self, name: str) -> UserRecord:
        name = user_name(name)
        row = self._db.execute(f"SELECT {_USER_COLS} FROM users u WHERE u.name = ?",
                               (name,)).fetchone()
        if row is None:
            raise NotFoundError(f"unknown user '{name}'")
        return _user(row)

    def list_users(self) -> list[UserRecord]:
        """Every user, by name."""
        rows = self._db.execute(f"SELECT {_USER_COLS} FROM users u ORDER BY u.name")
        return [_user(r) for r in rows]

    def remove_user(self, name: str) -> None:
        """Delete a user and (by cascade) all their memberships and grants."""
        name = user_name(name)
        with self._write() as db:
            if db.execute("DELETE FROM users WHERE name = ?", (name,)).rowcount == 0:
                raise NotFoundError(f"unknown user '{name}'")

    def keyed_groups_of(self, name: str) -> list[str]:
        """The encrypted groups holding a key that ``name`` is a member of."""
        name = user_name(name)
        row = self._db.execute("SELECT id FROM users WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise NotFoundError(f"unknown user '{name}'")
        return sorted(self._keyed_groups(self._db, int(row[0])))

    @staticmethod
    def _keyed_groups(db: sqlite3.Connection, uid: int) -> dict[str, tuple[int, int]]:
        """group name -> (id, key epoch) of the keyed encrypted groups user ``uid`` is in."""
        return {str(n): (int(i), int(e)) for n, i, e in db.execute(
            "SELECT g.name, g.id, g.key_epoch FROM memberships m JOIN groups g "
            "ON g.id = m.group_id WHERE m.user_id = ? AND g.encrypted = 1 AND g.key_epoch > 0",
            (uid,))}

    # --- groups --------------------------------------------------------------------------------

    def create_group(
        self,
        name: str,
        max_talk: float = DEFAULT_MAX_TALK,
        mode: str = "auto",
        record: bool = False,
        private: bool = False,
        encrypted: bool = True,
    ) -> GroupRecord:
        """Create a group; private (one-to-one call) groups may use a ``call:a+b`` name.

        ``encrypted`` groups carry voice sealed end to end once a coordinator issued their key
        (:meth:`set_group_key`); the server relays it but cannot record it. ``encrypted=False``
        (``ptt group create --plain``) keeps voice in the clear, the only kind it can record."""
        name = _any_group_name(name) if private else group_name(name)
        max_talk, mode = check_max_talk(max_talk), check_mode(mode)
        with self._write() as db:
            if db.execute("SELECT 1 FROM groups WHERE name = ?", (name,)).fetchone():
                raise ConflictError(f"group '{name}' already exists")
            db.execute(
                "INSERT INTO groups (name, max_talk, mode, record, private, created, encrypted) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (name, max_talk, mode, int(bool(record)), int(bool(private)), time.time(),
                 int(bool(encrypted))),
            )
        return self.get_group(name)

    def get_group(self, name: str) -> GroupRecord:
        name = _any_group_name(name)
        row = self._db.execute(f"SELECT {_GROUP_COLS} FROM groups g WHERE g.name = ?",
                               (name,)).fetchone()
        if row is None:
            raise NotFoundError(f"unknown group '{name}'")
        return _group(row)

    def list_groups(self, include_private: bool = False) -> list[GroupRecord]:
        """Groups by name; private call groups only when asked."""
        where = "" if include_private else "WHERE g.private = 0"
        rows = self._db.execute(f"SELECT {_GROUP_COLS} FROM groups g {where} ORDER BY g.name")
        return [_group(r) for r in rows]

    def delete_group(self, name: str) -> None:
        """Delete a group and (by cascade) its memberships."""
        name = _any_group_name(name)
        with self._write() as db:
            if db.execute("DELETE FROM groups WHERE name = ?", (name,)).rowcount == 0:
                raise NotFoundError(f"unknown group '{name}'")

    def update_group(
        self,
        name: str,
        *,
        max_talk: float | None = None,
        mode: str | None = None,
        record: bool | None = None,
    ) -> GroupRecord:
        """Change the given settings of a group; the others stay as they are."""
        name = _any_group_name(name)
        changes = group_settings(max_talk, mode, record)
        with self._write() as db:
            if not db.execute("SELECT 1 FROM groups WHERE name = ?", (name,)).fetchone():
                raise NotFoundError(f"unknown group '{name}'")
            if changes:  # column names come from the fixed keys above, never from input
                assignments = ", ".join(f"{col} = ?" for col in changes)
                db.execute(f"UPDATE groups SET {assignments} WHERE name = ?",
                           (*changes.values(), name))
        return self.get_group(name)

    # --- memberships ---------------------------------------------------------------------------

    def _ids(self, db: sqlite3.Connection, group: str, user: str) -> tuple[int, int]:
        g = db.execute("SELECT id FROM groups WHERE name = ?", (group,)).fetchone()
        if g is None:
            raise NotFoundError(f"unknown group '{group}'")
        u = db.execute("SELECT id FROM users WHERE name = ?", (user,)).fetchone()
        if u is None:
            raise NotFoundError(f"unknown user '{user}'")
        return int(g[0]), int(u[0])

    def add_member(self, group: str, user: str, listen_only: bool = False) -> MemberRecord:
        """Make ``user`` a member of ``group``; for a member already, update ``listen_only``."""
        group, user = _any_group_name(group), user_name(user)
        with self._write() as db:
            gid, uid = self._ids(db, group, user)
            db.execute(
                "INSERT INTO memberships (group_id, user_id, listen_only) VALUES (?, ?, ?) "
                "ON CONFLICT (group_id, user_id) DO UPDATE SET listen_only = excluded.listen_only",
                (gid, uid, int(bool(listen_only))),
            )
        return MemberRecord(group, user, bool(listen_only))

    def remove_member(self, group: str, user: str) -> None:
        """End a membership, and drop the member's grant with it (it must not be handed out
        again; the coordinator's next rotation leaves it out anyway)."""
        group, user = _any_group_name(group), user_name(user)
        with self._write() as db:
            gid, uid = self._ids(db, group, user)
            deleted = db.execute(
                "DELETE FROM memberships WHERE group_id = ? AND user_id = ?", (gid, uid)
            ).rowcount
            if deleted == 0:
                raise NotFoundError(f"user '{user}' is not a member of group '{group}'")
            db.execute("DELETE FROM grants WHERE group_id = ? AND user_id = ?", (gid, uid))

    def members(self, group: str) -> list[MemberRecord]:
        """The members of ``group``, by user name; NotFoundError for an unknown group."""
        group = _any_group_name(group)
        gid = self.get_group(group).id
        rows = self._db.execute(
            "SELECT u.name, m.listen_only FROM memberships m JOIN users u ON u.id = m.user_id "
            "WHERE m.group_id = ? ORDER BY u.name",
            (gid,),
        )
        return [MemberRecord(group, str(name), bool(lo)) for name, lo in rows]

    def group_counts(self) -> dict[str, int]:
        """How many groups (private ones included) each user belongs to, by name, in one query:
        ``user list`` of 100,000 users must not make 100,000 of them."""
        rows = self._db.execute(
            "SELECT u.name, COUNT(m.group_id) FROM users u "
            "LEFT JOIN memberships m ON m.user_id = u.id GROUP BY u.id")
        return {str(name): int(count) for name, count in rows}

    def groups_of(self, user: str) -> list[GroupRecord]:
        """The groups ``user`` belongs to (private ones included), by name."""
        user = user_name(user)
        row = self._db.execute("SELECT id FROM users WHERE name = ?", (user,)).fetchone()
        if row is None:
            raise NotFoundError(f"unknown user '{user}'")
        rows = self._db.execute(
            f"SELECT {_GROUP_COLS} FROM memberships m JOIN groups g ON g.id = m.group_id "
            "WHERE m.user_id = ? ORDER BY g.name",
            (row[0],),
        )
        return [_group(r) for r in rows]

    def all_memberships(self) -> list[MemberRecord]:
        """Every membership in one query: what the server loads at start-up."""
        rows = self._db.execute(
            "SELECT g.name, u.name, m.listen_only FROM memberships m "
            "JOIN groups g ON g.id = m.group_id JOIN users u ON u.id = m.user_id "
            "ORDER BY g.name, u.name"
        )
        return [MemberRecord(str(g), str(u), bool(lo)) for g, u, lo in rows]

    # --- end-to-end keys -------------------------------------------------------------------------

    def member_keys(self, group: str) -> dict[str, bytes | None]:
        """Each member's public identity (None for a user made before schema 2)."""
        group = _any_group_name(group)
        gid = self.get_group(group).id
        rows = self._db.execute(
            "SELECT u.name, u.public FROM memberships m JOIN users u ON u.id = m.user_id "
            "WHERE m.group_id = ? ORDER BY u.name", (gid,))
        return {str(n): None if p is None else bytes(p) for n, p in rows}

    def set_group_key(self, group: str, epoch: int, grants: dict[str, bytes]) -> GroupKey:
        """Replace ``group``'s grants with those of a newer ``epoch``
        (:func:`ptt.protocol.directory.set_group_key`)."""
        group = _any_group_name(group)
        with self._write() as db:
            return rules.set_group_key(_Tx(db), group, epoch, grants)

    def change_members(self, group: str, add: Sequence[str] = (), remove: Sequence[str] = (),
                       listen_only: bool = False,
                       key: tuple[int, dict[str, bytes]] | None = None) -> MemberChange:
        """Add and remove members of ``group`` and install its next key, in one transaction
        (:func:`ptt.protocol.directory.change_members`)."""
        group = _any_group_name(group)
        with self._write() as db:
            return rules.change_members(_Tx(db), group, add, remove, listen_only, key)

    def group_key(self, group: str) -> GroupKey:
        """The stored epoch and grants of ``group`` (epoch 0 and no grants: never keyed)."""
        g = self.get_group(group)
        rows = self._db.execute(
            "SELECT u.name, k.grant FROM grants k JOIN users u ON u.id = k.user_id "
            "WHERE k.group_id = ? AND k.epoch = ? ORDER BY u.name", (g.id, g.key_epoch))
        return GroupKey(g.name, g.key_epoch, {str(u): bytes(b) for u, b in rows})

    def all_group_keys(self) -> list[GroupKey]:
        """Every keyed group's grants: what the server hands to its core at start."""
        return [self.group_key(g.name) for g in self.list_groups(include_private=True)
                if g.key_epoch > 0]

    # --- the server's secrets -----------------------------------------------------------------

    def secret(self, name: str, size: int = 32) -> bytes:
        """The stored secret called ``name``, made (``size`` random bytes) on first use."""
        with self._write() as db:
            db.execute("INSERT OR IGNORE INTO secrets (name, value) VALUES (?, ?)",
                       (name, os.urandom(size)))
            row = db.execute("SELECT value FROM secrets WHERE name = ?", (name,)).fetchone()
        return bytes(row[0])

    # --- peers (the clients of the running server) ---------------------------------------------

    def update_peers(self, added: dict[int, tuple[str, int]], removed: set[int]) -> None:
        """Record sessions that started (id -> (host, port)) and forget those that ended; one
        transaction, however many."""
        if not added and not removed:
            return
        with self._write() as db:
            db.executemany("DELETE FROM peers WHERE session_id = ?", [(s,) for s in removed])
            db.executemany("INSERT OR REPLACE INTO peers (session_id, host, port) VALUES (?, ?, ?)",
                           [(s, h, p) for s, (h, p) in added.items()])

    def take_peers(self) -> list[tuple[str, int]]:
        """The addresses of the last run's sessions, forgotten as they are read (a starting
        server has no sessions: each is told once)."""
        with self._write() as db:
            rows = db.execute("SELECT DISTINCT host, port FROM peers ORDER BY host, port").fetchall()
            db.execute("DELETE FROM peers")
        return [(str(h), int(p)) for h, p in rows]


class _Tx:
    """The membership and key rules' reads and writes, inside a :meth:`Store._write`."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def group(self, group: str) -> tuple[int, bool, int]:
        row = self.db.execute("SELECT id, encrypted, key_epoch FROM groups WHERE name = ?",
                              (group,)).fetchone()
        if row is None:
            raise NotFoundError(f"unknown group '{group}'")
        return int(row[0]), bool(row[1]), int(row[2])

    def user_ids(self, users: Sequence[str]) -> dict[str, int]:
        ids = {}
        for u in users:
            row = self.db.execute("SELECT id FROM users WHERE name = ?", (u,)).fetchone()
            if row is None:
                raise NotFoundError(f"unknown user '{u}'")
            ids[u] = int(row[0])
        return ids

    def member_ids(self, gid: int) -> dict[str, int]:
        return {str(n): int(i) for n, i in self.db.execute(
            "SELECT u.name, u.id FROM memberships m JOIN users u ON u.id = m.user_id "
            "WHERE m.group_id = ?", (gid,))}

    def keyed_members(self, gid: int) -> set[str]:
        return {str(n) for (n,) in self.db.execute(
            "SELECT u.name FROM memberships m JOIN users u ON u.id = m.user_id "
            "WHERE m.group_id = ? AND u.public IS NOT NULL", (gid,))}

    def remove_members(self, gid: int, uids: Sequence[int]) -> None:
        for table in ("memberships", "grants"):  # fixed names, never input
            self.db.executemany(f"DELETE FROM {table} WHERE group_id = ? AND user_id = ?",
                                [(gid, uid) for uid in uids])

    def add_members(self, gid: int, uids: Sequence[int], listen_only: bool) -> None:
        self.db.executemany(
            "INSERT INTO memberships (group_id, user_id, listen_only) VALUES (?, ?, ?) "
            "ON CONFLICT (group_id, user_id) DO UPDATE SET listen_only = excluded.listen_only",
            [(gid, uid, int(bool(listen_only))) for uid in uids])

    def store_key(self, gid: int, epoch: int, grants: Sequence[tuple[int, str, bytes]]) -> None:
        self.db.execute("DELETE FROM grants WHERE group_id = ?", (gid,))
        self.db.executemany(
            "INSERT INTO grants (group_id, user_id, epoch, grant) VALUES (?, ?, ?, ?)",
            [(gid, uid, epoch, blob) for uid, _, blob in grants])
        self.db.executemany(
            "INSERT OR REPLACE INTO grant_history (group_id, epoch, user, grant) "
            "VALUES (?, ?, ?, ?)", [(gid, epoch, user, blob) for _, user, blob in grants])
        self.db.execute("UPDATE groups SET key_epoch = ? WHERE id = ?", (epoch, gid))
