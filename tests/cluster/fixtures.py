"""Real engines for the tests, on loopback ports of this worker's slice.

Session-scoped engines (``postgres``, ``nats``, ``nats_cluster``, ``etcd``, ``etcd_fast``,
``etcd_cluster``) start once per pytest-xdist worker that uses them and are shared: a test may
write to them but never stops, kills or pauses a member (tests/cluster/conftest.py's
``fresh_engines`` gives a test engines of its own). Registered once for the whole suite by
tests/conftest.py (``pytest_plugins``): a fixture imported into two conftests is two fixtures,
so a worker running tests of both directories started a second PostgreSQL (~1.5 s of CPU). A
test whose engine is not installed is skipped, saying which Debian package brings it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from ptt.cluster import engines
from ptt.cluster.engines import Engine, Etcd, Nats, Postgres
from tests.ports import free_tcp_port

E = TypeVar("E", bound=Engine)

# raft timers short enough for 1 s leases (etcd's minimum TTL is 1.5 election timeouts)
FAST_HEARTBEAT_MS = 50
FAST_ELECTION_MS = 500


class EngineStarter:
    """Starts engines under one directory and stops every one of them at the end."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.started: list[Engine] = []

    def _start(self, kind: str, start: Callable[[Path], E]) -> E:
        reason = engines.missing(kind)
        if reason:
            pytest.skip(reason)
        engine = start(self.root / f"{kind}-{len(self.started)}")
        self.started.append(engine)
        return engine

    def postgres(self) -> Postgres:
        return self._start(
            "postgres", lambda root: engines.start_postgres(root, port_source=free_tcp_port)
        )

    def nats(self, members: int = 1, *, jetstream: bool = False) -> Nats:
        return self._start(
            "nats-server",
            lambda root: engines.start_nats(
                root, members=members, jetstream=jetstream, port_source=free_tcp_port
            ),
        )

    def etcd(self, members: int = 1, *, heartbeat_ms: int = engines.ETCD_HEARTBEAT_MS,
             election_ms: int = engines.ETCD_ELECTION_MS) -> Etcd:
        return self._start(
            "etcd",
            lambda root: engines.start_etcd(
                root, members=members, heartbeat_ms=heartbeat_ms, election_ms=election_ms,
                port_source=free_tcp_port,
            ),
        )

    def stop_all(self) -> None:
        for engine in reversed(self.started):
            engine.stop()


@pytest.fixture(scope="session")
def _session_engines(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineStarter]:
    starter = EngineStarter(tmp_path_factory.mktemp("engines"))
    yield starter
    starter.stop_all()


@pytest.fixture(scope="session")
def postgres(_session_engines: EngineStarter) -> Postgres:
    return _session_engines.postgres()


@pytest.fixture(scope="session")
def nats(_session_engines: EngineStarter) -> Nats:
    return _session_engines.nats()


@pytest.fixture(scope="session")
def nats_cluster(_session_engines: EngineStarter) -> Nats:
    return _session_engines.nats(3)


@pytest.fixture(scope="session")
def etcd(_session_engines: EngineStarter) -> Etcd:
    return _session_engines.etcd()


@pytest.fixture(scope="session")
def etcd_fast(_session_engines: EngineStarter) -> Etcd:
    """One etcd member with shortened raft timers (heartbeat 50 ms, election 500 ms), so that it
    grants 1 s leases: with its defaults etcd raises every TTL to at least 2 s."""
    return _session_engines.etcd(heartbeat_ms=FAST_HEARTBEAT_MS, election_ms=FAST_ELECTION_MS)


@pytest.fixture(scope="session")
def etcd_cluster(_session_engines: EngineStarter) -> Etcd:
    return _session_engines.etcd(3)
