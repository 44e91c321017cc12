"""``ptt record``, ``ptt sessions``, ``ptt replay`` and ``ptt export``: recordings on the command line.

A recording directory holds one directory per group: ``events.jsonl`` beside one Ogg Opus file per
burst (see :mod:`ptt.record`). The server writes them (``ptt server --record DIR``, or groups
made with ``--record``); so does ``ptt record GROUP --out DIR``, a member that records what it
hears.

A damaged recording (a file cut short, a corrupted page, a broken log line) never stops these
commands: they list, export or replay everything readable, then exit 1 with ``error: damaged
recording: <file>: <problem>`` (further problems as ``warning:`` lines above it).

Who replays (``--as``): by default the user of the client config. ``--as FILE`` uses another
client config file (e.g. one written by ``ptt login`` or the server's ``coordinator.toml``).
``--as NAME`` (a user that does not exist yet) makes a temporary user of that name with the
coordinator's config, adds it to the group, and removes it afterwards. Event replay
(``--events``) needs one identity per recorded user: ``--users DIR`` reads ``DIR/<user>.toml``,
otherwise temporary users named ``<prefix><user>`` are made the same way.

Encrypted groups. ``ptt record`` stores the voice it can open with its member's group key (the
files are plain Ogg Opus: keep them as private as the token). ``ptt replay`` seals what it sends
into a keyed group. Temporary users get their tokens made here (``ptt.client.keys.add_user``),
and the group is re-keyed after they are added (so they hold its key; their grants are signed
by the coordinator who made them, whose key they trust without a pins file) and again after
they are removed (so they no longer do). A plain group stays plain.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ptt.cli.live import StopSignals, stamp
from ptt.cli.options import GROUP, SECONDS, CliState, client_options, pass_state
from ptt.cli.remote import client_config, connect
from ptt.client import keys
from ptt.client.connection import Connection
from ptt.config import ClientConfig, load_client_config
from ptt.crypto.identity import PublicIdentity, identity_from_token
from ptt.errors import ConfigError, NetError, PttError, RecordingError, ValidationError
from ptt.names import user_name
from ptt.protocol import messages as m

if TYPE_CHECKING:
    from ptt.record.catalog import Session
    from ptt.record.recorder import BurstSummary

__all__ = ["export", "record", "replay", "sessions"]

TEMP_PREFIX = "replay-"
EXISTING = click.Path(exists=True, path_type=Path)


def _damaged(problems: list[str], done: str) -> None:
    """Exit 1 naming the first problem, after the readable part was ``done``."""
    if not problems:
        return
    for p in problems[1:]:
        click.echo(f"warning: {p}", err=True)
    more = f" (and {len(problems) - 1} more, above)" if len(problems) > 1 else ""
    raise RecordingError(f"damaged recording: {problems[0]}{more}; {done}")


# -- ptt record -----------------------------------------------------------------------------------
@click.command()
@click.argument("group_name", metavar="GROUP", type=GROUP)
@click.option("--out", "out_dir", required=True, metavar="DIR",
              type=click.Path(file_okay=False, path_type=Path),
              help="Recording directory (the group's files go to DIR/GROUP/, or DIR/SLUG+ID/ "
              "for a name that is not plain ASCII).")
@click.option("--duration", type=SECONDS, metavar="SECONDS",
              help="Stop after this long  [default: until Ctrl-C or SIGTERM]")
@client_options
@pass_state
def record(state: CliState, group_name: str, out_dir: Path, duration: float | None) -> None:
    """Record GROUP as a member hears it: voice as received, and the floor events seen.

    The configured user must be a member of GROUP (listen-only is enough). Each burst is an
    Ogg Opus file in DIR/GROUP/, beside events.jsonl. Works on relay and multicast groups.

    \b
    Examples:
        ptt record volunteers --out ./recordings
        ptt record volunteers --out ./recordings --duration 1h
    """
    asyncio.run(_record(state, group_name, out_dir, duration))


async def _record(state: CliState, group: str, out_dir: Path, duration: float | None) -> None:
    from ptt.client.pages import page_device
    from ptt.client.recorder import GroupRecorder

    config = client_config(state)
    conn, _ = await connect(config, state.timeout)
    try:
        def show(b: BurstSummary) -> None:
            lost = f", {b.lost} lost" if b.lost else ""
            click.echo(f"{stamp()}  {group}  {b.talker} burst {b.burst_id}: "
                       f"{b.duration:.2f} s{lost} -> {b.path.name}")

        voice_keys = keys.VoiceKeys.of(conn, keys.pins_path(keys.SIGNER_PINS,
                                                            state.config_path))
        recorder = GroupRecorder(conn, group, out_dir, on_burst=show)
        await conn.join(group, state.timeout)
        recorder.record_pages(f"{page_device(state.config_path)}/recorder")
        if voice_keys.keyed(group) and not voice_keys.epoch(group):
            why = f" ({voice_keys.last_refusal})" if voice_keys.last_refusal else ""
            click.echo(f"warning: no key for encrypted group '{group}' yet: its voice is not "
                       f"recorded until a coordinator runs 'ptt group rekey {group}'{why}",
                       err=True)
        click.echo(f"recording {group} into {recorder.group_dir()}; "
                   f"Ctrl-C to stop", err=True)
        signals = StopSignals()
        stop = signals.stop
        if duration is not None:
            asyncio.get_running_loop().call_later(duration, stop.set)
        with signals:
            report = await recorder.run(stop)
        click.echo(f"recorded {report.bursts} bursts, {report.seconds:.1f} s of talk"
                   + (f", {report.lost} frames lost" if report.lost else "")
                   + (f", {report.undecryptable} frames that did not open (no key, forged or "
                      f"replayed) left out" if report.undecryptable else ""))
        if report.errors:
            raise RecordingError(f"{report.errors} recording errors (see the log above)")
        signals.raise_if_caught()
    finally:
        await conn.close()


# -- ptt sessions ---------------------------------------------------------------------------------
@click.command()
@click.argument("path", type=EXISTING, metavar="DIR|FILE")
@click.option("-l", "--bursts", is_flag=True, help="List every burst of each session too.")
def sessions(path: Path, bursts: bool) -> None:
    """List the recordings under DIR: group, start, duration, talk time, bursts, talkers.

    \b
    Examples:
        ptt sessions ./recordings
        ptt sessions ./recordings/volunteers --bursts
    """
    from ptt.record.catalog import format_sessions, scan

    found = scan(path)
    if not found:
        raise RecordingError(f"{path}: no recordings here")
    click.echo(format_sessions(found, verbose=bursts))
    problems = [p for s in found for p in s.all_problems()]
    _damaged(problems, "the readable part is listed above")


# -- ptt export -----------------------------------------------------------------------------------
@click.command()
@click.argument("path", type=EXISTING, metavar="FILE|DIR")
@click.option("--wav", "out", required=True, metavar="OUT.wav",
              type=click.Path(dir_okay=False, path_type=Path), help="The WAV file to write.")
@click.option("--max-gap", type=SECONDS, metavar="SECONDS",
              help="Shorten silences between bursts to at most this.")
@click.option("--rate", type=click.Choice(["8000", "12000", "16000", "24000", "48000"]),
              default="16000", show_default=True, help="Sample rate of the WAV.")
def export(path: Path, out: Path, max_gap: float | None, rate: str) -> None:
    """Decode a recording (one group directory, or one Ogg Opus file) to WAV and print who
    talked when.

    \b
    Examples:
        ptt export ./recordings/volunteers --wav session.wav
        ptt export ./recordings/volunteers --wav short.wav --max-gap 2s
    """
    from ptt.record.export import export_wav, format_timeline

    result = export_wav(path, out, sample_rate=int(rate), max_gap=max_gap)
    if result.timeline:
        click.echo(format_timeline(result))
    click.echo(f"wrote {out} ({result.duration:.2f} s, {len(result.timeline)} bursts)")
    _damaged(result.problems, f"the readable part was exported to {out}")


# -- ptt replay -----------------------------------------------------------------------------------
@click.command()
@click.argument("path", type=EXISTING, metavar="[FILE|DIR]", required=False)
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
        _damaged(session.all_problems(), "nothing in it could be read")
        raise RecordingError(f"{path}: no bursts to replay")
    priority = m.Priority.EMERGENCY if emergency else m.Priority.NORMAL
    asyncio.run(_replay_bursts(state, session, group_name, speed, max_gap, as_user, priority))
    _damaged(session.all_problems(), "the readable part was replayed")


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
    from ptt.client.replay import EventReplayer, floor_script
    from ptt.record.events import read_events

    log = read_events(events_file)
    script = floor_script(log.events)
    if not script:
        _damaged(log.problems, "nothing in it could be read")
        raise RecordingError(f"{events_file}: no floor requests, talkers or pages to replay")
    users = list(dict.fromkeys(a.user for a in script if a.action != "page"))
    dispatchers = {a.user for a in script if a.priority == m.Priority.HIGH}
    async with AsyncExitStack() as stack:
        if users_dir is not None:
            configs = {u: _Identity.of_file(_config_file(state, users_dir / f"{u}.toml"),
                                            users_dir / f"{u}.toml") for u in users}
        elif users:
            roles = {_temp_name(prefix, u): "dispatcher" if u in dispatchers else "volunteer"
                     for u in users}
            made = await stack.enter_async_context(_temporary_users(state, roles, group))
            configs = {u: made[_temp_name(prefix, u)] for u in users}
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
    _damaged(log.problems, "the readable events were replayed")


# -- identities -----------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class _Identity:
    """A config to replay with, and whom its group keys are trusted from."""

    config: ClientConfig
    pins: Path | None = None  # signer pins file (None: the default next to the client config)
    signers: dict[str, PublicIdentity] | None = None  # a temporary user: its maker, in memory

    @classmethod
    def of_file(cls, config: ClientConfig, path: Path | None) -> _Identity:
        return cls(config, keys.pins_path(keys.SIGNER_PINS, path))

    def voice_keys(self, conn: Connection) -> keys.VoiceKeys:
        """Set up the connection's group keys before anything else asks for them."""
        return keys.VoiceKeys.of(conn, self.pins, signers=self.signers)


def _config_file(state: CliState, path: Path) -> ClientConfig:
    if not path.is_file():
        raise ConfigError(f"{path}: no such client config file")
    config = load_client_config(path)
    if state.server is not None:
        config = dataclasses.replace(config, server=state.server)
    config.require_login()
    return config


def _temp_name(prefix: str, user: str) -> str:
    return user_name((prefix + user)[:32])


@asynccontextmanager
async def _identity(state: CliState, as_user: str | None, group: str
                    ) -> AsyncIterator[_Identity]:
    """The config to replay with (see the module docstring for ``--as``)."""
    if as_user is None:
        yield _Identity.of_file(client_config(state), state.config_path)
        return
    path = Path(as_user).expanduser()
    if path.is_file() or path.suffix == ".toml" or "/" in as_user:
        yield _Identity.of_file(_config_file(state, path), path)
        return
    name = user_name(as_user)
    async with _temporary_users(state, {name: "volunteer"}, group) as configs:
        yield configs[name]


@asynccontextmanager
async def _temporary_users(state: CliState, roles: dict[str, str], group: str
                           ) -> AsyncIterator[dict[str, _Identity]]:
    """New users (name -> role) in ``group``, made with the coordinator's config over one
    connection (a second login of the same user would replace the first), removed after.

    Their tokens are made here (:func:`ptt.client.keys.add_user`). An encrypted group gets a
    new key as they come in (they need it to talk) and another as they leave (they must not
    keep it), each with the change; their grants come from this coordinator, whose key they
    trust as known."""
    coordinator = client_config(state)
    pins = keys.pins_path(keys.MEMBER_PINS, state.config_path)
    conn, _ = await connect(coordinator, state.timeout)
    signer = {conn.user: identity_from_token(conn.token, conn.user).public}
    made: list[str] = []
    added = False
    try:
        existing = {u["name"] for u in (await conn.admin("user.list", {}))["users"]}
        taken = sorted(set(roles) & existing)
        if taken:
            raise ValidationError(
                f"user '{taken[0]}' already exists: replay as it with its config file "
                f"(--as PATH.toml, or --users DIR), or name a user that does not exist "
                f"to have a temporary one made")
        configs = {}
        for name, role in roles.items():
            token = await keys.add_user(conn, name, role, pins=pins)
            made.append(name)
            configs[name] = _Identity(dataclasses.replace(coordinator, user=name, token=token),
                                      signers=signer)
        # in with the group's next key, and out with another (one request each)
        await keys.change_members(conn, group, add=list(roles), pins=pins)
        added = True
        yield configs
    finally:
        if added:
            try:
                await keys.change_members(conn, group, remove=made, pins=pins)
            except PttError as exc:
                click.echo(f"warning: could not take the temporary users out of '{group}' "
                           f"({exc}): run 'ptt group remove {group} {' '.join(made)}'", err=True)
        for name in made:
            try:
                await keys.remove_user(conn, name, pins=pins)
            except PttError as exc:
                click.echo(f"warning: could not remove temporary user '{name}': {exc}",
                           err=True)
        await conn.close()
