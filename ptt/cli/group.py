"""``ptt group``: paging groups and their members, run by a coordinator (effective live).

Groups are end-to-end encrypted unless created ``--plain``: every membership change made here
carries the group's next key (``ptt.client.keys.change_members``: a new key epoch, signed by this
coordinator and wrapped for the members afterwards, sent with the change and stored with it in
one transaction), so a removed member cannot decode what is said next.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click

from ptt.cli import output, remote
from ptt.cli.options import (
    GROUP,
    USER,
    CliState,
    SecondsType,
    client_options,
    json_option,
    pass_state,
)
from ptt.client import keys
from ptt.client.connection import Connection
from ptt.errors import AuthError, RequestError
from ptt.protocol.directory import GROUP_MODES, MAX_TALK_LIMIT

MAX_TALK = SecondsType(maximum=MAX_TALK_LIMIT)
T = TypeVar("T")


def with_connection(state: CliState, fn: Callable[[Connection], Awaitable[T]]) -> T:
    """Run ``fn(conn)`` on one logged-in connection (several admin ops and the key work in
    between); errors come out as :func:`remote.admin`'s do."""
    config = remote.client_config(state)
    config.require_login()
    command = " ".join(click.get_current_context().command_path.split()[1:])

    async def go() -> T:
        conn, _ = await remote.connect(config, state.timeout)
        admin = conn.admin

        async def checked(op: str, args: dict[str, Any], timeout: float = state.timeout
                          ) -> dict[str, Any]:
            try:
                return await admin(op, args, timeout)
            except AuthError as exc:  # the server refused: say who may not run what
                raise AuthError(f"permission denied: {exc} ('{conn.user}' cannot run "
                                f"'ptt {command}')") from None

        conn.admin = checked  # type: ignore[method-assign]
        try:
            return await fn(conn)
        finally:
            await conn.close()

    try:
        return asyncio.run(go())
    except RequestError as exc:
        cls = remote._BY_CODE.get(exc.code)
        if cls is None:
            raise
        raise cls(str(exc)) from None


def member_pins(state: CliState) -> Any:
    """This coordinator's pins of member keys, next to its client config."""
    return keys.pins_path(keys.MEMBER_PINS, state.config_path)


async def rekey_if_encrypted(conn: Connection, state: CliState, group: str) -> int:
    """The new key epoch of ``group``, or 0 for a plain group."""
    return await keys.rekey(conn, group, pins=member_pins(state), plain_ok=True)


def _rekeyed(name: str, epoch: int) -> None:
    if epoch:
        output.note(f"Re-keyed '{name}': key epoch {epoch}.")


def _settings_options(f: Any) -> Any:
    """``--max-talk``, ``--mode``, ``--record/--no-record``; None when not given (update)."""
    f = click.option("--record/--no-record", default=None,
                     help="Record the group's transmissions [default for new groups: off].")(f)
    f = click.option("--mode", type=click.Choice(GROUP_MODES, case_sensitive=False),
                     default=None,
                     help="How voice reaches members: through the server, by LAN multicast, or "
                          "multicast where it works [default for new groups: auto].")(f)
    f = click.option("--max-talk", type=MAX_TALK, default=None, metavar="SECONDS",
                     help="Longest transmission before the floor is revoked, e.g. 30 or 1.5m "
                          "[default for new groups: 30].")(f)
    return f


def _wire_seconds(seconds: float) -> int | str:
    # Admin args on the wire admit no floats (str, int, bool, list[str]); the server reads
    # max_talk with float(), so a fractional value travels as its decimal text
    return int(seconds) if seconds.is_integer() else f"{seconds:g}"


def _settings(max_talk: float | None, mode: str | None, record: bool | None) -> dict[str, Any]:
    # absent keys keep the server's default (create) or the current value (update)
    args: dict[str, Any] = {"max_talk": None if max_talk is None else _wire_seconds(max_talk),
                            "mode": mode and mode.lower(), "record": record}
    return {k: v for k, v in args.items() if v is not None}


def _describe(g: dict[str, Any]) -> str:
    recording = "on" if g["record"] else "off"
    return (f"max talk {output.seconds(g['max_talk_ms'])}, mode {g['mode']}, recording "
            f"{recording}, {_encryption(g)}")


def _encryption(g: dict[str, Any]) -> str:
    if not g.get("encrypted"):
        return "plain voice"
    epoch = g.get("key_epoch") or 0
    return f"end-to-end encrypted (key epoch {epoch})" if epoch else "end-to-end encrypted (no key)"


@click.group()
def group() -> None:
    """Create, change and inspect paging groups (coordinators only)."""


@group.command("create")
@click.argument("name", type=GROUP)
@_settings_options
@click.option("--plain", is_flag=True,
              help="Voice stays unencrypted (the server can hear and record it). Default: "
                   "end-to-end encrypted, keyed by this coordinator.")
@json_option
@client_options
@pass_state
def create(state: CliState, name: str, max_talk: float | None, mode: str | None,
           record: bool | None, plain: bool, as_json: bool) -> None:
    """Create group NAME."""
    args = {"name": name, **_settings(max_talk, mode, record)}
    if plain:
        args["plain"] = True

    async def go(conn: Connection) -> dict[str, Any]:
        result = await conn.admin("group.create", args)
        if result.get("encrypted"):
            # keyed from the start: nobody talks in the clear in it, even before members come
            result["key_epoch"] = await rekey_if_encrypted(conn, state, result["name"])
        return result

    result = with_connection(state, go)
    if as_json:
        output.emit_json(result)
        return
    click.echo(f"Created group '{result['name']}' ({_describe(result)}).")


@group.command("update")
@click.argument("name", type=GROUP)
@_settings_options
@json_option
@client_options
@pass_state
def update(state: CliState, name: str, max_talk: float | None, mode: str | None,
           record: bool | None, as_json: bool) -> None:
    """Change the settings of group NAME; options not given stay as they are."""
    changes = _settings(max_talk, mode, record)
    if not changes:
        raise click.UsageError("nothing to change: give --max-talk, --mode or --record/--no-record")
    result = remote.admin(state, "group.update", {"name": name, **changes})
    if as_json:
        output.emit_json(result)
        return
    click.echo(f"Updated group '{result['name']}' ({_describe(result)}).")


@group.command("list")
@json_option
@client_options
@pass_state
def list_(state: CliState, as_json: bool) -> None:
    """List groups: members, how many are online, who is talking."""
    result = remote.admin(state, "group.list", {})
    if as_json:
        output.emit_json(result)
        return
    if not result["groups"]:
        output.note("No groups yet: create one with 'ptt group create NAME'.")
        return
    rows = [(g["name"], g["members"], g["online"], g["talker"],
             output.seconds(g["max_talk_ms"]), g["mode"], g["record"])
            for g in result["groups"]]
    click.echo(output.table(
        ("GROUP", "MEMBERS", "ONLINE", "TALKER", "MAX-TALK", "MODE", "RECORD"), rows))


@group.command("show")
@click.argument("name", type=GROUP)
@json_option
@client_options
@pass_state
def show(state: CliState, name: str, as_json: bool) -> None:
    """Show group NAME: settings, current talker, queue, members and who is online."""
    g = remote.admin(state, "group.show", {"name": name})
    if as_json:
        output.emit_json(g)
        return
    mode = g["mode"] if g["mode"] == "relay" else f"{g['mode']} (multicast {g['multicast']})"
    click.echo(output.fields([
        ("Group", g["name"]),
        ("Max talk", output.seconds(g["max_talk_ms"])),
        ("Mode", mode),
        ("Recording", "on" if g["record"] else "off"),
        ("Voice", _encryption(g)),
        ("Talker", g["talker"]),
        ("Queue", [f"{i}. {u}" for i, u in enumerate(g["queue"], 1)]),
        ("Members", f"{len(g['members'])} ({g['online']} online)"),
    ]))
    if g["members"]:
        talker = g["talker"]
        rows = [(mb["user"], mb["online"], mb["listen_only"],
                 "talking" if mb["user"] == talker else
                 f"queued #{g['queue'].index(mb['user']) + 1}" if mb["user"] in g["queue"]
                 else None, mb.get("devices") or None)
                for mb in g["members"]]
        click.echo()
        click.echo(output.table(("MEMBER", "ONLINE", "LISTEN-ONLY", "FLOOR", "DEVICES"), rows))


@group.command("delete")
@click.argument("name", type=GROUP)
@json_option
@client_options
@pass_state
def delete(state: CliState, name: str, as_json: bool) -> None:
    """Delete group NAME; members online are told and leave it."""
    result = remote.admin(state, "group.delete", {"name": name})
    if as_json:
        output.emit_json(result)
        return
    click.echo(f"Deleted group '{result['name']}'.")


@group.command("add")
@click.argument("name", type=GROUP)
@click.argument("users", nargs=-1, required=True, type=USER)
@click.option("--listen-only", is_flag=True,
              help="These members hear the group but may not take the floor.")
@json_option
@client_options
@pass_state
def add(state: CliState, name: str, users: tuple[str, ...], listen_only: bool,
        as_json: bool) -> None:
    """Add USERS to group NAME (all or none: an unknown user changes nothing).

    Adding an existing member again changes only its listen-only flag.
    """
    async def go(conn: Connection) -> dict[str, Any]:
        return await keys.change_members(conn, name, add=users, listen_only=listen_only,
                                         pins=member_pins(state))

    result = with_connection(state, go)
    result["users"] = result["added"]
    if as_json:
        output.emit_json({"name": result["name"], "users": result["users"]})
        return
    how = " as listen-only members" if listen_only else ""
    click.echo(f"Added {', '.join(result['users'])} to '{result['name']}'{how}.")
    _rekeyed(result["name"], result["epoch"])


@group.command("remove")
@click.argument("name", type=GROUP)
@click.argument("users", nargs=-1, required=True, type=USER)
@json_option
@client_options
@pass_state
def remove(state: CliState, name: str, users: tuple[str, ...], as_json: bool) -> None:
    """Remove USERS from group NAME; an encrypted group gets a new key, which the removed
    members do not receive, in the same request: the server applies both or neither. Users
    who are not members are named and the rest goes on, so the command run again after a
    failure (a lost link, a server stopped) completes the change."""
    async def go(conn: Connection) -> dict[str, Any]:
        return await keys.change_members(conn, name, remove=users, pins=member_pins(state))

    result = with_connection(state, go)
    if as_json:  # "absent" only when some named users were not members
        output.emit_json({"name": result["name"], "users": result["removed"],
                          **({"absent": result["absent"]} if result["absent"] else {})})
        return
    for u in result["absent"]:
        output.note(f"'{u}' is not a member of '{result['name']}' (removed already?).")
    if result["removed"]:
        click.echo(f"Removed {', '.join(result['removed'])} from '{result['name']}'.")
    _rekeyed(result["name"], result["epoch"])


@group.command("rekey")
@click.argument("name", type=GROUP)
@json_option
@client_options
@pass_state
def rekey(state: CliState, name: str, as_json: bool) -> None:
    """Issue a new key for encrypted group NAME to its current members (e.g. daily, or after
    a device was lost). Member keys are checked against the ones this machine pinned."""
    async def go(conn: Connection) -> int:
        return await keys.rekey(conn, name, pins=member_pins(state))

    epoch = with_connection(state, go)
    if as_json:
        output.emit_json({"name": name, "epoch": epoch})
        return
    click.echo(f"Re-keyed '{name}': key epoch {epoch}.")
