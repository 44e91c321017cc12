"""A user's groups as the server keeps them for logins (``ServerState.member_of``): the same as
a walk of every group's members after any change, and what a Welcome names."""

from __future__ import annotations

import random

from ptt.protocol import auth
from ptt.protocol import messages as m
from ptt.protocol.client import ClientCore, Connected
from ptt.protocol.server import ServerCore

TOKEN = "token-of-the-test-0123456789abcdef"


def walked(core: ServerCore) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for name, g in core.state.groups.items():
        for user in g.members:
            out.setdefault(user, set()).add(name)
    return out


def welcome_groups(core: ServerCore, user: str, now: float) -> list[str]:
    client = ClientCore(user, TOKEN, random.Random(user).randbytes, f"dev-{user}")
    client.connect(now)
    for _ in range(6):
        for data in client.datagrams_to_send():
            core.receive_datagram(data, ("10.0.0.9", 40000 + len(user)), now)
        for data, _ in core.datagrams_to_send():
            client.receive_datagram(data, now)
    connected = [e for e in client.events() if isinstance(e, Connected)]
    assert connected, f"{user} did not log in"
    return connected[0].groups


def test_the_index_follows_every_change_of_members_groups_and_users() -> None:
    rng = random.Random(3)
    core = ServerCore(rng.randbytes)
    creds = auth.make_credentials(TOKEN, rng.randbytes(16), auth.MIN_ITERATIONS)
    users = [f"u{i}" for i in range(12)]
    for u in users:
        core.upsert_user(u, m.Role.VOLUNTEER, creds.salt, creds.iterations, creds.verifier)
    gid = 0
    now = 0.0
    for step in range(400):
        now += 0.01
        op = rng.random()
        groups = sorted(core.state.groups)
        if op < 0.15 or not groups:
            gid += 1
            core.upsert_group(f"g{gid % 15}", gid, 30.0)  # a name may come again, new id
        elif op < 0.55:
            core.set_member(rng.choice(groups), rng.choice(users), rng.random() < 0.2, now)
        elif op < 0.8:
            core.remove_member(rng.choice(groups), rng.choice(users), now)
        elif op < 0.9:
            core.remove_group(rng.choice(groups), now)
        else:
            u = rng.choice(users)
            core.remove_user(u, now)
            core.upsert_user(u, m.Role.VOLUNTEER, creds.salt, creds.iterations, creds.verifier)
        assert core.state.member_of == walked(core), step
    core.datagrams_to_send()
    for u in users:
        assert welcome_groups(core, u, now) == sorted(walked(core).get(u, ())), u
