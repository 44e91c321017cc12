"""Interface and route checks of ``ptt.net.multicast``, on route tables given as text, and the
safety property the test suite relies on: outside a namespace of its own, nothing multicasts."""

from __future__ import annotations

import pytest

from ptt.errors import NetError
from ptt.net.multicast import MulticastOptions, check_multicast, resolve_interface, route_interface
from ptt.server.admin import multicast_for

HEADER = ("Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\t"
          "IRTT\n")
DEFAULT_ETH0 = HEADER + ("eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n"
                         "eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n")
MCAST_LO = DEFAULT_ETH0 + "lo\t000000E0\t00000000\t0001\t0\t0\t0\t000000F0\t0\t0\t0\n"


def test_route_lookup_takes_the_longest_prefix() -> None:
    assert route_interface("239.255.0.1", DEFAULT_ETH0) == "eth0"  # via the default route
    assert route_interface("239.255.0.1", MCAST_LO) == "lo"  # 224.0.0.0/4 beats 0.0.0.0/0
    assert route_interface("192.0.2.9", MCAST_LO) == "eth0"
    assert route_interface("239.255.0.1", HEADER) is None


def test_route_lookup_prefers_the_lower_metric_and_skips_routes_that_are_down() -> None:
    two = HEADER + ("eth1\t000000E0\t00000000\t0001\t0\t0\t20\t000000F0\t0\t0\t0\n"
                    "eth2\t000000E0\t00000000\t0001\t0\t0\t10\t000000F0\t0\t0\t0\n"
                    "eth3\t00FFFFEF\t00000000\t0000\t0\t0\t0\t00FFFFFF\t0\t0\t0\n")
    assert route_interface("239.255.0.1", two) == "eth2"


def test_a_route_out_of_another_interface_is_a_clear_one_line_error() -> None:
    with pytest.raises(NetError) as err:
        check_multicast("239.255.0.1", MulticastOptions("127.0.0.1"), DEFAULT_ETH0)
    text = str(err.value)
    assert text == ("no route for multicast 239.255.0.1 via lo (it would leave by eth0): add one "
                    "(ip route add 224.0.0.0/4 dev lo) or use relay mode")
    with pytest.raises(NetError, match="via lo \\(there is none\\)"):
        check_multicast("239.255.0.1", MulticastOptions("lo"), HEADER)
    assert check_multicast("239.255.0.1", MulticastOptions("lo"), MCAST_LO).address == "127.0.0.1"


def test_missing_interfaces_are_clear_one_line_errors() -> None:
    assert resolve_interface("127.0.0.1").name == "lo"
    assert resolve_interface("lo").address == "127.0.0.1"
    with pytest.raises(NetError, match="^no network interface has the address 10.9.9.9 "):
        resolve_interface("10.9.9.9")
    with pytest.raises(NetError, match="^no network interface named 'wlan9'"):
        resolve_interface("wlan9")
    with pytest.raises(ValueError):
        MulticastOptions(ttl=256)


def test_outside_a_namespace_the_defaults_cannot_multicast() -> None:
    """Every test outside ``tests.net.netns`` relies on this: the loopback default fails its
    route check here, so clients use the relay and the server listens on no group."""
    with pytest.raises(NetError, match="no route for multicast"):
        check_multicast("239.255.0.1", MulticastOptions())


def test_group_addresses_are_organisation_local_and_stable_per_group_id() -> None:
    assert multicast_for(1, 7800) == ("239.255.0.1", 7802)
    assert multicast_for(258, 7800) == ("239.255.1.2", 7800 + 258 * 2)
