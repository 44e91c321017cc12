"""ptt.net.multicast on real sockets, inside a network namespace made for the test."""

from __future__ import annotations

from pathlib import Path

from tests.net.netns import require_netns, run_in_netns


def test_members_on_one_machine_all_hear_their_group_and_only_theirs() -> None:
    require_netns()
    r = run_in_netns("sockets", {"ttl": 1})
    assert r["iface"] == ["lo", "127.0.0.1"]
    assert (r["a"], r["b"], r["other"]) == ("hello", "hello", None)
    assert (r["ttl"], r["if"], r["source"][0]) == (1, "127.0.0.1", "127.0.0.1")


def test_ttl_is_configurable() -> None:
    require_netns()
    assert run_in_netns("sockets", {"ttl": 4})["ttl"] == 4


def test_missing_route_is_an_error_in_multicast_mode_and_a_fallback_in_auto(
        tmp_path: Path) -> None:
    require_netns()
    # a server without the route refuses multicast groups at creation (tests/acceptance/
    # test_small.py); here the member's machine lacks the route the server's has
    r = run_in_netns("misconfigured", {"tmp": str(tmp_path), "drop_route": True})
    text = ("no route for multicast 239.255.0.1 via lo (there is none): add one "
            "(ip route add 224.0.0.0/4 dev lo) or use relay mode")
    assert r["multicast_join"] == text
    assert r["auto_path"] == "relay" and r["auto_reason"].startswith("no route for multicast")
    assert r["probes"] == 0  # nothing was sent to a group address
    assert [e[:2] for e in r["events"]] == [["lan", "relay"], ["autogroup", "relay"]]


def test_missing_interface_is_a_clear_error(tmp_path: Path) -> None:
    require_netns()
    r = run_in_netns("misconfigured", {"tmp": str(tmp_path), "interface": "10.9.9.9"})
    assert r["multicast_join"] == ("no network interface has the address 10.9.9.9 (multicast "
                                   "interface): name one of this machine's addresses, or use "
                                   "relay mode")
    assert r["auto_path"] == "relay" and r["probes"] == 0


def test_auto_falls_back_to_relay_when_the_probe_gets_no_echo(tmp_path: Path) -> None:
    require_netns()
    r = run_in_netns("no_echo", {"tmp": str(tmp_path)})
    assert r["paths"] == {"ann": "relay", "bob": "relay"}
    assert 950 <= r["fallback_ms"] <= 1600, r["fallback_ms"]
    assert r["reasons"]["bob"] == ("no echo from multicast 239.255.0.1:7802 within 1 s: the LAN "
                                   "may not carry multicast")
    assert r["played"] >= 45 and r["server"]["voice_out"] >= 45  # heard through the relay
