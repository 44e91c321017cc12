"""The cluster's directory on a real PostgreSQL: followers in other processes see a change
within a bound, a follower cut off from PostgreSQL catches up and converges, and nothing stored
is lost when PostgreSQL is killed and started again. The behaviour shared with the SQLite store
(names, errors, cascades, keys) is tested on both backends by tests/server/test_store*.py."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.conftest import EngineStarter
from tests.cluster.databases import fresh_database

psycopg = pytest.importorskip("psycopg", reason="psycopg is in the cluster extra: make deps")

from ptt.cluster.directory import FOLLOW_APPLICATION, Change, PgDirectory  # noqa: E402
from ptt.cluster.engines import Postgres  # noqa: E402
from ptt.errors import StoreError  # noqa: E402

SALT, VERIFIER = b"s" * 16, b"v" * 32
SEEN_WITHIN = 2.0  # seconds: a change made on one node is applied on another (typically ~1 ms)


def state(d: PgDirectory) -> tuple[Any, ...]:
    return (d.list_users(), d.list_groups(include_private=True), d.all_memberships(),
            d.all_group_keys(), d.group_counts())


def add(d: PgDirectory, name: str, public: bytes | None = None) -> None:
    d.add_user(name, "volunteer", SALT, 1000, VERIFIER, public)


async def until(cond: Callable[[], bool], within: float = SEEN_WITHIN) -> None:
    deadline = time.monotonic() + within
    while not cond():
        assert time.monotonic() < deadline, "not within the bound"
        await asyncio.sleep(0.005)


# --- two processes --------------------------------------------------------------------------


class Runner:
    def __init__(self, dsn: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.cluster.directory_runner", dsn],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.line() == "listening"

    def line(self) -> str:
        assert self.proc.stdout is not None
        return self.proc.stdout.readline().strip()

    def send(self, command: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.send("quit")
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def runners(postgres: Postgres) -> Iterator[tuple[Runner, Runner]]:
    dsn = fresh_database(postgres.dsn)
    a = Runner(dsn)
    try:
        b = Runner(dsn)
    except BaseException:
        a.close()
        raise
    yield a, b
    a.close()
    b.close()


def test_two_followers_in_two_processes_see_each_others_changes(
        runners: tuple[Runner, Runner]) -> None:
    a, b = runners
    for writer, reader, command in ((a, b, "user ann"), (b, a, "group ops"),
                                    (a, b, "group north gate")):
        start = time.monotonic()
        writer.send(command)
        assert writer.line() == f"done {command}"  # the writer's own change: no callback
        kind, name = command.split(" ", 1)
        change, seen_kind, rest = reader.line().split(" ", 2)
        seen_name, at = rest.rsplit(" ", 1)
        assert (change, seen_kind, seen_name) == ("change", kind, name)
        assert float(at) - start < SEEN_WITHIN


# --- a follower cut off ----------------------------------------------------------------------


def cut_followers(dsn: str) -> None:
    """Terminate the listening connections on ``dsn``'s database and wait until they are gone
    (the caller's loop is blocked meanwhile: the follower cannot come back before the writes
    that follow)."""
    with psycopg.connect(dsn, autocommit=True) as admin:
        query = ("FROM pg_stat_activity WHERE application_name = %s "
                 "AND datname = current_database()")
        cut = admin.execute(f"SELECT pg_terminate_backend(pid) {query}",
                            (FOLLOW_APPLICATION,)).fetchall()
        assert cut == [(True,)]
        deadline = time.monotonic() + 10
        while admin.execute(f"SELECT count(*) {query}", (FOLLOW_APPLICATION,)).fetchone() != (0,):
            assert time.monotonic() < deadline
            time.sleep(0.01)


@pytest.mark.parametrize("path", ["log", "reload"])
def test_a_follower_cut_off_catches_up_and_converges(postgres: Postgres, path: str) -> None:
    dsn = fresh_database(postgres.dsn)

    async def main() -> None:
        with PgDirectory(dsn) as follower, PgDirectory(dsn) as writer:
            if path == "reload":  # too many missed changes for the log: everything again
                follower.catch_up_max = 0
            changes: list[Change] = []
            task = asyncio.create_task(follower.follow(changes.append, check_every=0.2))
            try:
                await asyncio.wait_for(follower.listening.wait(), SEEN_WITHIN)
                add(writer, "ann", b"a" * 64)
                writer.create_group("ops")
                writer.change_members("ops", add=["ann"])
                await until(lambda: state(follower) == state(writer))
                assert follower.catch_ups == 0 and [c.kind for c in changes] == [
                    "user", "group", "group"]
                cut_followers(dsn)
                # made while the follower is away: no notification reaches it
                add(writer, "ben", b"b" * 64)
                writer.change_members("ops", add=["ben"])
                writer.set_group_key("ops", 1, {"ann": b"ga", "ben": b"gb"})
                writer.remove_user("ann")  # cascades: its membership and grant go
                writer.create_group("call:ben+cat", private=True)
                await until(lambda: state(follower) == state(writer))
                assert follower.catch_ups == 1
                assert follower.reloads == (path == "reload")
                assert follower.get_user("ben").public == b"b" * 64
                assert follower.group_key("ops").grants == {"ben": b"gb"}
                assert follower.version == writer.version > 0
                # and it follows live changes again
                writer.delete_group("ops")
                await until(lambda: state(follower) == state(writer))
                assert follower.catch_ups == 1
            finally:
                task.cancel()

    asyncio.run(main())


def test_a_lost_notification_is_found_by_the_counter_check(postgres: Postgres) -> None:
    """A change whose notification never came (a connection that died silently, a write
    that did not notify) is found when the follower reads the counter after a quiet spell;
    a stray notification on the channel is ignored."""
    dsn = fresh_database(postgres.dsn)

    async def main() -> None:
        with PgDirectory(dsn) as follower, PgDirectory(dsn) as writer:
            task = asyncio.create_task(follower.follow(check_every=0.2))
            try:
                await asyncio.wait_for(follower.listening.wait(), SEEN_WITHIN)
                with psycopg.connect(dsn, autocommit=True) as raw:
                    raw.execute("NOTIFY ptt_directory, 'not a change'")
                    with raw.transaction():  # a write's rows and counter, without its NOTIFY
                        raw.execute("INSERT INTO users (name, role, salt, iterations, "
                                    "verifier, created) VALUES ('ann', 'volunteer', "
                                    "'\\x00', 1, '\\x00', 0)")
                        raw.execute("UPDATE ptt_meta SET value = value + 1 "
                                    "WHERE key = 'changes'")
                        raw.execute("INSERT INTO ptt_changes (version, kind, name) "
                                    "VALUES (1, 'user', 'ann')")
                await until(lambda: [u.name for u in follower.list_users()] == ["ann"])
                assert follower.catch_ups == 1 and follower.reloads == 0
                add(writer, "ben")  # and notifications are followed again
                await until(lambda: [u.name for u in follower.list_users()] == ["ann", "ben"])
                assert follower.catch_ups == 1 and not task.done()
            finally:
                task.cancel()

    asyncio.run(main())


def test_a_failure_in_the_nodes_callback_does_not_stop_following(
        postgres: Postgres, caplog: pytest.LogCaptureFixture) -> None:
    dsn = fresh_database(postgres.dsn)

    async def main() -> None:
        with PgDirectory(dsn) as follower, PgDirectory(dsn) as writer:
            told: list[str] = []

            def on_change(change: Change) -> None:
                told.append(change.name)
                if change.name == "ann":
                    raise RuntimeError("a bug in the node")

            task = asyncio.create_task(follower.follow(on_change))
            try:
                await asyncio.wait_for(follower.listening.wait(), SEEN_WITHIN)
                add(writer, "ann")
                add(writer, "ben")
                await until(lambda: told == ["ann", "ben"])
                assert [u.name for u in follower.list_users()] == ["ann", "ben"]
                assert "applying user 'ann' failed" in caplog.text
            finally:
                task.cancel()

    asyncio.run(main())


# --- PostgreSQL killed and started again -----------------------------------------------------


def wait_connectable(dsn: str, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while True:
        try:
            psycopg.connect(dsn, connect_timeout=2).close()
            return
        except psycopg.OperationalError:
            assert time.monotonic() < deadline, "PostgreSQL did not come back"
            time.sleep(0.05)


def test_nothing_stored_is_lost_when_postgresql_is_killed(fresh_engines: EngineStarter) -> None:
    pg = fresh_engines.postgres()  # durability off in the engine; the directory's own
    dsn = pg.dsn                    # commits ask for synchronous_commit

    async def main() -> None:
        with PgDirectory(dsn) as follower, PgDirectory(dsn) as writer:
            task = asyncio.create_task(follower.follow(check_every=0.2))
            try:
                await asyncio.wait_for(follower.listening.wait(), SEEN_WITHIN)
                for name in ("ann", "ben", "cat"):
                    add(writer, name, name[0].encode() * 64)
                writer.create_group("ops", max_talk=12.5, mode="relay")
                writer.create_group("plain", encrypted=False, record=True)
                writer.change_members("ops", add=["ann", "ben"], listen_only=True)
                writer.set_group_key("ops", 1, {"ann": b"g1a", "ben": b"g1b"})
                writer.add_member("plain", "cat")
                decoy = writer.secret("decoy")
                before = state(writer)
                await until(lambda: state(follower) == before)

                pg.members[0].kill()  # SIGKILL: no shutdown checkpoint
                with pytest.raises(StoreError, match="unavailable|cannot connect"):
                    add(writer, "dan")
                assert follower.get_user("ann").name == "ann"  # still answered from memory
                pg.members[0].start()
                wait_connectable(dsn)

                with PgDirectory(dsn) as again:
                    assert state(again) == before
                    assert again.secret("decoy") == decoy
                add(writer, "dan")  # the writer connects again by itself
                await until(lambda: state(follower) == state(writer), within=10.0)
                assert [u.name for u in follower.list_users()] == ["ann", "ben", "cat", "dan"]
            finally:
                task.cancel()

    asyncio.run(main())


# --- into the server's core --------------------------------------------------------------------


def test_changes_made_on_one_node_reach_the_core_of_another(postgres: Postgres) -> None:
    """Node a's coordinator commands (Admin, as the server runs them) reach node b's core
    through b's follower and ``Admin.apply_change``: b's core gets the user's login
    credentials, the members and the keys, and the removals, whether b follows them one by one
    or reloads everything after missing them."""
    import os

    from ptt.protocol.messages import Role
    from ptt.protocol.server import ServerCore
    from ptt.server.admin import Admin

    dsn = fresh_database(postgres.dsn)

    async def main() -> None:
        with PgDirectory(dsn) as dir_a, PgDirectory(dsn) as dir_b:
            node_a = Admin(dir_a, ServerCore(os.urandom))
            core_b = ServerCore(os.urandom)
            node_b = Admin(dir_b, core_b)
            node_b.load_all()
            now = 0.0
            task = asyncio.create_task(
                dir_b.follow(lambda c: node_b.apply_change(c.kind, c.name, now)))
            try:
                await asyncio.wait_for(dir_b.listening.wait(), SEEN_WITHIN)
                node_a.create_user("ann", Role.DISPATCHER)
                node_a.create_user("ben", Role.VOLUNTEER)
                node_a.execute("group.create", {"name": "ops", "max_talk": 12}, now)
                node_a.execute("group.create", {"name": "open", "plain": True}, now)
                node_a.execute("group.add", {"name": "open", "users": ["ann", "ben"],
                                             "listen_only": True}, now)
                dir_a.change_members("ops", add=["ann", "ben"])
                dir_a.set_group_key("ops", 1, {"ann": b"ga", "ben": b"gb"})

                def same() -> bool:
                    return ({n: (u.role, u.salt, u.verifier) for n, u in core_b.users.items()}
                            == {u.name: (u.role, u.salt, u.verifier)
                                for u in dir_a.list_users()}
                            and {n: (g.group_id, g.max_talk, g.members, g.key_epoch, g.grants)
                                 for n, g in core_b.groups.items()}
                            == {g.name: (g.id, g.max_talk,
                                         {m.user: m.listen_only for m in dir_a.members(g.name)},
                                         g.key_epoch, dir_a.group_key(g.name).grants)
                                for g in dir_a.list_groups(include_private=True)})

                await until(same)
                assert core_b.groups["ops"].grants == {"ann": b"ga", "ben": b"gb"}
                assert core_b.groups["open"].members == {"ann": True, "ben": True}
                # b misses what follows and reloads everything: the core is brought level too
                dir_b.catch_up_max = 0
                cut_followers(dsn)
                node_a.execute("group.update", {"name": "ops", "max_talk": 20}, now)
                node_a.execute("group.remove", {"name": "open", "users": ["ben"]}, now)
                node_a.execute("group.delete", {"name": "ops"}, now)
                node_a.execute("user.remove", {"name": "ben"}, now)
                await until(same)
                assert set(core_b.users) == {"ann"} and set(core_b.groups) == {"open"}
                assert dir_b.reloads == 1
            finally:
                task.cancel()

    asyncio.run(main())


def test_nodes_of_a_cluster_answer_an_unknown_name_with_the_same_decoy(
        postgres: Postgres, tmp_path: Path) -> None:
    """A real user's salt is the same on every node, so an unknown name's decoy salt must be
    too, or asking two nodes would tell real names from unknown ones: the server's secret
    comes from the shared directory."""
    import socket

    from ptt.config import ServerConfig
    from ptt.protocol import limits
    from ptt.protocol import messages as m
    from ptt.protocol.messages import decode_message, encode_message
    from ptt.server.app import PttServer

    dsn = fresh_database(postgres.dsn)
    bare = encode_message(m.Hello(1, "ghost", b"n" * 16))
    hello = encode_message(m.Hello(1, "ghost", b"n" * 16, bytes(limits.padding_needed(len(bare)))))

    async def salt_from(node: str) -> bytes:
        server = PttServer(ServerConfig(host="127.0.0.1", port=0, db=tmp_path / f"{node}.db"),
                           iterations=1000, directory=PgDirectory(dsn))
        await server.start()
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.setblocking(False)
                sock.sendto(hello, server.address)
                loop = asyncio.get_running_loop()
                data = await asyncio.wait_for(loop.sock_recv(sock, 2048), 5)
            challenge = decode_message(data)
            assert isinstance(challenge, m.Challenge)
            return challenge.salt
        finally:
            server.close()

    async def main() -> None:
        salts = [await salt_from(node) for node in ("a", "b")]
        assert salts[0] == salts[1]

    asyncio.run(main())
