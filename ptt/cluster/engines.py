"""Start and stop the cluster's engines (PostgreSQL, NATS, etcd) on loopback ports, by PID.

Used by the tests' fixtures (tests/cluster/fixtures.py), the cluster demo and the benches; a
production node connects to engines run by its operator and never starts one.

Every engine binds 127.0.0.1 only, on ports the caller's ``port_source`` hands out (the OS's
by default; the tests draw from their worker's slice, tests/ports.py). Each member runs in a
process group of its own (``start_new_session``), so a signal to it never reaches the caller;
it goes to every process below the member too, as PostgreSQL's backends each make a group of
their own. The group is killed if the process that started it dies
(``PR_SET_PDEATHSIG``), so an interrupted test run leaves no engine behind. A start waits until
the engine answers (bounded), and a failure raises :class:`~ptt.errors.EngineError` naming the
engine and quoting the end of its log. Logs and data live in a directory the caller owns.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Self

from ptt.children import die_with_parent
from ptt.errors import EngineError

PortSource = Callable[[], int]

HOST = "127.0.0.1"
# How long a start may take before it counts as failed: initdb alone is ~1 s on an idle core,
# several beside a loaded one; etcd's first election takes one election timeout or more.
READY_WITHIN = 30.0
# How long an engine has to exit after its stop signal before it is killed.
STOP_WITHIN = 10.0
# A port can be taken by another process between being chosen and being bound: the start is
# tried again on fresh ports this many times in all.
START_TRIES = 3
LOG_TAIL_LINES = 15

# initdb and postgres refuse to run as root; the tests run as root in CI.
_POSTGRES_USER_CANDIDATES = ("nobody", "ptt-postgres")
# urllib honours *_proxy variables, which must never route a loopback health check elsewhere.
_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def os_port() -> int:
    """A loopback TCP port the OS reports free now (from the ephemeral range)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _distinct_ports(port_source: PortSource, count: int) -> list[int]:
    """``count`` different ports: a source tells which port is free now, not which it already
    handed out for this start, which binds none of them until its processes run."""
    ports: list[int] = []
    for _ in range(count * 20):
        port = port_source()
        if port not in ports:
            ports.append(port)
        if len(ports) == count:
            return ports
    raise EngineError(f"the port source gave fewer than {count} different ports")


def _descendants(pid: int) -> list[int]:
    """The processes below ``pid`` (Linux /proc), children first."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(b")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _signal_group(pid: int, signum: int) -> None:
    """``signum`` to the member's process group and to every process below it: PostgreSQL's
    backends each make a process group of their own (setsid), so a signal to the postmaster's
    group alone leaves them serving the connections they have until they notice it died."""
    below = _descendants(pid)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signum)
    for child in below:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(child, signum)


@dataclass(eq=False)
class Member:
    """One engine process: started, signalled and reaped by its PID."""

    engine: str
    name: str
    argv: list[str]
    log: Path
    # the signal that asks the engine to shut down cleanly
    stop_signal: int = signal.SIGTERM
    user: str | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        if self.process is None:
            raise EngineError(f"{self.label} was never started")
        return self.process.pid

    @property
    def label(self) -> str:
        return f"{self.engine} {self.name}" if self.name else self.engine

    def start(self) -> None:
        """Start the process (again, after a stop or kill: same ports, same data)."""
        if self.running():
            return
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                user=self.user,
                group=_group_of(self.user),
                extra_groups=[] if self.user else None,
                preexec_fn=die_with_parent,
            )

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, within: float = STOP_WITHIN) -> None:
        """Ask the engine to shut down; kill it if it is not gone ``within`` seconds."""
        self.ask_to_stop()
        self.wait_stopped(time.monotonic() + within)

    def ask_to_stop(self) -> None:
        if not self.running():
            return
        # a stopped process would hold the stop signal until continued
        _signal_group(self.pid, signal.SIGCONT)
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, self.stop_signal)

    def wait_stopped(self, deadline: float) -> None:
        """Wait for the exit asked for until ``deadline`` (monotonic), then kill what is left."""
        if self.process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(max(0.0, deadline - time.monotonic()))
        self._sweep()

    def kill(self) -> None:
        """SIGKILL the member's whole process group and reap it."""
        self._sweep()

    def pause(self) -> None:
        """SIGSTOP the member (its process group): it holds its sockets and answers nothing."""
        _signal_group(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        _signal_group(self.pid, signal.SIGCONT)

    def _sweep(self) -> None:
        if self.process is None:
            return
        _signal_group(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


def _group_of(user: str | None) -> int | None:
    return pwd.getpwnam(user).pw_gid if user else None


@dataclass(eq=False)
class Engine:
    """An engine of one or more members; a context manager that stops it on exit."""

    kind: str
    root: Path
    members: list[Member]
    # seconds from the first process start until every member answered
    started_in: float = 0.0

    def stop(self) -> None:
        # all members at once: stopped one by one, an etcd member whose peers were leaving waited
        # up to 10 s each (a leadership hand-over or quorum lost), 6-10 s for a 3-member cluster
        # after one member had been paused
        for member in self.members:
            member.ask_to_stop()
        deadline = time.monotonic() + STOP_WITHIN
        for member in self.members:
            member.wait_stopped(deadline)

    def kill(self) -> None:
        for member in self.members:
            member.kill()

    def running(self) -> bool:
        return any(member.running() for member in self.members)

    @property
    def pids(self) -> list[int]:
        return [member.pid for member in self.members if member.process is not None]

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass(eq=False)
class Postgres(Engine):
    """One PostgreSQL server: ``dsn`` reaches database ``database`` as ``user`` (trust auth)."""

    port: int = 0
    user: str = "ptt"
    database: str = "ptt"
    # the cluster's data and socket directory: outside ``root`` when PostgreSQL runs as another
    # user than the caller, who may own ``root`` privately
    data_root: Path | None = None

    @property
    def dsn(self) -> str:
        return f"postgresql://{self.user}@{HOST}:{self.port}/{self.database}"

    def stop(self) -> None:
        super().stop()
        if self.data_root is not None:
            shutil.rmtree(self.data_root, ignore_errors=True)

    def kill(self) -> None:
        super().kill()
        if self.data_root is not None:
            shutil.rmtree(self.data_root, ignore_errors=True)


@dataclass(eq=False)
class Nats(Engine):
    """A NATS server or a cluster of them joined by routes."""

    client_ports: list[int] = field(default_factory=list)
    monitor_ports: list[int] = field(default_factory=list)

    @property
    def urls(self) -> list[str]:
        return [f"nats://{HOST}:{port}" for port in self.client_ports]

    @property
    def url(self) -> str:
        return self.urls[0]


@dataclass(eq=False)
class Etcd(Engine):
    """An etcd member or a cluster of them."""

    client_ports: list[int] = field(default_factory=list)
    peer_ports: list[int] = field(default_factory=list)

    @property
    def endpoints(self) -> list[str]:
        return [f"http://{HOST}:{port}" for port in self.client_ports]

    @property
    def endpoint(self) -> str:
        return self.endpoints[0]

    def stop(self) -> None:
        # SIGKILL, not a graceful exit: the members' data dies with their directory, and a member
        # that was paused and resumed still takes itself for the leader and, asked to exit, waits
        # 6 s (5 s + 2 election timeouts) to hand over a leadership its leaving peers cannot take
        self.kill()


# --- binaries -----------------------------------------------------------------------------

_DEBIAN_PACKAGE = {"postgres": "postgresql", "nats-server": "nats-server", "etcd": "etcd-server"}


def _postgres_bin_dir() -> Path | None:
    configured = os.environ.get("PTT_POSTGRES_BIN")
    if configured:
        return Path(configured)
    found = shutil.which("pg_config")
    if found:
        out = subprocess.run([found, "--bindir"], capture_output=True, text=True, check=False)
        if out.returncode == 0 and (Path(out.stdout.strip()) / "postgres").exists():
            return Path(out.stdout.strip())
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/postgres"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    return versions[-1].parent if versions else None


def binary(engine: str) -> Path:
    """The engine's executable: ``postgres``, ``nats-server`` or ``etcd``."""
    if engine == "postgres":
        bin_dir = _postgres_bin_dir()
        path = bin_dir / "postgres" if bin_dir else None
    else:
        found = shutil.which(engine)
        path = Path(found) if found else None
    if path is None or not path.exists():
        raise EngineError(
            f"{engine} is not installed (Debian package {_DEBIAN_PACKAGE[engine]}; "
            "`make deps` installs it)"
        )
    return path


def missing(engine: str) -> str | None:
    """Why the engine cannot start here (its binary is absent), or None."""
    try:
        binary(engine)
    except EngineError as exc:
        return str(exc)
    return None


# --- waiting ------------------------------------------------------------------------------


def _http_json(url: str) -> object:
    try:
        with _HTTP.open(url, timeout=1.0) as reply:
            return json.loads(reply.read())
    except (OSError, ValueError, http.client.HTTPException):
        return None


def _failure(engine: Engine, what: str) -> EngineError:
    tails = "\n".join(f"--- {m.label} ({m.log}):\n{m.log_tail()}" for m in engine.members)
    return EngineError(f"{engine.kind} {what}\n{tails}")


def _wait_ready(engine: Engine, ready: Callable[[], bool], within: float) -> None:
    deadline = time.monotonic() + within
    while True:
        for member in engine.members:
            if not member.running():
                raise _failure(engine, f"exited while starting ({member.label})")
        if ready():
            return
        if time.monotonic() > deadline:
            raise _failure(engine, f"did not answer within {within:.0f} s")
        time.sleep(0.02)


def _port_taken(error: EngineError) -> bool:
    return "address already in use" in str(error).lower()


def _start_with_retries(make: Callable[[int], Engine], ready: Callable[[Engine], bool],
                        within: float) -> Engine:
    for attempt in range(START_TRIES):
        engine = make(attempt)
        began = time.monotonic()
        try:
            for member in engine.members:
                member.start()
            _wait_ready(engine, lambda: ready(engine), within)
        except BaseException as exc:
            engine.kill()
            if isinstance(exc, EngineError) and _port_taken(exc) and attempt + 1 < START_TRIES:
                continue
            raise
        engine.started_in = time.monotonic() - began
        return engine
    raise AssertionError("unreachable: the last try raises")


def _fresh_dir(root: Path, name: str) -> Path:
    path = root / name
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


# --- PostgreSQL ---------------------------------------------------------------------------


def _postgres_user() -> str | None:
    """The unprivileged user PostgreSQL runs as when the caller is root (None otherwise)."""
    if os.geteuid() != 0:
        return None
    for name in _POSTGRES_USER_CANDIDATES:
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    name = _POSTGRES_USER_CANDIDATES[-1]
    made = subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
        capture_output=True, text=True, check=False,
    )
    if made.returncode != 0:
        raise EngineError(f"postgres: cannot create the user {name} to run it: {made.stderr}")
    return name


def _run_logged(argv: Sequence[str], log: IO[bytes], user: str | None, what: str,
                within: float) -> None:
    try:
        done = subprocess.run(
            list(argv), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            user=user, group=_group_of(user), extra_groups=[] if user else None,
            timeout=within, check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise EngineError(f"postgres: {what} took longer than {within:.0f} s") from exc
    if done.returncode != 0:
        log.flush()
        raise EngineError(f"postgres: {what} failed (exit {done.returncode}); see {log.name}")


def start_postgres(root: Path, *, port_source: PortSource = os_port,
                   ready_within: float = READY_WITHIN) -> Postgres:
    """initdb a fresh cluster and start PostgreSQL on 127.0.0.1 with database ``ptt``.

    Durability is off (fsync, synchronous_commit, full_page_writes): the data is thrown away
    with the engine. As root, the server runs as an unprivileged user (initdb refuses root),
    with its data in a directory of the system's temp dir that user can reach.
    """
    bin_dir = binary("postgres").parent
    root.mkdir(parents=True, exist_ok=True)
    user = _postgres_user()
    if user:
        data_root = Path(tempfile.mkdtemp(prefix="ptt-postgres-"))
        info = pwd.getpwnam(user)
        os.chown(data_root, info.pw_uid, info.pw_gid)
    else:
        data_root = _fresh_dir(root, "postgres-data")
    data, sockets = data_root / "data", data_root / "sockets"
    log_path = root / "postgres.log"
    try:
        with open(log_path, "ab") as log:
            if user:
                _run_logged(["mkdir", "-p", str(sockets)], log, user, "mkdir", ready_within)
            else:
                sockets.mkdir()
            _run_logged(
                [str(bin_dir / "initdb"), "-D", str(data), "-U", "ptt", "-A", "trust",
                 "-E", "UTF8", "--no-locale", "--no-sync"],
                log, user, "initdb", ready_within,
            )
    except BaseException:
        shutil.rmtree(data_root, ignore_errors=True)
        raise

    def make(_attempt: int) -> Engine:
        port = port_source()
        member = Member(
            engine="postgres", name="", log=log_path, user=user,
            # SIGTERM is the "smart" shutdown, which waits for every client to disconnect;
            # SIGINT ("fast") ends their sessions and shuts down at once.
            stop_signal=signal.SIGINT,
            argv=[
                str(bin_dir / "postgres"), "-D", str(data), "-k", str(sockets), "-p", str(port),
                "-c", f"listen_addresses={HOST}", "-c", "fsync=off",
                "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
                "-c", "max_connections=200", "-c", "logging_collector=off",
            ],
        )
        return Postgres(kind="postgres", root=root, members=[member], port=port,
                        data_root=data_root)

    def ready(engine: Engine) -> bool:
        assert isinstance(engine, Postgres)
        probe = subprocess.run(
            [str(bin_dir / "pg_isready"), "-q", "-h", HOST, "-p", str(engine.port)],
            stdin=subprocess.DEVNULL, capture_output=True, check=False,
        )
        return probe.returncode == 0

    try:
        engine = _start_with_retries(make, ready, ready_within)
    except BaseException:
        shutil.rmtree(data_root, ignore_errors=True)
        raise
    assert isinstance(engine, Postgres)
    try:
        with open(log_path, "ab") as log:
            _run_logged(
                [str(bin_dir / "createdb"), "-h", HOST, "-p", str(engine.port), "-U", "ptt",
                 engine.database],
                log, None, "createdb", ready_within,
            )
    except BaseException:
        engine.kill()
        raise
    return engine


# --- NATS ---------------------------------------------------------------------------------


# The account ptt's nodes use, and what it sees of the system account: nats-server's event of
# one of its clients' connections closing (``$SYS.ACCOUNT.<account>.DISCONNECT``), which a node
# takes as the hint that another node died (``ptt.cluster.node``, docs/cluster.md "Detection").
# Clients without credentials land in it (``no_auth_user``), as they landed in the default
# account before; the system account has no user at all: nobody logs in to it.
NATS_ACCOUNT = "PTT"


def nats_config(jetstream: bool = False) -> str:
    """The nats-server configuration that lets ptt's nodes hear a node's connection close."""
    event = f"$SYS.ACCOUNT.{NATS_ACCOUNT}.DISCONNECT"
    return (
        "accounts {\n"
        f'  SYS {{ exports = [{{stream: "{event}"}}] }}\n'
        f"  {NATS_ACCOUNT} {{\n"
        f'    users = [{{user: ptt, password: ""}}]\n'
        f'    imports = [{{stream: {{account: SYS, subject: "{event}"}}}}]\n'
        + ("    jetstream = enabled\n" if jetstream else "")
        + "  }\n}\nsystem_account: SYS\nno_auth_user: ptt\n"
    )


def start_nats(root: Path, *, members: int = 1, jetstream: bool = False,
               port_source: PortSource = os_port,
               ready_within: float = READY_WITHIN) -> Nats:
    """One NATS server, or ``members`` servers joined in a cluster by routes (each routes to
    every other), each with its monitoring port; with ``jetstream``, JetStream on (clustered
    when there are several members). Each member runs with :func:`nats_config`."""
    exe = binary("nats-server")
    root.mkdir(parents=True, exist_ok=True)
    config = root / "nats.conf"
    config.write_text(nats_config(jetstream), encoding="utf-8")

    def make(attempt: int) -> Engine:
        ports = _distinct_ports(port_source, 3 * members if members > 1 else 2)
        clients, monitors, routes = ports[:members], ports[members:2 * members], ports[2 * members:]
        nodes = []
        for i in range(members):
            name = f"n{i}"
            argv = [str(exe), "-c", str(config), "-a", HOST, "-p", str(clients[i]),
                    "-m", str(monitors[i]), "-n", name]
            if routes:
                others = ",".join(f"nats://{HOST}:{p}" for j, p in enumerate(routes) if j != i)
                argv += ["--cluster_name", "ptt", "--cluster", f"nats://{HOST}:{routes[i]}",
                         "--routes", others]
            if jetstream:
                argv += ["-js", "-sd", str(_fresh_dir(root, f"nats-{name}-{attempt}"))]
            nodes.append(Member(engine="nats", name=name if members > 1 else "", argv=argv,
                                log=root / f"nats-{name}.log"))
        return Nats(kind="nats", root=root, members=nodes, client_ports=clients,
                    monitor_ports=monitors)

    def ready(engine: Engine) -> bool:
        assert isinstance(engine, Nats)
        for port in engine.monitor_ports:
            health = _http_json(f"http://{HOST}:{port}/healthz")
            if not isinstance(health, dict) or health.get("status") != "ok":
                return False
            if members > 1:
                routez = _http_json(f"http://{HOST}:{port}/routez")
                if not isinstance(routez, dict) or routez.get("num_routes", 0) < members - 1:
                    return False
        return True

    engine = _start_with_retries(make, ready, ready_within)
    assert isinstance(engine, Nats)
    return engine


# --- etcd ---------------------------------------------------------------------------------

# etcd's own defaults, in milliseconds
ETCD_HEARTBEAT_MS = 100
ETCD_ELECTION_MS = 1000


def start_etcd(root: Path, *, members: int = 1, heartbeat_ms: int = ETCD_HEARTBEAT_MS,
               election_ms: int = ETCD_ELECTION_MS, port_source: PortSource = os_port,
               ready_within: float = READY_WITHIN, compact_after: str | None = None) -> Etcd:
    """One etcd member, or a cluster of ``members`` (initial-cluster on loopback peer ports),
    with the given raft heartbeat and election timeout; with ``compact_after`` (a Go duration,
    e.g. ``"1m"``), etcd drops the revisions older than that (its periodic auto-compaction),
    so a key rewritten often does not grow its data without end."""
    exe = binary("etcd")
    root.mkdir(parents=True, exist_ok=True)

    def make(attempt: int) -> Engine:
        ports = _distinct_ports(port_source, 2 * members)
        clients, peers = ports[:members], ports[members:]
        names = [f"e{i}" for i in range(members)]
        initial = ",".join(f"{n}=http://{HOST}:{p}" for n, p in zip(names, peers, strict=True))
        nodes = []
        for i, name in enumerate(names):
            client, peer = f"http://{HOST}:{clients[i]}", f"http://{HOST}:{peers[i]}"
            data = _fresh_dir(root, f"etcd-{name}-{attempt}")
            argv = [
                str(exe), "--name", name, "--data-dir", str(data),
                "--listen-client-urls", client, "--advertise-client-urls", client,
                "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                "--initial-cluster", initial, "--initial-cluster-state", "new",
                "--initial-cluster-token", f"ptt-{os.getpid()}-{clients[0]}",
                "--heartbeat-interval", str(heartbeat_ms),
                "--election-timeout", str(election_ms),
                "--logger", "zap", "--log-outputs", "stderr",
            ]
            if compact_after is not None:
                argv += ["--auto-compaction-mode", "periodic",
                         "--auto-compaction-retention", compact_after]
            nodes.append(Member(engine="etcd", name=name if members > 1 else "", argv=argv,
                                log=root / f"etcd-{name}.log"))
        return Etcd(kind="etcd", root=root, members=nodes, client_ports=clients,
                    peer_ports=peers)

    def ready(engine: Engine) -> bool:
        assert isinstance(engine, Etcd)
        for endpoint in engine.endpoints:
            health = _http_json(f"{endpoint}/health")
            if not isinstance(health, dict) or health.get("health") != "true":
                return False
        return True

    engine = _start_with_retries(make, ready, ready_within)
    assert isinstance(engine, Etcd)
    return engine

