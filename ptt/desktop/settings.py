"""Dialogs: the settings dialog (server, user, token, audio devices) and a yes/no confirmation.

Settings go to the same file as the CLI's (``ptt login`` writes it): the file alone is read with
``load_client_config(path, overrides=False)`` so values from ``PTT_*`` variables are never
written to disk, the edited fields are replaced and validated by :class:`ClientConfig` itself,
and :func:`save_client_config` writes it atomically with mode 0600 (it holds a token).
"""

from __future__ import annotations

import dataclasses
import tkinter as tk
from collections.abc import Callable
from pathlib import Path
from tkinter import ttk

from ptt.config import ClientConfig, client_config_keys, load_client_config, save_client_config
from ptt.errors import PttError

__all__ = ["ConfirmDialog", "SettingsDialog", "device_choices"]

DEFAULT_DEVICE = "(system default)"


def device_choices(direction: str) -> list[str]:
    """Names for a device combobox: the default first, then what PortAudio sees (if anything)."""
    names = [DEFAULT_DEVICE]
    try:
        from ptt.audio.devices import list_devices

        for d in list_devices():
            if d.is_input if direction == "input" else d.is_output:
                names.append(d.name)
    except (PttError, OSError):
        pass  # no sound system: the person can still type a name or an index
    return names


class ConfirmDialog:
    """A small modal-looking question; ``on_answer(True/False)`` is called once."""

    def __init__(self, parent: tk.Misc, title: str, text: str, *, yes: str = "OK",
                 no: str = "Cancel", on_answer: Callable[[bool], None]) -> None:
        self._on_answer = on_answer
        self.top = tk.Toplevel(parent)
        self.top.title(title)
        self.top.transient(parent)  # type: ignore[call-overload]
        tk.Label(self.top, text=text, justify="left", padx=14, pady=12).pack()
        row = tk.Frame(self.top, pady=8)
        row.pack()
        self.yes_button = tk.Button(row, text=yes, fg="white", bg="#c0392b",
                                    command=lambda: self.answer(True))
        self.yes_button.pack(side="left", padx=6)
        self.no_button = tk.Button(row, text=no, command=lambda: self.answer(False))
        self.no_button.pack(side="left", padx=6)
        self.top.protocol("WM_DELETE_WINDOW", lambda: self.answer(False))
        self.top.bind("<Escape>", lambda e: self.answer(False))
        self.no_button.focus_set()  # a stray Return must not start an emergency

    def answer(self, ok: bool) -> None:
        if self.top.winfo_exists():
            self.top.destroy()
        self._on_answer(ok)


class SettingsDialog:
    """Edit and save the client config; ``on_saved(config)`` gets the config as saved."""

    def __init__(self, parent: tk.Misc, path: Path | None,
                 on_saved: Callable[[ClientConfig], None]) -> None:
        self.path = path
        self.on_saved = on_saved
        self.top = tk.Toplevel(parent)
        self.top.title("ptt settings")
        self.top.transient(parent)  # type: ignore[call-overload]
        try:
            self.base = load_client_config(path, overrides=False, missing_ok=True)
        except PttError as exc:
            self.base = ClientConfig()
            self._initial_error = f"the config file was not readable ({exc}); saving replaces it"
        else:
            self._initial_error = ""
        frame = tk.Frame(self.top, padx=12, pady=10)
        frame.pack(fill="both")
        self.vars: dict[str, tk.StringVar] = {}
        fields = [("server", "Server (host:port)", self.base.server, None),
                  ("user", "User", self.base.user or "", None),
                  ("token", "Token", self.base.token or "", None),
                  ("input_device", "Microphone", _device_text(self.base.input_device), "input"),
                  ("output_device", "Speaker", _device_text(self.base.output_device), "output")]
        self.entries: dict[str, tk.Widget] = {}
        for i, (key, label, value, direction) in enumerate(fields):
            tk.Label(frame, text=label, anchor="w").grid(row=i, column=0, sticky="w", pady=2)
            var = tk.StringVar(frame, value=value)
            self.vars[key] = var
            w: tk.Widget
            if direction is None:
                w = tk.Entry(frame, textvariable=var, width=36,
                             show="•" if key == "token" else "")
            else:
                w = ttk.Combobox(frame, textvariable=var, width=34,
                                 values=device_choices(direction))
            w.grid(row=i, column=1, sticky="we", pady=2)
            self.entries[key] = w
        self.error = tk.Label(frame, text=self._initial_error, fg="#c0392b", anchor="w",
                              justify="left", wraplength=360)
        self.error.grid(row=len(fields), column=0, columnspan=2, sticky="we", pady=(6, 0))
        buttons = tk.Frame(frame, pady=6)
        buttons.grid(row=len(fields) + 1, column=0, columnspan=2, sticky="e")
        self.save_button = tk.Button(buttons, text="Save", command=self.save)
        self.save_button.pack(side="right", padx=4)
        tk.Button(buttons, text="Cancel", command=self.top.destroy).pack(side="right")

    def save(self) -> ClientConfig | None:
        """Validate, write the file, close; on a bad value show it and keep the dialog open."""
        v = {k: var.get().strip() for k, var in self.vars.items()}
        try:
            config = dataclasses.replace(
                self.base, server=v["server"], user=v["user"] or None,
                token=v["token"] or None, input_device=_device_value(v["input_device"]),
                output_device=_device_value(v["output_device"]))
            save_client_config(config, self.path, keep=client_config_keys(self.path))
        except PttError as exc:
            self.error.configure(text=str(exc))
            return None
        self.top.destroy()
        self.on_saved(config)
        return config


def _device_text(value: str | int | None) -> str:
    return DEFAULT_DEVICE if value is None else str(value)


def _device_value(text: str) -> str | None:
    return None if text in ("", DEFAULT_DEVICE) else text
