"""The calls going on survive the directory being loaded again: a call group is never stored,
so a node following another's changes (a full reload after missing them) must not take it for
a group deleted meanwhile."""

from __future__ import annotations

import os

from ptt.names import call_group_name
from ptt.protocol.messages import Role
from ptt.protocol.server import PRIVATE_GROUP_BASE, ServerCore
from ptt.server.admin import Admin
from ptt.server.store import Store


def test_a_full_reload_keeps_the_calls_and_still_drops_a_deleted_group() -> None:
    with Store(":memory:") as store:
        core = ServerCore(os.urandom)
        admin = Admin(store, core)
        admin.load_all()
        admin.create_user("ann", Role.VOLUNTEER)
        admin.create_user("bob", Role.VOLUNTEER)
        admin.execute("group.create", {"name": "ops"}, 0.0)
        call = call_group_name("ann", "bob")
        core.directory.make_call(call, PRIVATE_GROUP_BASE + 9)
        store.delete_group("ops")  # as another node would, unseen here
        admin.apply_change("all", "", 1.0)
        assert call in core.groups and core.groups[call].members == {"ann": False, "bob": False}
        assert "ops" not in core.groups
