"""``ptt user``: accounts, run by a coordinator over the protocol (effective immediately)."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import click

from ptt.cli import output, remote
from ptt.cli.group import member_pins, with_connection
from ptt.cli.options import ROLE, USER, CliState, client_options, json_option, pass_state
from ptt.client import keys
from ptt.client.connection import Connection
from ptt.config import write_credentials
from ptt.crypto.identity import identity_from_token
from ptt.errors import ConfigError, ValidationError
from ptt.names import parse_role, role_name, user_name


@click.group()
def user() -> None:
    """Add, list and remove user accounts (coordinators only)."""


@user.command("add")
@click.argument("name", type=USER)
@click.option("--role", type=ROLE, default="volunteer", show_default=True,
              help="volunteer: talks and listens; dispatcher: may pre-empt; "
                   "coordinator: also manages users and groups.")
@click.option("--credentials-out", "credentials_out", metavar="FILE",
              type=click.Path(dir_okay=False, path_type=Path),
              help="Write the new user's credentials (server, name, token) to FILE, mode 0600, "
                   "instead of printing the token; the user logs in with 'ptt login "
                   "--credentials FILE'. FILE must not exist.")
@json_option
@client_options
@pass_state
def add(state: CliState, name: str, role: str, credentials_out: Path | None,
        as_json: bool) -> None:
    """Create user NAME and hand over its token, once.

    The token is made on this machine and never sent: the server keeps only a salted hash of it
    and the public key derived from it, which this machine pins. It is printed once (or written
    to --credentials-out FILE); the user pastes it at 'ptt login's prompt or pipes it in with
    --token-stdin, never on a command line. If the token is lost, remove the user and add it
    again.
    """
    name = user_name(name)
    if credentials_out is not None and credentials_out.exists():
        raise ValidationError(f"{credentials_out} exists: choose a new file for {name}'s "
                              f"credentials")

    async def go(conn: Connection) -> dict[str, Any]:
        pins = keys.pins_path(keys.MEMBER_PINS, state.config_path)
        token = await keys.add_user(conn, name, role, pins=pins)
        return {"name": name, "role": role_name(parse_role(role)), "token": token,
                "fingerprint": identity_from_token(token, name).public.fingerprint,
                "coordinator": conn.user,
                "coordinator_fingerprint":
                    identity_from_token(conn.token, conn.user).public.fingerprint}

    result = with_connection(state, go)
    server = remote.client_config(state).server
    if credentials_out is not None:
        try:
            write_credentials(credentials_out, server, name, result["token"])
        except ConfigError as exc:  # the user exists now: its token must not be lost
            click.echo(f"Token of '{name}' (shown only this once): {result['token']}")
            raise ConfigError(f"created '{name}', but {exc}: hand over the token printed "
                              f"above instead") from None
        result["credentials"] = str(credentials_out)
    if as_json:
        output.emit_json(result)
        return
    click.echo(f"Created {result['role']} '{result['name']}'.")
    if credentials_out is None:
        click.echo(f"Token (shown only this once): {result['token']}")
    click.echo(f"Key fingerprint of {result['name']}: {result['fingerprint']}")
    click.echo(f"Signing key of {result['coordinator']} (tell {result['name']}): "
               f"{result['coordinator_fingerprint']}")
    if credentials_out is not None:
        click.echo(f"Credentials written to {credentials_out} (mode 0600): hand the file to "
                   f"{result['name']} privately; {result['name']} logs in with:\n"
                   f"    {shlex.join(['ptt', 'login', '--credentials', str(credentials_out)])}")
        return
    login = shlex.join(["ptt", "login", "--server", server, "--user", result["name"]])
    click.echo(f"{result['name']} logs in with (pasting the token at the prompt):\n"
               f"    {login}\n"
               f"or from a file holding the token:\n"
               f"    {login} --token-stdin < {shlex.quote(result['name'] + '.token')}")


@user.command("list")
@json_option
@client_options
@pass_state
def list_(state: CliState, as_json: bool) -> None:
    """List users: role, online now, number of groups."""
    result = remote.admin(state, "user.list", {})
    if as_json:
        output.emit_json(result)
        return
    rows = [(u["name"], u["role"], u["online"], u["groups"]) for u in result["users"]]
    click.echo(output.table(("USER", "ROLE", "ONLINE", "GROUPS"), rows))


@user.command("remove")
@click.argument("name", type=USER)
@json_option
@client_options
@pass_state
def remove(state: CliState, name: str, as_json: bool) -> None:
    """Remove user NAME: its memberships go, its session ends now, and each encrypted group it
    was in gets a new key it does not receive."""
    async def go(conn: Connection) -> tuple[dict[str, Any], dict[str, int]]:
        epochs = await keys.remove_user(conn, name, pins=member_pins(state))
        return {"name": name, "rekey": sorted(epochs)}, epochs

    result, epochs = with_connection(state, go)
    if as_json:
        output.emit_json(result)
        return
    click.echo(f"Removed user '{result['name']}'.")
    for g, epoch in epochs.items():
        if epoch:
            output.note(f"Re-keyed '{g}': key epoch {epoch}.")
