"""Joining a group of thousands: the Join answer stays one datagram.

A GroupState listing every member of a 5,000-member group with 20-character names is ~125 kB,
twice what a control datagram holds; the answer lists the online members first and as many
others as fit, and says how many members the group has (``members_total``).
"""

from __future__ import annotations

from ptt.protocol import messages as m
from ptt.protocol.client import ConnState
from ptt.protocol.messages import encode_message
from ptt.wire.control import MAX_DATAGRAM
from tests.protocol.simnet import SimNet


def test_join_of_a_five_thousand_member_group_answers_with_online_members_and_a_total() -> None:
    net = SimNet(seed=31)
    live = ["ann", "bob", "zed"]
    for u in live:
        net.add_user(u)
    others = [f"volunteer-{i:05d}-north-gate" for i in range(5_000 - len(live))]
    net.add_group("big", [*others, *live], 1)
    for u in live:
        net.clients[u].connect(net.now)
    net.run_until(net.now + 1.0)
    for u in live:
        net.clients[u].join("big", net.now)
    net.run_until(net.now + 2.0)
    assert all(net.clients[u].conn is ConnState.CONNECTED for u in live)
    state = net.clients["zed"].groups["big"].state
    assert state is not None  # joined: the answer arrived
    assert state.members_total == 5_000
    listed = {mi.user: mi.online for mi in state.members}
    assert all(listed[u] for u in live)  # every online member is listed, as online
    assert 100 < len(listed) < 5_000
    assert len(encode_message(m.Joined(1, state))) < MAX_DATAGRAM
    # the admin view (group show) still has all of them
    assert len(net.server.group_state("big").members) == 5_000
    assert net.server.group_state("big").members_total == 0


def test_a_small_group_lists_every_member_and_no_total() -> None:
    net = SimNet(seed=32)
    for u in ("ann", "bob"):
        net.add_user(u)
    net.add_group("g", ["ann", "bob"], 1)
    net.clients["ann"].connect(net.now)
    net.run_until(net.now + 1.0)
    net.clients["ann"].join("g", net.now)
    net.run_until(net.now + 1.0)
    state = net.clients["ann"].groups["g"].state
    assert state is not None and state.members_total == 0
    assert [mi.user for mi in state.members] == ["ann", "bob"]

