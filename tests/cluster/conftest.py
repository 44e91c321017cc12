"""Engines of a test's own for the cluster's tests (``fresh_engines``).

The shared session-scoped engines (``postgres``, ``nats``, ``etcd``, ...) and
:class:`EngineStarter` live in tests/cluster/fixtures.py, registered once for the whole suite.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.fixtures import FAST_ELECTION_MS, FAST_HEARTBEAT_MS, EngineStarter

__all__ = ["FAST_ELECTION_MS", "FAST_HEARTBEAT_MS", "EngineStarter"]


@pytest.fixture
def fresh_engines(tmp_path: Path) -> Iterator[EngineStarter]:
    """Fresh engines for this test alone (to kill, pause or stop), stopped when it ends."""
    starter = EngineStarter(tmp_path)
    yield starter
    starter.stop_all()
