"""The real window under Xvfb shows text pages: a message list with an unread count, the page
tone (the emergency tone for an urgent page), and a read receipt once the person reads them."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from ptt.desktop.window import DesktopWindow
from tests.acceptance.harness import PTT, clean_env
from tests.desktop.conftest import ARTIFACTS, pump, screenshot
from tests.desktop.test_window import win  # noqa: F401 (the window fixture)
from tests.e2e.serverproc import ServerProcess

URGENT = "Evacuate hall B now"


def _bob(server: ServerProcess, tokens: dict[str, str], tmp_path: Path, *args: str
         ) -> subprocess.CompletedProcess[str]:
    env = clean_env(tmp_path / "bob", PTT_SERVER=f"127.0.0.1:{server.port}", PTT_USER="bob",
                    PTT_TOKEN=tokens["bob"])
    return subprocess.run([PTT, *args], check=False, env=env, capture_output=True, text=True, timeout=30,
                          stdin=subprocess.DEVNULL)


def test_the_window_lists_an_urgent_page_with_the_emergency_tone_until_it_is_read(
        win: DesktopWindow, server: ServerProcess, tokens: dict[str, str],  # noqa: F811
        tmp_path: Path) -> None:
    played: list[str] = []
    mixer = win.engine.mixer
    play = mixer.play_tone
    mixer.play_tone = lambda kind: (played.append(kind), play(kind))[1]  # type: ignore[method-assign]
    sent = _bob(server, tokens, tmp_path, "page", "volunteers", "Coffee at the desk")
    assert sent.returncode == 0, sent.stderr
    sent = _bob(server, tokens, tmp_path, "page", "volunteers", "--urgent", URGENT)
    assert sent.returncode == 0, sent.stderr
    assert "delivered to 1 of 1 online member (ann)" in sent.stdout, sent.stdout
    root = win.root
    assert pump(root, 5, lambda: len(win.model.unread) == 2), win.model.messages
    assert played == ["page", "emergency"]
    pump(root, 0.3)
    assert win.messages_box.cget("text") == "Messages (2 unread, 1 URGENT)"
    assert win.messages.get(0).startswith("URGENT ") and URGENT in win.messages.get(0)
    assert "Coffee at the desk" in win.messages.get(1)
    shot = screenshot(root, ARTIFACTS / "desktop-page.png")
    assert shot.stat().st_size > 2000 and shot.read_bytes()[:4] == b"\x89PNG"
    win.read_button.invoke()
    pump(root, 0.3)
    assert win.messages_box.cget("text") == "Messages" and not win.model.unread
    assert win.messages.size() == 2  # read pages stay listed
    pump(root, 1.0)  # the receipts go out and reach the store
    listed = _bob(server, tokens, tmp_path, "pages", "volunteers", "--json")
    assert listed.returncode == 0, listed.stderr
    pages = json.loads(listed.stdout)["pages"]
    assert [(p["text"], p["delivered"], p["read"]) for p in pages] == [
        (URGENT, 1, 1), ("Coffee at the desk", 1, 1)]  # ann read both; cat is offline
