"""Stand-ins for a replay: temporary users made for a recording's talkers, removed afterwards.

``ptt replay --as NAME`` and ``ptt replay --events`` (without ``--users``) replay as users that do
not exist yet: a coordinator makes them, puts them in the group, and takes them out and removes
them when the replay is over, whatever happened meanwhile::

    async with temporary_users(connect, coordinator, {"replay-ann": "volunteer"}, "volunteers",
                               pins=pins, warn=print) as who:
        conn = await connect(who["replay-ann"].config)
        who["replay-ann"].voice_keys(conn)      # before anything else asks for group keys

Their tokens are made here (:func:`ptt.client.keys.add_user`). An encrypted group gets a new key as
they come in (they need it to talk) and another as they leave (they must not keep it), each with
the change; their grants come from the coordinator who made them, whose key they trust as known
(without a pins file). A plain group stays plain.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from ptt.client import keys
from ptt.client.connection import Connection
from ptt.config import ClientConfig
from ptt.crypto.identity import PublicIdentity, identity_from_token
from ptt.errors import PttError, ValidationError
from ptt.names import user_name

__all__ = ["TEMP_PREFIX", "Identity", "temp_name", "temporary_users"]

TEMP_PREFIX = "replay-"  # ``ptt replay --events``: a recorded user ann is replayed by replay-ann

# a logged-in connection for a config; the caller closes it
Connect = Callable[[ClientConfig], Awaitable[Connection]]


@dataclasses.dataclass(frozen=True)
class Identity:
    """A config to replay with, and whom its group keys are trusted from."""

    config: ClientConfig
    pins: Path | None = None  # signer pins file (None: the default next to the client config)
    signers: dict[str, PublicIdentity] | None = None  # a temporary user: its maker, in memory

    @classmethod
    def of_file(cls, config: ClientConfig, path: Path | None) -> Identity:
        """The identity of a client config file at ``path``: its pins lie beside it."""
        return cls(config, keys.pins_path(keys.SIGNER_PINS, path))

    def voice_keys(self, conn: Connection) -> keys.VoiceKeys:
        """Set up the connection's group keys before anything else asks for them."""
        return keys.VoiceKeys.of(conn, self.pins, signers=self.signers)


def temp_name(prefix: str, user: str) -> str:
    """The temporary user that stands in for ``user`` (a user name's length at most)."""
    return user_name((prefix + user)[:32])


@asynccontextmanager
async def temporary_users(connect: Connect, coordinator: ClientConfig, roles: dict[str, str],
                          group: str, *, pins: Path | None, warn: Callable[[str], None]
                          ) -> AsyncIterator[dict[str, Identity]]:
    """New users (name -> role) in ``group``, made with the ``coordinator``'s config over one
    connection (a second login of the same user would replace the first), removed after.

    ``pins``: the coordinator's member pins file. What cannot be undone at the end (the server
    gone) is told to ``warn`` with the command that finishes the job; it does not hide the
    replay's own outcome."""
    conn = await connect(coordinator)
    signer = {conn.user: identity_from_token(conn.token, conn.user).public}
    made: list[str] = []
    added = False
    try:
        existing = {u["name"] for u in (await conn.admin("user.list", {}))["users"]}
        taken = sorted(set(roles) & existing)
        if taken:
            raise ValidationError(
                f"user '{taken[0]}' already exists: replay as it with its config file "
                f"(--as PATH.toml, or --users DIR), or name a user that does not exist "
                f"to have a temporary one made")
        configs = {}
        for name, role in roles.items():
            token = await keys.add_user(conn, name, role, pins=pins)
            made.append(name)
            configs[name] = Identity(dataclasses.replace(coordinator, user=name, token=token),
                                     signers=signer)
        # in with the group's next key, and out with another (one request each)
        await keys.change_members(conn, group, add=list(roles), pins=pins)
        added = True
        yield configs
    finally:
        if added:
            try:
                await keys.change_members(conn, group, remove=made, pins=pins)
            except PttError as exc:
                warn(f"warning: could not take the temporary users out of '{group}' "
                     f"({exc}): run 'ptt group remove {group} {' '.join(made)}'")
        for name in made:
            try:
                await keys.remove_user(conn, name, pins=pins)
            except PttError as exc:
                warn(f"warning: could not remove temporary user '{name}': {exc}")
        await conn.close()
