"""One default bitrate, defined once (ptt.audio.codec.DEFAULT_BITRATE) and the same in the
config, the codec, the talker, what `ptt login` writes, the desktop and the README."""

from __future__ import annotations

import inspect
import re
import subprocess
import tomllib
from pathlib import Path

import ptt.config
from ptt.audio.codec import DEFAULT_BITRATE, OpusEncoder
from ptt.client.voice import Talker
from ptt.config import ClientConfig, load_client_config
from ptt.desktop.engine import Engine
from tests.acceptance.harness import PTT, clean_env

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "x" * 43


def test_the_one_constant_is_the_default_everywhere_in_code() -> None:
    assert ptt.config.DEFAULT_BITRATE is DEFAULT_BITRATE  # imported, not a second definition
    assert ClientConfig().bitrate == DEFAULT_BITRATE
    assert OpusEncoder().bitrate == DEFAULT_BITRATE
    assert inspect.signature(Talker).parameters["bitrate"].default == DEFAULT_BITRATE
    # the desktop talks at its config's bitrate, and with no config file that is the default
    assert "bitrate=self.config.bitrate" in inspect.getsource(Engine)
    assert Engine(ClientConfig()).config.bitrate == DEFAULT_BITRATE


def test_no_module_defines_a_bitrate_default_of_its_own() -> None:
    own = [str(p.relative_to(ROOT)) for p in (ROOT / "ptt").rglob("*.py")
           if re.search(r"^\s*DEFAULT_BITRATE\s*=", p.read_text(), re.M)]
    assert own == ["ptt/audio/codec.py"]


def _login(tmp_path: Path, config: Path) -> dict[str, object]:
    env = clean_env(tmp_path / "home", PTT_CONFIG=str(config))
    done = subprocess.run([PTT, "login", "--no-check", "--server", "127.0.0.1:7799",
                           "--user", "ann", "--token-stdin"], capture_output=True, text=True,
                          env=env, timeout=60, input=TOKEN + "\n")
    assert done.returncode == 0, done.stderr
    return tomllib.loads(config.read_text())


def test_ptt_login_writes_no_bitrate_unless_the_file_had_one(tmp_path: Path) -> None:
    fresh = tmp_path / "fresh.toml"
    saved = _login(tmp_path, fresh)
    assert "bitrate" not in saved and saved["user"] == "ann"
    assert load_client_config(fresh, env={}).bitrate == DEFAULT_BITRATE
    chosen = tmp_path / "chosen.toml"
    chosen.write_text("bitrate = 24000\n")  # the person chose one: it stays
    assert _login(tmp_path, chosen)["bitrate"] == 24000
    same = tmp_path / "same.toml"
    same.write_text(f"bitrate = {DEFAULT_BITRATE}\n")  # chosen, even if equal to the default
    assert _login(tmp_path, same)["bitrate"] == DEFAULT_BITRATE


def test_the_readme_states_the_default() -> None:
    readme = (ROOT / "README.md").read_text()
    stated = re.findall(r"default bitrate[^.]*?(\d+) kbit/s", readme, re.I)
    assert stated, "the README names the default bitrate"
    assert {int(s) * 1000 for s in stated} == {DEFAULT_BITRATE}
