"""The directory's records, its rules for what may be stored, and the interface of a directory.

Two backends hold the directory: the embedded SQLite :class:`ptt.server.store.Store` (the
default) and the cluster's PostgreSQL :class:`ptt.cluster.directory.PgDirectory`. Both take the
same input and refuse the same bad input with the same message, because both call the checks
here before they touch their database; each backend keeps only what its engine enforces (unique
names, cascades). :class:`Directory` is the interface the server uses, which both satisfy.

Sans-I/O: no clock, no database; errors are :class:`~ptt.errors.ValidationError` and
:class:`~ptt.errors.ConflictError`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Protocol, Self

from ptt.errors import ConflictError, ValidationError
from ptt.names import group_name, is_call_group_name, user_name
from ptt.protocol.messages import Role

GROUP_MODES = ("relay", "multicast", "auto")
DEFAULT_MAX_TALK = 30.0
MAX_TALK_LIMIT = 3_600.0  # one hour: anything longer is a stuck transmitter, not a page
PUBLIC_SIZE = 64  # ptt.crypto.identity.PublicIdentity: X25519 + Ed25519
MAX_EPOCH = 1 << 32  # the key epoch rides the wire in 32 bits


@dataclass(frozen=True, slots=True)
class UserRecord:
    name: str
    role: Role
    salt: bytes = field(repr=False)
    iterations: int
    verifier: bytes = field(repr=False)
    created: float  # Unix time
    public: bytes | None = None  # the 64-byte public identity (None: made before schema 2)


@dataclass(frozen=True, slots=True)
class GroupRecord:
    id: int  # the wire group_id
    name: str
    max_talk: float  # seconds
    mode: str  # relay | multicast | auto
    record: bool
    private: bool
    created: float
    encrypted: bool = False  # voice sealed end to end: the server can relay, not hear or record
    key_epoch: int = 0  # the epoch of the grants stored (0: no key issued yet)


@dataclass(frozen=True, slots=True)
class GroupKey:
    """A group's current key epoch and each member's grant (opaque to the server)."""

    group: str
    epoch: int
    grants: dict[str, bytes] = field(repr=False)


@dataclass(frozen=True, slots=True)
class MemberChange:
    """What :meth:`Directory.change_members` did: ``absent`` were named for removal but were
    not members; ``key`` is the epoch installed with the change (None: none was given)."""

    group: str
    added: list[str]
    removed: list[str]
    absent: list[str]
    key: GroupKey | None


@dataclass(frozen=True, slots=True)
class MemberRecord:
    group: str
    user: str
    listen_only: bool


# --- the rules -----------------------------------------------------------------------------------


def any_group_name(name: object) -> str:
    """An ordinary group name, or a call-group name (``call:a+b``) as they are stored."""
    if isinstance(name, str) and is_call_group_name(name):
        return name
    return group_name(name)


def check_max_talk(value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValidationError(f"invalid max talk time {value!r}: expected seconds")
    if not 0 < value <= MAX_TALK_LIMIT:
        raise ValidationError(
            f"invalid max talk time {value:g} s: expected more than 0 and at most "
            f"{MAX_TALK_LIMIT:g} s"
        )
    return float(value)


def check_mode(value: str) -> str:
    mode = value.strip().lower() if isinstance(value, str) else value
    if mode not in GROUP_MODES:
        raise ValidationError(f"invalid group mode {value!r}: expected relay, multicast or auto")
    return str(mode)


def group_settings(max_talk: float | None, mode: str | None,
                   record: bool | None) -> dict[str, object]:
    """The settings a group update changes (column name -> checked value); None: unchanged."""
    changes: dict[str, object] = {}
    if max_talk is not None:
        changes["max_talk"] = check_max_talk(max_talk)
    if mode is not None:
        changes["mode"] = check_mode(mode)
    if record is not None:
        changes["record"] = bool(record)
    return changes


def check_credentials(salt: bytes, iterations: int, verifier: bytes,
                      public: bytes | None) -> None:
    """A new user's credentials (``ptt.protocol.auth.make_credentials``) and public identity."""
    if not salt or not verifier or isinstance(iterations, bool) or iterations < 1:
        raise ValidationError("invalid credentials: salt, iterations and verifier required")
    if public is not None and (not isinstance(public, (bytes, bytearray))
                               or len(public) != PUBLIC_SIZE):
        raise ValidationError(f"invalid public identity: expected {PUBLIC_SIZE} bytes")


def check_change(add: Sequence[str], remove: Sequence[str]) -> tuple[list[str], list[str]]:
    """The users of a membership change, as stored names; no one both added and removed."""
    added = [user_name(u) for u in add]
    removed = [user_name(u) for u in remove]
    if set(added) & set(removed):
        raise ValidationError("a user cannot be both added and removed")
    return added, removed


def check_key(group: str, current: int, epoch: int, grants: Mapping[str, bytes],
              members: Sequence[str] | set[str] | Mapping[str, object]) -> None:
    """A new key epoch of ``group``: newer than the ``current`` one (a replayed upload must
    never bring an old key back), and every grant non-empty and for one of ``members``."""
    if isinstance(epoch, bool) or not isinstance(epoch, int) or not 0 < epoch < MAX_EPOCH:
        raise ValidationError(f"invalid key epoch {epoch!r}")
    if epoch <= current:
        raise ConflictError(
            f"key epoch {epoch} of '{group}' is not newer than the stored {current}")
    for user, blob in grants.items():
        if user not in members:
            raise ValidationError(f"'{user}' is not a member of '{group}'")
        if not isinstance(blob, (bytes, bytearray)) or not blob:
            raise ValidationError(f"invalid key grant for '{user}'")


def check_plain(group: str, encrypted: bool) -> None:
    if not encrypted:
        raise ValidationError(f"group '{group}' is plain: its voice is not encrypted")


def check_change_key(group: str, encrypted: bool, current: int, add: Sequence[str],
                     key: tuple[int, Mapping[str, bytes]] | None,
                     keyed_after: set[str]) -> None:
    """The key that goes with a membership change. An encrypted group that holds a key changes
    only together with its next key, and that key has one grant for each member afterwards that
    has a public identity (``keyed_after``) and no one else: so no committed state has a removed
    member still holding the key in force, nor a member without the new one."""
    if key is not None:
        check_plain(group, encrypted)
        if set(key[1]) != keyed_after:
            raise ValidationError(
                f"the new key of '{group}' must have a grant for each member after the "
                f"change and no one else (members: {', '.join(sorted(keyed_after))})")
    elif encrypted and current > 0:
        verb = "added" if add else "removed"
        raise ValidationError(
            f"group '{group}' is encrypted: members are {verb} only together with its "
            f"next key, which the coordinator's client makes: use 'ptt group "
            f"{'add' if add else 'remove'} {group} USER...' (one group.change request; "
            f"update ptt if it sent this)")


# --- membership changes and keys, on any backend -------------------------------------------------


class MembershipTx(Protocol):
    """The reads and writes of one open write transaction of a backend that
    :func:`change_members` and :func:`set_group_key` need; ids are the backend's row ids."""

    def group(self, group: str) -> tuple[int, bool, int]:
        """(id, encrypted, key epoch) of ``group``; NotFoundError for an unknown one."""
        ...

    def user_ids(self, users: Sequence[str]) -> dict[str, int]:
        """The ids of ``users``; NotFoundError naming the first unknown one."""
        ...

    def member_ids(self, gid: int) -> dict[str, int]: ...

    def keyed_members(self, gid: int) -> set[str]:
        """The members of group ``gid`` that have a public identity."""
        ...

    def remove_members(self, gid: int, uids: Sequence[int]) -> None:
        """End these memberships, and drop these members' grants with them."""
        ...

    def add_members(self, gid: int, uids: Sequence[int], listen_only: bool) -> None:
        """Make members (an existing one only changes ``listen_only``)."""
        ...

    def store_key(self, gid: int, epoch: int, grants: Sequence[tuple[int, str, bytes]]) -> None:
        """Replace the group's grants with ``(user id, user, grant)`` of ``epoch``, keep them
        in the grant history, and make ``epoch`` the group's."""
        ...


def set_group_key(tx: MembershipTx, group: str, epoch: int,
                  grants: Mapping[str, bytes]) -> GroupKey:
    """Replace ``group``'s grants with those of ``epoch``, which must be newer than the stored
    one (a replayed upload must never bring an old key back). Every grant is for a current
    member; members without a grant get none (and cannot talk until the next)."""
    gid, encrypted, current = tx.group(group)
    check_plain(group, encrypted)
    _put_key(tx, gid, group, current, epoch, grants, tx.member_ids(gid))
    return GroupKey(group, epoch, {u: bytes(b) for u, b in grants.items()})


def change_members(tx: MembershipTx, group: str, add: Sequence[str], remove: Sequence[str],
                   listen_only: bool,
                   key: tuple[int, Mapping[str, bytes]] | None) -> MemberChange:
    """Add and remove members of ``group`` and install its next key, in the caller's one
    transaction.

    ``add`` become members (an existing one only changes ``listen_only``); ``remove`` stop
    being members, with their grants; named users who are not members are reported in
    ``absent``, not refused, so a change repeated after a lost answer still succeeds. An
    encrypted group that holds a key changes only together with ``key`` = (epoch, grants)
    (:func:`check_change_key`). NotFoundError for an unknown group or user."""
    added, removing = check_change(add, remove)
    gid, encrypted, current = tx.group(group)
    ids = tx.user_ids([*added, *removing])
    before = tx.member_ids(gid)
    removed = [u for u in removing if u in before]
    absent = [u for u in removing if u not in before]
    tx.remove_members(gid, [ids[u] for u in removed])
    tx.add_members(gid, [ids[u] for u in added], listen_only)
    after = tx.member_ids(gid)
    check_change_key(group, encrypted, current, added, key, tx.keyed_members(gid))
    stored = None
    if key is not None:
        epoch, grants = key
        _put_key(tx, gid, group, current, epoch, grants, after)
        stored = GroupKey(group, epoch, {u: bytes(b) for u, b in grants.items()})
    return MemberChange(group, added, removed, absent, stored)


def _put_key(tx: MembershipTx, gid: int, group: str, current: int, epoch: int,
             grants: Mapping[str, bytes], members: dict[str, int]) -> None:
    check_key(group, current, epoch, grants, members)
    tx.store_key(gid, epoch, [(members[u], u, bytes(b)) for u, b in sorted(grants.items())])


# --- the interface -------------------------------------------------------------------------------


class Directory(Protocol):
    """What the server reads and changes of its directory: users, groups, memberships, key
    grants and its long-term secrets. Names are given as typed and stored mapped
    (:mod:`ptt.names`); errors are NotFoundError, ConflictError, ValidationError and StoreError."""

    def close(self) -> None: ...

    def __enter__(self) -> Self: ...

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None: ...

    def add_user(self, name: str, role: Role | str, salt: bytes, iterations: int,
                 verifier: bytes, public: bytes | None = None) -> UserRecord: ...

    def get_user(self, name: str) -> UserRecord: ...

    def list_users(self) -> list[UserRecord]: ...

    def remove_user(self, name: str) -> None: ...

    def keyed_groups_of(self, name: str) -> list[str]: ...

    def create_group(self, name: str, max_talk: float = DEFAULT_MAX_TALK, mode: str = "auto",
                     record: bool = False, private: bool = False,
                     encrypted: bool = True) -> GroupRecord: ...

    def get_group(self, name: str) -> GroupRecord: ...

    def list_groups(self, include_private: bool = False) -> list[GroupRecord]: ...

    def delete_group(self, name: str) -> None: ...

    def update_group(self, name: str, *, max_talk: float | None = None, mode: str | None = None,
                     record: bool | None = None) -> GroupRecord: ...

    def add_member(self, group: str, user: str, listen_only: bool = False) -> MemberRecord: ...

    def remove_member(self, group: str, user: str) -> None: ...

    def members(self, group: str) -> list[MemberRecord]: ...

    def group_counts(self) -> dict[str, int]: ...

    def groups_of(self, user: str) -> list[GroupRecord]: ...

    def all_memberships(self) -> list[MemberRecord]: ...

    def member_keys(self, group: str) -> dict[str, bytes | None]: ...

    def set_group_key(self, group: str, epoch: int, grants: dict[str, bytes]) -> GroupKey: ...

    def change_members(self, group: str, add: Sequence[str] = (), remove: Sequence[str] = (),
                       listen_only: bool = False,
                       key: tuple[int, dict[str, bytes]] | None = None) -> MemberChange: ...

    def group_key(self, group: str) -> GroupKey: ...

    def all_group_keys(self) -> list[GroupKey]: ...

    def secret(self, name: str, size: int = 32) -> bytes: ...
