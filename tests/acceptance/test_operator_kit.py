"""The operator's kit, run as an operator runs it: ``python -m ptt``, the sample server.toml, the
systemd unit's command line, ``ptt server --check-config``, shell completion."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

from tests.acceptance.harness import COORDINATOR, Site, clean_env

ROOT = Path(__file__).resolve().parents[2]


def python_m_ptt(*args: str, home: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ptt", *args], capture_output=True, text=True,
                          timeout=30, env=clean_env(home, **env), stdin=subprocess.DEVNULL,
                          cwd=home)


def test_python_m_ptt_is_the_ptt_command(site: Site, tmp_path: Path) -> None:
    version = python_m_ptt("--version", home=tmp_path)
    assert version.returncode == 0 and version.stdout.startswith("ptt "), version
    usage = python_m_ptt("user", "add", home=tmp_path)
    assert usage.returncode == 2 and "Usage: ptt user add" in usage.stderr, usage.stderr
    bad = python_m_ptt("group", "create", "a/b", home=tmp_path)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1, bad.stderr
    # a real command against the server, as the coordinator
    listed = python_m_ptt("user", "list", home=tmp_path,
                          PTT_CONFIG=str(site.config(COORDINATOR)))
    assert listed.returncode == 0, listed.stderr
    assert COORDINATOR in listed.stdout


def test_pyproject_license_is_an_spdx_string() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert project["project"]["license"] == "MIT"
    # setuptools reads the SPDX string from 77 on; older ones took only the deprecated table
    assert "setuptools>=77" in project["build-system"]["requires"]
