"""The cluster's directory: users, groups, memberships and key grants in PostgreSQL, followed
in memory by every node.

::

    directory = open_directory("postgresql://ptt@127.0.0.1:5433/ptt")  # loads it all
    directory.get_user("alice")                 # from memory: no database round trip
    directory.add_user("bob", ...)              # PostgreSQL first, then memory
    task = asyncio.create_task(directory.follow(on_change))  # changes made on other nodes

:class:`PgDirectory` has the interface of the SQLite :class:`ptt.server.store.Store`
(:class:`ptt.protocol.directory.Directory`) and refuses bad input with the same errors, because
both call the rules of :mod:`ptt.protocol.directory` first. Reads never touch the database:
logins are answered from memory whatever PostgreSQL is doing. Writes are synchronous, as the
Store's are (coordinator commands: p50 0.6-2 ms on loopback, ``bench/bench_cluster_directory.py``),
and raise StoreError while PostgreSQL is unreachable. The server's secret is kept here too, so
every node answers an unknown name with the same decoy.

Following. Each write is one transaction that also bumps a counter row (``ptt_meta.changes``),
appends ``(version, kind, name)`` to ``ptt_changes`` and sends ``NOTIFY ptt_directory`` with
``"version kind name"`` (kind ``user`` or ``group``). The counter row is locked from the bump to
the commit, so versions are gap-free and in commit order, and PostgreSQL delivers notifications
in commit order: a follower that hears version N+2 after N knows it missed N+1. It misses some
while its listening connection is down; after reconnecting it LISTENs first, then reads the
counter: anything above the last version it applied was missed, and it reloads the users and
groups named in ``ptt_changes`` since then (the whole directory, in a worker thread, if more than
:data:`CATCH_UP_MAX` changes or older than the :data:`CHANGES_KEPT` kept). Every
:data:`CHECK_EVERY` seconds without a notification it reads the counter too, so a connection
that died silently is found. Applying a change reloads that user or group from PostgreSQL: the
state applied is the newest committed one, and the last notification for an entity is always
followed by a reload, so nodes converge.

Text pages and their receipts live beside it (``ptt.cluster.pagestore``); the peers table of
``ptt.server.store`` (the last run's clients) stays node-local.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

import psycopg
from psycopg import sql

from ptt.errors import ConflictError, NotFoundError, PttError, StoreError
from ptt.names import group_name, parse_role, role_name, user_name
from ptt.protocol import directory as rules
from ptt.protocol.directory import (
    DEFAULT_MAX_TALK,
    GroupKey,
    GroupRecord,
    MemberChange,
    MemberRecord,
    UserRecord,
    any_group_name,
    check_credentials,
    check_max_talk,
    check_mode,
    group_settings,
)
from ptt.protocol.messages import Role

log = logging.getLogger(__name__)

CHANNEL = "ptt_directory"
SCHEMA_VERSION = 1
CHANGES_KEPT = 100_000  # rows of ptt_changes kept for followers catching up after a gap
CATCH_UP_MAX = 1_000  # more missed changes than this: reload everything (in a worker thread)
CATCH_UP_SLICE = 20  # changes read from the log per turn of the event loop (~20 round trips)
CHECK_EVERY = 5.0  # seconds without a notification before the counter is read
RECONNECT_MIN, RECONNECT_MAX = 0.05, 2.0  # the follower's back-off after a lost connection
CONNECT_TIMEOUT = 5  # seconds (libpq's connect_timeout)
FOLLOW_APPLICATION = "ptt-directory-follow"  # application_name of the listening connection
SCHEMA_LOCK = 0x707474  # advisory lock: two nodes starting at once create the schema once

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS ptt_meta (
        key         TEXT PRIMARY KEY,
        value       BIGINT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS users (
        id          BIGSERIAL PRIMARY KEY,
        name        TEXT NOT NULL UNIQUE,
        role        TEXT NOT NULL CHECK (role IN ('volunteer', 'dispatcher', 'coordinator')),
        salt        BYTEA NOT NULL,
        iterations  INTEGER NOT NULL CHECK (iterations > 0),
        verifier    BYTEA NOT NULL,
        created     DOUBLE PRECISION NOT NULL,
        public      BYTEA
    )""",
    # BIGSERIAL never hands out a number twice (even after a rollback or a delete), so a stale
    # voice datagram can never reach a group created after its own was deleted
    """CREATE TABLE IF NOT EXISTS groups (
        id          BIGSERIAL PRIMARY KEY,
        name        TEXT NOT NULL UNIQUE,
        max_talk    DOUBLE PRECISION NOT NULL CHECK (max_talk > 0),
        mode        TEXT NOT NULL CHECK (mode IN ('relay', 'multicast', 'auto')),
        record      BOOLEAN NOT NULL,
        private     BOOLEAN NOT NULL,
        created     DOUBLE PRECISION NOT NULL,
        encrypted   BOOLEAN NOT NULL,
        key_epoch   BIGINT NOT NULL DEFAULT 0 CHECK (key_epoch >= 0)
    )""",
    """CREATE TABLE IF NOT EXISTS memberships (
        group_id    BIGINT NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
        user_id     BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        listen_only BOOLEAN NOT NULL,
        PRIMARY KEY (group_id, user_id)
    )""",
    "CREATE INDEX IF NOT EXISTS memberships_by_user ON memberships (user_id)",
    """CREATE TABLE IF NOT EXISTS grants (
        group_id    BIGINT NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
        user_id     BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        epoch       BIGINT NOT NULL CHECK (epoch > 0),
        sealed      BYTEA NOT NULL,
        PRIMARY KEY (group_id, user_id)
    )""",
    "CREATE INDEX IF NOT EXISTS grants_by_user ON grants (user_id)",
    # every epoch's grants, as the SQLite store keeps them for pages sealed before a re-key
    """CREATE TABLE IF NOT EXISTS grant_history (
        group_id    BIGINT NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
        epoch       BIGINT NOT NULL,
        user_name   TEXT NOT NULL,
        sealed      BYTEA NOT NULL,
        PRIMARY KEY (group_id, epoch, user_name)
    )""",
    """CREATE TABLE IF NOT EXISTS secrets (
        name        TEXT PRIMARY KEY,
        value       BYTEA NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS ptt_changes (
        version     BIGINT PRIMARY KEY,
        kind        TEXT NOT NULL,
        name        TEXT NOT NULL
    )""",
    "INSERT INTO ptt_meta (key, value) VALUES ('changes', 0) ON CONFLICT DO NOTHING",
)

# the end of every write, in one round trip: the next version (the counter row stays locked to
# the commit), its line in the change log, the log's oldest lines dropped, and the notification
_RECORD_CHANGE = """
    WITH v AS (UPDATE ptt_meta SET value = value + 1 WHERE key = 'changes' RETURNING value),
         logged AS (INSERT INTO ptt_changes (version, kind, name)
                    SELECT value, %(kind)s, %(name)s FROM v),
         pruned AS (DELETE FROM ptt_changes WHERE version <= (SELECT value FROM v) - %(kept)s)
    SELECT value, pg_notify(%(channel)s, value || ' ' || %(kind)s || ' ' || %(name)s) FROM v"""

_USER_COLS = "u.name, u.role, u.salt, u.iterations, u.verifier, u.created, u.public"
_GROUP_COLS = ("g.id, g.name, g.max_talk, g.mode, g.record, g.private, g.created, g.encrypted, "
               "g.key_epoch")


def _user(row: tuple[Any, ...]) -> UserRecord:
    name, role, salt, iterations, verifier, created, public = row
    return UserRecord(name, parse_role(role), bytes(salt), iterations, bytes(verifier), created,
                      None if public is None else bytes(public))


def _group(row: tuple[Any, ...]) -> GroupRecord:
    gid, name, max_talk, mode, record, private, created, encrypted, key_epoch = row
    return GroupRecord(gid, name, max_talk, mode, record, private, created, encrypted, key_epoch)


@dataclass(frozen=True, slots=True)
class Change:
    """A change applied from elsewhere: ``kind`` ``user`` or ``group`` (that one, by name), or
    ``all`` after a reload of everything (name empty)."""

    version: int
    kind: str
    name: str


@dataclass(slots=True)
class _Memory:
    """The whole directory as the server reads it; replaced whole by a reload."""

    version: int = 0  # the last change this state includes
    users: dict[str, UserRecord] = field(default_factory=dict)
    groups: dict[str, GroupRecord] = field(default_factory=dict)
    members: dict[str, dict[str, bool]] = field(default_factory=dict)  # group -> user -> lo
    of_user: dict[str, set[str]] = field(default_factory=dict)  # user -> groups
    grants: dict[str, dict[str, bytes]] = field(default_factory=dict)  # group -> user -> grant

    def put_user(self, rec: UserRecord) -> None:
        self.users[rec.name] = rec
        self.of_user.setdefault(rec.name, set())

    def drop_user(self, name: str) -> None:
        self.users.pop(name, None)
        for group in self.of_user.pop(name, set()):
            self.members.get(group, {}).pop(name, None)
            self.grants.get(group, {}).pop(name, None)

    def put_group(self, rec: GroupRecord, members: dict[str, bool],
                  grants: dict[str, bytes]) -> None:
        old = self.groups.get(rec.name)
        if old is not None and old.id != rec.id:  # deleted and made again in between
            self.drop_group(rec.name)
        for user in self.members.get(rec.name, {}).keys() - members.keys():
            self.of_user.get(user, set()).discard(rec.name)
        for user in members:
            self.of_user.setdefault(user, set()).add(rec.name)
        self.groups[rec.name] = rec
        self.members[rec.name] = members
        self.grants[rec.name] = grants

    def drop_group(self, name: str) -> None:
        self.groups.pop(name, None)
        self.grants.pop(name, None)
        for user in self.members.pop(name, {}):
            self.of_user.get(user, set()).discard(name)


class PgDirectory:
    """The directory in PostgreSQL, read from memory; see the module's docstring."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self._db = self._connect()
        try:
            self._create_schema()
            self._mem = _load_all(self._db)
        except BaseException:
            self._db.close()
            raise
        self._secrets: dict[str, bytes] = {}
        self._own: set[int] = set()  # versions written here, already applied
        self._closed = False
        self.catch_up_max = CATCH_UP_MAX
        self.catch_ups = 0  # times missed changes were found (for tests and metrics)
        self.reloads = 0  # of those, reloads of everything
        self.listening = asyncio.Event()  # follow() is connected and caught up

    # --- connections and lifecycle --------------------------------------------------------------

    def _connect(self) -> psycopg.Connection[tuple[Any, ...]]:
        return connect(self.dsn, "the directory database")

    def _conn(self) -> psycopg.Connection[tuple[Any, ...]]:
        """The connection for writes and reloads, connected again if PostgreSQL dropped it."""
        if self._closed:
            raise StoreError("the directory is closed")
        if self._db.broken or self._db.closed:
            self._db.close()
            self._db = self._connect()
        return self._db

    def _create_schema(self) -> None:
        try:
            with self._db.transaction():
                self._db.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
                for statement in SCHEMA:
                    self._db.execute(statement)
                self._db.execute("INSERT INTO ptt_meta (key, value) VALUES ('schema', %s) "
                                 "ON CONFLICT DO NOTHING", (SCHEMA_VERSION,))
                row = self._db.execute("SELECT value FROM ptt_meta WHERE key = 'schema'")
                found = _one(row.fetchone())
        except psycopg.Error as exc:
            raise StoreError(f"cannot use the directory database: {_why(exc)}") from None
        if found > SCHEMA_VERSION:
            raise StoreError(f"the directory database has schema version {found}, newer than "
                             f"this ptt understands ({SCHEMA_VERSION}): upgrade ptt")

    def close(self) -> None:
        """Close the connection (a running :meth:`follow` is cancelled by its caller)."""
        self._closed = True
        self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    @property
    def version(self) -> int:
        """The last change the memory includes."""
        return self._mem.version

    @contextmanager
    def _write(self, kind: str, name: str) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
        """One transaction that records change (``kind``, ``name``) and notifies followers;
        the entity is reloaded into memory after the commit."""
        try:
            with ExitStack() as stack:
                db = self._conn()
                try:
                    stack.enter_context(db.transaction())
                except psycopg.OperationalError:
                    # the connection died while idle (PostgreSQL restarted): nothing was sent,
                    # so the write goes on a new one rather than failing once
                    db.close()
                    db = self._conn()
                    stack.enter_context(db.transaction())
                yield db
                version = _one(db.execute(_RECORD_CHANGE, {
                    "kind": kind, "name": name, "kept": CHANGES_KEPT, "channel": CHANNEL,
                }).fetchone())
        except psycopg.errors.IntegrityError as exc:
            raise ConflictError(f"the change conflicts with stored data: {_why(exc)}") from None
        except psycopg.OperationalError as exc:
            raise StoreError(f"database is unavailable: {_why(exc)}") from None
        except psycopg.Error as exc:
            raise StoreError(f"could not save the change: {_why(exc)}") from None
        if version == self._mem.version + 1:
            self._mem.version = version  # nothing from elsewhere in between: none to await
        else:
            self._own.add(version)
        self._reload(kind, name)

    def _reload(self, kind: str, name: str) -> None:
        """Bring one user or group in memory to its committed state (gone: dropped)."""
        try:
            if kind == "user":
                rec = _load_user(self._conn(), name)
                if rec is None:
                    self._mem.drop_user(name)
                else:
                    self._mem.put_user(rec)
            elif kind == "group":
                loaded = _load_group(self._conn(), name)
                if loaded is None:
                    self._mem.drop_group(name)
                else:
                    self._mem.put_group(*loaded)
        except psycopg.Error as exc:
            raise StoreError(f"database is unavailable: {_why(exc)}") from None

    # --- users ----------------------------------------------------------------------------------

    def add_user(self, name: str, role: Role | str, salt: bytes, iterations: int,
                 verifier: bytes, public: bytes | None = None) -> UserRecord:
        name, role = user_name(name), parse_role(role)
        check_credentials(salt, iterations, verifier, public)
        with self._write("user", name) as db:
            if db.execute("SELECT 1 FROM users WHERE name = %s", (name,)).fetchone():
                raise ConflictError(f"user '{name}' already exists")
            db.execute(
                "INSERT INTO users (name, role, salt, iterations, verifier, created, public) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (name, role_name(role), bytes(salt), int(iterations), bytes(verifier),
                 time.time(), None if public is None else bytes(public)))
        return self.get_user(name)

    def get_user(self, name: str) -> UserRecord:
        name = user_name(name)
        rec = self._mem.users.get(name)
        if rec is None:
            raise NotFoundError(f"unknown user '{name}'")
        return rec

    def list_users(self) -> list[UserRecord]:
        return [self._mem.users[n] for n in sorted(self._mem.users)]

    def remove_user(self, name: str) -> None:
        name = user_name(name)
        with self._write("user", name) as db:
            if db.execute("DELETE FROM users WHERE name = %s", (name,)).rowcount == 0:
                raise NotFoundError(f"unknown user '{name}'")

    def keyed_groups_of(self, name: str) -> list[str]:
        name = user_name(name)
        self.get_user(name)
        return sorted(g for g in self._mem.of_user.get(name, ())
                      if self._mem.groups[g].encrypted and self._mem.groups[g].key_epoch > 0)

    # --- groups ---------------------------------------------------------------------------------

    def create_group(self, name: str, max_talk: float = DEFAULT_MAX_TALK, mode: str = "auto",
                     record: bool = False, private: bool = False,
                     encrypted: bool = True) -> GroupRecord:
        name = any_group_name(name) if private else group_name(name)
        max_talk, mode = check_max_talk(max_talk), check_mode(mode)
        with self._write("group", name) as db:
            if db.execute("SELECT 1 FROM groups WHERE name = %s", (name,)).fetchone():
                raise ConflictError(f"group '{name}' already exists")
            db.execute(
                "INSERT INTO groups (name, max_talk, mode, record, private, created, encrypted) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (name, max_talk, mode, bool(record), bool(private), time.time(),
                 bool(encrypted)))
        return self.get_group(name)

    def get_group(self, name: str) -> GroupRecord:
        name = any_group_name(name)
        rec = self._mem.groups.get(name)
        if rec is None:
            raise NotFoundError(f"unknown group '{name}'")
        return rec

    def list_groups(self, include_private: bool = False) -> list[GroupRecord]:
        groups = self._mem.groups
        return [groups[n] for n in sorted(groups) if include_private or not groups[n].private]

    def delete_group(self, name: str) -> None:
        name = any_group_name(name)
        with self._write("group", name) as db:
            if db.execute("DELETE FROM groups WHERE name = %s", (name,)).rowcount == 0:
                raise NotFoundError(f"unknown group '{name}'")

    def update_group(self, name: str, *, max_talk: float | None = None, mode: str | None = None,
                     record: bool | None = None) -> GroupRecord:
        name = any_group_name(name)
        changes = group_settings(max_talk, mode, record)
        with self._write("group", name) as db:
            if not db.execute("SELECT 1 FROM groups WHERE name = %s", (name,)).fetchone():
                raise NotFoundError(f"unknown group '{name}'")
            if changes:
                db.execute(sql.SQL("UPDATE groups SET {} WHERE name = %s").format(
                    sql.SQL(", ").join(sql.SQL("{} = %s").format(sql.Identifier(c))
                                       for c in changes)), (*changes.values(), name))
        return self.get_group(name)

    # --- memberships ----------------------------------------------------------------------------

    def add_member(self, group: str, user: str, listen_only: bool = False) -> MemberRecord:
        group, user = any_group_name(group), user_name(user)
        with self._write("group", group) as db:
            tx = _Tx(db)
            gid = tx.group(group)[0]
            tx.add_members(gid, [tx.user_ids([user])[user]], listen_only)
        return MemberRecord(group, user, bool(listen_only))

    def remove_member(self, group: str, user: str) -> None:
        group, user = any_group_name(group), user_name(user)
        with self._write("group", group) as db:
            tx = _Tx(db)
            gid = tx.group(group)[0]
            uid = tx.user_ids([user])[user]
            if db.execute("DELETE FROM memberships WHERE group_id = %s AND user_id = %s",
                          (gid, uid)).rowcount == 0:
                raise NotFoundError(f"user '{user}' is not a member of group '{group}'")
            tx.remove_members(gid, [uid])

    def members(self, group: str) -> list[MemberRecord]:
        group = self.get_group(group).name
        members = self._mem.members.get(group, {})
        return [MemberRecord(group, u, members[u]) for u in sorted(members)]

    def group_counts(self) -> dict[str, int]:
        return {u: len(self._mem.of_user.get(u, ())) for u in self._mem.users}

    def groups_of(self, user: str) -> list[GroupRecord]:
        user = self.get_user(user).name
        return [self._mem.groups[g] for g in sorted(self._mem.of_user.get(user, ()))]

    def all_memberships(self) -> list[MemberRecord]:
        return [MemberRecord(g, u, lo) for g in sorted(self._mem.members)
                for u, lo in sorted(self._mem.members[g].items())]

    # --- end-to-end keys ------------------------------------------------------------------------

    def member_keys(self, group: str) -> dict[str, bytes | None]:
        group = self.get_group(group).name
        return {u: self._mem.users[u].public for u in sorted(self._mem.members.get(group, {}))}

    def set_group_key(self, group: str, epoch: int, grants: dict[str, bytes]) -> GroupKey:
        group = any_group_name(group)
        with self._write("group", group) as db:
            return rules.set_group_key(_Tx(db), group, epoch, grants)

    def change_members(self, group: str, add: Sequence[str] = (), remove: Sequence[str] = (),
                       listen_only: bool = False,
                       key: tuple[int, dict[str, bytes]] | None = None) -> MemberChange:
        group = any_group_name(group)
        with self._write("group", group) as db:
            return rules.change_members(_Tx(db), group, add, remove, listen_only, key)

    def group_key(self, group: str) -> GroupKey:
        g = self.get_group(group)
        grants = self._mem.grants.get(g.name, {})
        return GroupKey(g.name, g.key_epoch, {u: grants[u] for u in sorted(grants)})

    def all_group_keys(self) -> list[GroupKey]:
        return [self.group_key(g.name) for g in self.list_groups(include_private=True)
                if g.key_epoch > 0]

    # --- the cluster's secrets ------------------------------------------------------------------

    def secret(self, name: str, size: int = 32) -> bytes:
        """The stored secret called ``name``, made on first use by whichever node asks first,
        the same on every node (unknown names get the same decoy salt from any of them)."""
        if name not in self._secrets:
            try:
                db = self._conn()
                db.execute("INSERT INTO secrets (name, value) VALUES (%s, %s) "
                           "ON CONFLICT DO NOTHING", (name, os.urandom(size)))
                row = db.execute("SELECT value FROM secrets WHERE name = %s", (name,)).fetchone()
            except psycopg.Error as exc:
                raise StoreError(f"database is unavailable: {_why(exc)}") from None
            self._secrets[name] = bytes(_row(row)[0])
        return self._secrets[name]

    # --- following other nodes' changes ---------------------------------------------------------

    async def follow(self, on_change: Callable[[Change], None] | None = None,
                     check_every: float = CHECK_EVERY) -> None:
        """Apply the changes other nodes make, until cancelled; ``on_change`` is called after
        each is applied (not for this node's own writes), e.g. to mirror it into the core."""
        delay = RECONNECT_MIN
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                        self.dsn, autocommit=True, connect_timeout=CONNECT_TIMEOUT,
                        application_name=FOLLOW_APPLICATION) as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    await self._catch_up(conn, on_change)  # what was missed while not listening
                    self.listening.set()
                    delay = RECONNECT_MIN
                    while True:
                        async for note in conn.notifies(timeout=check_every):
                            await self._heard(note.payload, on_change)
                        await self._check(conn, check_every, on_change)
            except (psycopg.Error, PttError) as exc:
                self.listening.clear()
                if self._closed:
                    return
                log.warning("directory: following stopped (%s); again in %.2f s", _why(exc),
                            delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RECONNECT_MAX)

    async def _heard(self, payload: str, on_change: Callable[[Change], None] | None) -> None:
        try:
            version_text, kind, name = payload.split(" ", 2)
            version = int(version_text)
        except ValueError:  # not a directory's write: the counter check finds any real one
            log.warning("directory: ignored a notification %r", payload[:80])
            return
        mem = self._mem
        if version <= mem.version:
            return  # included in a reload already
        if version > mem.version + 1:  # notifications were lost: read what they were
            await self._catch_up_to(version, on_change)
            return
        self._apply(version, kind, name, on_change)

    def _apply(self, version: int, kind: str, name: str,
               on_change: Callable[[Change], None] | None) -> None:
        self._mem.version = version
        if version in self._own:
            self._own.discard(version)
            return
        self._reload(kind, name)
        _tell(on_change, Change(version, kind, name))

    async def _check(self, conn: psycopg.AsyncConnection[tuple[Any, ...]], wait: float,
                     on_change: Callable[[Change], None] | None) -> None:
        """Read the counter: a version above ours that no notification brings within ``wait``
        was missed (the connection lost it), so it is read from the change log."""
        cur = await conn.execute("SELECT value FROM ptt_meta WHERE key = 'changes'")
        latest = _one(await cur.fetchone())
        if latest <= self._mem.version:
            return
        async for note in conn.notifies(timeout=wait):  # run out: never left half-way
            await self._heard(note.payload, on_change)
        if self._mem.version < latest:
            await self._catch_up_to(latest, on_change)

    async def _catch_up(self, conn: psycopg.AsyncConnection[tuple[Any, ...]],
                        on_change: Callable[[Change], None] | None) -> None:
        cur = await conn.execute("SELECT value FROM ptt_meta WHERE key = 'changes'")
        latest = _one(await cur.fetchone())
        if latest > self._mem.version:
            await self._catch_up_to(latest, on_change)

    async def _catch_up_to(self, latest: int, on_change: Callable[[Change], None] | None) -> None:
        """Apply every change up to ``latest`` from the change log, or reload everything when
        the log no longer holds them all or they are many."""
        since = self._mem.version
        log.info("directory: changes %d..%d were missed; catching up", since + 1, latest)
        self.catch_ups += 1
        rows: list[tuple[int, str, str]] = []
        if latest - since <= self.catch_up_max:
            try:
                rows = self._conn().execute(
                    "SELECT version, kind, name FROM ptt_changes WHERE version > %s "
                    "ORDER BY version", (since,)).fetchall()
            except psycopg.Error as exc:
                raise StoreError(f"database is unavailable: {_why(exc)}") from None
        if rows and rows[0][0] == since + 1 and all(
                b[0] == a[0] + 1 for a, b in zip(rows, rows[1:], strict=False)):
            # each changed user or group is read once (its state now includes every change),
            # users first: a group read after them names no member memory lacks
            last = {(kind, name): version for version, kind, name in rows}
            order = sorted(last.items(), key=lambda item: (item[0][0] != "user", item[1]))
            for i, ((kind, name), version) in enumerate(order):
                if version in self._own:  # written here, after every other change to it
                    self._own.discard(version)
                else:
                    self._reload(kind, name)
                    _tell(on_change, Change(version, kind, name))
                if i % CATCH_UP_SLICE == CATCH_UP_SLICE - 1:
                    await asyncio.sleep(0)  # each read is a round trip: let the loop breathe
            self._own.difference_update(v for v, _, _ in rows)
            self._mem.version = max(self._mem.version, rows[-1][0])
            return
        await self._reload_all(on_change)

    async def _reload_all(self, on_change: Callable[[Change], None] | None) -> None:
        """Load everything again in a worker thread (seconds for 100,000 users: the loop keeps
        answering from the old state meanwhile), then swap it in."""
        dsn = self.dsn

        def load() -> _Memory:
            with psycopg.connect(dsn, autocommit=True, connect_timeout=CONNECT_TIMEOUT) as db:
                return _load_all(db)

        mem = await asyncio.to_thread(load)
        # this node's writes after the snapshot were applied to the old state: reload them
        # when they are heard
        self._own.clear()
        self._mem = mem
        self.reloads += 1
        _tell(on_change, Change(mem.version, "all", ""))


class _Tx:
    """The membership and key rules' reads and writes, inside a :meth:`PgDirectory._write`."""

    def __init__(self, db: psycopg.Connection[tuple[Any, ...]]) -> None:
        self.db = db

    def group(self, group: str) -> tuple[int, bool, int]:
        # locked to the commit: two nodes changing one group's members or key take turns
        row = self.db.execute("SELECT id, encrypted, key_epoch FROM groups WHERE name = %s "
                              "FOR UPDATE", (group,)).fetchone()
        if row is None:
            raise NotFoundError(f"unknown group '{group}'")
        return int(row[0]), bool(row[1]), int(row[2])

    def user_ids(self, users: Sequence[str]) -> dict[str, int]:
        ids = dict(self.db.execute("SELECT name, id FROM users WHERE name = ANY(%s)",
                                   (list(users),)).fetchall())
        for u in users:
            if u not in ids:
                raise NotFoundError(f"unknown user '{u}'")
        return ids

    def member_ids(self, gid: int) -> dict[str, int]:
        return dict(self.db.execute(
            "SELECT u.name, u.id FROM memberships m JOIN users u ON u.id = m.user_id "
            "WHERE m.group_id = %s", (gid,)).fetchall())

    def keyed_members(self, gid: int) -> set[str]:
        return {n for (n,) in self.db.execute(
            "SELECT u.name FROM memberships m JOIN users u ON u.id = m.user_id "
            "WHERE m.group_id = %s AND u.public IS NOT NULL", (gid,)).fetchall()}

    def remove_members(self, gid: int, uids: Sequence[int]) -> None:
        for table in ("memberships", "grants"):
            self.db.execute(sql.SQL("DELETE FROM {} WHERE group_id = %s AND user_id = ANY(%s)")
                            .format(sql.Identifier(table)), (gid, list(uids)))

    def add_members(self, gid: int, uids: Sequence[int], listen_only: bool) -> None:
        self.db.execute(
            "INSERT INTO memberships (group_id, user_id, listen_only) "
            "SELECT %s, uid, %s FROM unnest(%s::bigint[]) AS uid "
            "ON CONFLICT (group_id, user_id) DO UPDATE SET listen_only = excluded.listen_only",
            (gid, bool(listen_only), list(uids)))

    def store_key(self, gid: int, epoch: int, grants: Sequence[tuple[int, str, bytes]]) -> None:
        uids, users, blobs = ([g[i] for g in grants] for i in range(3))
        self.db.execute("DELETE FROM grants WHERE group_id = %s", (gid,))
        self.db.execute(
            "INSERT INTO grants (group_id, user_id, epoch, sealed) "
            "SELECT %s, uid, %s, sealed FROM unnest(%s::bigint[], %s::bytea[]) AS k (uid, sealed)",
            (gid, epoch, uids, blobs))
        self.db.execute(
            "INSERT INTO grant_history (group_id, epoch, user_name, sealed) "
            "SELECT %s, %s, u, sealed FROM unnest(%s::text[], %s::bytea[]) AS k (u, sealed) "
            "ON CONFLICT (group_id, epoch, user_name) DO UPDATE SET sealed = excluded.sealed",
            (gid, epoch, users, blobs))
        self.db.execute("UPDATE groups SET key_epoch = %s WHERE id = %s", (epoch, gid))


def connect(dsn: str, what: str) -> psycopg.Connection[tuple[Any, ...]]:
    """A connection for writes to ``dsn`` (``what``: the error names it). synchronous_commit
    on whatever the server's default: a write acknowledged on it is in PostgreSQL's WAL, so it
    survives PostgreSQL being killed."""
    try:
        return psycopg.connect(dsn, autocommit=True, connect_timeout=CONNECT_TIMEOUT,
                               options="-c synchronous_commit=on")
    except psycopg.Error as exc:
        raise StoreError(f"cannot connect to {what}: {_why(exc)}") from None


def open_directory(dsn: str) -> PgDirectory:
    """The cluster's directory at ``dsn`` (a libpq connection string or URI), schema created if
    absent and loaded into memory; ``await directory.follow(...)`` keeps it current."""
    return PgDirectory(dsn)


# --- loading ---------------------------------------------------------------------------------------


def _load_user(db: psycopg.Connection[tuple[Any, ...]], name: str) -> UserRecord | None:
    row = db.execute(f"SELECT {_USER_COLS} FROM users u WHERE u.name = %s", (name,)).fetchone()
    return None if row is None else _user(row)


def _load_group(db: psycopg.Connection[tuple[Any, ...]], name: str
                ) -> tuple[GroupRecord, dict[str, bool], dict[str, bytes]] | None:
    with db.transaction():  # one snapshot for the three reads
        db.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        row = db.execute(f"SELECT {_GROUP_COLS} FROM groups g WHERE g.name = %s",
                         (name,)).fetchone()
        if row is None:
            return None
        rec = _group(row)
        members = dict(db.execute(
            "SELECT u.name, m.listen_only FROM memberships m JOIN users u ON u.id = m.user_id "
            "WHERE m.group_id = %s", (rec.id,)).fetchall())
        grants = {u: bytes(b) for u, b in db.execute(
            "SELECT u.name, k.sealed FROM grants k JOIN users u ON u.id = k.user_id "
            "WHERE k.group_id = %s AND k.epoch = %s", (rec.id, rec.key_epoch)).fetchall()}
    return rec, members, grants


def _load_all(db: psycopg.Connection[tuple[Any, ...]]) -> _Memory:
    """Everything, from one snapshot, with the version of the last change it includes."""
    mem = _Memory()
    try:
        with db.transaction():
            db.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            mem.version = _one(db.execute(
                "SELECT value FROM ptt_meta WHERE key = 'changes'").fetchone())
            for row in db.execute(f"SELECT {_USER_COLS} FROM users u"):
                mem.put_user(_user(row))
            groups: dict[int, GroupRecord] = {}
            for row in db.execute(f"SELECT {_GROUP_COLS} FROM groups g"):
                rec = _group(row)
                groups[rec.id] = rec
                mem.groups[rec.name] = rec
                mem.members[rec.name] = {}
                mem.grants[rec.name] = {}
            for gid, user, listen_only in db.execute(
                    "SELECT m.group_id, u.name, m.listen_only FROM memberships m "
                    "JOIN users u ON u.id = m.user_id"):
                name = groups[gid].name
                mem.members[name][user] = listen_only
                mem.of_user[user].add(name)
            for gid, user, sealed in db.execute(
                    "SELECT k.group_id, u.name, k.sealed FROM grants k "
                    "JOIN users u ON u.id = k.user_id JOIN groups g ON g.id = k.group_id "
                    "WHERE k.epoch = g.key_epoch"):
                mem.grants[groups[gid].name][user] = bytes(sealed)
    except psycopg.Error as exc:
        raise StoreError(f"cannot load the directory: {_why(exc)}") from None
    return mem


def _tell(on_change: Callable[[Change], None] | None, change: Change) -> None:
    """Hand ``change`` to the node; a failure there is logged, and following goes on (the
    directory holds the change whatever the node made of it)."""
    if on_change is None:
        return
    try:
        on_change(change)
    except Exception:
        log.exception("directory: applying %s %r failed", change.kind, change.name)


def _row(row: tuple[Any, ...] | None) -> tuple[Any, ...]:
    if row is None:
        raise StoreError("the directory database lost a row it must have")
    return row


def _one(row: tuple[Any, ...] | None) -> int:
    return int(_row(row)[0])


def _why(exc: BaseException) -> str:
    """The first line of a driver error: what libpq or the server said."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
