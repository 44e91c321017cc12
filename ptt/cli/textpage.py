"""``ptt page GROUP TEXT`` and ``ptt page --to USER TEXT``: a written page, kept for whoever is away.

The outcome and its exit code:

- 0: the server stored the page (it is acknowledged only once it is in the database) and the
  delivery line says who has it: ``delivered to 3 of 4 online members (...); offline: eve``;
  offline members get it when they log in;
- 1: refused (not a member, listen-only, unknown user, too many pages, no group key yet);
- 2: bad input (too long, not UTF-8, empty), said before anything is sent;
- 4: the server did not answer; 130 / 143: interrupted, saying whether the page was stored.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import BinaryIO

import click

from ptt.cli.live import StopSignals, open_and_join, until_stopped
from ptt.cli.options import GROUP, USER, CliState, client_options, pass_state
from ptt.client.pages import seal_for
from ptt.crypto.pages import MAX_PAGE_BYTES, MAX_PAGE_CHARS
from ptt.errors import NetError, RequestError, ValidationError
from ptt.protocol import client as cl
from ptt.protocol.server_pages import PAGE_REPORT_WAIT

REPORT_WAIT = PAGE_REPORT_WAIT + 1.5  # for the delivery report, after the page was stored


def read_text(source: BinaryIO, name: str) -> str:
    """The page's text from ``source``: at most MAX_PAGE_BYTES are read and the size checked
    before the bytes are decoded; one trailing newline is dropped."""
    data = source.read(MAX_PAGE_BYTES + 2)
    if len(data) > MAX_PAGE_BYTES + 1 or (len(data) == MAX_PAGE_BYTES + 1
                                          and not data.endswith(b"\n")):
        raise ValidationError(f"page too long: {name} has more than {MAX_PAGE_BYTES} bytes "
                              f"(at most {MAX_PAGE_CHARS} characters)")
    if data.endswith(b"\n"):
        data = data[:-1]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValidationError(f"{name} is not UTF-8 text (byte {exc.start})") from None
    return check_text(text)


def check_text(text: str) -> str:
    if len(text) > MAX_PAGE_CHARS:
        raise ValidationError(f"page too long: {len(text)} characters, at most {MAX_PAGE_CHARS}")
    if not text.strip():
        raise ValidationError("empty page: nothing to send")
    return text


@click.command()
@click.argument("words", nargs=-1, metavar="[GROUP] [TEXT]")
@click.option("--to", "to", type=USER, metavar="USER", help="Page this user instead of a group.")
@click.option("--file", "file", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE",
              help="Read the text from FILE (UTF-8); '-' or no TEXT: from stdin.")
@click.option("--urgent", is_flag=True,
              help="An urgent page (the emergency right of your role; the emergency tone).")
@client_options
@pass_state
def page(state: CliState, words: tuple[str, ...], to: str | None, file: Path | None,
         urgent: bool) -> None:
    """Send a written page to GROUP (or to USER with --to): up to 1,000 characters, any script.

    The server keeps it (24 h by default) and delivers it to every member's devices, at once
    to those online and at their next login to the others, each device once; 'ptt pages GROUP'
    shows who has it and who read it.

    \b
    Examples:
        ptt page volunteers "Gate 3 closed, send arrivals to Gate 5"
        ptt page volunteers --urgent "Evacuate hall B now"
        ptt page --to bob "Call the desk"
        ptt page volunteers --file notice.txt
        echo "闸门3关闭" | ptt page 志愿者
    """
    args = list(words)
    group = ""
    if to is None:
        if not args:
            raise click.UsageError("missing GROUP (or --to USER)")
        group = GROUP.convert(args.pop(0), None, None)
    if len(args) > 1:
        raise click.UsageError("the text is one argument: put it in quotes")
    if args and file is not None:
        raise click.UsageError("give the text or --file, not both")
    if args and args[0] != "-":
        text = check_text(args[0])
    elif file is not None and str(file) != "-":
        try:
            with open(file, "rb") as f:
                text = read_text(f, str(file))
        except OSError as exc:
            raise ValidationError(f"cannot read {file}: {exc.strerror or exc}") from None
    else:
        text = read_text(sys.stdin.buffer, "stdin")
    asyncio.run(_page(state, group, to or "", text, urgent))


async def _page(state: CliState, group: str, to: str, text: str, urgent: bool) -> None:
    with StopSignals() as signals:
        stored: list[int] = []
        task = asyncio.ensure_future(_send(state, group, to, text, urgent, stored))
        await until_stopped(signals.stop, task)
        if not task.done() or task.cancelled():
            try:  # let the cancelled send close its connection
                await task
            except asyncio.CancelledError:
                pass
        if signals.caught:
            signals.raise_if_caught(f"page {stored[0]} stored; its delivery report was not "
                                    f"awaited" if stored else "page not sent")


async def _send(state: CliState, group: str, to: str, text: str, urgent: bool,
                stored: list[int]) -> None:
    conn, _, _ = await open_and_join(state, [group] if group else [])
    try:
        body, epoch = seal_for(conn, group, text, urgent) if group else (text.encode(), 0)
        events = conn.subscribe()
        try:
            txn = conn.core.send_page(group, to, body, epoch, urgent, conn.now())
            conn.flush()
            ev = await conn.wait_for(
                events, lambda e: (isinstance(e, cl.PageAccepted) and e.txn == txn)
                or (isinstance(e, cl.RequestFailed) and e.what == "page" and e.txn == txn),
                state.timeout + 6.0, "the server did not answer the page")
            if isinstance(ev, cl.RequestFailed):
                if ev.code is None:
                    raise NetError(f"{ev.message}: the page may not be stored")
                raise RequestError(ev.message, ev.code.name.lower())
            assert isinstance(ev, cl.PageAccepted)
            stored.append(ev.page_id)
            target = group or to
            mark = "urgent page" if urgent else "page"
            click.echo(f"{mark} {ev.page_id} stored for {target}: {ev.recipients} "
                       f"recipient{'s' if ev.recipients != 1 else ''}, {ev.online} online")
            try:
                report = await conn.wait_for(
                    events, lambda e: isinstance(e, cl.PageReported) and e.page_id == ev.page_id,
                    REPORT_WAIT, "no delivery report")
            except NetError:
                click.echo("no delivery report from the server: the page is stored and "
                           "goes out to each member's devices as they come online")
                return
            assert isinstance(report, cl.PageReported)
            click.echo(report_line(report))
        finally:
            conn.unsubscribe(events)
    finally:
        await conn.close()


def report_line(r: cl.PageReported) -> str:
    """``delivered to 2 of 3 online members (bob, cat); not confirmed: dan; offline: eve (gets
    it at login)``."""
    online = len(r.delivered) + len(r.pending)
    parts = [f"delivered to {len(r.delivered)} of {online} online "
             f"member{'s' if online != 1 else ''}"
             + (f" ({', '.join(r.delivered)})" if r.delivered else "")]
    if r.pending:
        parts.append(f"not confirmed: {', '.join(r.pending)}")
    if r.offline:
        parts.append(f"offline: {', '.join(r.offline)} (gets it at login)")
    return "; ".join(parts)
