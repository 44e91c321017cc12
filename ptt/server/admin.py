"""Coordinator commands: change the store, then mirror the change into the live server core.

Each operation takes the ``args`` of an ``Admin`` message and returns the ``result`` map of the
``AdminResponse``. Errors are ``PttError``s; :func:`error_code` maps them to wire codes so that the
CLI on the other side can print the same one-line message.

End-to-end keys. The server never sees a token nor a group key:

* ``user.add`` takes the credentials a coordinator's client made (``ptt.client.keys.add_user``):
  salt, iterations, verifier and the member's 64-byte public identity; ``server.info`` tells
  that client the iteration count to use. A ``user.add`` without them is refused
  (:data:`NO_CREDENTIALS`): the server makes no token, but the bootstrap coordinator's at first
  start (:meth:`Admin.create_user`).
* ``group.keys`` hands a coordinator's client the members' public identities and the current
  epoch; ``group.set_key`` stores the signed grants it made for the next epoch (the server reads
  only their clear fields, to check that each is for that member, group and epoch) and gives them
  to the core, which pushes each online member its own.
"""

from __future__ import annotations

import ipaddress
import secrets
from collections.abc import Callable
from typing import Any

from ptt.crypto.groupkeys import peek_grant
from ptt.crypto.identity import identity_from_token
from ptt.errors import (
    AuthError,
    ConflictError,
    NotFoundError,
    ProtocolError,
    PttError,
    RequestError,
    StoreError,
    ValidationError,
)
from ptt.names import group_name, parse_role, role_name, user_name
from ptt.protocol import auth, parts
from ptt.protocol.directory import Directory, GroupRecord
from ptt.protocol.messages import ErrorCode, Role
from ptt.protocol.server import ServerCore

Result = dict[str, Any]
DEFAULT_MULTICAST_NETWORK = "239.255.0.0/16"  # administratively scoped (RFC 2365)
PUBLIC_SIZE = 64  # ptt.crypto.identity.PublicIdentity
NO_CREDENTIALS = ("user.add needs the credentials made by the coordinator's client (salt, "
                  "iterations, verifier, public key): the token is made by your client; update ptt")


def multicast_for(group_id: int, port_base: int,
                  network: str = DEFAULT_MULTICAST_NETWORK) -> tuple[str, int]:
    """The group's multicast address (in ``network``) and port, derived from its id, so they
    stay the same across restarts."""
    net = ipaddress.IPv4Network(network)
    hosts = max(1, net.num_addresses - 1)  # never the network address itself
    addr = net.network_address + 1 + (group_id - 1) % hosts
    return str(addr), port_base + (group_id % 1000) * 2


# Admin arguments that may be logged. Every other one is shown only by its size: user.add
# carries a salt and a password-equivalent verifier, group.set_key the wrapped grants, and an
# operation added later may carry anything (so the rule is a list of what is safe, not of secrets).
LOGGABLE_ARGS = frozenset({"name", "users", "add", "remove", "role", "listen_only", "max_talk", "mode", "record",
                           "plain", "epoch", "iterations"})


def loggable_args(args: dict[str, Any]) -> dict[str, Any]:
    """``args`` of an admin operation as they may appear in a log line."""
    out: dict[str, Any] = {}
    for key, value in args.items():
        if key in LOGGABLE_ARGS and isinstance(value, (str, int, float, bool, list, type(None))):
            out[key] = value
        elif isinstance(value, bytes):
            out[key] = f"<{len(value)} bytes>"
        elif isinstance(value, dict):
            out[key] = f"<{len(value)} entries>"
        else:
            out[key] = "<hidden>"
    return out


def error_code(exc: PttError) -> ErrorCode:
    if isinstance(exc, NotFoundError):
        return ErrorCode.NOT_FOUND
    if isinstance(exc, ConflictError):
        return ErrorCode.CONFLICT
    if isinstance(exc, ValidationError):
        return ErrorCode.INVALID
    if isinstance(exc, AuthError):
        return ErrorCode.FORBIDDEN
    if isinstance(exc, StoreError):
        return ErrorCode.INTERNAL
    return ErrorCode.BAD_REQUEST


class Admin:
    """Runs coordinator operations; ``now`` is the event loop's clock (for floor side effects)."""

    def __init__(self, store: Directory, core: ServerCore, mcast_port_base: int = 7800,
                 iterations: int = auth.DEFAULT_ITERATIONS,
                 mcast_network: str = DEFAULT_MULTICAST_NETWORK) -> None:
        self.store = store
        self.core = core
        self.mcast_port_base = mcast_port_base
        self.mcast_network = mcast_network
        self.iterations = iterations
        # Every ptt client makes its users' tokens itself (ptt.client.keys.add_user): a token
        # made here would be known to whoever runs the server, hence the user's voice keys.
        # False only lets a wire user.add without credentials have one made here (old clients).
        self.require_client_credentials = True
        # why this server has no multicast (the adapter sets it once it tried), or None
        self.multicast_off: str | None = None
        self.uploads = parts.Uploads()  # requests arriving in parts (ptt.protocol.parts)
        self.results = parts.Results()  # answers too large for one datagram, until fetched
        self._ops: dict[str, Callable[[dict[str, Any], float], Result]] = {
            "user.add": self.user_add,
            "user.list": self.user_list,
            "user.remove": self.user_remove,
            "user.keys": self.user_keys,
            "group.create": self.group_create,
            "group.update": self.group_update,
            "group.list": self.group_list,
            "group.show": self.group_show,
            "group.delete": self.group_delete,
            "group.add": self.group_add,
            "group.remove": self.group_remove,
            "group.change": self.group_change,
            "group.keys": self.group_keys,
            "group.set_key": self.group_set_key,
            "server.info": self.server_info,
        }

    def execute(self, op: str, args: dict[str, Any], now: float, user: str | None = None,
                role: Role | None = None) -> Result:
        """Run ``op`` for ``user`` (None: the server itself). Only coordinators see every
        group; anyone else sees the groups it is a member of, and is told of any other group
        exactly what it is told of one that does not exist."""
        who = user or ""
        if op == parts.PART_OP:  # any session may send parts: the operation is checked after
            return {"received": self.uploads.add(who, args, now)}
        if op == parts.FETCH_OP:  # only the user's own kept answers
            return self.results.get(who, args, now)
        if parts.PARTS_KEY in args:
            args = parts.decode_args(self.uploads.take(who, args[parts.PARTS_KEY], now))
        result = self._execute(op, args, now, user, role)
        data = parts.encode_args(result)
        if len(data) > parts.PART_BYTES:  # too large for one answer: fetched in parts
            return self.results.put(who, data, now)
        return result

    def _execute(self, op: str, args: dict[str, Any], now: float, user: str | None,
                 role: Role | None) -> Result:
        fn = self._ops.get(op)
        if fn is None:
            raise ValidationError(f"unknown operation '{op}'")
        if user is None or role == Role.COORDINATOR:
            return fn(args, now)
        if op == "group.list":
            mine = {g.name for g in self.store.groups_of(user)}
            return {"groups": [g for g in self.group_list(args, now)["groups"]
                               if g["name"] in mine]}
        if op == "group.show":
            name = group_name(_str(args, "name"))
            if name not in {g.name for g in self.store.groups_of(user)}:
                raise NotFoundError(f"unknown group '{name}'")
            return fn(args, now)
        if op == "group.keys":  # a member's own groups: the talker keys its grant vouches for
            name = group_name(_str(args, "name"))
            if name not in {g.name for g in self.store.groups_of(user)}:
                raise NotFoundError(f"unknown group '{name}'")
            return fn({"name": name}, now)
        raise AuthError("not a coordinator")

    # --- loading ------------------------------------------------------------------------------

    def load_all(self, now: float = 0.0) -> None:
        """Mirror the whole store into the core (at start), group keys included."""
        for u in self.store.list_users():
            self.core.upsert_user(u.name, u.role, u.salt, u.iterations, u.verifier)
        for g in self.store.list_groups(include_private=True):
            self._mirror_group(g)
        for mem in self.store.all_memberships():
            self.core.set_member(mem.group, mem.user, mem.listen_only)
        for key in self.store.all_group_keys():
            self.core.set_group_key(key.group, key.epoch, key.grants, now)

    def _mirror_group(self, g: GroupRecord) -> None:
        addr, port = multicast_for(g.id, self.mcast_port_base, self.mcast_network)
        self.core.upsert_group(g.name, g.id, g.max_talk, g.mode, g.private, addr, port)

    # --- changes made elsewhere (a cluster's other nodes) -----------------------------------------

    def apply_change(self, kind: str, name: str, now: float) -> None:
        """Bring the core to the directory's state of one user or group (``kind`` ``user`` or
        ``group``), or of everything (``all``), after another node changed it: the directory
        holds the change already (``ptt.cluster.directory.PgDirectory.follow``). Members see
        what they would see had the change been made here."""
        if kind == "user":
            self._apply_user(name, now)
        elif kind == "group":
            self._apply_group(name, now)
        elif kind == "all":
            users = {u.name for u in self.store.list_users()}
            groups = {g.name for g in self.store.list_groups(include_private=True)}
            for gone in sorted(self.core.groups.keys() - groups):
                if not self.core.groups[gone].private:  # a call going on is never stored
                    self.core.remove_group(gone, now)
            for gone in sorted(self.core.users.keys() - users):
                self.core.remove_user(gone, now)
            for user in sorted(users):
                self._apply_user(user, now)
            for group in sorted(groups):
                self._apply_group(group, now)

    def _apply_user(self, name: str, now: float) -> None:
        try:
            u = self.store.get_user(name)
        except NotFoundError:
            if name in self.core.users:
                self.core.remove_user(name, now)
            return
        self.core.upsert_user(u.name, u.role, u.salt, u.iterations, u.verifier)

    def _apply_group(self, name: str, now: float) -> None:
        try:
            g = self.store.get_group(name)
        except NotFoundError:
            self.core.remove_group(name, now)
            return
        live = self.core.groups.get(name)
        if live is not None and live.group_id != g.id:  # deleted and made again meanwhile
            self.core.remove_group(name, now)
            live = None
        if live is None or (live.max_talk, live.mode) != (g.max_talk, g.mode):
            self._mirror_group(g)
            live = self.core.groups[name]
        members = {mr.user: mr.listen_only for mr in self.store.members(name)}
        for user in sorted(live.members.keys() - members.keys()):  # first: no new key for them
            self.core.remove_member(name, user, now)
        for user, listen_only in sorted(members.items()):
            if live.members.get(user) != listen_only:
                self.core.set_member(name, user, listen_only, now)
        key = self.store.group_key(name)
        if key.epoch > live.key_epoch:
            self.core.set_group_key(name, key.epoch, key.grants, now)

    def create_user(self, name: str, role: Role | str) -> tuple[str, str]:
        """Create a user with a token made here, on the server; returns (name, token).

        Only for the bootstrap coordinator at first start (and clients older than
        ``ptt.client.keys.add_user``): whoever runs the server knows this token, hence the
        user's identity, so an organisation makes its own coordinator with ``ptt user add``
        and removes this one."""
        token = auth.new_token(secrets.token_bytes(auth.TOKEN_BYTES))
        creds = auth.make_credentials(token, secrets.token_bytes(auth.SALT_SIZE), self.iterations)
        public = identity_from_token(token, user_name(name)).public.to_bytes()
        rec = self.store.add_user(name, role, creds.salt, creds.iterations, creds.verifier,
                                  public)
        self.core.upsert_user(rec.name, rec.role, rec.salt, rec.iterations, rec.verifier)
        return rec.name, token

    # --- users --------------------------------------------------------------------------------

    def user_add(self, args: dict[str, Any], now: float) -> Result:
        """Store a user whose token the coordinator's client made; the server gets only the
        verifier and the public identity (``ptt.client.keys.add_user``)."""
        role = parse_role(args.get("role") or "volunteer")
        if args.get("verifier") is None:
            if self.require_client_credentials:
                raise ValidationError(NO_CREDENTIALS)
            name, token = self.create_user(_str(args, "name"), role)
            return {"name": name, "role": role_name(role), "token": token}
        salt, verifier = _blob(args, "salt"), _blob(args, "verifier")
        public = _blob(args, "public")
        iterations = args.get("iterations")
        if len(public) != PUBLIC_SIZE:
            raise ValidationError(f"invalid public key: expected {PUBLIC_SIZE} bytes")
        if (isinstance(iterations, bool) or not isinstance(iterations, int)
                or not auth.MIN_ITERATIONS <= iterations <= auth.MAX_ITERATIONS):
            raise ValidationError(f"invalid iteration count {iterations!r}")
        if len(salt) < 8 or len(verifier) < 16:
            raise ValidationError("invalid credentials: salt or verifier too short")
        rec = self.store.add_user(_str(args, "name"), role, salt, iterations, verifier, public)
        self.core.upsert_user(rec.name, rec.role, rec.salt, rec.iterations, rec.verifier)
        return {"name": rec.name, "role": role_name(rec.role)}

    def server_info(self, args: dict[str, Any], now: float) -> Result:
        """What a coordinator's client needs to make credentials for this server."""
        return {"iterations": self.iterations}

    def user_list(self, args: dict[str, Any], now: float) -> Result:
        online = self.core.online_users()
        counts = self.store.group_counts()
        return {"users": [
            {"name": u.name, "role": role_name(u.role), "online": u.name in online,
             "groups": counts.get(u.name, 0)}
            for u in self.store.list_users()
        ]}

    def user_remove(self, args: dict[str, Any], now: float) -> Result:
        """Remove a user who is in no encrypted group holding a key: from those it leaves first
        with each group's next key (``group.change``, as ``ptt.client.keys.remove_user`` does),
        so no committed state has a removed user's key still in force. ``rekey`` is always
        empty (kept for older clients, which re-keyed the groups it listed)."""
        name = user_name(_str(args, "name"))
        keyed = self.store.keyed_groups_of(name)
        if keyed:
            raise ValidationError(
                f"'{name}' is still in encrypted groups ({', '.join(keyed)}): remove it from "
                f"them first, each with its next key ('ptt user remove' does both; update ptt)")
        self.store.remove_user(name)
        self.core.remove_user(name, now)
        return {"name": name, "rekey": []}

    def user_keys(self, args: dict[str, Any], now: float) -> Result:
        """The encrypted groups holding a key that ``name`` is in: it leaves each with the
        group's next key before ``user.remove``."""
        name = user_name(_str(args, "name"))
        return {"name": name, "groups": self.store.keyed_groups_of(name)}

    # --- groups -------------------------------------------------------------------------------

    def _check_mode(self, name: str, mode: object) -> None:
        """A multicast-only group on a server without multicast could carry no voice."""
        if mode == "multicast" and self.multicast_off is not None:
            raise RequestError(f"'{name}' cannot be a multicast group: multicast is off on "
                               f"this server ({self.multicast_off}); use --mode auto "
                               f"(multicast where it works, else the relay) or --mode relay")

    def group_create(self, args: dict[str, Any], now: float) -> Result:
        self._check_mode(_str(args, "name"), args.get("mode"))
        kwargs: dict[str, Any] = {}
        if args.get("max_talk") is not None:
            kwargs["max_talk"] = float(args["max_talk"])
        if args.get("mode") is not None:
            kwargs["mode"] = str(args["mode"])
        if args.get("record") is not None:
            kwargs["record"] = bool(args["record"])
        kwargs["encrypted"] = not args.get("plain")
        g = self.store.create_group(_str(args, "name"), **kwargs)
        self._mirror_group(g)
        return _group_summary(g, 0, 0, None)

    def group_update(self, args: dict[str, Any], now: float) -> Result:
        self._check_mode(_str(args, "name"), args.get("mode"))
        g = self.store.update_group(
            _str(args, "name"),
            max_talk=float(args["max_talk"]) if args.get("max_talk") is not None else None,
            mode=args.get("mode"),
            record=bool(args["record"]) if args.get("record") is not None else None,
        )
        self._mirror_group(g)
        st = self.core.group_state(g.name)
        return _group_summary(g, len(st.members), sum(mi.online for mi in st.members), st.talker)

    def group_list(self, args: dict[str, Any], now: float) -> Result:
        out = []
        for g in self.store.list_groups():
            live = self.core.groups.get(g.name)
            online = len(live.online.keys() | live.remote.keys()) if live else 0
            talker = self.core.floors.floor(g.name).holder if live else None
            out.append(_group_summary(g, len(self.store.members(g.name)), online, talker))
        return {"groups": out}

    def group_show(self, args: dict[str, Any], now: float) -> Result:
        g = self.store.get_group(group_name(_str(args, "name")))
        st = self.core.group_state(g.name)
        res = _group_summary(g, len(st.members), sum(mi.online for mi in st.members), st.talker)
        res["members"] = [{"user": mi.user, "online": mi.online, "listen_only": mi.listen_only,
                           "devices": ", ".join(self.core.devices_in(g.name, mi.user))}
                          for mi in st.members]
        res["queue"] = list(st.queue)
        res["multicast"] = f"{st.mcast_addr}:{st.mcast_port}"
        return res

    def group_delete(self, args: dict[str, Any], now: float) -> Result:
        name = group_name(_str(args, "name"))
        self.store.delete_group(name)
        self.core.remove_group(name, now)
        return {"name": name}

    def group_add(self, args: dict[str, Any], now: float) -> Result:
        name = group_name(_str(args, "name"))
        self.store.get_group(name)
        users = _users(args)
        for u in users:  # check all first, so a typo changes nothing
            self.store.get_user(u)
        listen_only = bool(args.get("listen_only") or False)
        # an encrypted group that holds a key takes new members only with its next key
        # (group.change): the store refuses this bare add there
        self.store.change_members(name, add=users, listen_only=listen_only)
        for u in users:  # an existing member keeps its grant: only the flag changes
            self.core.set_member(name, u, listen_only, now)
        return {"name": name, "users": users}

    def group_remove(self, args: dict[str, Any], now: float) -> Result:
        """Remove members; refused for an encrypted group holding a key, whose members change
        only with the next key in the same request (:meth:`group_change`)."""
        name = group_name(_str(args, "name"))
        users = _users(args)
        members = {mr.user for mr in self.store.members(name)}
        for u in users:
            if u not in members:
                raise NotFoundError(f"'{u}' is not a member of '{name}'")
        change = self.store.change_members(name, remove=users)
        for u in change.removed:
            self.core.remove_member(name, u, now)
        return {"name": name, "users": users}

    def group_change(self, args: dict[str, Any], now: float) -> Result:
        """Add and remove members and install the group's next key, as one transaction
        (``Store.change_members``): ``add``, ``remove`` (lists of users), ``listen_only`` (for
        those added), and for an encrypted group ``epoch`` and ``grants`` made by the
        coordinator's client for the members afterwards (``ptt.client.keys.change_members``).
        Users named for removal who are not members are reported in ``absent``."""
        name = group_name(_str(args, "name"))
        add, remove = _users(args, "add", required=False), _users(args, "remove", required=False)
        if not add and not remove:
            raise ValidationError("name at least one user to add or remove")
        g = self.store.get_group(name)
        key = None
        if args.get("epoch") is not None or args.get("grants") is not None:
            key = self._grants(args, g)
        listen_only = bool(args.get("listen_only") or False)
        change = self.store.change_members(name, add, remove, listen_only, key)
        for u in change.removed:  # first: their sessions must not get the new key
            self.core.remove_member(name, u, now)
        for u in change.added:
            self.core.set_member(name, u, listen_only, now)
        if change.key is not None:
            self.core.set_group_key(name, change.key.epoch, change.key.grants, now)
        return {"name": name, "added": change.added, "removed": change.removed,
                "absent": change.absent, "epoch": change.key.epoch if change.key else 0}

    # --- end-to-end keys ----------------------------------------------------------------------

    def group_keys(self, args: dict[str, Any], now: float) -> Result:
        """The members' public identities, for the coordinator's client to check against its
        pins and wrap the next epoch for. ``missing``: members without one (made before schema
        2 gave users one: remove and add them again)."""
        name = group_name(_str(args, "name"))
        g = self.store.get_group(name)
        keys = self.store.member_keys(name)
        # users about to be added (``users``): their public identities too, for the grants
        # that go with the change
        for u in _users(args, required=False):
            if u not in keys:
                keys[u] = self.store.get_user(u).public
        return {"name": g.name, "encrypted": g.encrypted, "epoch": g.key_epoch,
                "group_id": g.id,
                "members": {u: p for u, p in keys.items() if p is not None},
                "missing": sorted(u for u, p in keys.items() if p is None)}

    def group_set_key(self, args: dict[str, Any], now: float) -> Result:
        """Store the grants of a new epoch and hand them to the core (which pushes them)."""
        name = group_name(_str(args, "name"))
        epoch, grants = self._grants(args, self.store.get_group(name))
        key = self.store.set_group_key(name, epoch, grants)
        self.core.set_group_key(key.group, key.epoch, key.grants, now)
        return {"name": key.group, "epoch": key.epoch, "members": sorted(key.grants)}

    @staticmethod
    def _grants(args: dict[str, Any], g: GroupRecord) -> tuple[int, dict[str, bytes]]:
        """``epoch`` and ``grants`` of a key upload, each grant's clear fields checked: for
        that member, this group and this epoch."""
        epoch = args.get("epoch")
        if isinstance(epoch, bool) or not isinstance(epoch, int):
            raise ValidationError("missing 'epoch'")
        grants = args.get("grants")
        if not isinstance(grants, dict) or not all(
                isinstance(u, str) and isinstance(b, bytes) for u, b in grants.items()):
            raise ValidationError("missing 'grants': user -> grant bytes")
        for user, blob in grants.items():
            try:
                info = peek_grant(blob)
            except ProtocolError:
                raise ValidationError(f"malformed key grant for '{user}'") from None
            if (info.recipient, info.group, info.group_id, info.epoch) != (user, g.name, g.id,
                                                                           epoch):
                raise ValidationError(f"the grant for '{user}' is for another member, group "
                                      f"or epoch")
        return epoch, dict(grants)


def _blob(args: dict[str, Any], key: str) -> bytes:
    v = args.get(key)
    if not isinstance(v, bytes) or not v:
        raise ValidationError(f"missing '{key}'")
    return v


def _str(args: dict[str, Any], key: str) -> str:
    v = args.get(key)
    if not isinstance(v, str) or not v:
        raise ValidationError(f"missing '{key}'")
    return v


def _users(args: dict[str, Any], key: str = "users", required: bool = True) -> list[str]:
    users = args.get(key)
    if users is None and not required:
        return []
    if not isinstance(users, list) or (required and not users):
        raise ValidationError("name at least one user")
    return [user_name(u) for u in users]


def _group_summary(g: GroupRecord, members: int, online: int, talker: str | None) -> Result:
    return {"name": g.name, "max_talk_ms": int(g.max_talk * 1000), "mode": g.mode,
            "record": g.record, "members": members, "online": online, "talker": talker,
            "encrypted": g.encrypted, "key_epoch": g.key_epoch}
