"""The interactive `ptt talk GROUP`, driven as a person would: in tmux, with keys.

A real `ptt server` process, a real terminal (tmux), the real microphone and speaker path (a private
headless PulseAudio). Space keys the floor, Space unkeys it, q quits; the coordinator checks on the
server that the floor followed the keys.
"""

from __future__ import annotations

import asyncio
import shlex
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from ptt.audio.pulse import PulseServer
from ptt.client.connection import Connection
from ptt.config import write_credentials
from tests.conftest import server  # noqa: F401
from tests.e2e.serverproc import PTT, ServerProcess
from tests.e2e.test_floor_over_udp import setup_group


def talker_of(srv: ServerProcess) -> str | None:
    async def show() -> str | None:
        cred = srv.credentials
        async with Connection(srv.address, cred["user"], cred["token"]) as coord:
            return (await coord.admin("group.show", {"name": "volunteers"}))["talker"]

    return asyncio.run(show())


def wait_for(what: str, pred: Callable[[], bool], timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_space_keys_and_unkeys_the_floor_and_q_quits(
        server: ServerProcess, pulse_server: PulseServer, tmp_path: Path) -> None:  # noqa: F811
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed, so no terminal can be driven")
    tokens = asyncio.run(setup_group(server, ["ann", "bob"]))
    cfg = write_credentials(tmp_path / "ann.toml", f"127.0.0.1:{server.port}", "ann",
                            tokens["ann"])
    rc_file = tmp_path / "rc"
    env = {**pulse_server.child_env(), "HOME": str(tmp_path), "PTT_CONFIG": str(cfg)}
    script = tmp_path / "run.sh"
    script.write_text("#!/bin/sh\n" + "".join(f"export {k}={shlex.quote(v)}\n"
                                              for k, v in env.items() if k.isidentifier())
                      + f"{shlex.quote(PTT)} talk volunteers\necho $? > {rc_file}\n")
    script.chmod(0o755)
    sock = f"ptt-{uuid.uuid4().hex[:8]}"
    tmux = ["tmux", "-L", sock]
    subprocess.run([*tmux, "new-session", "-d", "-s", "t", "-x", "160", "-y", "12",
                    str(script)], check=True)

    def screen() -> str:
        return subprocess.run([*tmux, "capture-pane", "-p", "-t", "t"], capture_output=True,
                              text=True).stdout

    try:
        wait_for("the idle status line", lambda: "you: idle" in screen(), 20)
        assert "online ann" in screen()
        subprocess.run([*tmux, "send-keys", "-t", "t", "Space"], check=True)
        wait_for("TALKING on the screen", lambda: "TALKING" in screen())
        assert talker_of(server) == "ann"  # the microphone keeps the floor alive past T1
        time.sleep(2.0)
        assert talker_of(server) == "ann"
        subprocess.run([*tmux, "send-keys", "-t", "t", "Space"], check=True)
        wait_for("idle again", lambda: "you: idle" in screen())
        wait_for("the floor released on the server", lambda: talker_of(server) is None)
        assert "Traceback" not in screen() and "error" not in screen()
        subprocess.run([*tmux, "send-keys", "-t", "t", "q"], check=True)
        wait_for("a clean exit", rc_file.exists)
        assert rc_file.read_text().strip() == "0"
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True)
