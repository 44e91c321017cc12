"""The store's end-to-end key data: public identities, encrypted groups, grants, and the
migration of a database made before them (schema 1)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from ptt.errors import ConflictError, ValidationError
from ptt.server.store import MIGRATIONS, SCHEMA_VERSION, Store
from tests.server.conftest import Opener

SALT, VERIFIER = b"s" * 16, b"v" * 32
PUB = {"ann": b"a" * 64, "ben": b"b" * 64}


def make_v1(path: Path) -> None:
    """A database of schema 1 (before end-to-end keys), as ptt wrote it: a user, a group, a
    member."""
    raw = sqlite3.connect(path, isolation_level=None)
    raw.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    raw.execute("INSERT INTO schema_version (version) VALUES (1)")
    for statement in MIGRATIONS[1]:
        raw.execute(statement)
    raw.execute("INSERT INTO users (name, role, salt, iterations, verifier, created) "
                "VALUES ('ann', 'coordinator', ?, 1000, ?, 1.0)", (SALT, VERIFIER))
    raw.execute("INSERT INTO groups (name, max_talk, mode, record, private, created) "
                "VALUES ('ops', 12, 'relay', 1, 0, 2.0)")
    raw.execute("INSERT INTO memberships (group_id, user_id, listen_only) VALUES (1, 1, 1)")
    raw.close()


def test_an_old_database_migrates_without_losing_anything(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    make_v1(path)
    with Store(path) as store:
        assert store.schema_version == SCHEMA_VERSION == 5
        u = store.get_user("ann")
        assert (u.salt, u.iterations, u.verifier, u.created, u.public) == (
            SALT, 1000, VERIFIER, 1.0, None)
        g = store.get_group("ops")
        assert (g.id, g.max_talk, g.mode, g.record, g.created) == (1, 12.0, "relay", True, 2.0)
        assert not g.encrypted and g.key_epoch == 0  # an existing group stays plain
        assert [(mr.user, mr.listen_only) for mr in store.members("ops")] == [("ann", True)]
        assert store.create_group("new").encrypted  # new groups are encrypted by default
    with Store(path) as again:  # and a second open does not migrate twice
        assert again.schema_version == SCHEMA_VERSION and again.get_user("ann").verifier == VERIFIER


def test_public_identity_is_stored_and_checked(open_directory: Opener) -> None:
    with open_directory() as store:
        store.add_user("ann", "volunteer", SALT, 1000, VERIFIER, PUB["ann"])
        assert store.get_user("ann").public == PUB["ann"]
        with pytest.raises(ValidationError, match="64 bytes"):
            store.add_user("ben", "volunteer", SALT, 1000, VERIFIER, b"short")


def test_grants_replace_per_epoch_survive_reopen_and_only_go_up(open_directory: Opener) -> None:
    with open_directory() as store:
        for u, p in PUB.items():
            store.add_user(u, "volunteer", SALT, 1000, VERIFIER, p)
        store.add_user("cat", "volunteer", SALT, 1000, VERIFIER)
        store.create_group("ops")
        for u in ("ann", "ben"):
            store.add_member("ops", u)
        assert store.group_key("ops").epoch == 0 and store.all_group_keys() == []
        assert store.member_keys("ops") == PUB
        store.set_group_key("ops", 1, {"ann": b"g1a", "ben": b"g1b"})
        with pytest.raises(ConflictError, match="not newer"):
            store.set_group_key("ops", 1, {"ann": b"x"})  # a replayed upload
        with pytest.raises(ValidationError, match="not a member"):
            store.set_group_key("ops", 2, {"cat": b"x"})
        assert store.group_key("ops").grants == {"ann": b"g1a", "ben": b"g1b"}
        store.remove_member("ops", "ben")  # its grant goes with the membership
        assert store.group_key("ops").grants == {"ann": b"g1a"}
        store.set_group_key("ops", 2, {"ann": b"g2a"})
    with open_directory() as store:
        key = store.group_key("ops")
        assert (key.epoch, key.grants) == (2, {"ann": b"g2a"})
        assert store.get_group("ops").key_epoch == 2
        assert [k.group for k in store.all_group_keys()] == ["ops"]
        store.remove_user("ann")
        assert store.group_key("ops").grants == {}


def test_a_plain_group_takes_no_key(open_directory: Opener) -> None:
    with open_directory() as store:
        store.add_user("ann", "volunteer", SALT, 1000, VERIFIER, PUB["ann"])
        g = store.create_group("open", encrypted=False)
        assert not g.encrypted
        store.add_member("open", "ann")
        with pytest.raises(ValidationError, match="plain"):
            store.set_group_key("open", 1, {"ann": b"g"})
