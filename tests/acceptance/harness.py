"""The product as a user runs it: a real ``ptt server`` process and the real ``ptt`` console
script, one process per command, each user with their own config file.

A :class:`Site` is one server with its database and a home directory per user::

    site.add_user("ann")                       # `ptt user add ann --json` as the coordinator,
                                               # then `ptt login` into ann's own config
    site.ptt("ann", "group", "list")           # CompletedProcess (exit code, stdout, stderr)
    p = site.spawn("bob", "listen", "g", "--out", str(out))   # a live Popen
    read_until(p, "joined g")                  # its lines up to the first with this text
    signal_and_time(p)                         # SIGINT: exit code and how long it took

Tests here assert what a person sees: exit codes, the lines printed, the files written, the
audio heard. Nothing here reaches into ptt's modules except to make speech samples.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.e2e.serverproc import ServerProcess, free_udp_port

PTT = str(Path(sys.executable).with_name("ptt"))
COORDINATOR = "coordinator"


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """os.environ without PTT_* settings from outside, HOME and XDG dirs under ``home``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PTT_")}
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"),
               XDG_DATA_HOME=str(home / ".local/share"), PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


@dataclass
class Site:
    """One ``ptt server`` and the users made on it, each with a home of their own."""

    root: Path
    server_args: list[str] = field(default_factory=list)
    server: ServerProcess = field(init=False)
    tokens: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        (self.root / "db").mkdir(parents=True, exist_ok=True)
        self.server = ServerProcess(self.root / "db" / "ptt.db", extra_args=list(self.server_args))

    # --- the server ---------------------------------------------------------------------------

    def start(self) -> Site:
        self.server.start()
        return self

    def stop(self) -> int:
        return self.server.stop()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.port}"

    # --- users ----------------------------------------------------------------------------------

    def home(self, user: str) -> Path:
        h = self.root / "homes" / user
        h.mkdir(parents=True, exist_ok=True)
        return h

    def config(self, user: str) -> Path:
        """The user's client config (for the coordinator: the server's first-start file)."""
        if user == COORDINATOR:
            return self.server.db.parent / "coordinator.toml"
        return self.home(user) / ".config" / "ptt" / "client.toml"

    def env(self, user: str, **extra: str) -> dict[str, str]:
        return clean_env(self.home(user), PTT_CONFIG=str(self.config(user)), **extra)

    def add_users(self, *names: str, role: str = "volunteer") -> None:
        """Create ``names`` as the coordinator in one ``ptt user import`` (a volunteer's way of
        setting up an event), each logged in from its own home with the credentials file the
        import wrote for it (what ``ptt login --credentials FILE`` saves). One process for all
        of them instead of two per user: the suite makes hundreds of users."""
        import csv
        import io
        import shutil
        import tomllib

        out = self.root / "imported" / str(len(self.tokens))
        rows = io.StringIO()
        writer = csv.writer(rows, lineterminator="\n")
        writer.writerow(["name", "role", "groups"])
        writer.writerows([n, role, ""] for n in names)
        sheet = out.with_suffix(".csv")
        sheet.parent.mkdir(parents=True, exist_ok=True)
        sheet.write_text(rows.getvalue(), encoding="utf-8")
        self.ptt(COORDINATOR, "user", "import", str(sheet), "--out", str(out), check=True)
        for name in names:
            creds = out / f"{_mapped(name)}.toml"
            self.tokens[name] = tomllib.loads(creds.read_text(encoding="utf-8"))["token"]
            target = self.config(name)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(creds, target)
            target.chmod(0o600)

    def add_user(self, name: str, role: str = "volunteer") -> dict[str, object]:
        """Create ``name`` as the coordinator and log it in from its own home."""
        made = self.ptt(COORDINATOR, "user", "add", name, "--role", role, "--json", check=True)
        info = json.loads(made.stdout)
        token = str(info["token"])
        self.tokens[name] = token
        self.ptt(name, "login", "--server", self.address, "--user", name, "--token-stdin",
                 input=token + "\n",
                 check=True)
        return info

    def group(self, name: str, *members: str, plain: bool = False, mode: str | None = None,
              extra: tuple[str, ...] = ()) -> None:
        """Create ``name`` (encrypted unless ``plain``) and add ``members``."""
        args = ["group", "create", name, *(["--plain"] if plain else []),
                *(["--mode", mode] if mode else []), *extra]
        self.ptt(COORDINATOR, *args, check=True)
        if members:
            self.ptt(COORDINATOR, "group", "add", name, *members, check=True)

    # --- commands ---------------------------------------------------------------------------------

    def ptt(self, user: str, *args: str, timeout: float = 30.0, check: bool = False,
            input: str | None = None, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess[str]:
        """``ptt ARGS`` as ``user``, to the end; ``check`` fails the test on a non-zero exit."""
        proc = subprocess.run([PTT, *args], capture_output=True, text=True, timeout=timeout,
                              input=input, env=env or self.env(user),
                              stdin=None if input is not None else subprocess.DEVNULL)
        if check and proc.returncode != 0:
            raise AssertionError(f"ptt {' '.join(args)} as {user} exited {proc.returncode}:\n"
                                 f"{proc.stdout}\n{proc.stderr}")
        return proc

    def spawn(self, user: str, *args: str, env: dict[str, str] | None = None
              ) -> subprocess.Popen[str]:
        """``ptt ARGS`` as ``user`` in the background (stdout and stderr piped, text)."""
        return subprocess.Popen([PTT, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL, text=True, env=env or self.env(user))


def finish(proc: subprocess.Popen[str], timeout: float = 30.0) -> tuple[int, str, str]:
    """Wait for ``proc`` to end by itself: (exit code, rest of stdout, stderr)."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"still running after {timeout} s:\n{out}\n{err}") from None
    return proc.returncode, out, err


def interrupt(*procs: subprocess.Popen[str] | None) -> None:
    """Ctrl-C to each of ``procs`` still running, and its end waited for."""
    for p in procs:
        if p is not None and p.poll() is None:
            p.send_signal(signal.SIGINT)
            finish(p, timeout=10)


def signal_and_time(proc: subprocess.Popen[str], sig: int = signal.SIGINT,
                    bound: float = 5.0) -> tuple[int, float, str, str]:
    """Send ``sig``; (exit code, seconds until it exited, stdout, stderr). Kills past ``bound``."""
    t0 = time.monotonic()
    proc.send_signal(sig)
    try:
        out, err = proc.communicate(timeout=bound)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        return -9, time.monotonic() - t0, out, err
    return proc.returncode, time.monotonic() - t0, out, err


def no_traceback(stderr: str) -> None:
    assert "Traceback" not in stderr, stderr


def read_until(proc: subprocess.Popen[str], needle: str, timeout: float = 15.0,
               stream: str = "stdout") -> list[str]:
    """Lines of ``proc``'s stdout (or stderr) up to the first one containing ``needle``.

    Reads the pipe's descriptor a byte at a time, so nothing after that line is taken from the
    pipe: a later ``communicate()`` or ``finish()`` still gets the rest."""
    import select

    pipe = getattr(proc, stream)
    assert pipe is not None
    fd = pipe.fileno()
    seen: list[str] = []
    line = b""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([fd], [], [], min(left, 0.2))
        if not ready:
            if proc.poll() is not None:
                break
            continue
        byte = os.read(fd, 1)
        if not byte:
            break
        if byte != b"\n":
            line += byte
            continue
        text = line.decode(errors="replace")
        seen.append(text)
        line = b""
        if needle in text:
            return seen
    raise AssertionError(f"no line with {needle!r} within {timeout} s; saw "
                         f"{seen + [line.decode(errors='replace')]}")


def tone_wav(path: Path, seconds: float, hz: float = 440.0) -> Path:
    """A 16 kHz mono WAV of a sine at ``hz`` (a page to send with ``ptt talk --wav``)."""
    import numpy as np

    from ptt.audio.wav import write_wav

    t = np.arange(int(16000 * seconds)) / 16000
    write_wav(path, (0.3 * 32767 * np.sin(2 * np.pi * hz * t)).astype("<i2").tobytes(), 16000)
    return path


def start_proxy(server: str, *args: str, trace: Path | None = None,
                timeout: float = 10.0) -> tuple[subprocess.Popen[bytes], str]:
    """``python -m ptt.faults.proxy`` in front of ``server`` (HOST:PORT) on a free loopback port,
    with impairment ``args`` (e.g. ``--loss down.voice=0.1``) and an optional voice ``trace``
    file; (the process, the HOST:PORT clients should use). Stop it with ``stop_proxy``."""
    for _ in range(3):  # another process may take the free port before the proxy binds it
        try:
            return _start_proxy(server, args, trace, timeout)
        except PortTaken:
            continue
    return _start_proxy(server, args, trace, timeout)


class PortTaken(AssertionError):
    pass


def _start_proxy(server: str, args: tuple[str, ...], trace: Path | None,
                 timeout: float) -> tuple[subprocess.Popen[bytes], str]:
    port = free_udp_port()
    cmd = [sys.executable, "-m", "ptt.faults.proxy", "--listen", f"127.0.0.1:{port}",
           "--server", server, *args, *(["--trace", str(trace)] if trace is not None else [])]
    log = Path(tempfile.mkstemp(prefix="ptt-proxy-", suffix=".log")[1])
    with open(log, "wb") as err:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err,
                                stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if b"proxy listening" in log.read_bytes():
                return proc, f"127.0.0.1:{port}"
            if proc.poll() is not None:
                text = log.read_text()
                raise (PortTaken if "already in use" in text else AssertionError)(
                    f"proxy exited {proc.returncode}: {text}")
            time.sleep(0.02)
        proc.kill()
        raise AssertionError(f"proxy did not start within {timeout} s: {log.read_text()}")
    finally:
        log.unlink()


def stop_proxy(proc: subprocess.Popen[bytes], bound: float = 5.0) -> int:
    """SIGTERM the proxy; its exit code (killed past ``bound``)."""
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(bound)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait(bound)


def voiced_frames(pcm: bytes, threshold: int = 100) -> tuple[int, int]:
    """(first, last + 1): the 20 ms frames (16 kHz mono 16-bit) of ``pcm`` from the first to the
    last one whose peak exceeds ``threshold``; (0, 0) when none does. A listener's WAV holds
    exact silence where nothing plays, so this is the span of the burst it played."""
    import numpy as np

    frame = 320
    n = len(pcm) // (2 * frame)
    samples = np.frombuffer(pcm[: n * frame * 2], dtype="<i2").reshape(n, frame)
    loud = np.flatnonzero(np.abs(samples.astype(np.int32)).max(axis=1) > threshold)
    if len(loud) == 0:
        return 0, 0
    return int(loud[0]), int(loud[-1]) + 1


def spawn_logged(site: Site, user: str, log: Path, *args: str,
                 env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """``ptt ARGS`` as ``user`` in the background, stdout and stderr into ``log`` (a file, so
    a long run never blocks on a full pipe); read it with ``wait_in_file``."""
    with open(log, "wb") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen([PTT, *args], stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env or site.env(user))


def wait_in_file(proc: subprocess.Popen[bytes], log: Path, needle: str,
                 timeout: float = 15.0) -> str:
    """The text of ``log`` once it holds ``needle`` (AssertionError if not within ``timeout``
    or if ``proc`` exits first)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        if needle in text:
            return text
        if proc.poll() is not None:
            break
        time.sleep(0.02)
    raise AssertionError(f"no {needle!r} within {timeout} s; saw {log.read_text()!r}")


def stop_logged(proc: subprocess.Popen[bytes], sig: int | None = None,
                bound: float = 10.0) -> int:
    """Wait up to ``bound`` for the exit code, after sending ``sig`` if given; killed past
    ``bound`` (-9)."""
    if sig is not None:
        proc.send_signal(sig)
    try:
        return proc.wait(bound)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(bound)
        return -9

class Tmux:
    """A real terminal (tmux, own server socket) running ``ptt ARGS`` as a user: keys in,
    the screen out, the exit code from a file written when the command ends."""

    def __init__(self, site: Site, user: str, *args: str, env: dict[str, str] | None = None,
                 width: int = 160, height: int = 20) -> None:
        import shlex
        import uuid

        self.root = site.home(user)
        self.rc_file = self.root / f"rc-{uuid.uuid4().hex[:8]}"
        env = env or site.env(user)
        script = self.root / f"run-{uuid.uuid4().hex[:8]}.sh"
        script.write_text("#!/bin/sh\n" + "".join(f"export {k}={shlex.quote(v)}\n"
                                                  for k, v in env.items() if k.isidentifier())
                          + f"{shlex.quote(PTT)} {' '.join(map(shlex.quote, args))}\n"
                          + f"echo $? > {shlex.quote(str(self.rc_file))}\nsleep 30\n")
        script.chmod(0o755)
        self.tmux = ["tmux", "-L", f"ptt-{uuid.uuid4().hex[:8]}"]
        subprocess.run([*self.tmux, "new-session", "-d", "-s", "t", "-x", str(width), "-y",
                        str(height), str(script)], check=True)

    def screen(self) -> str:
        return subprocess.run([*self.tmux, "capture-pane", "-p", "-S", "-200", "-t", "t"],
                              capture_output=True, text=True).stdout

    def keys(self, *keys: str) -> None:
        subprocess.run([*self.tmux, "send-keys", "-t", "t", *keys], check=True)

    def wait_for(self, text: str, timeout: float = 15.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            screen = self.screen()
            if text in screen:
                return screen
            time.sleep(0.1)
        raise AssertionError(f"no {text!r} on the screen within {timeout} s:\n{self.screen()}")

    def pid(self) -> int:
        """The pid of the ptt process in the terminal (the shell script's child)."""
        shell = subprocess.run([*self.tmux, "list-panes", "-t", "t", "-F", "#{pane_pid}"],
                               capture_output=True, text=True).stdout.strip()
        kids = subprocess.run(["pgrep", "-P", shell], capture_output=True, text=True).stdout
        return int(kids.split()[0])

    def exit_code(self, timeout: float = 10.0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.rc_file.exists() and self.rc_file.read_text().strip():
                return int(self.rc_file.read_text())
            time.sleep(0.02)
        raise AssertionError(f"still running after {timeout} s:\n{self.screen()}")

    def close(self) -> None:
        subprocess.run([*self.tmux, "kill-server"], capture_output=True)


def voiced_seconds(path: Path, threshold: float = 1000.0) -> float:
    """Seconds of 20 ms frames in a mono 16-bit WAV whose RMS exceeds ``threshold``."""
    import array
    import math
    import wave

    with wave.open(str(path), "rb") as w:
        rate = w.getframerate()
        data = array.array("h", w.readframes(w.getnframes()))
    step = rate // 50
    voiced = 0
    for i in range(0, len(data) - step + 1, step):
        chunk = data[i:i + step]
        if math.sqrt(sum(x * x for x in chunk) / step) > threshold:
            voiced += 1
    return voiced * 0.02



def x_window(title: str, timeout: float = 20.0) -> str:
    """The X window id of the window titled exactly ``title`` (xdotool), once it is mapped."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = subprocess.run(["xdotool", "search", "--name", f"^{title}$"],
                               capture_output=True, text=True)
        if found.stdout.strip():
            return found.stdout.split()[0]
        time.sleep(0.2)
    raise AssertionError(f"no window titled {title!r}")


def x_geometry(wid: str) -> tuple[int, int, int, int]:
    """(x, y, width, height) of an X window on the screen."""
    shell = subprocess.run(["xdotool", "getwindowgeometry", "--shell", wid],
                           capture_output=True, text=True, check=True).stdout
    g = dict(line.split("=") for line in shell.split())
    return int(g["X"]), int(g["Y"]), int(g["WIDTH"]), int(g["HEIGHT"])


def _mapped(name: str) -> str:
    """``name`` as the server stores it (PRECIS-mapped, as ``ptt user add`` reports it)."""
    from ptt.names import user_name

    return user_name(name)


def page_heard(site: Site, talker: str, listener: str, group: str, wav: Path, log: Path,
               listen_args: tuple[str, ...] = (), talk_args: tuple[str, ...] = (),
               listener_env: dict[str, str] | None = None,
               talker_env: dict[str, str] | None = None,
               tail: float = 1.0) -> subprocess.CompletedProcess[str]:
    """``ptt listen GROUP LISTEN_ARGS`` as ``listener`` (output into ``log``), then ``ptt talk
    GROUP --wav WAV TALK_ARGS`` as ``talker``; the listener is stopped with SIGINT ``tail``
    seconds after the talk ends (its buffered tail). The talk's result; RuntimeError when
    either command fails."""
    proc = spawn_logged(site, listener, log, "listen", group, *listen_args,
                        env=listener_env or site.env(listener))
    try:
        wait_in_file(proc, log, f"joined {group}", timeout=30)
        talked = site.ptt(talker, "talk", group, "--wav", str(wav), *talk_args, timeout=120,
                          env=talker_env or site.env(talker))
        if talked.returncode != 0:
            raise RuntimeError(f"ptt talk exited {talked.returncode}: {talked.stderr}")
        time.sleep(tail)
    finally:
        code = stop_logged(proc, signal.SIGINT) if proc.poll() is None else proc.returncode
    if code not in (0, 130):
        raise RuntimeError(f"ptt listen exited {code}: {log.read_text()}")
    return talked
