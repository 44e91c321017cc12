from __future__ import annotations

import sqlite3
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ptt.errors import ConflictError, NotFoundError, StoreError, ValidationError
from ptt.protocol import auth
from ptt.protocol.directory import Directory
from ptt.protocol.messages import Role
from ptt.server.store import SCHEMA_VERSION, GroupRecord, MemberRecord, Store, default_db_path
from tests.server.conftest import Opener

SALT = b"s" * 16
VERIFIER = b"v" * 32


def add(store: Directory, name: str, role: Role | str = Role.VOLUNTEER) -> None:
    store.add_user(name, role, SALT, 1000, VERIFIER)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "data" / "ptt.db"


@pytest.fixture
def sqlite_store(db: Path) -> Iterator[Store]:
    with Store(db) as s:
        yield s


@pytest.fixture
def store(directory: Directory) -> Directory:
    """The directory on each backend (tests/server/conftest.py)."""
    return directory


# --- files, modes, persistence -----------------------------------------------------------------


def test_creates_a_private_wal_database(db: Path, sqlite_store: Store) -> None:
    assert db.exists()
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    assert stat.S_IMODE(db.parent.stat().st_mode) == 0o700
    assert sqlite_store.journal_mode == "wal"
    assert sqlite_store.schema_version == SCHEMA_VERSION == 5
    add(sqlite_store, "alice")
    wal = db.with_name(db.name + "-wal")
    assert wal.exists() and stat.S_IMODE(wal.stat().st_mode) == 0o600
    raw = sqlite3.connect(db)
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"  # a property of the file
    raw.close()


def test_pragmas(sqlite_store: Store) -> None:
    conn = sqlite_store._db
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    assert Store(":memory:", durable=True)._db.execute("PRAGMA synchronous").fetchone()[0] == 2


def test_everything_persists_across_close_and_reopen(open_directory: Opener) -> None:
    creds = auth.make_credentials("tok", b"t" * 16, auth.MIN_ITERATIONS)
    with open_directory() as s:
        s.add_user("Coord", "coordinator", creds.salt, creds.iterations, creds.verifier)
        add(s, "alice")
        add(s, "bob", Role.DISPATCHER)
        g = s.create_group("Volunteers", max_talk=12.5, mode="relay", record=True)
        s.create_group("call:alice+bob", private=True)
        s.add_member("volunteers", "alice")
        s.add_member("volunteers", "bob", listen_only=True)
    with open_directory() as s:
        coord = s.get_user("coord")
        assert coord.role is Role.COORDINATOR
        assert (coord.salt, coord.iterations, coord.verifier) == (
            creds.salt, creds.iterations, creds.verifier)
        assert [u.name for u in s.list_users()] == ["alice", "bob", "coord"]
        assert s.get_group("volunteers") == g
        assert g.max_talk == 12.5 and g.mode == "relay" and g.record and not g.private
        assert s.members("volunteers") == [
            MemberRecord("volunteers", "alice", False),
            MemberRecord("volunteers", "bob", True),
        ]
        assert [x.name for x in s.list_groups()] == ["volunteers"]
        assert [x.name for x in s.list_groups(include_private=True)] == [
            "call:alice+bob", "volunteers"]


def test_committed_writes_survive_a_killed_process(db: Path) -> None:
    script = (
        "import os, signal\n"
        "from ptt.server.store import Store\n"
        f"s = Store({str(db)!r})\n"
        "s.add_user('alice', 'volunteer', b's' * 16, 1000, b'v' * 32)\n"
        "s.create_group('g')\n"
        "s.add_member('g', 'alice')\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"  # no close(), no checkpoint
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], check=False, capture_output=True, timeout=60
    )
    assert proc.returncode == -9, proc.stderr.decode()
    with Store(db) as s:
        assert [m.user for m in s.members("g")] == ["alice"]


def test_memory_database_for_tests() -> None:
    with Store(":memory:") as s:
        add(s, "alice")
        assert s.get_user("alice").name == "alice"


def test_default_db_path_is_under_xdg_data(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert default_db_path() == tmp_path / "ptt" / "ptt.db"


# --- schema and foreign files ------------------------------------------------------------------


def test_refuses_a_newer_schema(db: Path) -> None:
    Store(db).close()
    raw = sqlite3.connect(db)
    raw.execute("UPDATE schema_version SET version = 99")
    raw.commit()
    raw.close()
    with pytest.raises(StoreError, match="schema version 99, newer than this ptt"):
        Store(db)


def test_refuses_a_foreign_sqlite_database(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    raw = sqlite3.connect(path)
    raw.execute("CREATE TABLE notes (x)")
    raw.commit()
    raw.close()
    with pytest.raises(StoreError, match="not ptt's"):
        Store(path)


def test_refuses_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="cannot use .* as a ptt database"):
        Store(path)


def test_a_schema_name_that_is_not_text_is_named_damaged(db: Path) -> None:
    """Random damage can leave bytes in a schema entry's name; SQLite then quotes them in its
    error and Python cannot decode the message (1 in ~400 damaged copies in the acceptance
    test's way of damaging a file)."""
    with Store(db) as s:
        add(s, "alice")
    raw = sqlite3.connect(db)
    raw.execute("PRAGMA writable_schema = ON")
    raw.execute("UPDATE sqlite_master SET name = CAST(x'9dff41' AS TEXT), sql = 'damaged' "
                "WHERE name = 'users'")
    raw.commit()
    raw.close()
    with pytest.raises(StoreError, match=r"ptt\.db is damaged .* restore it from a backup"):
        Store(db)


def test_a_stored_name_that_is_not_text_is_named_damaged_where_it_is_read(db: Path) -> None:
    """Damage inside a record passes SQLite's page checks; its bytes reach the first read."""
    with Store(db) as s:
        add(s, "alice")
    raw = sqlite3.connect(db)
    raw.execute("UPDATE users SET name = CAST(x'41ff42' AS TEXT) WHERE name = 'alice'")
    raw.commit()
    raw.close()
    with Store(db) as s, pytest.raises(StoreError, match=r"ptt\.db is damaged \(a stored text"):
        s.list_users()


def test_unopenable_path_is_a_store_error(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("")
    with pytest.raises(StoreError, match="cannot open database"):
        Store(tmp_path / "f" / "ptt.db")


# --- users -------------------------------------------------------------------------------------


def test_users(store: Directory) -> None:
    rec = store.add_user("Alice", "Dispatcher", SALT, 2000, VERIFIER)
    assert (rec.name, rec.role, rec.iterations) == ("alice", Role.DISPATCHER, 2000)
    assert rec.created > 0
    assert repr(VERIFIER) not in repr(rec) and repr(SALT) not in repr(rec)  # kept out of logs
    assert store.get_user("ALICE") == rec
    with pytest.raises(ConflictError, match="^user 'alice' already exists$"):
        add(store, "alice")
    with pytest.raises(NotFoundError, match="^unknown user 'bob'$"):
        store.get_user("bob")
    with pytest.raises(NotFoundError, match="^unknown user 'bob'$"):
        store.remove_user("bob")
    with pytest.raises(ValidationError, match="invalid user name"):
        add(store, "no spaces")
    with pytest.raises(ValidationError, match="invalid role"):
        store.add_user("carol", "admin", SALT, 1000, VERIFIER)
    # names are compared in their PRECIS-mapped form: these are all the user 'zoë'
    add(store, "Zo\u00eb")
    for same in ("zo\u00eb", "ZOE\u0308", "\uff3a\uff2f\u00cb"):
        with pytest.raises(ConflictError, match="^user 'zo\u00eb' already exists$"):
            add(store, same)
    assert store.get_user("\uff3a\uff2f\u00cb").name == "zo\u00eb"
    store.remove_user("ZO\u00cb")
    with pytest.raises(ValidationError, match="credentials"):
        store.add_user("carol", "volunteer", b"", 1000, VERIFIER)
    store.remove_user("alice")
    assert store.list_users() == []


# --- groups ------------------------------------------------------------------------------------


def test_groups(store: Directory) -> None:
    g = store.create_group("North")
    assert (g.name, g.max_talk, g.mode, g.record, g.private) == ("north", 30.0, "auto", False,
                                                                  False)
    with pytest.raises(ConflictError, match="^group 'north' already exists$"):
        store.create_group("NORTH")
    with pytest.raises(NotFoundError, match="^unknown group 'south'$"):
        store.get_group("south")
    with pytest.raises(NotFoundError, match="^unknown group 'south'$"):
        store.delete_group("south")
    with pytest.raises(NotFoundError, match="^unknown group 'south'$"):
        store.update_group("south", max_talk=5)
    with pytest.raises(ValidationError, match="invalid group name"):
        store.create_group("call:a+b")  # reserved for private call groups
    assert store.create_group("North  Gate").name == "north gate"
    with pytest.raises(ConflictError, match="^group 'north gate' already exists$"):
        store.create_group(" NORTH GATE")
    store.delete_group("north gate")
    with pytest.raises(ValidationError, match="invalid group mode 'broadcast'"):
        store.create_group("x", mode="broadcast")
    for bad in (0, -1, 3601, float("nan"), True):
        with pytest.raises(ValidationError, match="invalid max talk time"):
            store.create_group("x", max_talk=bad)
    assert store.list_groups() == [g]


def test_update_group_changes_only_what_is_given(store: Directory) -> None:
    g = store.create_group("north", max_talk=20, mode="multicast")
    assert store.update_group("north") == g
    u = store.update_group("north", record=True)
    assert (u.max_talk, u.mode, u.record, u.id) == (20.0, "multicast", True, g.id)
    u = store.update_group("north", max_talk=45, mode="Relay")
    assert (u.max_talk, u.mode, u.record) == (45.0, "relay", True)
    with pytest.raises(ValidationError):
        store.update_group("north", mode="nope")
    assert store.get_group("north") == u  # the failed update changed nothing


def test_group_ids_are_never_reused(open_directory: Opener) -> None:
    store = open_directory()
    a = store.create_group("a")
    b = store.create_group("b")
    store.delete_group("b")
    c = store.create_group("c")
    assert a.id < b.id < c.id
    store.close()
    with open_directory() as again:
        again.delete_group("c")
        assert again.create_group("d").id > c.id


# --- memberships and cascades ------------------------------------------------------------------


def test_memberships(store: Directory) -> None:
    add(store, "alice")
    add(store, "bob")
    store.create_group("north")
    store.create_group("south")
    store.add_member("north", "Alice")
    store.add_member("south", "alice")
    store.add_member("north", "bob")
    assert store.add_member("north", "bob", listen_only=True) == MemberRecord("north", "bob", True)
    assert [m.listen_only for m in store.members("north")] == [False, True]
    assert [g.name for g in store.groups_of("alice")] == ["north", "south"]
    assert all(isinstance(g, GroupRecord) for g in store.groups_of("alice"))
    assert len(store.all_memberships()) == 3
    store.remove_member("north", "alice")
    assert [m.user for m in store.members("north")] == ["bob"]
    with pytest.raises(NotFoundError, match="^user 'alice' is not a member of group 'north'$"):
        store.remove_member("north", "alice")
    with pytest.raises(NotFoundError, match="^unknown group 'east'$"):
        store.add_member("east", "alice")
    with pytest.raises(NotFoundError, match="^unknown user 'carol'$"):
        store.add_member("north", "carol")
    with pytest.raises(NotFoundError, match="^unknown group 'east'$"):
        store.members("east")
    with pytest.raises(NotFoundError, match="^unknown user 'carol'$"):
        store.groups_of("carol")


def test_removing_a_user_removes_their_memberships(store: Directory) -> None:
    add(store, "alice")
    add(store, "bob")
    store.create_group("north")
    store.add_member("north", "alice")
    store.add_member("north", "bob")
    store.remove_user("alice")
    assert [m.user for m in store.members("north")] == ["bob"]
    assert store._db.execute("SELECT count(*) FROM memberships").fetchone()[0] == 1


def test_deleting_a_group_removes_its_memberships(store: Directory) -> None:
    add(store, "alice")
    store.create_group("north")
    store.create_group("south")
    store.add_member("north", "alice")
    store.add_member("south", "alice")
    store.delete_group("north")
    assert [g.name for g in store.groups_of("alice")] == ["south"]
    assert store._db.execute("SELECT count(*) FROM memberships").fetchone()[0] == 1


def test_foreign_keys_are_enforced(sqlite_store: Store) -> None:
    with pytest.raises(sqlite3.IntegrityError):
        sqlite_store._db.execute("INSERT INTO memberships (group_id, user_id) VALUES (999, 999)")


def test_a_failed_write_leaves_nothing_behind(sqlite_store: Store) -> None:
    add(sqlite_store, "alice")
    with pytest.raises(ZeroDivisionError), sqlite_store._write() as db:
        db.execute("DELETE FROM users")
        1 / 0  # noqa: B018 - an error mid-transaction
    assert [u.name for u in sqlite_store.list_users()] == ["alice"]
    assert not sqlite_store._db.in_transaction


# --- concurrency -------------------------------------------------------------------------------


def test_reader_is_not_blocked_by_an_open_write_and_sees_only_commits(db: Path) -> None:
    with Store(db) as writer, Store(db) as reader:
        add(writer, "alice")
        writer._db.execute("BEGIN IMMEDIATE")
        writer._db.execute(
            "INSERT INTO users (name, role, salt, iterations, verifier, created) "
            "VALUES ('bob', 'volunteer', x'00', 1, x'00', 0)"
        )
        start = time.perf_counter()
        assert [u.name for u in reader.list_users()] == ["alice"]  # no dirty read
        assert time.perf_counter() - start < 0.5  # and no waiting on the writer's lock
        writer._db.execute("COMMIT")
        assert [u.name for u in reader.list_users()] == ["alice", "bob"]


def test_concurrent_reader_thread_while_writing(db: Path) -> None:
    Store(db).close()
    errors: list[BaseException] = []
    seen: list[int] = []
    stop = threading.Event()

    def read() -> None:
        try:
            with Store(db) as r:
                while not stop.is_set():
                    n = len(r.list_users())
                    assert not seen or n >= seen[-1]  # monotonic: never a torn state
                    seen.append(n)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    thread = threading.Thread(target=read)
    thread.start()
    try:
        with Store(db) as w:
            for i in range(200):
                add(w, f"user{i}")
    finally:
        stop.set()
        thread.join(10)
    assert not errors, errors
    assert len(seen) > 1
    with Store(db) as s:
        assert len(s.list_users()) == 200


def test_a_second_writer_waits_for_the_first(db: Path) -> None:
    Store(db).close()
    holder = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")  # another process, say, holding the write lock
    timer = threading.Timer(0.3, lambda: holder.execute("COMMIT"))
    timer.start()
    try:
        with Store(db) as b:
            start = time.perf_counter()
            add(b, "alice")  # waits until the holder commits, then succeeds (busy timeout)
            assert time.perf_counter() - start >= 0.25
            assert b.get_user("alice").name == "alice"
    finally:
        timer.join()
        holder.close()


def test_operations_are_fast(store: Directory) -> None:
    add(store, "alice")
    store.create_group("north")
    start = time.perf_counter()
    for _ in range(200):
        store.get_user("alice")
        store.members("north")
    per_call = (time.perf_counter() - start) / 400
    assert per_call < 0.001  # reads are sub-millisecond, callable on the event loop


def test_peers_are_kept_across_a_reopen_and_told_once(tmp_path: Path) -> None:
    path = tmp_path / "ptt.db"
    with Store(path) as store:
        store.update_peers({1: ("127.0.0.1", 4000), 2: ("127.0.0.1", 4001),
                            3: ("127.0.0.2", 4000)}, set())
        store.update_peers({4: ("127.0.0.1", 4001)}, {3})  # a session ended, one started
        store.update_peers({}, set())  # nothing to do: no write
    with Store(path) as store:  # a restart (or a SIGKILL: every update is its own commit)
        assert store.take_peers() == [("127.0.0.1", 4000), ("127.0.0.1", 4001)]
        assert store.take_peers() == []  # told once
