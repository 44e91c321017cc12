"""``ptt login``: check credentials against the server, then save them as the client config."""

from __future__ import annotations

import asyncio
import dataclasses
import sys
from pathlib import Path

import click

from ptt.cli import output, remote
from ptt.cli.options import (HOSTPORT, USER, CliState, config_option, pass_state,
                             timeout_option)
from ptt.config import (DEFAULT_SERVER, ClientConfig, client_config_keys, client_config_path,
                        load_client_config, save_client_config)
from ptt.errors import ValidationError
from ptt.names import format_hostport, role_name
from ptt.protocol.auth import check_token


def _token(value: str | None) -> str | None:
    try:
        return None if value is None else check_token(value)
    except ValidationError as exc:
        raise click.BadParameter(str(exc), param_hint="'--token'") from None


async def _check(config: ClientConfig, timeout: float) -> str:
    conn, connected = await remote.connect(config, timeout)
    await conn.close()
    return role_name(connected.role)


@click.command()
@click.option("--server", "address", type=HOSTPORT, metavar="HOST:PORT",
              help=f"The server [default: from --credentials, else {DEFAULT_SERVER}].")
@click.option("--user", type=USER, help="Your user name.")
@click.option("--token", help="The token 'ptt user add' printed (asked for when omitted on a "
                              "terminal, which keeps it out of the shell history).")
@click.option("--credentials", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A credentials file, e.g. the coordinator.toml the server writes on its first "
                   "start, instead of --server/--user/--token.")
@click.option("--check/--no-check", default=True, show_default=True,
              help="Log in to the server before saving.")
@config_option
@timeout_option
@pass_state
def login(state: CliState, address: tuple[str, int] | None, user: str | None, token: str | None,
          credentials: Path | None, check: bool) -> None:
    """Save your server, user name and token as the client config (mode 0600).

    Every later command (ptt group list, ptt talk, ...) uses them. PTT_SERVER, PTT_USER and
    PTT_TOKEN still override the saved values.
    """
    target = state.config_path or client_config_path()
    # start from the file alone (never from PTT_* variables), so other settings survive a re-login
    # and values from the environment are never written to disk
    config = load_client_config(target, overrides=False, missing_ok=True)
    if credentials is not None:
        given = load_client_config(credentials, overrides=False, missing_ok=False)
        config = dataclasses.replace(config, server=given.server, user=given.user,
                                     token=given.token)
    elif address is None:
        config = dataclasses.replace(config, server=DEFAULT_SERVER)
    if address is not None:
        config = dataclasses.replace(config, server=format_hostport(*address))
    if user is not None:
        config = dataclasses.replace(config, user=user)
    token = _token(token)
    if token is None and credentials is None and sys.stdin.isatty():
        token = _token(click.prompt("Token", hide_input=True, err=True))
    if token is not None:
        config = dataclasses.replace(config, token=token)
    if credentials is None and (user is None or token is None):
        missing = "--user" if user is None else "--token"
        raise click.UsageError(f"missing {missing}: give --server, --user and --token, or "
                               f"--credentials FILE")

    if check:
        role = asyncio.run(_check(config, state.timeout))
        output.note(f"Logged in to {config.server} as '{config.user}' ({role}).")
    # what the file held stays in it; nothing else is pinned at today's default (the bitrate)
    path = save_client_config(config, target, keep=client_config_keys(target))
    click.echo(f"Saved the client config to {path} (mode 0600).")
    if not check:
        output.note("Not checked against the server (--no-check).")
