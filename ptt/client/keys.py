"""End-to-end group voice keys on the client: making users, issuing keys, holding them.

Who does what (docs/security.md)::

    coordinator's client                        server                     member's client
    add_user(conn, "ann")
      token = new_token(); verifier; identity_from_token(token, "ann").public
      pins ann's public key             --- user.add {salt, iterations, verifier, public} -->
      prints the token (it never leaves this machine but to ann)
    rekey(conn, "ops")                  --- group.keys ---> members' public keys
      checks them against its pins, signs epoch + 1 for each member
                                        --- group.set_key {epoch, grants} --> stored, pushed
                                                                            VoiceKeys.of(conn):
                                                                            identity from token,
                                                                            opens its grant,
                                                                            Talker seals,
                                                                            Listener opens

The server stores verifiers, public keys and signed, wrapped grants: it can neither log a member
into its keys nor hear or forge the group's voice. The identity is derived from the token
(:func:`~ptt.crypto.identity.identity_from_token`), so the coordinator knows each member's
public key before the server ever sees it, and a member needs no key file of its own.

Pins. A coordinator pins member keys (``member-keys.pins``), a member pins the signing keys of
the coordinators whose grants it accepts (``coordinator-keys.pins``), trust on first use, and any
change is refused with both fingerprints. Both files live next to the client config (mode 0600,
refused when others may read them): :func:`pins_path` gives the path when this machine has a
client config (``ptt login``), else pins live in memory for the connection.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ptt.client.connection import Connection
from ptt.config import client_config_path
from ptt.crypto.groupkeys import (
    GrantInfo,
    GroupKeyring,
    issue_group_key,
    open_grant,
    peek_grant,
    talkers_digest,
)
from ptt.crypto.identity import (
    Identity,
    KeyPins,
    PinStatus,
    PublicIdentity,
    identity_from_token,
    load_pins,
    save_pins,
)
from ptt.crypto.voice import VoiceKey, VoiceSealer, verify_frame
from ptt.errors import AuthError, ProtocolError, PttError, ValidationError
from ptt.names import parse_role, role_name, user_name
from ptt.protocol import auth
from ptt.protocol import messages as m
from ptt.protocol.voicepath import VoicePath
from ptt.wire.voice import VoiceFlags, VoiceHeader, decode_voice, peek_key_id

__all__ = [
    "MEMBER_PINS",
    "SIGNER_PINS",
    "PinFile",
    "VoiceKeys",
    "add_user",
    "change_members",
    "heard_directly",
    "pin_members",
    "pins_path",
    "rekey",
    "remove_user",
]

log = logging.getLogger("ptt.keys")

MEMBER_PINS = "member-keys.pins"  # a coordinator's pins of members' public identities
SIGNER_PINS = "coordinator-keys.pins"  # a member's pins of coordinators' signing keys
NO_X25519 = bytes(32)  # a signer pin knows only the Ed25519 half (a grant carries no more)

Entropy = Callable[[int], bytes]


def pins_path(name: str, config_path: Path | None = None) -> Path | None:
    """Where pins file ``name`` lives: next to ``config_path`` (``--config``) or the default
    client config. None when no client config exists there (pins then stay in memory)."""
    config = Path(config_path) if config_path is not None else client_config_path()
    return config.parent / name if config.exists() else None


class PinFile:
    """:class:`~ptt.crypto.identity.KeyPins` saved to ``path`` after every new pin (or only in
    memory when ``path`` is None)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.pins = load_pins(path) if path is not None else KeyPins()

    def check(self, user: str, public: PublicIdentity) -> PinStatus:
        status = self.pins.check(user, public)
        if status is PinStatus.NEW:
            self.save()
        return status

    def get(self, user: str) -> PublicIdentity | None:
        return self.pins.get(user)

    def replace(self, user: str, public: PublicIdentity) -> None:
        """Pin a new key after a person compared fingerprints (a member's new device)."""
        self.pins.replace(user, public)
        self.save()

    def forget(self, user: str) -> None:
        """Drop ``user``'s pin (the account is gone; a new one of that name is a new key)."""
        kept = self.pins.to_dict()
        if kept.pop(user, None) is not None:
            self.pins = KeyPins(kept)
            self.save()

    def save(self) -> None:
        if self.path is not None:
            save_pins(self.path, self.pins)


def _member_pins(conn: Connection, path: Path | None) -> PinFile:
    """``path``'s pins, or with no pins file configured the connection's in-memory ones."""
    if path is not None:
        return PinFile(path)
    pins = conn.attached.get(PinFile)
    if not isinstance(pins, PinFile):
        pins = conn.attached[PinFile] = PinFile(None)
    return pins


# --- the coordinator's side ----------------------------------------------------------------------


async def server_iterations(conn: Connection) -> int:
    """The PBKDF2 iteration count the server asks for (admin ``server.info``)."""
    result = await conn.admin("server.info", {})
    iterations = result.get("iterations")
    if isinstance(iterations, bool) or not isinstance(iterations, int):
        raise ProtocolError("server.info without an iteration count")
    return iterations


async def add_user(
    conn: Connection,
    name: str,
    role: str = "volunteer",
    iterations: int | None = None,
    *,
    pins: Path | None = None,
) -> str:
    """Create user ``name`` with a token made here; returns the token (show it once).

    The server receives only the salt, the PBKDF2 verifier and the user's public identity,
    derived from the token, which this coordinator pins at once (``pins``: the member pins
    file, default :func:`pins_path` of :data:`MEMBER_PINS`). ``iterations``: default the
    server's own setting.
    """
    name = user_name(name)
    role = role_name(parse_role(role))
    if iterations is None:
        iterations = await server_iterations(conn)
    token = auth.new_token(secrets.token_bytes(auth.TOKEN_BYTES))
    creds = auth.make_credentials(token, secrets.token_bytes(auth.SALT_SIZE), iterations)
    public = identity_from_token(token, name).public
    pin_file = _member_pins(conn, pins if pins is not None else pins_path(MEMBER_PINS))
    known = pin_file.get(name)
    await conn.admin("user.add", {"name": name, "role": role, "salt": creds.salt,
                                  "iterations": creds.iterations, "verifier": creds.verifier,
                                  "public": public.to_bytes()})
    if known is not None and known != public:
        # the user was removed and added again: a new token, hence a new key, which we made
        pin_file.replace(name, public)
    else:
        pin_file.check(name, public)
    return token


def pin_members(conn: Connection, publics: Mapping[str, PublicIdentity],
                pins: Path | None = None) -> None:
    """Pin the public identities of users this coordinator just made (many at once: the pins
    file is written once); a user made anew replaces its old pin, as in :func:`add_user`."""
    pin_file = _member_pins(conn, pins if pins is not None else pins_path(MEMBER_PINS))
    for name, public in publics.items():
        if pin_file.pins.check(name, public) is PinStatus.CHANGED:
            pin_file.pins.replace(name, public)
    pin_file.save()


async def rekey(
    conn: Connection,
    group: str,
    *,
    pins: Path | None = None,
    entropy: Entropy = os.urandom,
    plain_ok: bool = False,
) -> int:
    """Issue ``group``'s next key epoch to its current members; returns the epoch.

    Run by ``ptt group rekey`` and after ``ptt user remove``; membership changes carry their key
    with them (:func:`change_members`). Member keys fetched from the server are checked against
    this coordinator's pins: unknown ones are pinned (trust on first use), a changed one is
    refused (AuthError naming the user and both fingerprints) and nothing is issued.
    ValidationError for a plain group, and for members without a public key (made before
    end-to-end keys: remove and add them again).
    """
    info = await conn.admin("group.keys", {"name": group})
    name = str(info["name"])
    if not info.get("encrypted") and plain_ok:
        return 0
    if not info.get("encrypted"):
        raise ValidationError(f"group '{name}' is plain: its voice is not encrypted, so it has "
                              f"no key")
    epoch, grants = _issue(conn, info, dict(info.get("members") or {}), pins, entropy)
    await conn.admin("group.set_key", {"name": name, "epoch": epoch, "grants": grants})
    return epoch


async def change_members(
    conn: Connection,
    group: str,
    *,
    add: Sequence[str] = (),
    remove: Sequence[str] = (),
    listen_only: bool = False,
    pins: Path | None = None,
    entropy: Entropy = os.urandom,
) -> dict[str, Any]:
    """Add and remove members of ``group`` with its next key, in one request (``group.change``,
    one transaction on the server); returns the server's answer (``added``, ``removed``,
    ``absent``: named for removal but not members, ``epoch``: 0 for a plain group).

    The grants for the members afterwards are made here first, from the public identities the
    server offers (checked against the pins, as for :func:`rekey`), then sent with the change:
    the server applies both or neither, so no stored state has a removed member still holding
    the key in force. After a failure (lost link, server killed) the same call again completes
    the change; for removal, users already gone are reported in ``absent``.
    """
    add = [user_name(u) for u in add]
    remove = [user_name(u) for u in remove]
    info = await conn.admin("group.keys", {"name": group, "users": add})
    name = str(info["name"])
    args: dict[str, Any] = {"name": name, "add": add, "remove": remove,
                            "listen_only": listen_only}
    if info.get("encrypted"):
        offered = {u: p for u, p in dict(info.get("members") or {}).items() if u not in remove}
        info = {**info, "missing": [u for u in info.get("missing") or [] if u not in remove]}
        args["epoch"], args["grants"] = _issue(conn, info, offered, pins, entropy)
    return await conn.admin("group.change", args)


def _issue(conn: Connection, info: Mapping[str, Any], offered: Mapping[str, Any],
           pins: Path | None, entropy: Entropy) -> tuple[int, dict[str, bytes]]:
    """The next epoch of the group ``info`` (a ``group.keys`` answer) and a grant for each
    member in ``offered`` (user -> public identity bytes), signed by this coordinator."""
    name = str(info["name"])
    missing = list(info.get("missing") or [])
    if missing:
        raise ValidationError(
            f"{', '.join(missing)} in '{name}' have no public key (made by an older ptt): "
            f"remove them and add them again with 'ptt user add'")
    pin_file = _member_pins(conn, pins if pins is not None else pins_path(MEMBER_PINS))
    members: dict[str, PublicIdentity] = {}
    new_pins = False
    for user, raw in sorted(offered.items()):
        public = PublicIdentity.from_bytes(bytes(raw))
        status = pin_file.pins.check(user, public)
        new_pins = new_pins or status is PinStatus.NEW
        if status is PinStatus.CHANGED:
            pinned = pin_file.get(user)
            assert pinned is not None
            raise AuthError(
                f"the server offers another key for '{user}' than the one pinned: pinned "
                f"{pinned.fingerprint}, offered {public.fingerprint}. Nothing was issued. "
                f"If {user} really got a new token, remove and add them again; else do not trust "
                f"this server")
        members[user] = public
    if new_pins:  # a re-key of a large group rewrites nothing it already pinned
        pin_file.save()
    me = identity_from_token(conn.token, conn.user)
    epoch = int(info["epoch"]) + 1
    _, grants = issue_group_key(me, conn.user, name, int(info["group_id"]), epoch, members,
                                entropy)
    return epoch, grants


async def remove_user(conn: Connection, name: str, *, pins: Path | None = None,
                      entropy: Entropy = os.urandom) -> dict[str, int]:
    """Remove user ``name`` and forget its pinned key; returns group -> new key epoch.

    It first leaves each of its encrypted groups with that group's next key
    (:func:`change_members`: one request, one transaction each), then the account goes; killed
    at any point, what is stored has the user either still a member with the key in force or
    gone with a new key, and the same call again completes the removal. ``pins``: the member
    pins file, as for :func:`add_user`."""
    name = user_name(name)
    plan = await conn.admin("user.keys", {"name": name})
    epochs = {}
    for group in [str(g) for g in plan.get("groups") or []]:
        changed = await change_members(conn, group, remove=[name], pins=pins, entropy=entropy)
        epochs[group] = int(changed.get("epoch") or 0)
    await conn.admin("user.remove", {"name": name})
    _member_pins(conn, pins if pins is not None else pins_path(MEMBER_PINS)).forget(name)
    return epochs


# --- the member's side ---------------------------------------------------------------------------

def heard_directly(state: m.GroupState | None, path: str) -> bool:
    """Whether members may hear a talker's voice on the group's multicast address, where no
    server vouches for the sender: only there does a frame need its talker's signature.

    That is when the talker sends there itself (``path`` multicast, or still probing it), or
    when the server bridges relay talkers onto it (``state.bridged``). Otherwise frames reach
    listeners only through the server, which forwards the floor holder's alone (its session
    MAC), so they go unsigned: 64 bytes a frame, 25.6 kbit/s, more than half of what a clean
    path sends. A group this client knows nothing of yet is signed, to be safe.
    """
    if state is None:
        return True
    if state.mode == "relay" or not state.mcast_addr:
        return False
    return path != VoicePath.RELAY or state.bridged


class VoiceKeys:
    """A member's group keys on one connection: take one with :meth:`of`.

    Opens every grant the connection receives (``Connection.on_key_grant``) with the identity
    derived from the connection's token, accepting only signers it pinned (the first key seen
    per coordinator name is pinned, a changed one refused). :meth:`sealer` gives the Talker the
    group's current :class:`~ptt.crypto.voice.VoiceSealer`, which signs every frame with this
    member's identity; :meth:`open_voice` turns a received datagram into (header, payload) or
    None for the Listener, the recorder and the desktop.

    Talker keys: each grant vouches for a digest of the members' signing keys; the list itself is
    fetched from the server (``group.keys``) and kept only when it hashes to that digest. The
    connection asks :meth:`check_talker` about every frame heard on a multicast address (where
    the server's session MAC cannot be checked): it must carry the floor holder's signature.
    """

    def __init__(self, conn: Connection, pins: Path | None = None,
                 signers: Mapping[str, PublicIdentity] | None = None) -> None:
        self.conn = conn
        self.identity: Identity = identity_from_token(conn.token, conn.user)
        self.signers = PinFile(pins)
        for signer, public in (signers or {}).items():
            self.signers.replace(signer, PublicIdentity(NO_X25519, public.ed25519))
        self.rings: dict[str, GroupKeyring] = {}
        self.refused_grants = 0  # grants that did not open (untrusted signer, replay, damage)
        self.last_refusal: str | None = None
        self.dropped_plain = 0  # frames in the clear in a keyed group
        self.dropped_sealed = 0  # frames that did not open (no key, forged, replayed, ended)
        self.opened = 0
        self._sealers: dict[tuple[str, bool], VoiceSealer] = {}  # by (group, signed)
        self._bursts: dict[str, set[tuple[int, int]]] = {}  # group -> (sender, burst) opened
        # (group, epoch) -> the digest its grant vouches for, and the list once fetched and
        # checked (user -> Ed25519 key)
        self._digests: dict[tuple[str, int], bytes] = {}
        self._talkers: dict[tuple[str, int], dict[str, bytes]] = {}
        self._fetching: set[tuple[str, int]] = set()
        self.unverified = 0  # multicast frames refused: no valid signature of the holder
        conn.talker_check = self.check_talker
        conn.on_key_grant(self._on_grant)
        for group in list(conn.core.groups):
            held = conn.key_grant(group)
            if held is not None:
                self.accept(group, held[1])

    @classmethod
    def of(cls, conn: Connection, pins: Path | None = None, *,
           signers: Mapping[str, PublicIdentity] | None = None) -> VoiceKeys:
        """The connection's VoiceKeys, made on first use (``pins``: the signer pins file,
        default :func:`pins_path` of :data:`SIGNER_PINS`).

        ``signers``: coordinators whose keys are known already (a temporary user made by this
        very coordinator, who knows its own token): trusted from the start and kept in memory
        only, so no pins file is read or written. Both arguments count only on the first call
        for a connection: make it before a Talker or Listener does."""
        keys = conn.attached.get(VoiceKeys)
        if not isinstance(keys, VoiceKeys):
            if signers is not None:
                keys = cls(conn, None, signers)
            else:
                keys = cls(conn, pins if pins is not None else pins_path(SIGNER_PINS))
            conn.attached[VoiceKeys] = keys
        return keys

    # --- grants -------------------------------------------------------------------------------

    def _on_grant(self, group: str, epoch: int, grant: bytes) -> None:
        self.accept(group, grant)

    def accept(self, group: str, grant: bytes) -> bool:
        """Open and install one grant; False (logged, counted) when it is refused."""
        try:
            info = peek_grant(grant)
            trusted = self._trusted(info)
            ring = self._ring(group, info.group_id)
            ring.accept(grant, self.identity, self.conn.user, {info.signer: trusted},
                        self._now())
        except (AuthError, ProtocolError) as exc:
            self.refused_grants += 1
            self.last_refusal = f"key grant for '{group}' refused: {exc}"
            log.warning("%s", self.last_refusal)
            return False
        if info.signer != self.conn.user and self.signers.get(info.signer) is None:
            self.signers.check(info.signer, PublicIdentity(NO_X25519, info.signer_key))
            log.info("pinned %s's signing key (first use)", info.signer)
        self._vouched(group, info.epoch, info.talkers)
        return True

    # --- talker keys --------------------------------------------------------------------------

    def _vouched(self, group: str, epoch: int, digest: bytes) -> None:
        """An accepted grant vouches for ``digest``: fetch the list it stands for."""
        if not digest:
            log.warning("the key of '%s' (epoch %d) vouches for no talker keys (made by an "
                        "older ptt): its multicast voice is refused until 'ptt group rekey %s'",
                        group, epoch, group)
            return
        self._digests[(group, epoch)] = digest
        if (group, epoch) in self._talkers or (group, epoch) in self._fetching:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._fetching.add((group, epoch))
        loop.create_task(self._fetch_talkers(group, epoch, digest))

    async def _fetch_talkers(self, group: str, epoch: int, digest: bytes) -> None:
        try:
            info = await self.conn.admin("group.keys", {"name": group})
            keys = {str(u): PublicIdentity.from_bytes(bytes(p)).ed25519
                    for u, p in dict(info.get("members") or {}).items()}
            gid = int(info["group_id"])
        except (PttError, ProtocolError, KeyError, TypeError, ValueError) as exc:
            log.warning("cannot fetch the talker keys of '%s': %s", group, exc)
            return
        finally:
            self._fetching.discard((group, epoch))
        if talkers_digest(group, gid, epoch, keys) != digest:
            log.warning("the talker keys the server lists for '%s' do not match what the key of "
                        "epoch %d vouches for: its multicast voice is refused", group, epoch)
            return
        self._talkers[(group, epoch)] = keys
        for old in [k for k in self._talkers if k[0] == group and k[1] < epoch - 1]:
            del self._talkers[old]

    def check_talker(self, group: str, talker: str, datagram: bytes) -> bool:
        """True when a frame heard on ``group``'s multicast address may be played as the floor
        holder ``talker``'s: a plain group's, or one signed with ``talker``'s key as listed for
        the frame's epoch (a list the epoch's grant vouches for)."""
        if not self.keyed(group):
            return True
        ring = self.rings.get(group)
        key_id = peek_key_id(datagram)
        epoch = next((e for e in (ring.opener.epochs if ring is not None else [])
                      if e & 0xFF == key_id), None)
        talkers = self._talkers.get((group, epoch)) if epoch is not None else None
        key = talkers.get(talker) if talkers is not None else None
        if key is None or not verify_frame(key, datagram):
            self.unverified += 1
            return False
        return True

    def _trusted(self, info: GrantInfo) -> bytes:
        """The signing key a grant by ``info.signer`` must carry: mine, the pinned one, or
        (first use) its own."""
        if info.signer == self.conn.user:
            return self.identity.public.ed25519  # my own signature: nothing to pin
        pinned = self.signers.get(info.signer)
        return info.signer_key if pinned is None else pinned.ed25519

    def key_of(self, group: str, epoch: int, grant: bytes) -> VoiceKey | None:
        """``group``'s key of ``epoch``: the one held, or opened from ``grant`` (an older
        epoch, for a text page sealed before a re-key) with the same trust as :meth:`accept`,
        without installing it. None when neither gives it."""
        ring = self.rings.get(group)
        if ring is not None and ring.current is not None and ring.current.epoch == epoch:
            return ring.current
        if not grant:
            return None
        try:
            info = peek_grant(grant)
            state = self._state(group)
            group_id = state.group_id if state is not None else info.group_id
            key = open_grant(grant, self.identity, self.conn.user,
                             {info.signer: self._trusted(info)}, group, group_id)
        except (AuthError, ProtocolError) as exc:
            log.warning("key grant for a page of '%s' refused: %s", group, exc)
            return None
        return key if key.epoch == epoch else None

    def _ring(self, group: str, grant_group_id: int) -> GroupKeyring:
        state = self._state(group)
        group_id = state.group_id if state is not None else grant_group_id
        ring = self.rings.get(group)
        if ring is None or ring.group_id != group_id:  # new, or the group was made anew
            ring = self.rings[group] = GroupKeyring(group, group_id)
            self._sealers.pop((group, True), None)
            self._sealers.pop((group, False), None)
        return ring

    def _state(self, group: str) -> m.GroupState | None:
        g = self.conn.core.groups.get(group)
        return g.state if g is not None else None

    def _now(self) -> float:
        try:
            return asyncio.get_running_loop().time()
        except RuntimeError:
            return 0.0

    # --- voice --------------------------------------------------------------------------------

    def epoch(self, group: str) -> int:
        """The epoch of the key this member holds for ``group`` (0: none)."""
        ring = self.rings.get(group)
        return ring.current.epoch if ring is not None and ring.current is not None else 0

    def keyed(self, group: str) -> bool:
        """True when ``group``'s voice is sealed: the server says it has a key, or we hold one."""
        state = self._state(group)
        return (state is not None and state.key_epoch > 0) or self.epoch(group) > 0

    def sealer(self, group: str) -> VoiceSealer | None:
        """The sealer for a burst starting now; None for a plain group. PttError in a keyed
        group whose key this member does not hold (it must not talk in the clear)."""
        ring = self.rings.get(group)
        if ring is None or ring.current is None:
            if self.keyed(group):
                why = f" ({self.last_refusal})" if self.last_refusal else ""
                raise PttError(f"no key for '{group}' yet, so you cannot talk there: ask a "
                               f"coordinator to run 'ptt group rekey {group}'{why}")
            return None
        signed = self._heard_directly(group)
        sealer = self._sealers.get((group, signed))
        if sealer is None:
            sealer = self._sealers[(group, signed)] = VoiceSealer(
                ring.current, self.identity.sign if signed else None)
        elif ring.current.epoch > sealer.key.epoch:
            sealer.install(ring.current)
        return sealer

    def _heard_directly(self, group: str) -> bool:
        """Whether a burst starting now in ``group`` may be heard on its multicast address
        (:func:`heard_directly`)."""
        return heard_directly(self._state(group), self.conn.voice_path(group))

    def open_voice(self, datagram: bytes) -> tuple[VoiceHeader, bytes] | None:
        """Header and plaintext payload of a received voice datagram, or None to drop it.

        In a keyed group, frames in the clear and frames that do not open (no key, forged,
        replayed, of an ended burst) are dropped and counted; in a plain group the datagram is
        split as it is. Probes and unknown groups pass through undecided (the caller's filters
        count them)."""
        try:
            header, payload = decode_voice(datagram)
        except ProtocolError:
            return None
        if header.flags & VoiceFlags.PROBE:
            return header, payload
        group = self._group_of(header.group_id)
        if group is None or not self.keyed(group):
            return header, payload
        if not header.flags & VoiceFlags.ENCRYPTED:
            self.dropped_plain += 1
            return None
        ring = self.rings.get(group)
        if ring is None:
            self.dropped_sealed += 1
            return None
        ring.handle_timer(self._now())  # retire an old epoch once its grace is over
        self._end_old_bursts(group, ring, (header.sender, header.burst_id))
        try:
            opened = ring.opener.open(datagram)
        except (AuthError, ProtocolError):
            self.dropped_sealed += 1
            return None
        self._bursts.setdefault(group, set()).add((header.sender, header.burst_id))
        self.opened += 1
        return opened

    def _group_of(self, group_id: int) -> str | None:
        for name, g in self.conn.core.groups.items():
            if g.state is not None and g.state.group_id == group_id:
                return name
        return None

    def _end_old_bursts(self, group: str, ring: GroupKeyring, arriving: tuple[int, int]) -> None:
        """Bursts the floor moved past are over: their frames are refused from now on (a
        hostile server replaying them gets nothing played)."""
        seen = self._bursts.get(group)
        if not seen:
            return
        g = self.conn.core.groups.get(group)
        current = g.talker_burst if g is not None and g.talker is not None else None
        for burst in [b for b in seen if b != arriving and b[1] != current]:
            ring.opener.end_burst(*burst)
            seen.discard(burst)
