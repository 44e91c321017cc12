"""examples/server.toml is generated from the ServerConfig definitions and must not drift."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from ptt.config import ServerConfig, load_server_config, server_config_sample

SAMPLE = Path(__file__).resolve().parents[1] / "examples" / "server.toml"


def test_the_sample_is_what_the_definitions_generate() -> None:
    assert SAMPLE.read_text(encoding="utf-8") == server_config_sample(), (
        "examples/server.toml is out of date: run "
        "'ptt server --sample-config > examples/server.toml'")


def test_every_setting_is_in_the_sample_with_its_meaning_and_variable() -> None:
    text = server_config_sample()
    for f in dataclasses.fields(ServerConfig):
        assert f.metadata["meaning"], f"{f.name} has no meaning text"
        assert re.search(rf"^#{f.name} = ", text, re.MULTILINE), f"{f.name} missing from the sample"
        assert f"# env: {f.metadata['env']};" in text


def test_the_sample_uncommented_loads_and_shows_the_defaults(tmp_path: Path) -> None:
    lines = [line[1:] for line in server_config_sample().splitlines()
             if re.match(r"^#[a-z_]+ = ", line)]
    path = tmp_path / "server.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    loaded = load_server_config(path, env={})
    defaults = ServerConfig()
    for f in dataclasses.fields(ServerConfig):
        if f.metadata["shown_default"] is None:  # written at its default
            assert getattr(loaded, f.name) == getattr(defaults, f.name), f.name
    assert str(loaded.db) == "/var/lib/ptt/ptt.db" and loaded.metrics == "127.0.0.1:9464"
