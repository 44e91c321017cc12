"""The harness itself: users made through the CLI log in and see their group."""

from __future__ import annotations

from tests.acceptance.harness import Site


def test_a_volunteer_made_by_the_coordinator_lists_its_group(site: Site) -> None:
    site.add_user("ann")
    site.group("g1", "ann")
    listed = site.ptt("ann", "group", "list")
    assert listed.returncode == 0, listed.stderr
    assert "g1" in listed.stdout
