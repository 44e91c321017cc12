"""Opaque group-key grants through the cores: stored per group and epoch, handed over on Join,
pushed reliably on upload, dropped with the member. The grants here are arbitrary bytes: the
protocol never opens one (``tests/crypto/test_groupkeys.py`` tests real ones)."""

from __future__ import annotations

import pytest

from ptt.errors import ConflictError, NotFoundError
from ptt.protocol import messages as m
from ptt.protocol.client import ConnState, KeyGrantReceived
from ptt.protocol.messages import decode_message, encode_message
from tests.protocol.simnet import SimNet


def grants_of(net: SimNet, user: str) -> list[KeyGrantReceived]:
    return [e for e in net.client_events[user] if isinstance(e, KeyGrantReceived)]


def online(net: SimNet, users: list[str], joined: list[str]) -> None:
    for u in users:
        net.add_user(u)
    net.add_group("g", users, 1)
    for u in users:
        net.clients[u].connect(net.now)
    for u in joined:
        net.clients[u].join("g", net.now)
    # with loss a login may take a few tries: up to 5 s, in steps (the tests count pushes and
    # events after this, not how fast the logins went)
    until = net.now + 5.0
    net.run_until(net.now + 1.0)
    while net.now < until and not all(net.clients[u].conn is ConnState.CONNECTED
                                      for u in users):
        net.run_until(net.now + 0.25)
    assert all(net.clients[u].conn is ConnState.CONNECTED for u in users)


def test_join_carries_the_members_grant_and_the_epoch() -> None:
    net = SimNet(seed=11)
    online(net, ["ann", "bob", "cat"], [])
    net.server.set_group_key("g", 1, {"ann": b"A1" * 130, "bob": b"B1" * 130}, net.now)
    net.clients["ann"].join("g", net.now)
    net.clients["cat"].join("g", net.now)
    net.run_until(net.now + 1.0)
    # online but not joined yet: pushed at upload, then repeated in the Join answer
    assert grants_of(net, "ann") == [KeyGrantReceived("g", 1, b"A1" * 130)] * 2
    assert net.clients["ann"].groups["g"].state.key_epoch == 1
    assert grants_of(net, "cat") == []  # no grant for cat: no event, the state says epoch 1
    assert net.clients["cat"].groups["g"].state.key_epoch == 1


def test_upload_pushes_each_online_member_its_grant_once_even_with_loss() -> None:
    net = SimNet(seed=12, loss=0.3, dup=0.2)
    online(net, ["ann", "bob", "cat"], ["ann", "bob", "cat"])
    net.server.set_group_key("g", 1, {"ann": b"a" * 260, "bob": b"b" * 260}, net.now)
    net.run_until(net.now + 5.0)
    assert grants_of(net, "ann") == [KeyGrantReceived("g", 1, b"a" * 260)]
    assert grants_of(net, "bob") == [KeyGrantReceived("g", 1, b"b" * 260)]
    assert grants_of(net, "cat") == []
    assert len(net.server.outbox.reliable) == 0  # every push acknowledged
    assert all(c.conn is ConnState.CONNECTED for c in net.clients.values())


def test_epochs_only_go_up_and_an_identical_reupload_is_a_no_op() -> None:
    net = SimNet(seed=13)
    online(net, ["ann", "bob"], ["ann"])
    net.server.set_group_key("g", 2, {"ann": b"x", "bob": b"y"}, net.now)
    net.run_until(net.now + 0.5)
    net.server.set_group_key("g", 2, {"ann": b"x", "bob": b"y"}, net.now)  # no-op, no push
    assert net.server.datagrams_to_send() == []
    with pytest.raises(ConflictError):
        net.server.set_group_key("g", 2, {"ann": b"other"}, net.now)
    with pytest.raises(ConflictError):
        net.server.set_group_key("g", 1, {"ann": b"x"}, net.now)
    with pytest.raises(NotFoundError):
        net.server.set_group_key("nope", 5, {}, net.now)
    with pytest.raises(NotFoundError):
        net.server.group_key("nope")
    assert net.server.group_key("g") == (2, {"ann": b"x", "bob": b"y"})
    net.server.set_group_key("g", 3, {"bob": b"z"}, net.now)  # replaces: ann has none now
    assert net.server.group_key("g") == (3, {"bob": b"z"})
    assert net.server.group_state("g").key_epoch == 3


def test_removed_member_and_user_lose_their_grant() -> None:
    net = SimNet(seed=14)
    online(net, ["ann", "bob", "cat"], ["ann", "bob", "cat"])
    net.server.set_group_key("g", 1, {"ann": b"a", "bob": b"b", "cat": b"c"}, net.now)
    net.run_until(net.now + 0.5)
    net.server.remove_member("g", "bob", net.now)
    net.server.remove_user("cat", net.now)
    assert net.server.group_key("g") == (1, {"ann": b"a"})


def test_admin_carries_bytes_and_byte_maps_and_stays_strict() -> None:
    up = m.Admin(7, 9, "group.keys", {"group": "g", "epoch": 3,
                                      "grants": {"ann": bytes(260), "bob": bytes(range(200))},
                                      "public": bytes(64)})
    assert decode_message(encode_message(up)) == up
    res = m.AdminResponse(7, {"public": bytes(64), "keys": {"ann": bytes(64)},
                              "members": [{"user": "ann", "key": bytes(64)}]})
    assert decode_message(encode_message(res)) == res
    bad = encode_message(m.Admin(7, 9, "x", {"grants": {"ann": "not bytes"}}))  # type: ignore[dict-item]
    with pytest.raises(Exception) as info:
        decode_message(bad)
    assert "fits no option" in str(info.value)
    grant = m.KeyGrant(5, "g", 2, bytes(254))
    assert decode_message(encode_message(grant)) == grant
    joined = m.Joined(1, m.GroupState("g", 1, [], key_epoch=4), b"grant")
    assert decode_message(encode_message(joined)) == joined
