"""The ``ptt`` command: a bare click group; each command lives in its own module.

Exit codes (what scripts can rely on)::

    0    success
    1    the operation failed: unknown user or group, name taken, server-side refusal
    2    usage: bad option or value, invalid name, missing or broken config (ptt.errors: 2)
    3    authentication: wrong token, not a coordinator
    4    network: server unreachable, no answer
    70   internal error (a bug: run again with PTT_DEBUG=1 and report the traceback)
    130  interrupted (Ctrl-C, SIGINT)
    143  stopped by SIGTERM

Every failure is one line on stderr, ``error: <message>``; a traceback appears only with
``PTT_DEBUG=1``. Click's own usage errors keep click's format, except a rejected value, which is
one line like every other error.
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from collections.abc import Sequence
from typing import Any, NoReturn

import click

from ptt.cli import logs
from ptt.cli.entry import EX_INTERRUPTED, loading
from ptt.cli.options import SECONDS, CliState, config_option
from ptt.errors import Interrupted, PttError

EX_SOFTWARE = 70  # sysexits.h: an internal software error
DEBUG_ENV = "PTT_DEBUG"

# Every command, one module each, as "module:attribute". A command's module is imported when
# that command runs (or when --help or completion lists them all): a `ptt` process loads one
# command's code, not all of them with the server's, the desktop's and the recorder's (measured
# for `ptt group`: 0.19-0.20 s of CPU per process, 0.23 s with every command's module loaded).
# Add a new command here.
COMMANDS: dict[str, str] = {
    "server": "ptt.cli.server:server",
    "login": "ptt.cli.login:login",
    "user": "ptt.cli.user:user",
    "group": "ptt.cli.group:group",
    "talk": "ptt.cli.talk:talk",
    "listen": "ptt.cli.listen:listen",
    "call": "ptt.cli.call:call",
    "page": "ptt.cli.textpage:page",
    "pages": "ptt.cli.pagelist:pages",
    "devices": "ptt.cli.devices:devices",
    "desktop": "ptt.cli.desktop:desktop",
    "record": "ptt.cli.record:record",
    "sessions": "ptt.cli.sessions:sessions",
    "replay": "ptt.cli.replay:replay",
    "export": "ptt.cli.export:export",
}


def _debug() -> bool:
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "no", "off", "false")


def _fail(message: str, code: int) -> NoReturn:
    click.echo(message, err=True)
    sys.exit(code)


class PttGroup(click.Group):
    """A click group whose ``main`` turns every exception into one line and an exit code.

    Overriding ``main`` (not wrapping it in :func:`main`) keeps the handling in force under
    click's ``CliRunner`` too, so in-process tests see exactly what the console script shows.
    Its commands come from :data:`COMMANDS`, each imported when asked for.
    """

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return super().get_command(ctx, cmd_name)
        module, _, attribute = target.partition(":")
        with loading():  # a Ctrl-C meanwhile: KeyboardInterrupt after, which main() handles
            command = getattr(importlib.import_module(module), attribute)
        assert isinstance(command, click.Command)
        return command

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True,
             **extra: Any) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.MissingParameter as exc:
            exc.show()  # something left out: the usage line is the help wanted
            sys.exit(exc.exit_code)
        except click.BadParameter as exc:
            # a rejected value is a plain mistake: one line, not the usage block
            _fail(f"error: {exc.format_message()}", exc.exit_code)
        except click.ClickException as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except click.Abort as exc:
            if isinstance(exc.__context__, KeyboardInterrupt):
                sys.exit(EX_INTERRUPTED)  # the user knows: no message
            _fail("Aborted!", 1)
        except KeyboardInterrupt:
            sys.exit(EX_INTERRUPTED)
        except Interrupted as exc:
            if str(exc):
                click.echo(f"interrupted: {exc}", err=True)
            sys.exit(exc.exit_code)
        except PttError as exc:
            if _debug():
                traceback.print_exc()
            _fail(f"error: {exc}", exc.exit_code)
        except Exception as exc:
            if _debug():
                traceback.print_exc()
                _fail(f"internal error: {type(exc).__name__}: {exc}", EX_SOFTWARE)
            _fail(f"internal error: {type(exc).__name__}: {exc} "
                  f"(run with {DEBUG_ENV}=1 for details)", EX_SOFTWARE)
        # standalone_mode=False returns the exit code of --help/--version (click.Exit) or the
        # command's return value; commands return None on success
        sys.exit(rv if isinstance(rv, int) else 0)


def _set_verbose(ctx: click.Context, param: click.Parameter, value: int) -> int:
    logs.configure(value)
    return value


@click.group(cls=PttGroup, context_settings={"auto_envvar_prefix": "PTT",
                                             "help_option_names": ["-h", "--help"]})
@click.version_option(package_name="ptt", prog_name="ptt", message="%(prog)s %(version)s")
@config_option
@click.option("--timeout", type=SECONDS, default=6.0, show_default=True, show_envvar=True,
              metavar="SECONDS", help="How long to wait for the server to answer.")
@click.option("-v", "--verbose", count=True, callback=_set_verbose, show_envvar=True,
              help="More log output on stderr (-vv for debug).")
@click.pass_context
def cli(ctx: click.Context, timeout: float, verbose: int) -> None:
    """ptt: open push-to-talk group paging.

    \b
    Start a server, then manage it as its coordinator:
        ptt server --db ./ptt.db            (prints where its credentials are)
        ptt login --credentials ./coordinator.toml
        ptt user add ann
        ptt group create volunteers --max-talk 30
        ptt group add volunteers ann
    """
    state = ctx.ensure_object(CliState)
    state.timeout = timeout
    state.verbose = verbose


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Run the command line (the console script reaches it through :mod:`ptt.cli.entry`)."""
    cli.main(argv, prog_name="ptt")
    raise AssertionError("unreachable: PttGroup.main always exits")  # pragma: no cover
