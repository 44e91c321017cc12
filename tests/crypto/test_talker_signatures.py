"""Per-talker signatures on sealed voice frames, and the talker keys a grant vouches for."""

from __future__ import annotations

import os

from ptt.crypto.groupkeys import peek_grant, talkers_digest
from ptt.crypto.identity import Identity
from ptt.crypto.voice import SIGNATURE_SIZE, TAG_SIZE, VoiceSealer, verify_frame
from ptt.wire.voice import (
    HEADER_SIZE,
    VoiceFlags,
    VoiceHeader,
    add_mac,
    strip_mac,
    strip_signature,
)
from tests.crypto.conftest import GROUP, GROUP_ID, Org


def frames(sealer: VoiceSealer, sender: int, burst: int, n: int = 3) -> list[bytes]:
    return [sealer.seal(VoiceHeader(GROUP_ID, sender, burst, s, s * 320), b"opus%d" % s)
            for s in range(n)]


def test_a_signed_frame_opens_for_every_member_and_verifies_only_as_its_talker(org: Org) -> None:
    ann, ben = org.ids["ann"], org.ids["ben"]
    key = org.rings["ann"].current
    assert key is not None
    sent = frames(VoiceSealer(key, ann.sign), sender=11, burst=1)
    for f in sent:
        assert f[2] & VoiceFlags.SIGNED
        assert len(f) == HEADER_SIZE + len(b"opus0") + TAG_SIZE + SIGNATURE_SIZE
        assert verify_frame(ann.public.ed25519, f)
        assert not verify_frame(ben.public.ed25519, f)
    # what a multicast listener hears: the talker's datagram with its session MAC, stripped
    heard = strip_mac(add_mac(os.urandom(32), sent[0]))
    assert heard == sent[0] and verify_frame(ann.public.ed25519, heard)
    assert [org.rings["cat"].opener.open(f)[1] for f in sent] == [b"opus0", b"opus1", b"opus2"]


def test_a_member_with_the_group_key_cannot_forge_another_members_frames(org: Org) -> None:
    """ben holds the group key: his frames naming ann's session open, but never verify as ann's,
    whether unsigned, signed by himself, or with ann's signature moved from another frame."""
    ann, ben = org.ids["ann"], org.ids["ben"]
    key = org.rings["ben"].current
    assert key is not None
    real = frames(VoiceSealer(key, ann.sign), sender=11, burst=5, n=2)
    unsigned = frames(VoiceSealer(key), sender=11, burst=6, n=1)[0]
    own = frames(VoiceSealer(key, ben.sign), sender=11, burst=7, n=1)[0]
    moved = frames(VoiceSealer(key, ben.sign), sender=11, burst=5, n=2)[1][:-SIGNATURE_SIZE] \
        + real[0][-SIGNATURE_SIZE:]
    flipped = bytearray(real[1])
    flipped[HEADER_SIZE] ^= 1
    for forged in (unsigned, own, moved, bytes(flipped), real[0][:-1], b""):
        assert not verify_frame(ann.public.ed25519, forged)
    assert all(verify_frame(ann.public.ed25519, f) for f in real)


def test_every_grant_vouches_for_the_digest_of_the_members_keys(org: Org) -> None:
    keys = {u: i.public.ed25519 for u, i in org.ids.items()}
    digest = talkers_digest(GROUP, GROUP_ID, 1, keys)
    assert {peek_grant(g).talkers for g in org.grants.values()} == {digest}
    # a list with any key swapped (a server slipping in one of its own), a member more or
    # less, or another epoch does not hash to it
    rogue = Identity.from_seed(os.urandom(64)).public.ed25519
    assert talkers_digest(GROUP, GROUP_ID, 1, {**keys, "ben": rogue}) != digest
    assert talkers_digest(GROUP, GROUP_ID, 1, {**keys, "eve": rogue}) != digest
    assert talkers_digest(GROUP, GROUP_ID, 1, {u: k for u, k in keys.items() if u != "cat"}) \
        != digest
    assert talkers_digest(GROUP, GROUP_ID, 2, keys) != digest
    assert all(len(g) < 330 for g in org.grants.values())


def test_the_relay_strips_the_signature_for_unicast_members_and_the_frame_still_opens(
        org: Org) -> None:
    key = org.rings["ann"].current
    assert key is not None
    signed = frames(VoiceSealer(key, org.ids["ann"].sign), sender=11, burst=9, n=2)
    bare = [strip_signature(f) for f in signed]
    for s, b in zip(signed, bare):
        assert len(b) == len(s) - SIGNATURE_SIZE and not b[2] & VoiceFlags.SIGNED
        assert not verify_frame(org.ids["ann"].public.ed25519, b)  # nothing left to check
    assert [org.rings["ben"].opener.open(f)[1] for f in bare] == [b"opus0", b"opus1"]
    assert [org.rings["cat"].opener.open(f)[1] for f in signed] == [b"opus0", b"opus1"]
    # the flag cannot be set on a stripped frame to pass its tail off as a signature
    forged = bytearray(bare[0])
    forged[2] |= VoiceFlags.SIGNED
    assert not verify_frame(org.ids["ann"].public.ed25519, bytes(forged))
