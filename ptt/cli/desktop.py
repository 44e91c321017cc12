"""``ptt desktop``: open the push-to-talk window (the window itself is :mod:`ptt.desktop`)."""

from __future__ import annotations

import dataclasses
import os
import signal

import click

from ptt.cli.live import STOP_SIGNALS
from ptt.cli.options import GROUP, CliState, client_options, pass_state
from ptt.cli.remote import client_config
from ptt.errors import ConfigError, Interrupted


@click.command()
@click.option("--group", "group_name", type=GROUP, metavar="GROUP",
              help="Group the button talks to at start [default: the config's default group].")
@client_options
@pass_state
def desktop(state: CliState, group_name: str | None) -> None:
    """Open the desktop push-to-talk window.

    \b
    Hold the big button (or the space bar) to talk; the window shows your groups, who is
    online, who is talking, your place in the queue and the talk time left. Settings (server,
    user, audio devices) are saved to the same file as 'ptt login'.
    """
    import tkinter as tk

    from ptt.desktop.window import DesktopWindow

    config = client_config(state)
    if group_name is not None:
        config = dataclasses.replace(config, default_group=group_name)
    try:
        root = tk.Tk()
    except tk.TclError as exc:
        raise ConfigError(f"cannot open a window ({exc}): is DISPLAY set?") from None
    win = DesktopWindow(root, config, config_path=state.config_path)
    if config.default_group:
        win.model.talk_group = config.default_group
    if config.user is None or config.token is None:
        win.open_settings()  # first run: nothing to log in with yet
    caught: list[int] = []

    def on_signal(signum: int, frame: object) -> None:
        if caught:  # a second stop key: the user means it
            os._exit(128 + caught[0])
        caught.append(signum)
        root.after(0, win.close)  # the window's own poll tick lets Python see the signal

    previous = {sig: signal.signal(sig, on_signal) for sig in STOP_SIGNALS}
    try:
        root.mainloop()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if caught:
        raise Interrupted("", caught[0])
