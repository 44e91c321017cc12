"""Group keys: coordinator-signed grants wrapped per member; what the server can and cannot do."""

from __future__ import annotations

import os

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ptt.crypto.groupkeys import (
    MAX_GRANT_SIZE,
    issue_group_key,
    open_grant,
    peek_grant,
    rotate,
)
from ptt.crypto.identity import Identity
from ptt.crypto.voice import VoiceSealer
from ptt.errors import AuthError, ProtocolError
from ptt.wire.voice import VoiceHeader
from tests.crypto.conftest import GROUP, GROUP_ID, Org


def talk(key_sealer: VoiceSealer, burst: int, n: int = 3) -> list[bytes]:
    return [key_sealer.seal(VoiceHeader(GROUP_ID, 11, burst, s, s * 960), b"opus%d" % s)
            for s in range(n)]


def test_every_member_gets_the_same_key_and_hears_the_others(org: Org) -> None:
    keys = {u: r.current for u, r in org.rings.items()}
    assert set(keys.values()) == {org.key}
    frames = talk(VoiceSealer(org.rings["ann"].sealer_key), burst=1)  # type: ignore[arg-type]
    for u in ("ben", "cat"):
        assert [org.rings[u].opener.open(f)[1] for f in frames] == [b"opus0", b"opus1", b"opus2"]


def test_grants_are_small_and_carry_no_key_in_the_clear(org: Org) -> None:
    for u, g in org.grants.items():
        assert len(g) < 300
        assert org.key.secret not in g
        info = peek_grant(g)
        assert (info.group, info.group_id, info.epoch, info.recipient) == (GROUP, GROUP_ID, 1, u)


def test_the_server_cannot_open_a_grant_or_forge_one(org: Org) -> None:
    server = Identity.from_seed(os.urandom(64))  # whatever keys the server makes itself
    with pytest.raises(AuthError):
        open_grant(org.grants["ann"], server, "ann", org.trusted, GROUP, GROUP_ID)
    # its own key, wrapped for a real member and signed by itself: not a trusted signer
    _, forged = issue_group_key(server, "boss", GROUP, GROUP_ID, 2,
                                {"ann": org.ids["ann"].public}, os.urandom)
    with pytest.raises(AuthError, match="not a trusted"):
        org.rings["ann"].accept(forged["ann"], org.ids["ann"], "ann", org.trusted, 1.0)
    assert org.rings["ann"].current == org.key


def test_a_grant_for_someone_else_or_another_group_is_refused(org: Org) -> None:
    with pytest.raises(AuthError, match="someone else"):
        open_grant(org.grants["ben"], org.ids["ann"], "ann", org.trusted, GROUP, GROUP_ID)
    with pytest.raises(AuthError, match="group"):
        open_grant(org.grants["ann"], org.ids["ann"], "ann", org.trusted, "other", GROUP_ID)


def test_a_substituted_member_key_gets_a_grant_the_member_refuses(org: Org) -> None:
    """If the server swaps ann's public key, the grant is wrapped for the server's key: ann
    refuses it (not her key) and the coordinator's pins catch the swap beforehand."""
    from ptt.crypto.identity import KeyPins, PinStatus

    pins = KeyPins()
    assert pins.check("ann", org.ids["ann"].public) is PinStatus.NEW
    fake = Identity.from_seed(os.urandom(64))
    assert pins.check("ann", fake.public) is PinStatus.CHANGED
    _, grants = issue_group_key(org.coord, "boss", GROUP, GROUP_ID, 2, {"ann": fake.public},
                                os.urandom)
    with pytest.raises(AuthError, match="someone else"):
        org.rings["ann"].accept(grants["ann"], org.ids["ann"], "ann", org.trusted, 1.0)


def test_tampering_with_any_byte_is_refused(org: Org) -> None:
    g = org.grants["ann"]
    for i in range(len(g)):
        bad = bytearray(g)
        bad[i] ^= 0x04
        with pytest.raises((AuthError, ProtocolError)):
            open_grant(bytes(bad), org.ids["ann"], "ann", org.trusted, GROUP, GROUP_ID)


def test_removed_member_cannot_decode_after_rotation(org: Org) -> None:
    remaining = {u: org.ids[u].public for u in ("ann", "ben")}
    new_key, grants = rotate(org.coord, "boss", org.key, GROUP, remaining, os.urandom)
    assert new_key.epoch == 2 and new_key.secret != org.key.secret and "cat" not in grants
    for u in remaining:
        org.rings[u].accept(grants[u], org.ids[u], u, org.trusted, now=10.0)
    # cat cannot use anyone else's grant
    for g in grants.values():
        with pytest.raises(AuthError):
            org.rings["cat"].accept(g, org.ids["cat"], "cat", org.trusted, 10.0)
    frames = talk(VoiceSealer(org.rings["ann"].sealer_key), burst=5)  # type: ignore[arg-type]
    assert org.rings["ben"].opener.open(frames[0])[1] == b"opus0"
    for f in frames:
        with pytest.raises(AuthError):
            org.rings["cat"].opener.open(f)  # key id 2: cat has only epoch 1


def test_a_replayed_old_grant_cannot_bring_back_an_old_key(org: Org) -> None:
    remaining = {u: org.ids[u].public for u in ("ann", "ben")}
    _, grants = rotate(org.coord, "boss", org.key, GROUP, remaining, os.urandom)
    ring = org.rings["ann"]
    ring.accept(grants["ann"], org.ids["ann"], "ann", org.trusted, 10.0)
    assert ring.accept(grants["ann"], org.ids["ann"], "ann", org.trusted, 11.0).epoch == 2
    with pytest.raises(AuthError, match="not newer"):
        ring.accept(org.grants["ann"], org.ids["ann"], "ann", org.trusted, 12.0)
    assert ring.current is not None and ring.current.epoch == 2


def test_the_old_epoch_opens_only_during_the_grace_period(org: Org) -> None:
    ring = org.rings["ben"]
    old_frames = talk(VoiceSealer(org.key), burst=3)
    new_key, grants = rotate(org.coord, "boss", org.key, GROUP,
                             {u: org.ids[u].public for u in ("ann", "ben")}, os.urandom)
    ring.accept(grants["ben"], org.ids["ben"], "ben", org.trusted, now=100.0)
    assert ring.opener.epochs == [1, 2] and ring.get_timer() == 100.0 + ring.grace
    ring.opener.open(old_frames[0])  # a burst that started before the rotation
    ring.handle_timer(100.0 + ring.grace)
    assert ring.opener.epochs == [2] and ring.get_timer() is None
    with pytest.raises(AuthError, match="no key"):
        ring.opener.open(old_frames[1])
    # two rotations in a row keep only one old epoch
    k3, g3 = rotate(org.coord, "boss", new_key, GROUP, {"ben": org.ids["ben"].public}, os.urandom)
    ring.accept(g3["ben"], org.ids["ben"], "ben", org.trusted, now=200.0)
    _k4, g4 = rotate(org.coord, "boss", k3, GROUP, {"ben": org.ids["ben"].public}, os.urandom)
    ring.accept(g4["ben"], org.ids["ben"], "ben", org.trusted, now=201.0)
    assert ring.opener.epochs == [3, 4]


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=MAX_GRANT_SIZE + 10),
                 st.lists(st.one_of(st.integers(-2**63, 2**64 - 1), st.binary(max_size=40), st.text(max_size=8)),
                          max_size=12).map(lambda x: msgpack.packb([1, msgpack.packb(x), b"s"]))))
def test_garbage_grants_raise_protocol_or_auth_errors_only(blob: bytes) -> None:
    me = Identity.from_seed(bytes(64))
    with pytest.raises((ProtocolError, AuthError)):
        open_grant(blob, me, "ann", {"boss": bytes(32)}, GROUP, GROUP_ID)


def test_one_ephemeral_key_per_epoch_yet_each_grant_opens_only_for_its_member(org: Org) -> None:
    # the epoch's grants share one ephemeral key (multi-recipient DH encryption re-uses the
    # sender's randomness safely); each member's wrapping key still differs
    ephs = {peek_grant(g).eph_key for g in org.grants.values()}
    assert len(ephs) == 1
    wrapped = {peek_grant(g).wrapped for g in org.grants.values()}
    assert len(wrapped) == len(org.grants)
    with pytest.raises((AuthError, ProtocolError)):
        open_grant(org.grants["ann"], org.ids["ben"], "ben", org.trusted, GROUP, GROUP_ID)
    _, nxt = rotate(org.coord, "boss", org.key, GROUP, {u: i.public for u, i in org.ids.items()},
                    os.urandom)
    assert {peek_grant(g).eph_key for g in nxt.values()}.isdisjoint(ephs)
