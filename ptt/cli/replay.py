"""``ptt replay``: play a recording, or its floor events, into a live group through the floor.

Who replays (``--as``): by default the user of the client config. ``--as FILE`` uses another
client config file (e.g. one written by ``ptt login`` or the server's ``coordinator.toml``).
``--as NAME`` (a user that does not exist yet) makes a temporary user of that name with the
coordinator's config, adds it to the group, and removes it afterwards
(:mod:`ptt.client.stand_ins`). Event replay (``--events``) needs one identity per recorded user:
``--users DIR`` reads ``DIR/<user>.toml``, otherwise temporary users named ``<prefix><user>`` are
made the same way.

Encrypted groups: what is sent into a keyed group is sealed with its key; temporary users get it
as they are added, and the group is re-keyed again after they are removed.

A damaged recording (a file cut short, a corrupted page, a broken log line) never stops it: it
replays everything readable, then exits 1 with ``error: damaged recording: <file>: <problem>``
(further problems as ``warning:`` lines above it).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ptt.cli.live import StopSignals, stamp
from ptt.cli.options import EXISTING_PATH, GROUP, SECONDS, CliState, client_options, pass_state
from ptt.cli.output import fail_if_damaged
from ptt.cli.remote import client_config, connect
from ptt.client import keys
from ptt.client.connection import Connection
from ptt.client.stand_ins import TEMP_PREFIX, Identity, temp_name, temporary_users
from ptt.config import ClientConfig, load_client_config
from ptt.errors import ConfigError, NetError, PttError, RecordingError, ValidationError
from ptt.names import user_name
from ptt.protocol import messages as m

if TYPE_CHECKING:
    from ptt.record.catalog import Session

__all__ = ["replay"]


@click.command()
@click.argument("path", type=EXISTING_PATH, metavar="[FILE|DIR]", required=False)
@click.option("--group", "group_name", required=True, type=GROUP, help="Live group to replay into.")
@click.option("--speed", type=float, default=1.0, show_default=True,
              help="Time between bursts (or events) divided by this; bursts play in real time.")
@click.option("--max-gap", type=SECONDS, metavar="SECONDS",
              help="Shorten silences between bursts to at most this.")
@click.option("--as", "as_user", metavar="FILE|NAME",
              help="Replay as this user: a client config FILE, or a NAME for a temporary user "
                   "made with the (coordinator's) config.")
@click.option("--events", "events_file", type=click.Path(exists=True, dir_okay=False,
              path_type=Path), metavar="FILE.jsonl",
              help="Replay the floor requests and releases of this event log instead.")
@click.option("--users", "users_dir", type=click.Path(exists=True, file_okay=False,
              path_type=Path), metavar="DIR",
              help="With --events: client configs DIR/<user>.toml for the recorded users.")
@click.option("--prefix", default=TEMP_PREFIX, show_default=True,
              help="With --events and no --users: temporary users are named PREFIX<user>.")
@click.option("--emergency", is_flag=True, help="Ask for the floor with emergency priority.")
@client_options
@pass_state
def replay(state: CliState, path: Path | None, group_name: str, speed: float,
           max_gap: float | None, as_user: str | None, events_file: Path | None,
           users_dir: Path | None, prefix: str, emergency: bool) -> None:
    """Play a recording into a live GROUP at its original timing, through the floor.

    Before each burst it asks for the floor, waits when queued and reports denials. Any Ogg
    Opus file works (e.g. made by opusenc): packets are sent as they are, and converted only
    when their format differs from ptt's (20 ms mono packets).

    With --events FILE.jsonl it replays the floor events instead: one simulated user per
    recorded user asks for and releases the floor at the recorded times.

    \b
    Examples:
        ptt replay ./recordings/volunteers --group test
        ptt replay announcement.opus --group volunteers --as ./ann.toml
        ptt replay ./recordings/volunteers --group test --speed 2 --max-gap 1s
        ptt replay --events ./recordings/volunteers/events.jsonl --group test
    """
    if not speed > 0:
        raise ValidationError(f"--speed must be positive, got {speed:g}")
    if (path is None) == (events_file is None):
        raise ValidationError("give a recording (FILE|DIR) or --events FILE.jsonl, not both")
    if events_file is not None:
        asyncio.run(_replay_events(state, events_file, group_name, speed, users_dir, prefix))
        return
    assert path is not None
    from ptt.record.catalog import load

    session = load(path)  # bad input fails here, before any network
    if not session.bursts:
        fail_if_damaged(session.all_problems(), "nothing in it could be read")
        raise RecordingError(f"{path}: no bursts to replay")
    priority = m.Priority.EMERGENCY if emergency else m.Priority.NORMAL
    asyncio.run(_replay_bursts(state, session, group_name, speed, max_gap, as_user, priority))
    fail_if_damaged(session.all_problems(), "the readable part was replayed")


async def _replay_bursts(state: CliState, session: Session, group: str, speed: float,
                         max_gap: float | None, as_user: str | None, priority: m.Priority
                         ) -> None:
    from ptt.client.replay import BurstReplayer
    from ptt.record.export import replay_bursts

    async with AsyncExitStack() as stack:
        who = await stack.enter_async_context(_identity(state, as_user, group))
        config = who.config
        conn, _ = await connect(config, state.timeout)
        stack.push_async_callback(conn.close)
        who.voice_keys(conn)
        await conn.join(group, state.timeout)
        click.echo(f"replaying {len(session.bursts)} bursts into {group} "
                   f"as {conn.user}")
        signals = StopSignals()
        stop = signals.stop
        with signals:
            # a line per change of the listeners' link and of the protection chosen, as ptt talk
            player = BurstReplayer(conn, group, speed=speed, bitrate=config.bitrate,
                                   priority=priority, echo=click.echo,
                                   on_link=lambda link: click.echo(f"{stamp()}  {link.line()}"))
            outcomes = await player.play(replay_bursts(session, max_gap=max_gap), stop)
        sent = [o for o in outcomes if o.status == "sent"]
        click.echo(f"done: {len(sent)} of {len(outcomes)} bursts sent")
        signals.raise_if_caught(f"{len(sent)} of {len(outcomes)} bursts sent")
        failed = [o for o in outcomes if o.status != "sent"]
        if failed and not stop.is_set():
            text = (f"{len(failed)} bursts not sent; first: {failed[0].label}: "
                    f"{failed[0].status}: {failed[0].detail}")
            # only unanswered ends: the network's fault (exit 4), as ptt talk says it
            if all(o.status == "unacknowledged" for o in failed):
                raise NetError(text)
            raise PttError(text)


async def _replay_events(state: CliState, events_file: Path, group: str, speed: float,
                         users_dir: Path | None, prefix: str) -> None:
    from ptt.client.replay import EventReplayer
    from ptt.record.events import read_events
    from ptt.record.replay import floor_script

    log = read_events(events_file)
    script = floor_script(log.events)
    if not script:
        fail_if_damaged(log.problems, "nothing in it could be read")
        raise RecordingError(f"{events_file}: no floor requests, talkers or pages to replay")
    users = list(dict.fromkeys(a.user for a in script if a.action != "page"))
    dispatchers = {a.user for a in script if a.priority == m.Priority.HIGH}
    async with AsyncExitStack() as stack:
        if users_dir is not None:
            configs = {u: Identity.of_file(_config_file(state, users_dir / f"{u}.toml"),
                                            users_dir / f"{u}.toml") for u in users}
        elif users:
            roles = {temp_name(prefix, u): "dispatcher" if u in dispatchers else "volunteer"
                     for u in users}
            made = await stack.enter_async_context(_temporary_users(state, roles, group))
            configs = {u: made[temp_name(prefix, u)] for u in users}
        else:
            configs = {}  # only pages: they are shown, nobody acts
        conns: dict[str, Connection] = {}
        for u in users:
            conn, _ = await connect(configs[u].config, state.timeout)
            stack.push_async_callback(conn.close)
            configs[u].voice_keys(conn)
            await conn.join(group, state.timeout)
            conns[u] = conn
        names = ", ".join(f"{u} as {c.user}" if c.user != u else u for u, c in conns.items())
        click.echo(f"replaying {len(script)} floor actions into {group}: {names}")
        signals = StopSignals()
        with signals:
            outcomes = await EventReplayer(conns, group, speed=speed, echo=click.echo).play(
                script, signals.stop)
        grants = [u for _, u, what in outcomes if what == "granted"]
        click.echo(f"done: grants in order: {', '.join(grants) or 'none'}")
        signals.raise_if_caught()
    fail_if_damaged(log.problems, "the readable events were replayed")


# -- identities -----------------------------------------------------------------------------------
def _config_file(state: CliState, path: Path) -> ClientConfig:
    if not path.is_file():
        raise ConfigError(f"{path}: no such client config file")
    config = load_client_config(path)
    if state.server is not None:
        config = dataclasses.replace(config, server=state.server)
    config.require_login()
    return config


@asynccontextmanager
async def _identity(state: CliState, as_user: str | None, group: str
                    ) -> AsyncIterator[Identity]:
    """The config to replay with (see the module docstring for ``--as``)."""
    if as_user is None:
        yield Identity.of_file(client_config(state), state.config_path)
        return
    path = Path(as_user).expanduser()
    if path.is_file() or path.suffix == ".toml" or "/" in as_user:
        yield Identity.of_file(_config_file(state, path), path)
        return
    name = user_name(as_user)
    async with _temporary_users(state, {name: "volunteer"}, group) as configs:
        yield configs[name]


def _temporary_users(state: CliState, roles: dict[str, str], group: str
                     ) -> AbstractAsyncContextManager[dict[str, Identity]]:
    """Temporary users made with the coordinator's config (the client config)."""

    async def connect_as(config: ClientConfig) -> Connection:
        return (await connect(config, state.timeout))[0]

    return temporary_users(connect_as, client_config(state), roles, group,
                           pins=keys.pins_path(keys.MEMBER_PINS, state.config_path),
                           warn=lambda line: click.echo(line, err=True))
