"""Settings for server and clients: dataclasses, TOML files, ``PTT_*`` environment variables.

Where things live (XDG base directories; a relative ``$XDG_*`` value is ignored, as the spec says)::

    $XDG_CONFIG_HOME/ptt/client.toml   client settings, written by ``ptt login`` (mode 0600)
    $XDG_CONFIG_HOME/ptt/server.toml   optional server settings
    $XDG_DATA_HOME/ptt/ptt.db          the server's SQLite database
    $XDG_DATA_HOME/ptt/recordings/     recordings
    <db directory>/coordinator.toml    coordinator credentials written on the server's first start

``$XDG_CONFIG_HOME`` defaults to ``~/.config``, ``$XDG_DATA_HOME`` to ``~/.local/share``.

Precedence, lowest first: defaults, the TOML file, environment variables, command-line options (the
CLI applies those last with :func:`dataclasses.replace`). An environment variable that is set but
empty counts as unset.

Client environment variables (:class:`ClientConfig`)::

    PTT_CONFIG          path of the client config file instead of the XDG one
    PTT_SERVER          server address, HOST:PORT ([IPv6]:PORT)      -> server
    PTT_SERVERS         more servers of a cluster, comma-separated   -> servers
    PTT_USER            user name                                    -> user
    PTT_TOKEN           login token                                  -> token
    PTT_INPUT_DEVICE    capture device, name or index                -> input_device
    PTT_OUTPUT_DEVICE   playback device, name or index               -> output_device
    PTT_BITRATE         Opus bitrate in bit/s                        -> bitrate
    PTT_TONES           "on", "off", or the tones to keep, e.g. "talk_permit,busy"  -> tones
    PTT_GROUP           group used when a command names none         -> default_group

Server environment variables (:class:`ServerConfig`), ``PTT_SERVER_`` plus the setting's name, the
same names click's ``auto_envvar_prefix="PTT"`` gives the options of ``ptt server``, and
``PTT_SERVER_CONFIG`` for the path of the server config file. Each setting's meaning is written
once, in its field's metadata; :func:`server_config_sample` makes ``examples/server.toml`` from
them (every setting, its default, its meaning, its variable).

Bad files and values raise :class:`~ptt.errors.ConfigError` with one line that names the file or
variable, e.g. ``/home/a/.config/ptt/client.toml: bitrate: expected an integer, got 'fast'``.

Default port 7700: unprivileged, below the ephemeral range, and unused by common services on a
desktop or a small server (Mumble, for comparison, uses 64738). Multicast groups are drawn from
239.255.0.0/16, the IPv4 organisation-local scope, with TTL 1 so voice never leaves the LAN segment
unless an operator raises it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import logging
import os
import tomllib
from collections.abc import Callable, Collection, Mapping
from dataclasses import MISSING, dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from ptt.audio.codec import DEFAULT_BITRATE
from ptt.errors import ConfigError, PttError
from ptt.names import (
    ROLE_NAMES,
    format_hostport,
    group_name,
    parse_hostport,
    parse_port,
    parse_role,
    role_name,
    user_name,
)
from ptt.net.multicast import DEFAULT_INTERFACE, DEFAULT_TTL
from ptt.protocol.auth import check_token
from ptt.protocol.floor import EMERGENCY_ROLES
from ptt.protocol.keepalive import (
    HEARTBEAT_INTERVAL,
    IDLE_HEARTBEAT_INTERVAL,
    IDLE_SESSION_TIMEOUT,
    SESSION_TIMEOUT,
    Cadence,
)
from ptt.protocol.messages import Role
from ptt.protocol.session import MAX_DEVICES

log = logging.getLogger(__name__)

APP = "ptt"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7700
DEFAULT_SERVER = f"{DEFAULT_HOST}:{DEFAULT_PORT}"
MULTICAST_NETWORK = "239.255.0.0/16"
MULTICAST_PORT_BASE = 7800
PAGE_RETENTION = 86_400.0  # seconds a text page is kept for offline members (24 h)
MAX_PAGE_RETENTION = 30 * 86_400.0
MIN_BITRATE = 6_000
MAX_BITRATE = 128_000
TONE_KINDS = ("talk_permit", "busy", "end_of_burst", "emergency", "page")  # = ptt.audio.tones.TONES
FILE_MODE = 0o600
DIR_MODE = 0o700

Env = Mapping[str, str]


# --- XDG paths ---------------------------------------------------------------------------------


def _environ(env: Env | None) -> Env:
    return os.environ if env is None else env


def _xdg(env: Env | None, var: str, fallback: str) -> Path:
    value = _environ(env).get(var, "")
    if value and os.path.isabs(value):
        return Path(value)
    return Path.home() / fallback


def config_home(env: Env | None = None) -> Path:
    """``$XDG_CONFIG_HOME`` or ``~/.config``."""
    return _xdg(env, "XDG_CONFIG_HOME", ".config")


def data_home(env: Env | None = None) -> Path:
    """``$XDG_DATA_HOME`` or ``~/.local/share``."""
    return _xdg(env, "XDG_DATA_HOME", ".local/share")


def cache_home(env: Env | None = None) -> Path:
    """``$XDG_CACHE_HOME`` or ``~/.cache``."""
    return _xdg(env, "XDG_CACHE_HOME", ".cache")


def client_config_path(env: Env | None = None) -> Path:
    """``$PTT_CONFIG``, else ``$XDG_CONFIG_HOME/ptt/client.toml``."""
    explicit = _environ(env).get("PTT_CONFIG", "")
    return Path(explicit).expanduser() if explicit else config_home(env) / APP / "client.toml"


def server_config_path(env: Env | None = None) -> Path:
    """``$PTT_SERVER_CONFIG``, else ``$XDG_CONFIG_HOME/ptt/server.toml``."""
    explicit = _environ(env).get("PTT_SERVER_CONFIG", "")
    return Path(explicit).expanduser() if explicit else config_home(env) / APP / "server.toml"


def default_db_path(env: Env | None = None) -> Path:
    """``$XDG_DATA_HOME/ptt/ptt.db`` (default ``~/.local/share/ptt/ptt.db``)."""
    return data_home(env) / APP / "ptt.db"


def default_record_dir(env: Env | None = None) -> Path:
    """``$XDG_DATA_HOME/ptt/recordings``."""
    return data_home(env) / APP / "recordings"


def credentials_path(db_path: str | Path) -> Path:
    """Where the server writes the first coordinator's credentials: beside its database."""
    db = Path(db_path)
    if str(db) == ":memory:":
        return config_home() / APP / "coordinator.toml"
    return db.expanduser().parent / "coordinator.toml"


# --- value converters: (value from TOML or env text) -> normalised value; ValueError/PttError ---


def _text(v: Any) -> str:
    if not isinstance(v, str):
        raise TypeError(f"expected text, got {v!r}")
    return v


def _int(v: Any) -> int:
    if isinstance(v, str) and v.strip().lstrip("-").isdigit():
        return int(v)
    if isinstance(v, bool) or not isinstance(v, int):
        raise TypeError(f"expected an integer, got {v!r}")
    return v


def _number(v: Any) -> float:
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            pass
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise TypeError(f"expected a number of seconds, got {v!r}")
    return float(v)


def _positive(v: Any) -> float:
    x = _number(v)
    if not 0 < x < 86_400:
        raise ValueError(f"expected a positive number of seconds, got {v!r}")
    return x


def _retention(v: Any) -> float:
    x = _number(v)
    if not 0 < x <= MAX_PAGE_RETENTION:
        raise ValueError(f"expected seconds between 0 and {MAX_PAGE_RETENTION:g} (30 days), "
                         f"got {v!r}")
    return x


def _bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v.strip().lower() in ("1", "true", "yes", "on"):
        return True
    if isinstance(v, str) and v.strip().lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {v!r}")


def _path(v: Any) -> Path:
    if isinstance(v, Path):
        return v.expanduser()
    text = _text(v)
    if not text:
        raise ValueError("expected a path, got ''")
    return Path(text) if text == ":memory:" else Path(text).expanduser()


def _host(v: Any) -> str:
    return parse_hostport(_text(v), default_port=DEFAULT_PORT)[0]


def _port(v: Any) -> int:
    return parse_port(v, allow_zero=True)


def _server(v: Any) -> str:
    return format_hostport(*parse_hostport(_text(v), default_port=DEFAULT_PORT))


def _servers(v: Any) -> tuple[str, ...]:
    """A list of HOST:PORT (TOML), or one string of them separated by commas (environment)."""
    items = v.replace(",", " ").split() if isinstance(v, str) else v
    if not isinstance(items, (list, tuple)):
        raise ValueError(f"expected a list of HOST:PORT, got {v!r}")
    return tuple(dict.fromkeys(_server(item) for item in items))


def _optional_address(v: Any) -> str | None:
    if v is None:
        return None
    return format_hostport(*parse_hostport(_text(v), allow_zero=True))


def _optional(conv: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda v: None if v is None else conv(v)


def _device(v: Any) -> str | int | None:
    if v is None:
        return None
    if isinstance(v, str):
        return int(v) if v.strip().isdigit() else v
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise ValueError(f"expected a device name or index, got {v!r}")
    return v


def _bitrate(v: Any) -> int:
    x = _int(v)
    if not MIN_BITRATE <= x <= MAX_BITRATE:
        raise ValueError(f"expected {MIN_BITRATE}-{MAX_BITRATE} bit/s, got {x}")
    return x


def _multicast(v: Any) -> str:
    try:
        net = ipaddress.ip_network(_text(v), strict=True)
    except ValueError as exc:
        raise ValueError(f"expected a multicast network like {MULTICAST_NETWORK}: {exc}") from None
    if not net.is_multicast:
        raise ValueError(f"{net} is not a multicast range (IPv4: within 224.0.0.0/4)")
    return str(net)


def _interface(v: Any) -> str:
    """A multicast interface: an IPv4 address of this machine or an interface name."""
    text = _text(v).strip()
    if not text or len(text) > 64 or any(c.isspace() for c in text):
        raise ValueError(f"expected an interface address or name, got {v!r}")
    return text


def _devices(v: Any) -> int:
    x = _int(v)
    if not 1 <= x <= 64:
        raise ValueError(f"expected 1-64 devices, got {x}")
    return x


def _ttl(v: Any) -> int:
    x = _int(v)
    if not 0 <= x <= 255:
        raise ValueError(f"expected 0-255, got {x}")
    return x


def parse_roles(v: Any) -> frozenset[Role]:
    """A set of roles: a TOML array of names, or names separated by commas; "none" (or an empty
    array) is the empty set. Unknown names are refused, never skipped: a typo must not quietly
    take a right away (ValueError, TypeError or ValidationError, with a one-line reason).
    Used for ``ServerConfig.emergency_roles`` and ``ptt server --emergency-roles``."""
    if isinstance(v, str):
        text = v.strip().lower()
        if text == "none":
            return frozenset()
        items: list[Any] = [x.strip() for x in text.split(",")]
        if not all(items):
            raise ValueError(f"expected role names separated by commas, or 'none', got {v!r}")
    elif isinstance(v, (list, tuple, set, frozenset)):
        items = list(v)
    else:
        raise TypeError(f"expected a list of roles, got {v!r}")
    return frozenset(parse_role(x) for x in items)


def _role_names(roles: frozenset[Role]) -> list[str]:
    """How a set of roles is written to TOML: names in the order of ROLE_NAMES."""
    return [role_name(r) for r in ROLE_NAMES if r in roles]


# --- settings ----------------------------------------------------------------------------------


def _setting(conv: Callable[[Any], Any], env: str | None = None, default: Any = MISSING, *,
             factory: Callable[[], Any] | Any = MISSING, dump: Callable[[Any], Any] | None = None,
             meaning: str = "", shown_default: str | None = None, example: Any = None) -> Any:
    """A setting's field: its default (or ``factory``), the converter that validates a value, its
    environment variable, how it is written to TOML when not as it is, and for the sample config
    (:func:`server_config_sample`) what the setting means, its default in words when it depends
    on the machine (``shown_default``) and a value to show when the default cannot be written
    (``example``)."""
    return field(default=default, default_factory=factory, metadata={
        "conv": conv, "env": env, "dump": dump, "meaning": meaning,
        "shown_default": shown_default, "example": example})


@dataclass(frozen=True, slots=True)
class Tones:
    """Which tones the client plays: one flag per kind (TOML table ``[tones]``).

    The names are those of ``ptt.audio.tones.ToneSet``: ``ToneSet(**dataclasses.asdict(t))``.
    """

    talk_permit: bool = _setting(_bool, default=True)  # the floor is yours
    busy: bool = _setting(_bool, default=True)  # denied, or queued behind someone
    end_of_burst: bool = _setting(_bool, default=True)  # a transmission ended
    emergency: bool = _setting(_bool, default=True)  # an emergency call began
    page: bool = _setting(_bool, default=True)  # a text page came in

    def __post_init__(self) -> None:
        _validate(self, "tones.")


_ALL_ON = ("on", "all", "true", "yes", "1")
_ALL_OFF = ("off", "none", "false", "no", "0")


def _tones(v: Any) -> Tones:
    if isinstance(v, Tones):
        return v
    if isinstance(v, bool):
        return Tones(**dict.fromkeys(TONE_KINDS, v))
    if isinstance(v, Mapping):
        kinds = list(v)
        values = {k: _bool(x) for k, x in v.items()}
    elif isinstance(v, str) and v.strip().lower() in _ALL_ON + _ALL_OFF:
        return Tones(**dict.fromkeys(TONE_KINDS, v.strip().lower() in _ALL_ON))
    elif isinstance(v, str) and v.strip():
        kinds = [k.strip().lower() for k in v.split(",") if k.strip()]
        values = {k: k in kinds for k in TONE_KINDS}
    else:
        raise ValueError(f"expected a [tones] table, 'on', 'off' or names like 'talk_permit,busy', "
                         f"got {v!r}")
    unknown = sorted(set(kinds) - set(TONE_KINDS))
    if unknown:
        raise ValueError(f"unknown tone {unknown[0]!r} (known: {', '.join(TONE_KINDS)})")
    return Tones(**values)


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Everything ``ptt server`` needs; see the module docstring for files and variables."""

    host: str = _setting(
        _host, "PTT_SERVER_HOST", DEFAULT_HOST,
        meaning="Address to listen on (UDP). Loopback unless you ask: 0.0.0.0 or :: for every "
                "interface, or one address of this machine.")
    port: int = _setting(
        _port, "PTT_SERVER_PORT", DEFAULT_PORT,
        meaning="UDP port for control and relayed voice; 0 picks a free one (tests).")
    db: Path = _setting(
        _path, "PTT_SERVER_DB", factory=default_db_path,
        meaning="The SQLite database: users, groups, memberships, key grants. Created (mode "
                "0600) on the first start, with the coordinator's credentials beside it.",
        shown_default="$XDG_DATA_HOME/ptt/ptt.db", example="/var/lib/ptt/ptt.db")
    heartbeat_interval: float = _setting(
        _positive, "PTT_SERVER_HEARTBEAT_INTERVAL", HEARTBEAT_INTERVAL,
        meaning="Seconds between a client's heartbeats while one of its groups has a talker or "
                "it asks for the floor; the server tells each client at login.")
    session_timeout: float = _setting(
        _positive, "PTT_SERVER_SESSION_TIMEOUT", SESSION_TIMEOUT,
        meaning="Seconds without a datagram after which a busy session expires (one of its "
                "groups has a talker): its floor and queue places are freed. Must exceed "
                "heartbeat_interval.")
    idle_heartbeat_interval: float = _setting(
        _positive, "PTT_SERVER_IDLE_HEARTBEAT_INTERVAL", IDLE_HEARTBEAT_INTERVAL,
        meaning="Seconds between a client's heartbeats while none of its groups has a talker "
                "(most of the time: each heartbeat costs the server CPU); under a NAT's UDP "
                "binding time. Not above heartbeat_interval: no idle cadence.")
    idle_session_timeout: float = _setting(
        _positive, "PTT_SERVER_IDLE_SESSION_TIMEOUT", IDLE_SESSION_TIMEOUT,
        meaning="Seconds without a datagram after which an idle session expires. Must exceed "
                "idle_heartbeat_interval + session_timeout - heartbeat_interval.")
    max_devices: int = _setting(
        _devices, "PTT_SERVER_MAX_DEVICES", MAX_DEVICES,
        meaning="Devices one user may be online from at once (each hears its groups, one talks "
                "at a time); a login from one more ends the oldest, telling it why.")
    multicast_network: str = _setting(
        _multicast, "PTT_SERVER_MULTICAST_NETWORK", MULTICAST_NETWORK,
        meaning="The range each group's multicast address is drawn from (organisation-local "
                "scope by default).")
    multicast_port_base: int = _setting(
        _port, "PTT_SERVER_MULTICAST_PORT_BASE", MULTICAST_PORT_BASE,
        meaning="First UDP port of the groups' multicast ports.")
    multicast_ttl: int = _setting(
        _ttl, "PTT_SERVER_MULTICAST_TTL", DEFAULT_TTL,
        meaning="TTL of multicast voice: 1 keeps it on the LAN segment.")
    multicast_interface: str = _setting(
        _interface, "PTT_SERVER_MULTICAST_INTERFACE", DEFAULT_INTERFACE,
        meaning="Interface (its IPv4 address or name) the server listens on for group multicast "
                "and re-sends it through; loopback, so nothing leaves the machine unless told.")
    record_dir: Path = _setting(
        _path, "PTT_SERVER_RECORD_DIR", factory=default_record_dir,
        meaning="Where groups with the record flag are recorded (ptt server --record DIR "
                "records every group there instead).",
        shown_default="$XDG_DATA_HOME/ptt/recordings", example="/var/lib/ptt/recordings")
    metrics: str | None = _setting(
        _optional_address, "PTT_SERVER_METRICS", None,
        meaning="HOST:PORT of a Prometheus endpoint (http://HOST:PORT/metrics); unset: none.",
        shown_default="off", example="127.0.0.1:9464")
    emergency_roles: frozenset[Role] = _setting(
        parse_roles, "PTT_SERVER_EMERGENCY_ROLES", EMERGENCY_ROLES, dump=_role_names,
        meaning="Roles that may ask for emergency priority (pre-empts the talker); others are "
                "refused with NOT_ALLOWED. An empty list: nobody.")
    page_retention: float = _setting(
        _retention, "PTT_SERVER_PAGE_RETENTION", PAGE_RETENTION,
        meaning="Seconds a text page is kept for members who are offline when it is sent "
                "(delivered when they log in); then it is deleted with its receipts.")

    def __post_init__(self) -> None:
        _validate(self)
        if self.session_timeout <= self.heartbeat_interval:
            raise ConfigError(
                f"session_timeout ({self.session_timeout:g} s) must exceed "
                f"heartbeat_interval ({self.heartbeat_interval:g} s)"
            )
        problem = Cadence(self.heartbeat_interval, self.session_timeout,
                          self.idle_heartbeat_interval, self.idle_session_timeout).problem()
        if problem:
            raise ConfigError(problem)

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port


@dataclass(frozen=True, slots=True)
class ClientConfig:
    """Everything a client needs; ``user`` and ``token`` are None until ``ptt login``."""

    server: str = _setting(_server, "PTT_SERVER", DEFAULT_SERVER)
    # more access nodes of a cluster: the session moves to one of them when its node dies
    # (ptt.protocol.server_list); ``server`` is tried first
    servers: tuple[str, ...] = _setting(_servers, "PTT_SERVERS", (), dump=list)
    user: str | None = _setting(_optional(user_name), "PTT_USER", None)
    token: str | None = _setting(_optional(check_token), "PTT_TOKEN", None)
    # a device name or a PortAudio index; None: the system default
    input_device: str | int | None = _setting(_device, "PTT_INPUT_DEVICE", None)
    output_device: str | int | None = _setting(_device, "PTT_OUTPUT_DEVICE", None)
    bitrate: int = _setting(_bitrate, "PTT_BITRATE", DEFAULT_BITRATE)
    tones: Tones = _setting(_tones, "PTT_TONES", factory=Tones)
    default_group: str | None = _setting(_optional(group_name), "PTT_GROUP", None)
    # LAN multicast voice for groups in multicast/auto mode (falls back to the relay by itself)
    multicast: bool = _setting(_bool, "PTT_MULTICAST", True)
    multicast_interface: str = _setting(_interface, "PTT_MULTICAST_INTERFACE", DEFAULT_INTERFACE)
    multicast_ttl: int = _setting(_ttl, "PTT_MULTICAST_TTL", DEFAULT_TTL)

    def __post_init__(self) -> None:
        _validate(self)

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)`` of the server."""
        return parse_hostport(self.server)

    @property
    def other_servers(self) -> list[tuple[str, int]]:
        """``(host, port)`` of each server of ``servers`` other than ``server``."""
        return [a for a in map(parse_hostport, self.servers) if a != self.address]

    def require_login(self) -> tuple[str, str]:
        """``(user, token)``, or ConfigError telling the person to run ``ptt login``."""
        if self.user is None or self.token is None:
            missing = "user" if self.user is None else "token"
            raise ConfigError(
                f"no {missing} configured: run 'ptt login --server HOST:PORT --user NAME' "
                f"(it asks for the token) or set PTT_USER and PTT_TOKEN"
            )
        return self.user, self.token


def _convert(f: dataclasses.Field[Any], value: Any) -> Any:
    conv = f.metadata.get("conv")
    return value if conv is None else conv(value)


def _validate(obj: Any, prefix: str = "") -> None:
    """Normalise every field through its converter; ConfigError naming the field."""
    for f in dataclasses.fields(obj):
        try:
            value = _convert(f, getattr(obj, f.name))
        except (ValueError, TypeError, PttError) as exc:
            raise ConfigError(f"{prefix}{f.name}: {_reason(exc)}") from None
        object.__setattr__(obj, f.name, value)


def _reason(exc: Exception) -> str:
    return str(exc).split("\n")[0]


# --- loading -----------------------------------------------------------------------------------


def _read_toml(path: Path, missing_ok: bool) -> dict[str, Any]:
    try:
        with open(path, "rb") as fp:
            data = tomllib.load(fp)
    except FileNotFoundError:
        if missing_ok:
            return {}
        raise ConfigError(f"config file not found: {path}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: malformed TOML: {_reason(exc)}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    _tighten(path, data)
    return data


def _tighten(path: Path, data: Mapping[str, Any]) -> None:
    """A config holding a token must not stay readable by others: fix it, as we are its owner."""
    if "token" not in data:
        return
    try:
        st = path.stat()
        if st.st_mode & 0o077 and st.st_uid == os.getuid():
            os.chmod(path, FILE_MODE)
            log.warning("%s was readable by others; permissions set to 0600", path)
    except OSError:
        pass


def _load(
    cls: type[Any], data: Mapping[str, Any], source: str, env: Env | None
) -> dict[str, Any]:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for key, raw in data.items():
        f = fields.get(key)
        if f is None:
            raise ConfigError(f"{source}: unknown setting '{key}' (known: {', '.join(fields)})")
        try:
            values[key] = _convert(f, raw)
        except (ValueError, TypeError, PttError) as exc:
            raise ConfigError(f"{source}: {key}: {_reason(exc)}") from None
    for f in fields.values():
        var = f.metadata["env"]
        raw = "" if env is None else env.get(var, "")
        if raw:
            try:
                values[f.name] = _convert(f, raw)
            except (ValueError, TypeError, PttError) as exc:
                raise ConfigError(f"{var}: {_reason(exc)}") from None
    return values


def _missing_ok(missing_ok: bool | None, path: object, env: Env, var: str) -> bool:
    # the default XDG file may be absent; a file somebody named explicitly must exist
    if missing_ok is not None:
        return missing_ok
    return path is None and not env.get(var, "")


def load_client_config(
    path: str | Path | None = None,
    env: Env | None = None,
    *,
    overrides: bool = True,
    missing_ok: bool | None = None,
) -> ClientConfig:
    """Defaults, then the TOML file, then ``PTT_*`` variables (from ``env``, default os.environ).

    A missing file is fine at the default location and an error at a path given here or in
    ``PTT_CONFIG``, unless ``missing_ok`` says otherwise. ``overrides=False`` reads the file
    alone (still found through ``PTT_CONFIG``/XDG), e.g. before changing and saving it, so that
    values from the environment are never written to disk.
    """
    env = _environ(env)
    file = Path(path).expanduser() if path is not None else client_config_path(env)
    data = _read_toml(file, _missing_ok(missing_ok, path, env, "PTT_CONFIG"))
    values = _load(ClientConfig, data, str(file), env if overrides else None)
    try:
        return ClientConfig(**values)
    except ConfigError as exc:
        raise ConfigError(f"{file}: {exc}") from None


def load_server_config(
    path: str | Path | None = None,
    env: Env | None = None,
    *,
    overrides: bool = True,
    missing_ok: bool | None = None,
) -> ServerConfig:
    """Defaults (XDG paths from ``env``), then the TOML file, then ``PTT_SERVER_*`` variables.

    Missing files and ``overrides`` behave as for :func:`load_client_config`.
    """
    env = _environ(env)
    file = Path(path).expanduser() if path is not None else server_config_path(env)
    data = _read_toml(file, _missing_ok(missing_ok, path, env, "PTT_SERVER_CONFIG"))
    values = _load(ServerConfig, data, str(file), env if overrides else None)
    values.setdefault("db", default_db_path(env))
    values.setdefault("record_dir", default_record_dir(env))
    try:
        return ServerConfig(**values)
    except ConfigError as exc:
        raise ConfigError(f"{file}: {exc}") from None


# --- the sample server config ----------------------------------------------------------------

SAMPLE_HEADER = """\
# ptt server settings, every one with its default and meaning.
# Generated from ptt/config.py (ServerConfig) by `ptt server --sample-config`: do not edit here;
# change the definitions and regenerate (tests/test_config_sample.py fails when they drift).
#
# Copy to $XDG_CONFIG_HOME/ptt/server.toml, or name it with --config or PTT_SERVER_CONFIG, and
# uncomment what you change. Precedence, lowest first: these defaults, the file, the PTT_SERVER_*
# environment variables, the options of `ptt server`. Check with `ptt server --check-config`.
"""


def _wrap(text: str, width: int = 98) -> list[str]:
    import textwrap

    return ["# " + line for line in textwrap.wrap(text, width - 2)]


def _toml_value(value: Any) -> str:
    """One value as TOML on one line (tomli_w spreads arrays over several)."""
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Path):
        value = str(value)
    return tomli_w.dumps({"v": value}).strip().partition(" = ")[2]


def server_config_sample() -> str:
    """``examples/server.toml``: every :class:`ServerConfig` setting, commented out at its
    default (or at an example value where the default depends on the machine), with its meaning
    and environment variable."""
    blocks = [SAMPLE_HEADER.rstrip("\n")]
    for f in dataclasses.fields(ServerConfig):
        meta = f.metadata
        if not meta.get("meaning"):
            raise ConfigError(f"server setting {f.name} has no meaning text in ptt/config.py")
        if meta.get("shown_default") is not None:
            value = meta["example"]
            default = f"default: {meta['shown_default']}; e.g."
        else:
            value = f.default
            default = "default"
        dump = meta.get("dump")
        value = dump(value) if dump is not None else value
        lines = _wrap(meta["meaning"])
        lines.append(f"# env: {meta['env']}; {default}:")
        lines.append(f"#{f.name} = {_toml_value(value)}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


def effective_server_settings(config: ServerConfig) -> str:
    """The settings in force, as TOML a server.toml could hold (``ptt server --check-config``)."""
    lines = [f"{k} = {_toml_value(v)}" for k, v in _to_toml(config).items()]
    if config.metrics is None:  # TOML has no null: say it rather than leave it out
        lines.append("# metrics: off")
    return "\n".join(lines) + "\n"


# --- saving ------------------------------------------------------------------------------------


def _to_toml(obj: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if value is None:
            continue  # TOML has no null: an absent key means "unset"
        dump = f.metadata.get("dump")
        if dump is not None:
            value = dump(value)
        elif dataclasses.is_dataclass(value):
            value = _to_toml(value)
        elif isinstance(value, Path):
            value = str(value)
        out[f.name] = value
    return out


def write_private(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically with mode 0600 (parent directories 0700).

    The bytes go to a temporary file created with ``os.open(..., 0o600)`` in the same directory,
    are fsynced and renamed over ``path``, so a crash leaves the old file or the new one, and an
    existing file with looser permissions ends up 0600 as well.
    """
    path = Path(path).expanduser()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, FILE_MODE)
        try:
            os.fchmod(fd, FILE_MODE)  # os.open's mode is filtered by the umask
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        os.chmod(path, FILE_MODE)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise ConfigError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path


def save_client_config(config: ClientConfig, path: str | Path | None = None,
                       keep: Collection[str] = ()) -> Path:
    """Write ``config`` as TOML (mode 0600) to ``path`` or the XDG client config; returns it.

    Settings at their default are left out unless named in ``keep`` (those the file already
    held): a file holds what a person chose, so the defaults of a later version still apply to
    everything else (a bitrate written only because it was the default would pin it forever).
    """
    file = Path(path) if path is not None else client_config_path()
    data = _to_toml(config)
    defaults = _to_toml(ClientConfig())
    data = {k: v for k, v in data.items() if k in keep or defaults.get(k) != v}
    return write_private(file, tomli_w.dumps(data).encode("utf-8"))


def client_config_keys(path: str | Path | None = None) -> frozenset[str]:
    """The settings a client config file (``path`` or the XDG one) holds, none when it does not
    exist or does not parse: what a rewrite of it keeps even where they equal the default."""
    file = Path(path) if path is not None else client_config_path()
    try:
        with open(file.expanduser(), "rb") as fp:
            return frozenset(tomllib.load(fp))
    except (OSError, tomllib.TOMLDecodeError):
        return frozenset()


def save_server_config(config: ServerConfig, path: str | Path | None = None) -> Path:
    """Write ``config`` as TOML (mode 0600) to ``path`` or the XDG server config; returns it."""
    file = Path(path) if path is not None else server_config_path()
    return write_private(file, tomli_w.dumps(_to_toml(config)).encode("utf-8"))


def write_credentials(
    path: str | Path, server: str | tuple[str, int], user: str, token: str
) -> Path:
    """Write a client config holding ``user``'s credentials (mode 0600); returns the path.

    The server calls this on its first start for the coordinator it creates; the file is a
    complete client config, usable as ``PTT_CONFIG=<path> ptt group list``.
    """
    if isinstance(server, tuple):
        server = format_hostport(*server)
    return save_client_config(ClientConfig(server=server, user=user, token=token), path)
