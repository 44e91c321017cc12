"""Per-talker signatures against a member forging another's voice on a multicast LAN, live: a
real ``ptt server`` process and clients in a network namespace of their own."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.net.netns import require_netns, run_in_netns


@pytest.mark.timeout(180)
def test_a_member_forging_the_holders_frames_on_the_group_address_is_not_played(
        tmp_path: Path) -> None:
    require_netns()
    r = run_in_netns("forge_holder", {"tmp": str(tmp_path)},
                     module="tests.security.talker_scenarios")
    assert set(r["paths"].values()) == {"multicast"}, r["paths"]
    assert r["forged_sent"] == 100
    # none of eve's frames reached a player, each was refused for its signature
    assert r["delivered"] == {"bob": 0, "cat": 0}, r
    for u in ("bob", "cat"):
        assert r["stats"][u]["unsigned"] >= 50, r["stats"][u]
        assert r["unverified"][u] >= 50, r["unverified"]
    # ann, the holder, is heard whole, by multicast
    during = r["during"]
    assert during["reason"] == "source ended"
    for played, corr in zip(during["played"], during["correlation"]):
        assert played >= during["frames"] - 2, during
        assert corr >= 0.9, during["correlation"]
    for u in ("bob", "cat"):
        assert r["stats"][u]["multicast_in"] >= during["frames"] - 2, r["stats"][u]
