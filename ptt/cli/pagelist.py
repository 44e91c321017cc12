"""``ptt pages GROUP``: the recent text pages of a group, with who has them and who read them.

``ptt pages`` without a group lists the pages sent to you or by you directly (``--to``). Counts
are of people (a member with two devices counts once, as soon as one device has the page);
``--json`` adds the counts per device. A page of an encrypted group is opened here, with your
grant of the key it was sealed with: the server keeps only ciphertext.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import click

from ptt.cli.live import open_and_join
from ptt.cli.options import GROUP, CliState, client_options, json_option, pass_state
from ptt.client.pages import open_push
from ptt.protocol import messages as m
from ptt.protocol.server_pages import PAGE_LIST_OP
from ptt.textwidth import ljust


@click.command()
@click.argument("group_name", metavar="[GROUP]", type=GROUP, required=False)
@click.option("--limit", type=click.IntRange(1, 200), default=20, show_default=True,
              help="How many of the newest pages.")
@json_option
@client_options
@pass_state
def pages(state: CliState, group_name: str | None, limit: int, as_json: bool) -> None:
    """List the recent pages of GROUP (or your direct pages): who sent them, when, and how
    many members have them and have read them.

    \b
    Examples:
        ptt pages volunteers
        ptt pages volunteers --json
        ptt pages
    """
    asyncio.run(_pages(state, group_name or "", limit, as_json))


async def _pages(state: CliState, group: str, limit: int, as_json: bool) -> None:
    conn, _, _ = await open_and_join(state, [])
    try:
        args: dict[str, Any] = {"limit": limit}
        if group:
            args["group"] = group
        result = await conn.admin(PAGE_LIST_OP, args, state.timeout)
        grants = result.get("grants") or {}
        if group and any(p.get("epoch") for p in result.get("pages") or []):
            await conn.join(group, state.timeout)  # the group's id, and the current key
        rows = []
        for p in result.get("pages") or []:
            push = m.PagePush(0, int(p["id"]), str(p["group"]), str(p["sender"]), str(p["to"]),
                              bytes(p["body"]), int(p["epoch"]), bool(p["urgent"]),
                              int(p["sent_ms"]), bytes(grants.get(str(p["epoch"]), b"")))
            shown = open_push(conn, push)
            row = {k: v for k, v in p.items() if k not in ("body",)}
            row["text"] = shown.text
            row["unread"] = [u for u in str(p["unread"]).split(",") if u]
            rows.append(row)
    finally:
        await conn.close()
    if as_json:
        click.echo(json.dumps({"pages": rows}, ensure_ascii=False, indent=2))
        return
    if not rows:
        click.echo("no pages" + (f" in {group}" if group else " to or from you"))
        return
    for r in rows:
        sent = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r["sent_ms"] / 1000))
        where = r["group"] or f"{r['sender']} -> {r['to']}"
        mark = " URGENT" if r["urgent"] else ""
        n = r["recipients"]
        click.echo(f"#{r['id']:<4} {sent}  {ljust(where, 12)} {ljust(r['sender'], 10)}"
                   f"delivered {r['delivered']}/{n}, read {r['read']}/{n}{mark}")
        click.echo(f"      {r['text'] if r['text'] is not None else '(cannot open it)'}")
