"""On a multicast LAN a member holding the group key cannot pass its voice off as the floor
holder's: ``ptt listen`` plays the holder only (talker signatures, docs/security.md). The real
commands as processes, in a network namespace of their own (tests.acceptance.talker_forgery)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.net.netns import require_netns, run_in_netns


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_ptt_listen_on_multicast_plays_the_holder_not_a_member_forging_it(tmp_path: Path) -> None:
    require_netns()
    r = run_in_netns("forge_cli", {"tmp": str(tmp_path)},
                     module="tests.acceptance.talker_forgery")
    assert r["eve_path"] == "multicast" and r["forged"] == 100
    assert "voice by multicast" in r["listen_err"], r["listen_err"]  # bob heard the LAN
    assert r["talk"] == 0 and r["listen"] == 0, r
    assert "heard 1 burst(s)" in r["listen_out"], r["listen_out"]
    # eve's tone, a few frames ahead of ann's, would have taken their place: ann is heard whole
    assert r["correlation"] >= 0.9, r
