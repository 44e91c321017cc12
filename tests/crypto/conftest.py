from __future__ import annotations

import os

import pytest

from ptt.crypto.groupkeys import GroupKeyring, issue_group_key
from ptt.crypto.identity import Identity

GROUP, GROUP_ID = "ops", 4242


class Org:
    """A coordinator and three members with real identities; grants for epoch 1."""

    def __init__(self) -> None:
        self.coord = Identity.from_seed(os.urandom(64))
        self.ids = {u: Identity.from_seed(os.urandom(64)) for u in ("ann", "ben", "cat")}
        self.trusted = {"boss": self.coord.public.ed25519}
        self.key, self.grants = issue_group_key(
            self.coord, "boss", GROUP, GROUP_ID, 1,
            {u: i.public for u, i in self.ids.items()}, os.urandom)
        self.rings = {u: GroupKeyring(GROUP, GROUP_ID) for u in self.ids}
        for u, ring in self.rings.items():
            ring.accept(self.grants[u], self.ids[u], u, self.trusted, now=0.0)


@pytest.fixture
def org() -> Org:
    return Org()
