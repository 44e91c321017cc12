"""The real window under Xvfb shows the delivery report of its last burst on the line under the
headline (the same line ``ptt talk`` prints)."""

from __future__ import annotations

from ptt.desktop.model import TalkState
from ptt.desktop.window import DesktopWindow
from tests.desktop.conftest import Peer, pump, xdo
from tests.desktop.test_window import _centre, win  # noqa: F401 (the window fixture)


def test_after_a_burst_the_window_says_who_received_it(win: DesktopWindow,  # noqa: F811
                                                       bob: Peer) -> None:
    root = win.root
    x, y = _centre(win.ptt_button)
    xdo("mousemove", "--sync", x, y)
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
