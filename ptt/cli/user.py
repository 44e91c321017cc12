"""``ptt user``: accounts, run by a coordinator over the protocol (effective immediately)."""

from __future__ import annotations

import shlex

import click

from ptt.cli import output, remote
from ptt.cli.options import ROLE, USER, CliState, client_options, json_option, pass_state


@click.group()
def user() -> None:
    """Add, list and remove user accounts (coordinators only)."""


@user.command("add")
@click.argument("name", type=USER)
@click.option("--role", type=ROLE, default="volunteer", show_default=True,
              help="volunteer: talks and listens; dispatcher: may pre-empt; "
                   "coordinator: also manages users and groups.")
@json_option
@client_options
@pass_state
def add(state: CliState, name: str, role: str, as_json: bool) -> None:
    """Create user NAME and print its token, once.

    The server keeps only a salted hash of the token: if it is lost, remove the user and add it
    again.
    """
    result = remote.admin(state, "user.add", {"name": name, "role": role})
    if as_json:
        output.emit_json(result)
        return
    server = remote.client_config(state).server
    click.echo(f"Created {result['role']} '{result['name']}'.")
    click.echo(f"Token (shown only this once): {result['token']}")
    login = ["ptt", "login", "--server", server, "--user", result["name"],
             "--token", result["token"]]
    click.echo(f"{result['name']} logs in with:\n    {shlex.join(login)}")


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
    """Remove user NAME: its memberships go, and its session ends now."""
    result = remote.admin(state, "user.remove", {"name": name})
    if as_json:
        output.emit_json(result)
        return
    click.echo(f"Removed user '{result['name']}'.")
