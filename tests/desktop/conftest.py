"""Fixtures for the desktop tests: users on a real server, a second real client.

- ``tokens``: ``ann`` (the window), ``bob`` (the :class:`Peer`) and ``cat`` in ``volunteers`` and
  ``drivers`` on the ``server`` fixture (tests/conftest.py), whose ``display`` the windows use.
- :class:`Peer`: a client in its own thread and loop, recording every event it sees, so the
  tests can ask the server's view of the floor while Tk keeps the main thread.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import threading
import time
import tkinter as tk
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

import pytest

from ptt.client.connection import Connection
from ptt.client.keys import add_user
from ptt.protocol import client as cl
from tests.e2e.serverproc import ServerProcess

T = TypeVar("T")
GROUPS = ("volunteers", "drivers")
USERS = ["ann", "bob", "cat"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"


async def _setup(server: ServerProcess) -> dict[str, str]:
    cred = server.credentials
    tokens = {}
    async with Connection(server.address, cred["user"], cred["token"]) as coord:
        for u in USERS:
            tokens[u] = await add_user(coord, u)
        for g in GROUPS:
            await coord.admin("group.create", {"name": g, "max_talk": 30})
            await coord.admin("group.add", {"name": g, "users": USERS})
    return tokens


@pytest.fixture
def tokens(server: ServerProcess) -> dict[str, str]:
    return asyncio.run(_setup(server))


def group_show(server: ServerProcess, group: str) -> dict[str, Any]:
    """The coordinator's ``group.show``: the server's own view of the floor."""
    async def run() -> dict[str, Any]:
        cred = server.credentials
        async with Connection(server.address, cred["user"], cred["token"]) as coord:
            return await coord.admin("group.show", {"name": group})
    return asyncio.run(run())


class Peer:
    """Another member (a real client) in its own thread; records (time, event) pairs."""

    def __init__(self, server: ServerProcess, user: str, token: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.events: list[tuple[float, cl.ClientEvent]] = []
        self.voice = 0
        self._lock = threading.Lock()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.conn = Connection(server.address, user, token)
        self.run(self._open())

    async def _open(self) -> None:
        await self.conn.open()
        q = self.conn.subscribe()
        self.conn.on_voice = self._on_voice
        for g in GROUPS:
            await self.conn.join(g)
        self._recorder = asyncio.get_running_loop().create_task(self._record(q))

    def _on_voice(self, data: bytes) -> None:
        self.voice += 1

    async def _record(self, q: asyncio.Queue[cl.ClientEvent]) -> None:
        while True:
            ev = await q.get()
            with self._lock:
                self.events.append((time.monotonic(), ev))

    def run(self, coro: Any, timeout: float = 10.0) -> Any:
        fut: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return fut.result(timeout)

    def spawn(self, coro: Any) -> Future[Any]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def talkers(self, group: str) -> list[tuple[str | None, int]]:
        with self._lock:
            return [(e.talker, e.burst_id) for _, e in self.events
                    if isinstance(e, cl.TalkerChanged) and e.group == group]

    def talker(self, group: str) -> str | None:
        return self.conn.core.groups[group].talker

    def close(self) -> None:
        async def shutdown() -> None:
            self._recorder.cancel()
            await asyncio.gather(self._recorder, return_exceptions=True)
            await self.conn.close()
        try:
            self.run(shutdown(), 5)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)


@pytest.fixture
def bob(server: ServerProcess, tokens: dict[str, str]) -> Iterator[Peer]:
    p = Peer(server, "bob", tokens["bob"])
    yield p
    p.close()


def pump(root: tk.Tk, seconds: float, until: Callable[[], bool] | None = None) -> bool:
    """Run Tk for up to ``seconds`` (or until ``until()``); True if ``until`` became true."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        root.update()
        if until is not None and until():
            return True
        time.sleep(0.003)
    return until() if until is not None else True


def xdo(*args: str) -> None:
    subprocess.run(["xdotool", *args], check=True, timeout=5)


def point_at(x: int | str, y: int | str) -> None:
    """Move the pointer to (x, y) and wait until it is there. ``mousemove --sync`` waits for a
    motion event, which never comes when the pointer is already there (an earlier test on the
    same display pressed the same button): so it first leaves for the other corner."""
    xdo("mousemove", "0", "0" if int(y) > 10 else "50")
    xdo("mousemove", "--sync", str(x), str(y))


def screenshot(root: tk.Tk, path: Path) -> Path:
    """The window's pixels as PNG, grabbed from the X server by ffmpeg's x11grab."""
    root.update()
    x, y = root.winfo_rootx(), root.winfo_rooty()
    w, h = root.winfo_width(), root.winfo_height()
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "x11grab",
                    "-video_size", f"{w}x{h}", "-i", f"{os.environ['DISPLAY']}+{x},{y}",
                    "-frames:v", "1", "-y", str(path)], check=True, timeout=20)
    return path
