"""``directory``: the store's behaviour tests run on each backend of the directory, the
embedded SQLite Store and the cluster's PostgreSQL directory (a real server, started once per
worker by tests/cluster/fixtures.py's ``postgres``, shared with the cluster's tests)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ptt.protocol.directory import Directory
from ptt.server.store import Store

Opener = Callable[[], Directory]


@pytest.fixture(params=["sqlite", "postgres"])
def open_directory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    """Opens the directory of this test, again on each call (a restart of the server)."""
    opened: list[Directory] = []
    if request.param == "sqlite":
        path = tmp_path / "data" / "ptt.db"

        def open_one() -> Directory:
            opened.append(Store(path))
            return opened[-1]
    else:
        from ptt.cluster.directory import PgDirectory
        from tests.cluster.databases import fresh_database
        dsn = fresh_database(request.getfixturevalue("postgres").dsn)

        def open_one() -> Directory:
            opened.append(PgDirectory(dsn))
            return opened[-1]
    yield open_one
    for d in opened:
        d.close()


@pytest.fixture
def directory(open_directory: Opener) -> Directory:
    return open_directory()
