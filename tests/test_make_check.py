"""CI runs `make test` (.ci/run), and `make test` runs the checks before the suite: ruff, mypy and
the import contracts of pyproject.toml."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHECKS = ("ruff check ptt tests bench examples", "mypy", "lint-imports")


def test_ci_runs_make_test() -> None:
    lines = [ln.strip() for ln in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert "make test" in lines


def test_make_test_runs_every_check_before_the_suite() -> None:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    # -n: print the commands without running them; -W: as if the venv's stamp were up to date
    plan = subprocess.run(["make", "-n", "-W", ".venv/.installed", "test"], cwd=ROOT,
                          capture_output=True, text=True, timeout=30, check=True).stdout
    commands = [ln for ln in plan.splitlines() if ln.startswith(".venv/bin/")]
    ran = [next((i for i, c in enumerate(commands) if c.endswith(check) or f"/{check} " in c),
                None) for check in CHECKS]
    suite = next(i for i, c in enumerate(commands) if "-m pytest" in c)
    assert all(i is not None and i < suite for i in ran), commands


def test_the_check_tools_install_with_the_test_extras() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]["test"]
    names = {e.split("~")[0].split(">")[0].split("=")[0].strip() for e in extras}
    assert {"ruff", "mypy", "import-linter"} <= names


@pytest.mark.parametrize("tool", [["ruff", "check", "ptt", "tests", "bench", "examples"],
                                  ["lint-imports"]], ids=["ruff", "lint-imports"])
def test_the_quick_checks_pass(tool: list[str]) -> None:
    """The two checks of `make check` that take a second, also here, so that the quick tests
    run before an integration (tests/test_*.py) catch an unused import or a broken layer."""
    exe = Path(sys.executable).with_name(tool[0])
    if not exe.exists():
        pytest.skip(f"{tool[0]} is not installed (pip install -e '.[test]')")
    done = subprocess.run([str(exe), *tool[1:]], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
