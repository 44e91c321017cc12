"""Acceptance tests: the real `ptt` console script as processes, as a user runs it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.acceptance.harness import Site


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    """A fresh server (own database) on a free loopback port; stopped after the test."""
    s = Site(tmp_path).start()
    yield s
    s.stop()
