"""The window under Xvfb shows names in Chinese: a CJK family is chosen and its glyphs drawn."""

from __future__ import annotations

import asyncio
import os
import subprocess
import tkinter as tk
import tkinter.font as tkfont
from collections.abc import Iterator
from pathlib import Path

import pytest

from ptt.client.connection import Connection
from ptt.client.keys import add_user
from ptt.config import ClientConfig
from ptt.desktop.model import TalkState
from ptt.desktop.window import CJK_FAMILIES, DesktopWindow
from tests.desktop.conftest import ARTIFACTS, pump, screenshot
from tests.desktop.test_window import TONE_AUDIO
from tests.e2e.serverproc import ServerProcess

USER = "张伟"
GROUPS = ("志愿者", "north gate")


async def _setup(server: ServerProcess) -> str:
    cred = server.credentials
    async with Connection(server.address, cred["user"], cred["token"]) as coord:
        token = await add_user(coord, USER)
        for g in GROUPS:
            await coord.admin("group.create", {"name": g, "max_talk": 30})
            await coord.admin("group.add", {"name": g, "users": [USER]})
    return token


@pytest.fixture
def chinese_window(display: str, tmp_path: Path) -> Iterator[DesktopWindow]:
    server = ServerProcess(tmp_path / "ptt.db")
    server.start()
    try:
        token = asyncio.run(_setup(server))
        root = tk.Tk()
        root.geometry("+0+0")
        config = ClientConfig(server=f"127.0.0.1:{server.port}", user=USER, token=token)
        win = DesktopWindow(root, config, audio=TONE_AUDIO)
        ready = pump(root, 10, lambda: len(win.model.groups) == 2
                     and all(r.joined for r in win.model.groups.values())
                     and win.view().state is TalkState.IDLE)
        assert ready, f"window never got ready: {win.view()}"
        yield win
        if win.root.winfo_exists():
            win.close()
    finally:
        server.stop()


def _pixels(widget: tk.Widget) -> bytes:
    """The widget's pixels (RGB) as the X server shows them."""
    widget.update()
    x, y = widget.winfo_rootx(), widget.winfo_rooty()
    w, h = widget.winfo_width(), widget.winfo_height()
    return subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "x11grab",
                           "-video_size", f"{w}x{h}", "-i", f"{os.environ['DISPLAY']}+{x},{y}",
                           "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "gray", "-"],
                          check=True, capture_output=True, timeout=20).stdout


def test_the_window_draws_chinese_group_and_user_names(chinese_window: DesktopWindow) -> None:
    win = chinese_window
    root = win.root
    assert win.font_family in CJK_FAMILIES, (
        f"no CJK font family installed (apt-get install fonts-wqy-zenhei): {win.font_family}")
    assert tkfont.nametofont("TkDefaultFont", root).actual("family") == win.font_family
    assert set(win.model.groups) == set(GROUPS)
    assert root.title().endswith(USER)
    labels = {str(row["select"].cget("text")) for row in win._rows.values()}
    assert labels == set(GROUPS)

    # each character is its own glyph, not a missing-glyph box: two different characters
    # drawn in the window's font differ in their pixels, and each has ink on it
    probes = [tk.Label(root, text=c, font=(win.font_family, 28), bg="white", fg="black",
                       width=2) for c in ("志", "愿")]
    for p in probes:
        p.pack()
    pump(root, 0.3)
    a, b = (_pixels(p) for p in probes)
    assert len(a) == len(b) > 0
    assert a != b, "two CJK characters look the same: the font draws boxes"
    for px in (a, b):
        assert sum(1 for v in px if v < 128) > 40, "a CJK character drew no ink"
    for p in probes:
        p.destroy()

    shot = screenshot(root, ARTIFACTS / "desktop-names.png")
    assert shot.stat().st_size > 2000 and shot.read_bytes()[:4] == b"\x89PNG"
