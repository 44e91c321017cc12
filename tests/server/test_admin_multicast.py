from __future__ import annotations

import ipaddress

from ptt.server.admin import multicast_for


def test_group_addresses_are_stable_distinct_and_inside_the_configured_network() -> None:
    assert multicast_for(1, 7800) == ("239.255.0.1", 7802)  # what earlier releases assigned
    addrs = {multicast_for(gid, 7800)[0] for gid in range(1, 2001)}
    assert len(addrs) == 2000
    net = ipaddress.IPv4Network("239.1.2.0/28")
    inside = [multicast_for(gid, 7800, str(net))[0] for gid in range(1, 50)]
    assert all(ipaddress.IPv4Address(a) in net for a in inside)
    assert str(net.network_address) not in inside
