"""Group key grants on the server: kept per group and epoch, pushed to members, never opened.

A coordinator's client makes each group key and seals one copy per member (``ptt.crypto.groupkeys``);
the server only stores these opaque grants, hands a member its grant in ``Joined`` and pushes a
reliable ``KeyGrant`` to online members when the key changes. A member removed from the group
loses its grant at once (``remove_member``); the coordinator then rotates the key, so the removed
member cannot decode new bursts.
"""

from __future__ import annotations

from functools import partial

from ptt.errors import ConflictError, NotFoundError
from ptt.protocol import messages as m
from ptt.protocol.server_outbox import Outbox
from ptt.protocol.server_pages import Pages
from ptt.protocol.server_state import ServerState


class Keys:
    """``set_group_key`` and ``group_key``: the per-group key epochs and their grants."""

    def __init__(self, state: ServerState, out: Outbox, pages: Pages) -> None:
        self.state = state
        self.out = out
        self.pages = pages  # keeps an epoch's grants while pages sealed with it are retained

    def set_group_key(self, group: str, epoch: int, grants: dict[str, bytes], now: float) -> None:
        """A coordinator uploaded ``group``'s key for ``epoch``: one opaque grant per member.

        Replaces every grant of the group (members not in ``grants`` have none afterwards) and
        pushes a reliable ``KeyGrant`` to each online member that has one. Epochs only go up:
        ConflictError for ``epoch`` <= the current one, except the same epoch with the same
        grants (a repeated upload, a restore), which changes nothing. NotFoundError for an
        unknown group. The server never opens a grant (``ptt.crypto.groupkeys``).
        """
        g = self.state.groups.get(group)
        if g is None:
            raise NotFoundError(f"unknown group '{group}'")
        if epoch == g.key_epoch and grants == g.grants:
            return
        if epoch <= g.key_epoch:
            raise ConflictError(f"group '{group}' already has key epoch {g.key_epoch}; "
                                f"{epoch} is not newer")
        if g.key_epoch:
            self.pages.retire_grants(g.name, g.key_epoch, g.grants)
        g.key_epoch = epoch
        g.grants = dict(grants)
        for user, grant in g.grants.items():
            for s in self.state.sessions.devices(user):  # every device of the member
                self.out.send_reliable(s, partial(m.KeyGrant, group=g.name, epoch=epoch,
                                               grant=grant), now)

    def group_key(self, group: str) -> tuple[int, dict[str, bytes]]:
        """``(epoch, grants)`` of ``group`` (0 and no grants before the first upload)."""
        g = self.state.groups.get(group)
        if g is None:
            raise NotFoundError(f"unknown group '{group}'")
        return g.key_epoch, dict(g.grants)

