"""Loss feedback from multicast listeners: their voice comes by multicast, their reports go to
the server on the unicast control channel, and the talker hears them (in a network namespace)."""

from __future__ import annotations

from pathlib import Path

from tests.net.netns import require_netns, run_in_netns


def test_multicast_listeners_report_and_the_talker_adapts(tmp_path: Path) -> None:
    require_netns()
    r = run_in_netns("page_three", {"tmp": str(tmp_path), "mode": "multicast"})
    assert set(r["paths"].values()) == {"multicast"}
    assert r["server"]["voice_out"] == 0  # the voice went by multicast only
    assert r["links"], r  # the server summed up the listeners' reports for the talker
    assert max(n for n, _, _ in r["links"]) >= 2  # from more than one of the three
    receptions = r["receptions"]
    for rx in receptions:
        assert rx is not None and rx["frames"] >= r["frames"] - 10
    if all(rx["late"] == 0 for rx in receptions):
        assert all(loss == 0.0 for _, loss, _ in r["links"])  # a clean LAN ...
        assert r["links"][-1][2] == []  # ... so the talker ends up sending bare frames
        assert all(rx["lost"] == 0 for rx in receptions)
    else:
        # Talker, server and listeners share one process here: a stall of it (a busy machine)
        # makes frames arrive after their playout time, which a listener rightly reports as
        # loss. The LAN itself dropped nothing: every frame missed at its time did arrive.
        assert all(rx["lost"] <= rx["late"] for rx in receptions), receptions
        assert any(offsets == [] for _, _, offsets in r["links"]), r["links"]
