"""``ptt login``: check credentials against the server, then save them as the client config."""

from __future__ import annotations

import asyncio
import dataclasses
import sys
from pathlib import Path

import click

from ptt.cli import output, remote
from ptt.cli.options import HOSTPORT, USER, CliState, config_option, pass_state, timeout_option
from ptt.config import (
    DEFAULT_SERVER,
    ClientConfig,
    client_config_keys,
    client_config_path,
    load_client_config,
    save_client_config,
)
from ptt.errors import ValidationError
from ptt.names import format_hostport, role_name
from ptt.protocol.auth import check_token

TOKEN_REFUSED = ("--token is refused: a token on the command line shows in the process list and "
                 "stays in the shell history; leave it out and paste it at the prompt, pipe it "
                 "with --token-stdin, or log in with --credentials FILE")


def _token(value: str | None, source: str) -> str | None:
    try:
        return None if value is None else check_token(value)
    except ValidationError as exc:
        raise click.BadParameter(str(exc), param_hint=f"'{source}'") from None


async def _check(config: ClientConfig, timeout: float) -> str:
    conn, connected = await remote.connect(config, timeout)
    await conn.close()
    return role_name(connected.role)


@click.command()
@click.option("--server", "address", type=HOSTPORT, metavar="HOST:PORT",
              help=f"The server [default: from --credentials, else {DEFAULT_SERVER}].")
@click.option("--user", type=USER, help="Your user name.")
@click.option("--token", hidden=True,
              help="Refused: a token on the command line is seen in the process list and kept "
                   "in the shell history.")
@click.option("--token-stdin", is_flag=True,
              help="Read the token from the first line of stdin (a pipe or a file). Without "
                   "it, the token is asked for on the terminal, not echoed.")
@click.option("--credentials", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A credentials file ('ptt user add NAME --credentials-out FILE', or the "
                   "coordinator.toml the server writes on its first start), instead of "
                   "--server/--user and the token.")
@click.option("--check/--no-check", default=True, show_default=True,
              help="Log in to the server before saving.")
@config_option
@timeout_option
@pass_state
def login(state: CliState, address: tuple[str, int] | None, user: str | None, token: str | None,
          token_stdin: bool, credentials: Path | None, check: bool) -> None:
    """Save your server, user name and token as the client config (mode 0600).

    The token never goes on the command line (the process list and the shell history would keep
    it): paste it at the prompt, pipe it with --token-stdin, or use --credentials FILE. Every
    later command (ptt group list, ptt talk, ...) uses the saved config. PTT_SERVER, PTT_USER
    and PTT_TOKEN still override the saved values.

    \b
    Examples:
        ptt login --server 127.0.0.1:7700 --user ann          (asks for the token)
        ptt login --server 127.0.0.1:7700 --user ann --token-stdin < ann.token
        ptt login --credentials ann.toml
    """
    if token is not None:
        raise ValidationError(TOKEN_REFUSED)
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
    if token_stdin:
        token = _token(sys.stdin.readline().strip() or None, "--token-stdin")
    elif credentials is None and sys.stdin.isatty():
        token = _token(click.prompt("Token", hide_input=True, err=True), "the prompt")
    if token is not None:
        config = dataclasses.replace(config, token=token)
    if credentials is None and (user is None or token is None):
        if user is None:
            raise click.UsageError("missing --user: give --server and --user (the token is "
                                   "asked for, or read with --token-stdin), or --credentials FILE")
        raise click.UsageError("missing token: paste it at the prompt on a terminal, pipe it "
                               "with --token-stdin, or use --credentials FILE")

    if check:
        role = asyncio.run(_check(config, state.timeout))
        output.note(f"Logged in to {config.server} as '{config.user}' ({role}).")
    # what the file held stays in it; nothing else is pinned at today's default (the bitrate)
    path = save_client_config(config, target, keep=client_config_keys(target))
    click.echo(f"Saved the client config to {path} (mode 0600).")
    if not check:
        output.note("Not checked against the server (--no-check).")
