"""Multicast LAN mode end to end, each test in a network namespace of its own (tests.net.netns):
speech paged over multicast with the relay idle, a mixed group bridged both ways, frames from a
member without the floor refused."""

from __future__ import annotations

from pathlib import Path

from tests.net.netns import require_netns, run_in_netns


def test_speech_paged_to_three_listeners_over_multicast_with_the_relay_idle(
        tmp_path: Path) -> None:
    require_netns()
    r = run_in_netns("page_three", {"tmp": str(tmp_path), "mode": "multicast"})
    assert r["multicast_off"] is None
    assert set(r["paths"].values()) == {"multicast"}
    assert r["reason"] == "source ended"  # the floor was never lost: T1 fed by multicast
    for played, corr in zip(r["played"], r["correlation"]):
        assert played >= r["frames"] - 2, (played, r["frames"])
        assert corr >= 0.9, r["correlation"]
    server = r["server"]
    assert server["voice_out"] == 0 and server["voice_in"] == 0  # the relay forwarded nothing
    assert server["multicast_out"] == 0 and server["revokes"] == 0
    assert server["multicast_in"] >= r["frames"]  # ... but heard every frame for the floor
    for u in ("bob", "cat", "dan"):
        assert r["stats"][u]["relay_in"] == 0 and r["stats"][u]["multicast_in"] >= r["frames"]


def test_mixed_group_bridges_multicast_and_relay_members_both_ways(tmp_path: Path) -> None:
    require_netns()
    r = run_in_netns("mixed", {"tmp": str(tmp_path)})
    assert r["paths"] == {"ann": "multicast", "bob": "relay", "cat": "multicast"}
    assert r["reasons"]["bob"] == "multicast is off on this client"
    assert r["reasons"]["ann"].startswith("multicast 239.255.0.1:7802 on lo")
    for part in ("multicast_talker", "relay_talker"):
        p = r[part]
        assert p["reason"] == "source ended"
        assert min(p["played"]) >= p["frames"] - 2, p
        assert min(p["correlation"]) >= 0.9, p
    c0, c1, c2 = r["counters"]
    frames = r["multicast_talker"]["frames"]
    # ann multicasts: the server hears it and relays it to bob alone
    assert c1["multicast_in"] - c0["multicast_in"] >= frames
    assert c1["voice_out"] - c0["voice_out"] == c1["multicast_in"] - c0["multicast_in"]
    assert c1["multicast_out"] == c0["multicast_out"]
    # bob talks through the relay: the server sends each frame once to the group address
    assert c2["voice_in"] - c1["voice_in"] >= frames
    assert c2["multicast_out"] - c1["multicast_out"] == c2["voice_in"] - c1["voice_in"]
    assert c2["voice_out"] == c1["voice_out"]  # no relay member other than the talker
    assert r["stats"]["bob"]["relay_in"] >= frames and r["stats"]["bob"]["multicast_in"] == 0


def test_frames_injected_by_a_member_without_the_floor_are_not_played(tmp_path: Path) -> None:
    require_netns()
    r = run_in_netns("inject", {"tmp": str(tmp_path)})
    assert set(r["paths"].values()) == {"multicast"}
    # nobody holds the floor: 50 forged frames, none played, all counted
    assert r["idle"]["played"] == 0
    assert r["idle"]["stats"]["not_holder"] == 50
    # during ann's burst eve forges 100 frames claiming ann's burst: bob plays ann alone
    during = r["during"]
    assert during["reason"] == "source ended"
    assert during["played"][0] <= during["frames"] + 4  # nothing extra was played
    assert during["correlation"][0] >= 0.9
    assert r["stats"]["bob"]["not_holder"] == 150
    assert r["stats"]["bob"]["multicast_in"] <= during["frames"] + 2


def test_group_switched_to_relay_mid_session_heals_through_t1_and_a_new_probe(
        tmp_path: Path) -> None:
    require_netns()
    r = run_in_netns("mode_change", {"tmp": str(tmp_path)})
    assert r["before"] == {"ann": "multicast", "bob": "multicast"}
    # the server stopped listening: ann's multicast burst went unheard and T1 ended it ...
    assert r["first"] == "floor lost"
    # ... after which ann probed again, got no echo, and talks through the relay
    assert r["after"] == "relay" and r["reason"].startswith("no echo from multicast")
    assert r["second"] == "source ended"
    assert r["played"] >= 45 and r["server"]["voice_out"] >= 45


def test_a_member_records_a_multicast_group_with_the_relay_idle(tmp_path: Path) -> None:
    require_netns()
    r = run_in_netns("record_multicast", {"tmp": str(tmp_path)})
    assert set(r["paths"].values()) == {"multicast"}
    assert r["server"]["voice_out"] == 0  # nothing came through the relay
    assert r["problems"] == []
    assert r["recorded_bursts"] == 1 and [f["talker"] for f in r["files"]] == ["ann"]
    talk = r["sent_frames"] * 0.02
    # the closing END_OF_BURST frame is stored too: one frame more than the source
    assert abs(r["files"][0]["seconds"] - talk) <= 0.041, (r["files"], talk)
    assert r["lost"] == 0
