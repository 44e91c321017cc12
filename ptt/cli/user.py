"""``ptt user``: accounts, run by a coordinator over the protocol (effective immediately)."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import click

from ptt.cli import output, remote
from ptt.cli.group import member_pins, with_connection
from ptt.cli.options import ROLE, USER, CliState, client_options, json_option, pass_state
from ptt.client import keys, roster
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


@user.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), metavar="DIR",
              help="Directory for the new users' credentials files (NAME.toml, mode 0600) and "
                   "the hand-out sheet (sheet.txt, appended to); made if missing. Needed when "
                   "the file names users the server lacks.")
@click.option("--check", is_flag=True,
              help="Only check the file: report bad rows, change nothing, connect to nothing.")
@click.option("--new-tokens", "new_tokens", is_flag=True,
              help="Give the users of FILE that exist already new tokens (and new credentials "
                   "files): each is made anew in its groups, so its old token stops working. "
                   "Not the coordinator running the import.")
@click.option("--workers", type=click.IntRange(1, 64), default=None,
              help="Processes for the key stretching [default: one per core; up to 64 new "
                   "users, or 1: a thread of this command].")
@json_option
@client_options
@pass_state
def import_(state: CliState, file: Path, out: Path | None, check: bool, new_tokens: bool,
            workers: int | None, as_json: bool) -> None:
    """Create the users, groups and memberships listed in FILE (CSV, UTF-8).

    FILE starts with the header 'name,role,groups'; each row is one user: its name (any
    script), its role (volunteer if empty: volunteer, dispatcher or coordinator) and its groups
    separated by ';' ('north gate;medics'). Users the server has are kept as they are, tokens
    included, so the same command again changes nothing but what is missing. Each new user gets
    a credentials file in --out DIR, to hand over privately ('ptt login --credentials FILE'),
    and a line in DIR/sheet.txt. A bad row is reported with its line number and nothing is done
    for it; the exit status is then 2, after the good rows are imported. Each group with new
    members gets its next key once, at the end.
    """
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValidationError(f"{file}: not UTF-8 (byte {exc.start}): save it as UTF-8 "
                              f"CSV") from None
    except OSError as exc:
        raise ValidationError(f"cannot read {file}: {exc.strerror}") from None
    rows, bad = roster.parse_rows(text)
    for e in bad:
        click.echo(f"error: {file}:{e.line}: {e.message}", err=True)
    if check:
        click.echo(f"{file}: {len(rows)} users in {len({g for r in rows for g in r.groups})} "
                   f"groups, {len(bad)} bad rows")
        if bad:
            raise click.exceptions.Exit(ValidationError.exit_code)
        return
    server = remote.client_config(state).server

    async def go(conn: Connection) -> tuple[roster.ImportReport, str]:
        report = await roster.import_rows(conn, rows, server=server, out=out,
                                          pins=member_pins(state), workers=workers,
                                          new_tokens=new_tokens)
        return report, identity_from_token(conn.token, conn.user).public.fingerprint

    report, fingerprint = with_connection(state, go)
    sheet = None
    if report.created:
        assert out is not None
        sheet = out / "sheet.txt"
        coordinator = remote.client_config(state).user or ""
        with open(sheet, "a", encoding="utf-8") as fp:
            fp.write(roster.sheet(report, server, coordinator, fingerprint))
    for e in report.failed:
        click.echo(f"error: {file}:{e.line}: {e.message}", err=True)
    if as_json:
        output.emit_json({**roster.summary(report), "sheet": str(sheet) if sheet else None,
                          "bad": [{"line": e.line, "error": e.message} for e in bad]})
    else:
        members = sum(len(v) for v in report.added.values())
        renewed = f" ({len(report.renewed)} of them with new tokens)" if report.renewed else ""
        click.echo(f"{len(report.created)} new users{renewed}, {len(report.kept)} kept, "
                   f"{len(report.groups_created)} new groups, {members} new memberships in "
                   f"{len(report.added)} groups.")
        for g, epoch in report.epochs.items():
            if epoch:
                output.note(f"Re-keyed '{g}': key epoch {epoch}.")
        if sheet is not None:
            click.echo(f"Credentials in {out} (one file per new user, mode 0600); hand-out "
                       f"sheet: {sheet}")
    if bad or report.failed:
        raise ValidationError(f"{len(bad) + len(report.failed)} rows not imported (listed "
                              f"above): fix them and run the same command again")


@user.command("export")
@click.argument("file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@client_options
@pass_state
def export(state: CliState, file: Path | None) -> None:
    """Write every user, role and groups as CSV (what 'ptt user import' reads; no secrets) to
    FILE, or to standard output."""
    async def go(conn: Connection) -> list[tuple[str, str, list[str]]]:
        return await roster.export_rows(conn)

    text = roster.format_rows(with_connection(state, go))
    if file is None or str(file) == "-":
        click.echo(text, nl=False)
        return
    try:
        file.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot write {file}: {exc.strerror}") from None
