"""A private, headless PulseAudio server with a null sink: real, real-time paced audio streams on
machines without a sound card (tests, benchmarks, the demo).

Everything lives under one directory (``HOME``, ``XDG_RUNTIME_DIR``, the socket, the pid files),
so it never touches a user's own sound server. What is played to the null sink can be recorded
from its monitor source, which is made the default source::

    server = start_pulse(tmp_dir)            # AudioError with the reason if it cannot start
    with server.activated():                 # PULSE_SERVER for this process (PortAudio, pactl)
        ...                                  # PortAudio's "pulse"/"default" devices now work
    stop_pulse(server)                       # or stop_pulse(tmp_dir) from anywhere

A silent ``pacat`` keeps the sink busy: without it every new stream stalls about 1.9 s while the
idle sink wakes up. PortAudio enumerates devices when it initialises, so activate the server
before opening devices.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ptt.audio.codec import SAMPLE_RATE
from ptt.errors import AudioError

SINK_NAME = "ptt_null"
KEEPER_PID = "keeper.pid"


@dataclass
class PulseServer:
    """A running private PulseAudio; ``env`` is what a client process needs."""

    root: Path
    sink: str
    rate: int
    env: dict[str, str] = field(default_factory=dict)

    @property
    def monitor(self) -> str:
        return f"{self.sink}.monitor"

    @property
    def server_address(self) -> str:
        return self.env["PULSE_SERVER"]

    @property
    def pid_file(self) -> Path:
        return self.root / "run" / "pulse" / "pid"

    @property
    def keeper_pid_file(self) -> Path:
        return self.root / KEEPER_PID

    def child_env(self) -> dict[str, str]:
        """os.environ plus this server's variables, for subprocesses."""
        return {**os.environ, **self.env}

    @contextlib.contextmanager
    def activated(self) -> Iterator[PulseServer]:
        """Point this process's PulseAudio clients (PortAudio, libpulse) at the server."""
        saved = {k: os.environ.get(k) for k in ("PULSE_SERVER", "PULSE_SINK", "PULSE_SOURCE")}
        os.environ["PULSE_SERVER"] = self.env["PULSE_SERVER"]
        os.environ["PULSE_SINK"] = self.sink
        os.environ["PULSE_SOURCE"] = self.monitor
        try:
            yield self
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    def pactl(self, *args: str, timeout: float = 10.0) -> str:
        return _run(["pactl", *args], self.child_env(), timeout)

    def stop(self) -> None:
        stop_pulse(self)


def _run(cmd: list[str], env: dict[str, str], timeout: float = 10.0) -> str:
    try:
        proc = subprocess.run(
            cmd, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise AudioError(f"{cmd[0]} failed: {exc}") from exc
    if proc.returncode != 0:
        err = (proc.stderr or proc.stdout).strip().splitlines()
        raise AudioError(
            f"{' '.join(cmd[:2])} failed (exit {proc.returncode})" + (f": {err[-1]}" if err else "")
        )
    return proc.stdout


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child of ours still "exists"; reap it if it is ours
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    return True


def _kill(pid: int, timeout: float = 5.0) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def start_pulse(
    root: str | os.PathLike[str] | None = None,
    sink: str = SINK_NAME,
    rate: int = SAMPLE_RATE,
    settle: float = 0.5,
    timeout: float = 15.0,
) -> PulseServer:
    """Start a private PulseAudio under ``root`` (a new temporary directory if None) with a null
    sink at ``rate`` Hz, mono, made the default sink, and its monitor the default source.

    Raises AudioError saying why if it cannot (binaries missing, daemon refuses to start).
    """
    for tool in ("pulseaudio", "pactl", "pacat"):
        if shutil.which(tool) is None:
            raise AudioError(
                f"{tool} is not installed (apt-get install pulseaudio pulseaudio-utils)"
            )
    base = Path(root) if root is not None else Path(tempfile.mkdtemp(prefix="ptt-pulse-"))
    home, run = base / "home", base / "run"
    home.mkdir(parents=True, exist_ok=True)
    run.mkdir(parents=True, exist_ok=True)
    run.chmod(0o700)
    socket = run / "pulse" / "native"
    env = {
        "HOME": str(home),
        "XDG_RUNTIME_DIR": str(run),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "PULSE_SERVER": f"unix:{socket}",
    }
    server = PulseServer(base, sink, rate, env)
    full_env = server.child_env()
    for k in ("PULSE_SINK", "PULSE_SOURCE"):
        full_env.pop(k, None)
    cmd = [
        "pulseaudio",
        "--daemonize=yes",
        "-n",
        "--exit-idle-time=-1",
        "--disallow-exit",
        "--use-pid-file=yes",
        "--log-target=file:" + str(base / "pulse.log"),
        "--load=module-native-protocol-unix auth-anonymous=1",
    ]
    try:
        proc = subprocess.run(
            cmd, env=full_env, capture_output=True, text=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise AudioError(f"PulseAudio did not start: {exc}") from exc
    if proc.returncode != 0:
        log = _tail(base / "pulse.log") or (proc.stderr or "").strip()
        raise AudioError(f"PulseAudio did not start (exit {proc.returncode}): {log}")
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                server.pactl("info", timeout=5)
                break
            except AudioError:
                if time.monotonic() > deadline:
                    raise AudioError(f"PulseAudio did not answer: {_tail(base / 'pulse.log')}")
                time.sleep(0.1)
        server.pactl(
            "load-module",
            "module-null-sink",
            f"sink_name={sink}",
            f"rate={rate}",
            "channels=1",
            "format=s16le",
        )
        server.pactl("set-default-sink", sink)
        server.pactl("set-default-source", server.monitor)
        keeper = subprocess.Popen(
            [
                "pacat",
                "--playback",
                "--raw",
                "--format=s16le",
                f"--rate={rate}",
                "--channels=1",
                "--latency-msec=20",
                "-d",
                sink,
                "/dev/zero",
            ],
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        server.keeper_pid_file.write_text(f"{keeper.pid}\n")
        deadline = time.monotonic() + timeout
        while "pacat" not in server.pactl("list", "sink-inputs"):
            if keeper.poll() is not None:
                raise AudioError(f"the silent pacat keeper exited ({keeper.returncode})")
            if time.monotonic() > deadline:
                raise AudioError("the silent pacat keeper never connected")
            time.sleep(0.05)
        time.sleep(settle)
    except BaseException:
        stop_pulse(server)
        raise
    return server


def stop_pulse(server: PulseServer | str | os.PathLike[str]) -> None:
    """Stop the keeper and the daemon started by :func:`start_pulse`, by their pid files."""
    root = server.root if isinstance(server, PulseServer) else Path(server)
    keeper = _read_pid(root / KEEPER_PID)
    if keeper is not None:
        _kill(keeper)
        with contextlib.suppress(OSError):
            (root / KEEPER_PID).unlink()
    daemon = _read_pid(root / "run" / "pulse" / "pid")
    if daemon is not None:
        _kill(daemon)


def _tail(path: Path, lines: int = 3) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return ""


def pulse_available() -> str | None:
    """None if a private PulseAudio can be tried here, else the reason it cannot."""
    missing = [t for t in ("pulseaudio", "pactl", "pacat") if shutil.which(t) is None]
    if missing:
        return f"{', '.join(missing)} not installed (apt-get install pulseaudio pulseaudio-utils)"
    return None
