"""The desktop's settings dialog pins no bitrate: it keeps the one the file had, else none."""

from __future__ import annotations

import tkinter as tk
import tomllib
from pathlib import Path

from ptt.audio.codec import DEFAULT_BITRATE
from ptt.config import ClientConfig, load_client_config
from ptt.desktop.window import DesktopWindow
from tests.desktop.conftest import pump
from tests.desktop.test_window import TONE_AUDIO


def _save(path: Path) -> dict[str, object]:
    root = tk.Tk()
    try:
        win = DesktopWindow(root, load_client_config(path, env={}, missing_ok=True),
                            config_path=path, audio=TONE_AUDIO)
        pump(root, 0.2)
        assert win.engine.config.bitrate == (
            tomllib.loads(path.read_text()).get("bitrate", DEFAULT_BITRATE)
            if path.exists() else DEFAULT_BITRATE)
        win.open_settings()
        dlg = win.settings
        assert dlg is not None
        dlg.vars["server"].set("127.0.0.1:7799")
        dlg.vars["user"].set("ann")
        dlg.vars["token"].set("x" * 43)
        assert dlg.save() is not None
        return tomllib.loads(path.read_text())
    finally:
        if root.winfo_exists():
            win.close()


def test_settings_save_no_bitrate_unless_the_file_had_one(display: str, tmp_path: Path) -> None:
    fresh = tmp_path / "fresh.toml"
    assert "bitrate" not in _save(fresh)
    assert ClientConfig().bitrate == load_client_config(fresh, env={}).bitrate == DEFAULT_BITRATE
    chosen = tmp_path / "chosen.toml"
    chosen.write_text("bitrate = 24000\n")
    assert _save(chosen)["bitrate"] == 24000
