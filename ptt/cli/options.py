"""Shared pieces of the CLI: the state every command sees, parameter types, option decorators.

Parameter types turn what a person typed into the canonical value the rest of ptt expects (a
folded user name, a role name, ``(host, port)``, seconds), reusing the validators in
:mod:`ptt.names`, so a bad value is refused before anything touches the network, with the same
wording the server would use.

Options that select client settings (``--config``, ``--server``) do not take values from the
environment through click: :mod:`ptt.config` owns ``PTT_CONFIG`` and ``PTT_SERVER``, so the rules
for files, variables and their error messages live in one place. The options only record what was
typed in :class:`CliState`; :func:`ptt.cli.remote.client_config` applies them last.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click

from ptt.config import DEFAULT_PORT
from ptt.errors import ValidationError
from ptt.names import (
    ROLE_NAMES,
    format_hostport,
    group_name,
    parse_hostport,
    parse_role,
    role_name,
    user_name,
)

F = TypeVar("F", bound=Callable[..., Any])

CONNECT_TIMEOUT = 6.0  # = ptt.client.connection.CONNECT_TIMEOUT: a lost login is retried inside


@dataclass
class CliState:
    """What the root group and the shared options collected; ``ctx.obj`` of every command."""

    config_path: Path | None = None  # --config; None: PTT_CONFIG or the XDG file
    server: str | None = None  # --server, formatted HOST:PORT; None: from the config
    timeout: float = CONNECT_TIMEOUT  # --timeout: how long to wait for the server
    verbose: int = 0


def get_state(ctx: click.Context | None = None) -> CliState:
    """The command's :class:`CliState`, created if a command runs without the root group."""
    ctx = ctx or click.get_current_context()
    return ctx.ensure_object(CliState)


pass_state = click.make_pass_decorator(CliState, ensure=True)


# --- parameter types ---------------------------------------------------------------------------


class _Validated(click.ParamType):
    """A type whose conversion is a :mod:`ptt.names` validator raising ValidationError."""

    def parse(self, value: str) -> Any:
        raise NotImplementedError

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str):
            return value  # already converted (a default, or a value given in Python)
        try:
            return self.parse(value)
        except ValidationError as exc:
            self.fail(str(exc), param, ctx)


class _CachedNames(_Validated):
    """Completes from the names the client last saw (:mod:`ptt.cli.completion`), offline."""

    cache_kind = ""

    def shell_complete(
        self, ctx: click.Context, param: click.Parameter, incomplete: str
    ) -> list[click.shell_completion.CompletionItem]:
        from click.shell_completion import CompletionItem

        from ptt.cli.completion import matching

        return [CompletionItem(n) for n in matching(self.cache_kind, incomplete)]


class UserNameType(_CachedNames):
    name = "user"
    cache_kind = "users"

    def parse(self, value: str) -> str:
        return user_name(value)


class GroupNameType(_CachedNames):
    name = "group"
    cache_kind = "groups"

    def parse(self, value: str) -> str:
        return group_name(value)


class RoleType(_Validated):
    """``volunteer | coordinator | dispatcher`` in any case, to the lower-case role name."""

    name = "role"

    def parse(self, value: str) -> str:
        return role_name(parse_role(value))

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return "[" + "|".join(ROLE_NAMES.values()) + "]"

    def shell_complete(
        self, ctx: click.Context, param: click.Parameter, incomplete: str
    ) -> list[click.shell_completion.CompletionItem]:
        from click.shell_completion import CompletionItem

        return [CompletionItem(r) for r in ROLE_NAMES.values() if r.startswith(incomplete)]


class HostPortType(_Validated):
    """``HOST:PORT`` (``[IPv6]:PORT``) to ``(host, port)``; the port may be omitted if defaulted."""

    name = "host:port"

    def __init__(self, default_port: int | None = None) -> None:
        self.default_port = default_port

    def parse(self, value: str) -> tuple[str, int]:
        return parse_hostport(value, self.default_port)


_SECONDS_RE = re.compile(r"\s*([0-9]*\.?[0-9]+)\s*(ms|s|m|min)?\s*", re.IGNORECASE)
_UNIT = {None: 1.0, "s": 1.0, "ms": 0.001, "m": 60.0, "min": 60.0}


class SecondsType(click.ParamType):
    """A duration: ``20``, ``20s``, ``1.5``, ``500ms``, ``2m``; a float number of seconds.

    Bounds are checked here so that a bad ``--max-talk`` is refused before a round trip.
    """

    name = "seconds"

    def __init__(self, minimum: float = 0.0, maximum: float = math.inf) -> None:
        self.minimum = minimum
        self.maximum = maximum

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None
                ) -> float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            seconds = float(value)
        else:
            match = _SECONDS_RE.fullmatch(str(value))
            if match is None:
                self.fail(f"{value!r} is not a duration: expected seconds like 20, 1.5s, 500ms "
                          f"or 2m", param, ctx)
            seconds = float(match[1]) * _UNIT[match[2] and match[2].lower()]
        if not self.minimum < seconds <= self.maximum:
            top = "" if math.isinf(self.maximum) else f" and at most {self.maximum:g} s"
            self.fail(f"{value!r}: expected more than {self.minimum:g} s{top}", param, ctx)
        return seconds


USER = UserNameType()
GROUP = GroupNameType()
ROLE = RoleType()
HOSTPORT = HostPortType(DEFAULT_PORT)
SECONDS = SecondsType()
EXISTING_PATH = click.Path(exists=True, path_type=Path)  # a recording: file or directory


# --- option decorators -------------------------------------------------------------------------


def json_option(f: F) -> F:
    """``--json``: machine-readable output on stdout, passed to the command as ``as_json``."""
    return click.option(
        "--json", "as_json", is_flag=True,
        help="Print the server's answer as JSON, for scripts.",
    )(f)


def _set_config(ctx: click.Context, param: click.Parameter, value: Path | None) -> None:
    if value is not None:
        get_state(ctx).config_path = value


def _set_server(ctx: click.Context, param: click.Parameter, value: tuple[str, int] | None
                ) -> None:
    if value is not None:
        get_state(ctx).server = format_hostport(*value)


def config_option(f: F) -> F:
    """``--config PATH``: the client config file (instead of ``$PTT_CONFIG`` or the XDG one)."""
    return click.option(
        "--config", type=click.Path(dir_okay=False, path_type=Path), metavar="PATH",
        expose_value=False, is_eager=True, callback=_set_config, allow_from_autoenv=False,
        help="Client config file [default: $PTT_CONFIG, else $XDG_CONFIG_HOME/ptt/client.toml].",
    )(f)


def server_option(f: F) -> F:
    """``--server HOST:PORT``: overrides the server of the config file and ``$PTT_SERVER``."""
    return click.option(
        "--server", type=HOSTPORT, metavar="HOST:PORT", expose_value=False,
        callback=_set_server, allow_from_autoenv=False,
        help="Server address [default: from the config, or $PTT_SERVER].",
    )(f)


def _set_timeout(ctx: click.Context, param: click.Parameter, value: float | None) -> None:
    if value is not None:
        get_state(ctx).timeout = value


def timeout_option(f: F) -> F:
    """``--timeout SECONDS`` after the command name too (``ptt --timeout`` reads PTT_TIMEOUT)."""
    return click.option(
        "--timeout", type=SECONDS, metavar="SECONDS", expose_value=False,
        callback=_set_timeout, allow_from_autoenv=False,
        help=f"How long to wait for the server [default: $PTT_TIMEOUT, else {CONNECT_TIMEOUT:g}].",
    )(f)


def client_options(f: F) -> F:
    """``--config``, ``--server`` and ``--timeout``, for every command that talks to a server."""
    return config_option(server_option(timeout_option(f)))
