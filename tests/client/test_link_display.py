"""What the talker and the listeners are shown of the link: the lines of ``ptt talk`` and
``ptt listen``, the terminal's status line and the desktop's talking detail."""

from __future__ import annotations

from ptt.cli.terminal import View, status_line
from ptt.client.voice import LinkChange, protection_text, reception_text
from ptt.desktop.model import ConnStatus, DesktopModel, LinkUpdate, TalkState
from ptt.media.receiver import LossReport
from ptt.media.sender import MediaSettings
from ptt.protocol import client as cl
from ptt.protocol import messages as m


def test_the_talkers_link_line_names_loss_runs_and_the_protection_chosen() -> None:
    assert LinkChange(0.12, 2.14, 3, MediaSettings(2, 0, runs=True)).line() == (
        "link: 12% loss (runs of 2.1) -> 2 copies at offsets 2,5")
    assert LinkChange(0.087, 1.0, 1, MediaSettings(2, 0)).line() == (
        "link: 8.7% loss -> 2 copies at offsets 1,2")
    assert LinkChange(0.0, 0.0, 40, MediaSettings(0, 0)).line() == "link: 0% loss -> no copies"
    assert protection_text(MediaSettings(1, 0)) == "1 copy at offset 1"
    assert protection_text(MediaSettings(1, 0, runs=True)) == "1 copy at offset 2"


def test_a_listener_is_shown_what_it_received_of_a_burst() -> None:
    whole = LossReport(150, 0.02, 1.0, 3, 3) + LossReport(50, 0.2, 2.5, 10, 4)
    assert reception_text(whole) == "received 93.5% (13 of 200 frames lost, runs of 1.9)"
    assert reception_text(LossReport(196, 0.0, 0.0)) == "received 100% (0 of 196 frames lost)"
    assert reception_text(LossReport(0, 0.0, 0.0)) == "nothing received"
    assert reception_text(LossReport(196, 0.0, 0.0, late=12)) == (
        "received 100% (0 of 196 frames lost; 12 came too late to play)")


def test_the_terminal_status_line_shows_the_protection_while_talking() -> None:
    v = View("volunteers", "ann", state=cl.Participation.HAS_PERMISSION, granted_at=0.0,
             protection="2 copies at offsets 1,3")
    assert status_line(v, 1.0, width=200).endswith("| 2 copies at offsets 1,3")


def test_the_desktop_shows_the_link_while_talking_and_forgets_it_at_the_next_grant() -> None:
    mo = DesktopModel("ann")
    mo.apply(ConnStatus("connected", True), 0)
    mo.apply(cl.Connected(1, m.Role.VOLUNTEER, ["volunteers"]), 0)
    mo.apply(cl.GroupJoined(m.GroupState("volunteers", 1, [m.MemberInfo("ann", True)])), 0)
    grant = cl.FloorStateChanged("volunteers", cl.Participation.HAS_PERMISSION, 8,
                                 max_talk_ms=30_000)
    mo.apply(grant, 0)
    mo.apply(LinkUpdate("volunteers", "link: 12% loss -> 2 copies at offsets 1,3"), 1)
    v = mo.view(2)
    assert v.state is TalkState.TALKING
    assert v.detail == "28 s of talk time left · link: 12% loss -> 2 copies at offsets 1,3"
    mo.apply(cl.FloorStateChanged("volunteers", cl.Participation.NO_PERMISSION), 3)
    mo.apply(grant, 4)
    assert "link" not in mo.view(5).detail
