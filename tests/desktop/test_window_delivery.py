"""The real window under Xvfb shows the delivery report of its last burst on the line under the
headline (the same line ``ptt talk`` prints)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from ptt.desktop.model import TalkState
from ptt.desktop.window import DesktopWindow
from tests.acceptance.harness import PTT, clean_env, tone_wav
from tests.desktop.conftest import Peer, point_at, pump, xdo
from tests.desktop.test_window import _centre, win  # noqa: F401 (the window fixture)
from tests.e2e.serverproc import ServerProcess


def test_after_a_burst_the_window_says_who_received_it(win: DesktopWindow,  # noqa: F811
                                                       bob: Peer) -> None:
    root = win.root
    x, y = _centre(win.ptt_button)
    point_at(x, y)
    xdo("mousedown", "1")
    assert pump(root, 5, lambda: win.view().state is TalkState.TALKING), win.view()
    pump(root, 1.0)
    xdo("mouseup", "1")
    # bob is online but his client plays nothing (no receipt); cat is not logged in
    assert pump(root, 5, lambda: "heard by" in win.view().detail), win.view()
    assert win.view().detail == ("volunteers: heard by 0 of 1 online member; "
                                 "not confirmed: bob; offline: cat")
    assert win.detail.cget("text") == win.view().detail or pump(
        root, 1, lambda: win.detail.cget("text") == win.view().detail)


def test_the_window_as_a_listener_confirms_what_it_played(win: DesktopWindow,  # noqa: F811
                                                         server: ServerProcess,
                                                         tokens: dict[str, str],
                                                         tmp_path: Path) -> None:
    # bob pages with the real command; ann's window plays it and sends its receipt
    page = tone_wav(tmp_path / "page.wav", 1.5)
    env = clean_env(tmp_path / "bob", PTT_SERVER=f"127.0.0.1:{server.port}", PTT_USER="bob",
                    PTT_TOKEN=tokens["bob"])
    bob = subprocess.Popen([PTT, "talk", "volunteers", "--wav", str(page)], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           stdin=subprocess.DEVNULL)
    assert pump(win.root, 30, lambda: bob.poll() is not None), "bob's page did not end"
    out, err = bob.communicate()
    assert bob.returncode == 0, out + err
    line = next(x for x in out.splitlines() if x.startswith("heard by"))
    assert re.fullmatch(r"heard by 1 of 1 online member \(ann (9\d|100)%\); offline: cat",
                        line), line
