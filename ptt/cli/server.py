"""``ptt server``: run the paging server in the foreground until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ptt.cli import logs
from ptt.cli.options import CliState, pass_state
from ptt.config import (
    effective_server_settings,
    load_server_config,
    parse_roles,
    server_config_sample,
)
from ptt.errors import ConfigError, Interrupted, PttError, ValidationError
from ptt.names import format_hostport, parse_port
from ptt.protocol.messages import Role

if TYPE_CHECKING:
    from ptt.config import ServerConfig
    from ptt.server.app import PttServer


class _Port(click.ParamType):
    name = "port"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None
                ) -> int:
        try:
            return parse_port(value, allow_zero=True)
        except ValidationError as exc:
            self.fail(str(exc), param, ctx)


class _MetricsAddress(click.ParamType):
    name = "host:port"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None
                ) -> tuple[str, int]:
        if isinstance(value, tuple):
            return value
        from ptt.server.metrics import parse_metrics_address  # here: prometheus_client is slow

        try:
            return parse_metrics_address(str(value))
        except ValidationError as exc:
            self.fail(str(exc), param, ctx)


class _Roles(click.ParamType):
    name = "roles"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None
                ) -> frozenset[Role]:
        try:
            return parse_roles(value)
        except (ValueError, TypeError, PttError) as exc:
            self.fail(str(exc), param, ctx)


def _check_paths(config: ServerConfig) -> None:
    """What the server would trip over at start: a database or recording path that is taken by
    something else (a directory where the file goes, a file where a directory goes)."""
    db = Path(config.db)
    if str(db) != ":memory:":
        if db.is_dir():
            raise ConfigError(f"db: {db} is a directory; expected the database file")
        parent = next((p for p in db.parents if p.exists()), None)
        if parent is not None and not parent.is_dir():
            raise ConfigError(f"db: {parent} is not a directory")
    record = Path(config.record_dir)
    if record.exists() and not record.is_dir():
        raise ConfigError(f"record_dir: {record} is not a directory")


def _first_start(server: PttServer) -> None:
    """Tell the operator where the coordinator's credentials went and how to use them."""
    path = server.credentials_file
    if path is None:
        return
    quoted = shlex.quote(str(path))
    click.echo(
        f"First start: created the coordinator account; its credentials are in {path} "
        f"(mode 0600).\n"
        f"Use them in this shell:\n"
        f"    export PTT_CONFIG={quoted}\n"
        f"or save them as your client config:\n"
        f"    ptt login --credentials {quoted}\n"
        f"then, for example: ptt user add ann && ptt group create volunteers",
        err=True,
    )


@click.command()
@click.option("--host", metavar="ADDRESS", show_envvar=True,
              help="Address to listen on; only 127.0.0.1 unless you ask  [default: 127.0.0.1]")
@click.option("--port", type=_Port(), show_envvar=True,
              help="UDP port; 0 picks a free one  [default: 7700]")
@click.option("--db", type=click.Path(dir_okay=False, path_type=Path), show_envvar=True,
              help="SQLite database  [default: $XDG_DATA_HOME/ptt/ptt.db]")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path),
              envvar="PTT_SERVER_CONFIG", show_envvar=True,
              help="Server config file  [default: $XDG_CONFIG_HOME/ptt/server.toml]")
# not from PTT_SERVER_RECORD_DIR (click's automatic name for it): that variable is the config's
# record_dir, where flagged groups go; --record also means "record every group"
@click.option("--record", "record_dir", type=click.Path(file_okay=False, path_type=Path),
              allow_from_autoenv=False, metavar="DIR", help="Record every group into DIR (one directory per group). "
              "Without it, groups made with 'ptt group create/update --record' record into "
              "the configured record_dir  [default: $XDG_DATA_HOME/ptt/recordings]")
@click.option("--metrics", type=_MetricsAddress(), metavar="HOST:PORT", show_envvar=True,
              help="Serve Prometheus metrics on http://HOST:PORT/metrics; a bare PORT listens "
              "on 127.0.0.1  [default: off]")
@click.option("--emergency-roles", type=_Roles(), metavar="ROLES", show_envvar=True,
              help="Roles that may ask for emergency priority, e.g. dispatcher,coordinator, or "
              "'none'; others are refused (NOT_ALLOWED)  [default: volunteer,dispatcher,"
              "coordinator]")
@click.option("--log-json", is_flag=True, show_envvar=True,
              help="Log JSON lines (one object per event) instead of key=value text")
@click.option("--cluster", "cluster_file", type=click.Path(dir_okay=False, path_type=Path),
              envvar="PTT_SERVER_CLUSTER", show_envvar=True, metavar="FILE",
              help="Run as a node of a cluster described in FILE (TOML: node id, nodes, NATS "
              "URLs; docs/cluster.md)  [default: a single server]")
@click.option("--check-config", is_flag=True,
              help="Load and check the config file, PTT_SERVER_* and these options, print the "
              "settings in force and exit: 0 when valid, 2 with one line saying what is wrong")
@click.option("--sample-config", is_flag=True,
              help="Print every setting with its default and meaning (examples/server.toml) "
              "and exit")
@pass_state
def server(state: CliState, host: str | None, port: int | None, db: Path | None,
           config_file: Path | None, record_dir: Path | None,
           metrics: tuple[str, int] | None, emergency_roles: frozenset[Role] | None,
           log_json: bool, cluster_file: Path | None = None, check_config: bool = False,
           sample_config: bool = False) -> None:
    """Run the ptt server in the foreground; logs go to stderr.

    On its first start (an empty database) it creates a coordinator account and writes its
    credentials beside the database. Stop it with Ctrl-C or SIGTERM.

    \b
    Examples:
        ptt server --db ./ptt.db
        ptt server --db ./ptt.db --record ./recordings
        ptt server --db ./ptt.db --emergency-roles dispatcher,coordinator
        ptt server --config /etc/ptt/server.toml --check-config
        ptt server --db ./a.db --cluster ./node-a.toml
    """
    if sample_config:
        click.echo(server_config_sample(), nl=False)
        return
    if not check_config:
        # a server's log is its output: INFO by default, DEBUG with -v
        logs.configure(state.verbose, base=logging.INFO)
        from ptt.server.eventlog import configure_event_log

        configure_event_log(json=log_json)
    config = load_server_config(config_file)
    cluster = None
    if cluster_file is not None:
        from ptt.cluster.config import load_cluster_config

        cluster = load_cluster_config(cluster_file)
        if cluster.address is not None and host is None and port is None:
            config = dataclasses.replace(config, host=cluster.address[0],
                                         port=cluster.address[1])
    if metrics is None and config.metrics is not None:  # server.toml or PTT_SERVER_METRICS
        metrics = _MetricsAddress().convert(config.metrics, None, None)
    changes: dict[str, Any] = {
        k: v for k, v in (("host", host), ("port", port), ("db", db), ("record_dir", record_dir),
                          ("emergency_roles", emergency_roles))
        if v is not None}
    if changes:
        # through the dataclass, so --host and --db get the same checks as the file's values
        config = dataclasses.replace(config, **changes)
    if check_config:
        if metrics is not None:
            config = dataclasses.replace(config, metrics=format_hostport(*metrics))
        _check_paths(config)
        click.echo(effective_server_settings(config), nl=False)
        if record_dir is not None:
            click.echo("# --record: every group is recorded into record_dir")
        return
    from ptt.server.app import run  # here: client commands need not import the server

    record_all = record_dir is not None

    def ready(srv: PttServer) -> None:
        _first_start(srv)  # before "listening on", the line operators and scripts wait for
        from ptt.server.eventlog import attach_event_log
        from ptt.server.recording import attach_recording

        attach_event_log(srv)
        if metrics is not None:
            # imported only then: prometheus_client costs ~30 ms of every server's start
            from ptt.server.metrics import attach_metrics

            attach_metrics(srv, *metrics)  # NetError (a clean message) if it cannot bind
        attach_recording(srv, record_all=record_all)

    signum = asyncio.run(run(config, ready=ready, cluster=cluster))
    if signum is not None:
        # stopped cleanly (everything stored is kept), with the exit code of the stop key
        raise Interrupted("", signum)
