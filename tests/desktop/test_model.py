"""The window's states, from protocol events, without Tk."""

from __future__ import annotations

from ptt.audio.levels import Level
from ptt.desktop.model import BurstEnded, ConnStatus, DesktopModel, LevelUpdate, TalkState
from ptt.protocol import client as cl
from ptt.protocol import messages as m

P = cl.Participation


def _state(group: str, gid: int, online: list[str], talker: str | None = None) -> m.GroupState:
    members = [m.MemberInfo(u, u in online) for u in ("ann", "bob", "cat")]
    return m.GroupState(group, gid, members, talker=talker, burst_id=7 if talker else 0)


def _connected() -> DesktopModel:
    mo = DesktopModel("ann")
    mo.apply(ConnStatus("connected", True), 0)
    mo.apply(cl.Connected(1, m.Role.VOLUNTEER, ["volunteers", "drivers"]), 0)
    mo.apply(cl.GroupJoined(_state("volunteers", 1, ["ann", "bob"])), 0)
    mo.apply(cl.GroupJoined(_state("drivers", 2, ["ann"])), 0)
    return mo


def test_offline_then_idle_with_presence() -> None:
    mo = DesktopModel("ann")
    assert mo.view(0).state is TalkState.OFFLINE
    mo = _connected()
    v = mo.view(0)
    assert (v.state, v.talk_group) == (TalkState.IDLE, "volunteers")
    assert mo.groups["volunteers"].online_text() == "2/3 online: ann, bob"
    mo.apply(cl.PresenceChanged("volunteers", "cat", True), 0)
    assert mo.groups["volunteers"].online == {"ann", "bob", "cat"}


def test_requesting_queued_talking_with_time_left_and_level() -> None:
    mo = _connected()
    mo.apply(cl.FloorStateChanged("volunteers", P.PENDING_REQUEST), 0)
    assert mo.view(0).state is TalkState.REQUESTING
    mo.apply(cl.TalkerChanged("volunteers", "bob", 7), 0)
    mo.apply(cl.FloorStateChanged("volunteers", P.QUEUED, position=2), 0)
    v = mo.view(0)
    assert (v.state, v.headline) == (TalkState.QUEUED, "Queued #2")
    assert "bob" in v.detail
    mo.apply(cl.FloorStateChanged("volunteers", P.HAS_PERMISSION, 8, max_talk_ms=30_000), 10)
    mo.apply(LevelUpdate(Level(-20.0, -10.0)), 14.9)
    v = mo.view(15.0)
    assert v.state is TalkState.TALKING
    assert v.remaining_fraction is not None and abs(v.remaining_fraction - 25 / 30) < 1e-6
    assert v.level_dbfs == -20.0
    assert mo.view(16.0).level_dbfs < -90  # a stale reading falls to silence
    mo.apply(BurstEnded("volunteers", 250, "released"), 16)
    mo.apply(cl.FloorStateChanged("volunteers", P.NO_PERMISSION), 16)
    assert mo.bursts == 1


def test_listening_names_the_talker_of_the_highest_unmuted_group() -> None:
    mo = _connected()
    mo.apply(cl.TalkerChanged("drivers", "cat", 3), 0)
    mo.apply(cl.TalkerChanged("volunteers", "bob", 4), 0)
    v = mo.view(0)
    assert (v.state, v.headline, v.detail) == (TalkState.LISTENING, "bob is talking",
                                               "in volunteers")
    mo.raise_priority("drivers")
    assert mo.order == ["drivers", "volunteers"]
    assert mo.view(0).headline == "cat is talking"
    mo.set_muted("drivers", True)
    assert mo.view(0).headline == "bob is talking"
    mo.apply(cl.Disconnected("no answer"), 1)
    assert mo.view(1).state is TalkState.OFFLINE


def test_the_delivery_report_of_the_last_burst_is_the_line_under_the_headline() -> None:
    model = _connected()
    report = cl.DeliveryReported("volunteers", 7, 100, [m.Receipt("bob", 100, 100),
                                                      m.Receipt("cat", 98, 100)], [], ["dan"])
    model.apply(report, 1.0)
    assert model.view(1.0).detail == ("volunteers: heard by 2 of 2 online members "
                                      "(bob 100%, cat 98%); offline: dan")
    model.apply(cl.RequestFailed("floor", "volunteers", "the server did not answer in time"), 2.0)
    assert model.view(2.0).detail == "the server did not answer in time"  # newer news wins


def test_a_session_ended_for_good_says_so_instead_of_reconnecting() -> None:
    mo = _connected()
    mo.apply(cl.Disconnected("'ann' signed in on another device; at most 4 at once", final=True),
             0)
    assert not mo.connected
    assert mo.connection.startswith("session ended by the server: 'ann' signed in")
