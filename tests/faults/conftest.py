from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.serverproc import ServerProcess


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A real `ptt server` process on 127.0.0.1 (SIGKILL-able, restartable on the same port)."""
    s = ServerProcess(tmp_path / "ptt.db")
    s.start()
    yield s
    s.stop()
