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

import os
import sys
import traceback
from collections.abc import Sequence
from typing import Any, NoReturn

import click

from ptt.cli import logs
from ptt.cli.desktop import desktop
from ptt.cli.devices import devices
from ptt.cli.export import export
from ptt.cli.group import group
from ptt.cli.listen import listen
from ptt.cli.login import login
from ptt.cli.options import SECONDS, CliState, config_option
from ptt.cli.record import record
from ptt.cli.replay import replay
from ptt.cli.server import server
from ptt.cli.sessions import sessions
from ptt.cli.talk import call, talk
from ptt.cli.pagelist import pages
from ptt.cli.textpage import page
from ptt.cli.user import user
from ptt.errors import Interrupted, PttError

EX_SOFTWARE = 70  # sysexits.h: an internal software error
EX_INTERRUPTED = 130  # 128 + SIGINT, what shells report for Ctrl-C
DEBUG_ENV = "PTT_DEBUG"


def _debug() -> bool:
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "no", "off", "false")


def _fail(message: str, code: int) -> NoReturn:
    click.echo(message, err=True)
    sys.exit(code)


class PttGroup(click.Group):
    """A click group whose ``main`` turns every exception into one line and an exit code.

    Overriding ``main`` (not wrapping it in :func:`main`) keeps the handling in force under
    click's ``CliRunner`` too, so in-process tests see exactly what the console script shows.
    """

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


# --- commands: one module each, one line each ----------------------------------------------------
cli.add_command(server)
cli.add_command(login)
cli.add_command(user)
cli.add_command(group)
cli.add_command(talk)
cli.add_command(listen)
cli.add_command(call)
cli.add_command(page)
cli.add_command(pages)
cli.add_command(devices)
cli.add_command(desktop)
cli.add_command(record)
cli.add_command(sessions)
cli.add_command(replay)
cli.add_command(export)
# Add new commands here, e.g. ``from ptt.cli.talk import talk`` above and ``cli.add_command(talk)``:
# talk, listen, call, devices, record, sessions, replay, export, desktop.
# ---------------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Console-script entry point (``ptt = ptt.cli.main:main``)."""
    cli.main(argv, prog_name="ptt")
    raise AssertionError("unreachable: PttGroup.main always exits")  # pragma: no cover
