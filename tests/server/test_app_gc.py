"""The server's collector policy: its long-lived state is frozen out of full collections, again as
sessions grow, and thawed once in a while so frozen cycles are still reclaimed."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest

from ptt.config import ServerConfig
from ptt.server import app, gcfreeze
from ptt.server.app import PttServer, gc_freeze_wanted


@pytest.fixture(autouse=True)
def thawed() -> Iterator[None]:
    """gc.freeze acts on this whole test process: leave it as we found it."""
    yield
    gc.unfreeze()


def config(tmp_path: Path) -> ServerConfig:
    return ServerConfig(host="127.0.0.1", port=0, db=tmp_path / "ptt.db",
                        record_dir=tmp_path / "rec")


def test_off_unless_asked(tmp_path: Path) -> None:
    async def main() -> None:
        server = PttServer(config(tmp_path), iterations=1000)
        await server.start()
        try:
            assert gc.get_freeze_count() == 0 and server.gc_freezes == 0
        finally:
            server.close()

    asyncio.run(main())


def test_env_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PTT_NO_GC_FREEZE", raising=False)
    assert gc_freeze_wanted()
    monkeypatch.setenv("PTT_NO_GC_FREEZE", "1")
    assert not gc_freeze_wanted()


def test_frozen_at_start_again_on_growth_and_thawed_on_schedule(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(app, "GC_CHECK_EVERY", 0.05)

    async def main() -> None:
        server = PttServer(config(tmp_path), iterations=1000, gc_freeze=True)
        await server.start()
        try:
            assert server.gc_freezes == 1 and gc.get_freeze_count() > 0
            await asyncio.sleep(0.2)  # a few checks: no new sessions, no new freeze
            assert server.gc_freezes == 1

            # growth: pretend 150 sessions logged in (the count is all the check reads)
            monkeypatch.setattr(type(server.core.sessions), "__len__", lambda self: 150)
            for _ in range(40):  # bounded: 2 s
                if server.gc_freezes == 2:
                    break
                await asyncio.sleep(0.05)
            assert server.gc_freezes == 2
            await asyncio.sleep(0.2)
            assert server.gc_freezes == 2  # 150 is not 10% over 150

            # the hourly thaw: everything is looked at once (cycles frozen earlier reclaimed)
            class Cycle:
                pass

            c = Cycle()
            c.me = c  # type: ignore[attr-defined]
            alive = weakref.ref(c)
            gc.freeze()  # frozen with the state
            del c
            gc.collect()
            assert alive() is not None  # frozen: no collection looks at it
            monkeypatch.setattr(gcfreeze, "GC_THAW_EVERY", 0.0)
            for _ in range(40):
                if server.gc_freezes == 3:
                    break
                await asyncio.sleep(0.05)
            assert server.gc_freezes == 3
            assert alive() is None  # reclaimed by the thaw's collection
            assert gc.get_freeze_count() > 0  # and the state frozen again
        finally:
            server.close()
        timer = server._gc_timer
        assert timer is None  # close() stopped the checks

    asyncio.run(main())
