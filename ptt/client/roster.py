"""Bulk set-up of an event from a CSV file: ``ptt user import`` and ``ptt user export``.

The file (UTF-8, a BOM is tolerated) has a header row ``name,role,groups`` and one user per
row; ``role`` may be empty (volunteer), ``groups`` lists group names separated by ``;`` (a
character no group name may hold, unlike the space: ``north gate``). Names in any script follow
:mod:`ptt.names`: a row is taken in its mapped form, so ``Zoë`` and ``ZOË`` are one user.

An import runs on one connection, in this order, so a run killed at any point is completed by
the same command again and a second run changes nothing:

1. every row is checked first; a bad one (name, role, a group name, a user named twice) is
   reported with its line number and skipped whole: nothing is done for it;
2. users the server already has are kept as they are (role and token too); groups it lacks
   are made (encrypted);
3. the new users' tokens, verifiers and public identities are made on this machine, the
   key stretching (PBKDF2, :func:`ptt.protocol.auth.make_credentials`) on all cores; each
   user's credentials file is written (mode 0600) before its ``user.add`` is sent, so no user
   exists whose token was not kept; many ``user.add`` requests are in flight at once;
4. each group gets all its missing members in one ``group.change`` carrying the group's next
   key (:func:`ptt.client.keys.change_members`): one re-key per group, not one per member.

The tokens never leave this machine but in the credentials files, which the coordinator hands
out. The server sees what ``ptt user add`` sends it and nothing more.
"""

from __future__ import annotations

import asyncio
import csv
import io
import os
import secrets
import signal
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ptt.client import keys
from ptt.client.connection import Connection
from ptt.config import write_credentials
from ptt.crypto.identity import PublicIdentity, identity_from_token
from ptt.errors import PttError, RequestError, ValidationError
from ptt.names import group_name, parse_role, role_name, user_name
from ptt.protocol import auth
from ptt.textwidth import display_width, ljust

__all__ = [
    "COLUMNS",
    "GROUP_SEPARATOR",
    "ImportReport",
    "Row",
    "RowError",
    "credentials_file",
    "export_rows",
    "format_rows",
    "import_rows",
    "parse_rows",
]

COLUMNS = ("name", "role", "groups")
GROUP_SEPARATOR = ";"
CHUNK = 64  # users per key-stretching job: big enough to amortise a job, small for overlap
IN_FLIGHT = 16  # user.add requests sent before the first answer is awaited


@dataclass(frozen=True, slots=True)
class Row:
    """One user of the file, names mapped (:mod:`ptt.names`); ``line`` where it starts."""

    line: int
    name: str
    role: str
    groups: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RowError:
    line: int
    message: str


@dataclass
class ImportReport:
    created: list[Row] = field(default_factory=list)
    kept: list[Row] = field(default_factory=list)
    groups_created: list[str] = field(default_factory=list)
    added: dict[str, list[str]] = field(default_factory=dict)  # group -> members added
    epochs: dict[str, int] = field(default_factory=dict)  # group -> new key epoch (0: plain)
    renewed: list[str] = field(default_factory=list)  # users made anew with new tokens
    failed: list[RowError] = field(default_factory=list)  # refused by the server
    files: dict[str, Path] = field(default_factory=dict)  # new user -> credentials file


# --- the file ----------------------------------------------------------------------------------


def parse_rows(text: str) -> tuple[list[Row], list[RowError]]:
    """The rows of an import file and the bad ones (line number, one-line reason)."""
    if text.startswith("\ufeff"):
        text = text[1:]
    reader = csv.reader(io.StringIO(text, newline=""))
    rows: list[Row] = []
    errors: list[RowError] = []
    seen: dict[str, int] = {}
    header_done = False
    while True:
        line = reader.line_num + 1
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            errors.append(RowError(line, f"not CSV: {exc}"))
            break
        if not any(f.strip() for f in fields) or fields[0].lstrip().startswith("#"):
            continue
        if not header_done:
            header = tuple(f.strip().lower() for f in fields)
            if header != COLUMNS[:len(header)]:
                errors.append(RowError(line, f"the first row must be the header "
                                             f"'{','.join(COLUMNS)}', not '{','.join(fields)}'"))
                return [], errors
            header_done = True
            continue
        try:
            row = _row(line, fields)
        except ValidationError as exc:
            errors.append(RowError(line, str(exc)))
            continue
        if row.name in seen:
            errors.append(RowError(line, f"'{row.name}' is named on line {seen[row.name]} "
                                         f"already"))
            continue
        seen[row.name] = line
        rows.append(row)
    return rows, errors


def _row(line: int, fields: Sequence[str]) -> Row:
    if len(fields) > len(COLUMNS):
        raise ValidationError(f"{len(fields)} columns, expected at most {len(COLUMNS)} "
                              f"({', '.join(COLUMNS)}); separate groups with "
                              f"'{GROUP_SEPARATOR}'")
    name, role, groups = (list(fields) + ["", ""])[:3]
    name = user_name(name.strip())
    role = role_name(parse_role(role.strip() or "volunteer"))
    names: list[str] = []
    for g in groups.split(GROUP_SEPARATOR):
        if g.strip():
            mapped = group_name(g)
            if mapped not in names:
                names.append(mapped)
    return Row(line, name, role, tuple(names))


def format_rows(rows: Iterable[tuple[str, str, Sequence[str]]]) -> str:
    """The CSV an import reads: header, then ``name,role,groups``."""
    out = io.StringIO(newline="")
    w = csv.writer(out, lineterminator="\n")
    w.writerow(COLUMNS)
    for name, role, groups in rows:
        w.writerow([name, role, GROUP_SEPARATOR.join(groups)])
    return out.getvalue()


def credentials_file(out: Path, name: str) -> Path:
    """Where ``name``'s credentials go: user names hold no '/' and never start with '.'."""
    return out / f"{name}.toml"


# --- the key stretching, on every core ---------------------------------------------------------


def _make(names: Sequence[str], iterations: int) -> list[tuple[str, str, bytes, bytes, bytes]]:
    """(name, token, salt, verifier, public identity) for each name: run in a worker."""
    out = []
    for name in names:
        token = auth.new_token(secrets.token_bytes(auth.TOKEN_BYTES))
        creds = auth.make_credentials(token, secrets.token_bytes(auth.SALT_SIZE), iterations)
        public = identity_from_token(token, name).public.to_bytes()
        out.append((name, token, creds.salt, creds.verifier, public))
    return out


# --- the import ----------------------------------------------------------------------------------


async def import_rows(
    conn: Connection,
    rows: Sequence[Row],
    *,
    server: str,
    out: Path | None,
    pins: Path | None = None,
    workers: int | None = None,
    new_tokens: bool = False,
    progress: Callable[[str], None] | None = None,
) -> ImportReport:
    """Create the users, groups and memberships of ``rows`` that the server lacks (see the
    module's docstring); credentials files of new users go to ``out``.

    ``new_tokens``: users of ``rows`` the server has (but the one running this) are made anew
    with new tokens (:func:`_renew`), so their old tokens stop working."""
    report = ImportReport()
    say = progress or (lambda _: None)
    existing = await _existing(conn, [r.name for r in rows])
    if new_tokens:
        renew = [r for r in rows if r.name in existing and r.name != conn.user]
        if renew and out is None:
            raise ValidationError(f"{len(renew)} users get new tokens: name a directory for "
                                  f"their credentials files with --out DIR")
        rows = await _renew(conn, rows, renew, pins, report, say)
        existing -= {r.name for r in renew}
    new = [r for r in rows if r.name not in existing]
    report.kept = [r for r in rows if r.name in existing]
    if new and out is None:
        raise ValidationError(f"{len(new)} new users: name a directory for their credentials "
                              f"files with --out DIR")
    groups = {str(g["name"]) for g in (await conn.admin("group.list", {}))["groups"]}
    for g in dict.fromkeys(g for r in rows for g in r.groups):
        if g not in groups:
            await conn.admin("group.create", {"name": g})
            report.groups_created.append(g)
    if new:
        assert out is not None
        out.mkdir(mode=0o700, parents=True, exist_ok=True)
        say(f"making {len(new)} tokens")
        await _create(conn, new, server, out, pins, workers, report)
    made = {r.name for r in report.created} | {r.name for r in report.kept}
    wanted: dict[str, list[str]] = {}
    for r in rows:
        if r.name in made:
            for g in r.groups:
                wanted.setdefault(g, []).append(r.name)
    for g, users in wanted.items():
        info = await conn.admin("group.keys", {"name": g})
        members = set(info.get("members") or {}) | set(info.get("missing") or [])
        add = [u for u in users if u not in members]
        if not add:
            continue
        say(f"adding {len(add)} members to '{g}'")
        changed = await keys.change_members(conn, g, add=add, pins=pins)
        report.added[g] = list(changed.get("added") or add)
        report.epochs[g] = int(changed.get("epoch") or 0)
    return report


async def _existing(conn: Connection, names: Sequence[str]) -> set[str]:
    """Which of ``names`` the server has: one small ``user.keys`` request each, many in flight,
    so the answer never grows with the directory (``user.list`` does)."""
    slots = asyncio.Semaphore(IN_FLIGHT)
    found: set[str] = set()

    async def ask(name: str) -> None:
        async with slots:
            try:
                await conn.admin("user.keys", {"name": name})
            except RequestError as exc:
                if exc.code != "not_found":
                    raise
                return
        found.add(name)

    await asyncio.gather(*(ask(n) for n in names))
    return found


async def _renew(conn: Connection, rows: Sequence[Row], renew: Sequence[Row],
                 pins: Path | None, report: ImportReport, say: Callable[[str], None]
                 ) -> list[Row]:
    """Remove the users of ``renew`` so that the import makes them anew, with new tokens;
    returns ``rows`` with each renewed user's groups joined by those it is in now, so it comes
    back into all of them (as a full member: a listen-only flag is not kept).

    There is no way to change a token in place (the server holds only its verifier and the
    public key derived from it, pinned by the members), so a new token is a new account. Each
    encrypted group loses all its renewed members in one change with its next key, so their old
    tokens open nothing said after; the import then adds them back with one more key."""
    names = {r.name for r in renew}
    now_in: dict[str, list[str]] = {u: [] for u in names}
    for g in (await conn.admin("group.list", {}))["groups"]:
        for m in (await conn.admin("group.show", {"name": g["name"]})).get("members") or []:
            if m["user"] in names:
                now_in[str(m["user"])].append(str(g["name"]))
    keyed: dict[str, list[str]] = {}
    for u in sorted(names):
        for g in (await conn.admin("user.keys", {"name": u})).get("groups") or []:
            keyed.setdefault(str(g), []).append(u)
    for g, users in keyed.items():
        say(f"removing {len(users)} members from '{g}' for their new tokens")
        await keys.change_members(conn, g, remove=users, pins=pins)
    for u in sorted(names):
        await conn.admin("user.remove", {"name": u})
        report.renewed.append(u)
    return [Row(r.line, r.name, r.role, tuple(dict.fromkeys([*r.groups, *now_in[r.name]])))
            if r.name in names else r for r in rows]


def _process_pool(workers: int) -> Executor:
    # imported here: multiprocessing is ~11 ms of every `ptt user` process, and only an import
    # of more than one job's users starts worker processes
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    return ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"))


async def _create(conn: Connection, new: Sequence[Row], server: str, out: Path,
                  pins: Path | None, workers: int | None, report: ImportReport) -> None:
    iterations = await keys.server_iterations(conn)
    by_name = {r.name: r for r in new}
    loop = asyncio.get_running_loop()
    slots = asyncio.Semaphore(IN_FLIGHT)
    publics: dict[str, PublicIdentity] = {}

    async def add(name: str, token: str, salt: bytes, verifier: bytes, public: bytes) -> None:
        row = by_name[name]
        file = credentials_file(out, name)
        async with slots:
            try:
                # kept (fsynced) before the user exists; in a thread, so that the disk's
                # wait (2-6 ms a file here, most of an import's wall time once the key
                # stretching got cheap) overlaps the other files, requests and workers
                await asyncio.to_thread(write_credentials, file, server, name, token)
            except PttError as exc:
                report.failed.append(RowError(row.line, f"'{name}': {exc}"))
                return
            try:
                await conn.admin("user.add", {"name": name, "role": row.role, "salt": salt,
                                              "iterations": iterations, "verifier": verifier,
                                              "public": public})
            except PttError as exc:
                file.unlink(missing_ok=True)
                report.failed.append(RowError(row.line, f"'{name}': {exc}"))
                return
        publics[name] = PublicIdentity.from_bytes(public)
        report.created.append(row)
        report.files[name] = file

    names = [r.name for r in new]
    chunks = [names[i:i + CHUNK] for i in range(0, len(names), CHUNK)]
    n = min(workers or os.cpu_count() or 1, len(chunks))
    # One job at a time (up to CHUNK users, or --workers 1): a thread of this process stretches
    # as fast as one worker process would (the key stretching releases the GIL), and starting
    # that process, a new interpreter loading ptt, costs ~0.25 s of CPU: more than stretching
    # ten users, and most of `ptt user import` of a few.
    pool: Executor = _process_pool(n) if n > 1 else ThreadPoolExecutor(max_workers=1)
    with pool:
        # The workers start (at the first submits) with Ctrl-C ignored, which a new Python
        # process keeps: the import alone handles it, stopping the pool, and no worker prints
        # a traceback of its own.
        handler = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            jobs = [loop.run_in_executor(pool, _make, chunk, iterations) for chunk in chunks]
        finally:
            signal.signal(signal.SIGINT, handler)
        sends: list[asyncio.Task[None]] = []
        try:
            for job in asyncio.as_completed(jobs):
                for made in await job:
                    sends.append(asyncio.create_task(add(*made)))
            await asyncio.gather(*sends)
        finally:  # interrupted: the jobs not started are dropped, their outcome unasked for
            for job in jobs:
                if not job.done():
                    job.cancel()
                elif not job.cancelled():
                    job.exception()
            pool.shutdown(wait=False, cancel_futures=True)
    keys.pin_members(conn, publics, pins)
    report.created.sort(key=lambda r: r.line)
    report.failed.sort(key=lambda e: e.line)


# --- the export ----------------------------------------------------------------------------------


async def export_rows(conn: Connection) -> list[tuple[str, str, list[str]]]:
    """Every user with its role and groups (no secrets), sorted by name."""
    users = (await conn.admin("user.list", {}))["users"]
    of: dict[str, list[str]] = {str(u["name"]): [] for u in users}
    for g in (await conn.admin("group.list", {}))["groups"]:
        shown = await conn.admin("group.show", {"name": g["name"]})
        for m in shown.get("members") or []:
            of.setdefault(str(m["user"]), []).append(str(g["name"]))
    return [(str(u["name"]), str(u["role"]), sorted(of[str(u["name"])]))
            for u in sorted(users, key=lambda u: str(u["name"]))]


def sheet(report: ImportReport, server: str, coordinator: str, fingerprint: str) -> str:
    """The hand-out sheet of a run's new users: who, which groups, which file, how to log in."""
    lines = [f"ptt accounts on {server}, made by {coordinator} "
             f"(signing key {fingerprint})",
             "Hand each person their own file, privately; they log in with",
             "    ptt login --credentials FILE",
             ""]
    rows = [(r.name, r.role, ", ".join(r.groups) or "-", report.files[r.name].name)
            for r in report.created]
    head = ("NAME", "ROLE", "GROUPS", "FILE")
    widths = [max([len(h)] + [display_width(x[i]) for x in rows]) for i, h in enumerate(head)]
    for cells in [head, *rows]:
        lines.append("  ".join(ljust(c, w) for c, w in zip(cells, widths)).rstrip())
    return "\n".join(lines) + "\n\n"


def summary(report: ImportReport) -> dict[str, Any]:
    return {"new": [r.name for r in report.created], "renewed": report.renewed,
            "kept": [r.name for r in report.kept],
            "groups_created": report.groups_created, "added": report.added,
            "epochs": report.epochs,
            "failed": [{"line": e.line, "error": e.message} for e in report.failed],
            "files": {u: str(p) for u, p in report.files.items()}}
