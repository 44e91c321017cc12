from __future__ import annotations

import dataclasses
import os
import stat
import tomllib
from pathlib import Path

import pytest

from ptt import config as cfg
from ptt.config import ClientConfig, ServerConfig, Tones
from ptt.errors import ConfigError
from ptt.protocol.messages import Role


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """An isolated environment: XDG dirs under tmp_path and no PTT_* variables."""
    for var in list(os.environ):
        if var.startswith("PTT_"):
            monkeypatch.delenv(var)
    env = {"XDG_CONFIG_HOME": str(tmp_path / "conf"), "XDG_DATA_HOME": str(tmp_path / "data")}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return env


# --- paths -------------------------------------------------------------------------------------


def test_xdg_paths(xdg: dict[str, str], tmp_path: Path) -> None:
    assert cfg.client_config_path() == tmp_path / "conf/ptt/client.toml"
    assert cfg.server_config_path() == tmp_path / "conf/ptt/server.toml"
    assert cfg.default_db_path() == tmp_path / "data/ptt/ptt.db"
    assert cfg.default_record_dir() == tmp_path / "data/ptt/recordings"
    assert ServerConfig().db == tmp_path / "data/ptt/ptt.db"
    assert cfg.credentials_path(tmp_path / "x/ptt.db") == tmp_path / "x/coordinator.toml"


def test_xdg_defaults_and_relative_values_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", "/home/someone")
    assert cfg.default_db_path({}) == Path("/home/someone/.local/share/ptt/ptt.db")
    assert cfg.client_config_path({}) == Path("/home/someone/.config/ptt/client.toml")
    assert cfg.data_home({"XDG_DATA_HOME": "relative/dir"}) == Path(
        "/home/someone/.local/share"
    )
    assert cfg.client_config_path({"PTT_CONFIG": "/etc/ptt.toml"}) == Path("/etc/ptt.toml")


# --- client config: save, load, permissions ----------------------------------------------------


def test_defaults_without_a_file(xdg: dict[str, str]) -> None:
    c = cfg.load_client_config()
    assert c == ClientConfig()
    assert c.server == "127.0.0.1:7700" and c.address == ("127.0.0.1", 7700)
    assert c.user is None and c.token is None
    with pytest.raises(ConfigError, match="run 'ptt login"):
        c.require_login()


def test_save_and_load_round_trip(xdg: dict[str, str]) -> None:
    c = ClientConfig(
        server="[::1]:7701",
        user="Alice",
        token="tok-123",
        input_device=3,
        output_device="USB Headset",
        bitrate=16_000,
        tones=Tones(end_of_burst=False),
        default_group="Volunteers",
    )
    assert c.user == "alice" and c.default_group == "volunteers"  # canonical names
    path = cfg.save_client_config(c)
    assert path == cfg.client_config_path()
    assert cfg.load_client_config() == c
    text = path.read_text()
    assert 'server = "[::1]:7701"' in text and "[tones]" in text
    assert c.require_login() == ("alice", "tok-123")


def test_unset_values_are_left_out_of_the_file(xdg: dict[str, str], tmp_path: Path) -> None:
    path = cfg.save_client_config(ClientConfig(user="bob"), tmp_path / "c.toml")
    data = tomllib.loads(path.read_text())
    assert "token" not in data and "input_device" not in data and data["user"] == "bob"


def test_saved_files_are_0600_whatever_the_umask(xdg: dict[str, str], tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        path = cfg.save_client_config(ClientConfig(user="bob", token="t"))
    finally:
        os.umask(old)
    assert mode(path) == 0o600
    assert mode(path.parent) == 0o700
    assert not list(path.parent.glob(".*.tmp"))  # the temporary file was renamed away


def test_saving_over_a_world_readable_file_makes_it_0600(tmp_path: Path) -> None:
    path = tmp_path / "client.toml"
    path.write_text('user = "old"\n')
    path.chmod(0o644)
    cfg.save_client_config(ClientConfig(user="new", token="t"), path)
    assert mode(path) == 0o600
    assert cfg.load_client_config(path, env={}).user == "new"


def test_loading_a_readable_file_with_a_token_tightens_it(tmp_path: Path) -> None:
    path = tmp_path / "client.toml"
    path.write_text('user = "bob"\ntoken = "secret"\n')
    path.chmod(0o644)
    assert cfg.load_client_config(path, env={}).token == "secret"
    assert mode(path) == 0o600


def test_write_credentials(tmp_path: Path) -> None:
    path = cfg.write_credentials(tmp_path / "srv/coordinator.toml", ("::1", 7700), "Coord",
                                 "tok")
    assert mode(path) == 0o600
    c = cfg.load_client_config(path, env={})
    assert (c.server, c.user, c.token) == ("[::1]:7700", "coord", "tok")
    cfg.write_credentials(path, "10.0.0.1:7000", "coord", "tok2")  # overwrite stays 0600
    assert mode(path) == 0o600
    assert cfg.load_client_config(path, env={}).token == "tok2"


def test_write_failure_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match="cannot write"):
        cfg.save_client_config(ClientConfig(), tmp_path / "file" / "client.toml")


# --- environment overrides ---------------------------------------------------------------------


def test_environment_overrides_the_file(xdg: dict[str, str],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    cfg.save_client_config(ClientConfig(server="10.0.0.1:7700", user="alice", token="file-tok"))
    monkeypatch.setenv("PTT_SERVER", "example.org:9000")
    monkeypatch.setenv("PTT_TOKEN", "env-tok")
    monkeypatch.setenv("PTT_BITRATE", "32000")
    monkeypatch.setenv("PTT_TONES", "talk_permit, Busy")
    monkeypatch.setenv("PTT_GROUP", "Night-Shift")
    monkeypatch.setenv("PTT_INPUT_DEVICE", "2")
    monkeypatch.setenv("PTT_OUTPUT_DEVICE", "pulse")
    monkeypatch.setenv("PTT_USER", "")  # empty: as if unset
    c = cfg.load_client_config()
    assert c.server == "example.org:9000"
    assert c.user == "alice"
    assert c.token == "env-tok"
    assert c.bitrate == 32_000
    assert c.tones == Tones(talk_permit=True, busy=True, end_of_burst=False, emergency=False,
                           page=False)
    assert c.default_group == "night-shift"
    assert (c.input_device, c.output_device) == (2, "pulse")
    # the file alone, for a read-modify-write that must not store the environment's values
    assert cfg.load_client_config(overrides=False).token == "file-tok"


def test_ptt_config_names_another_file(xdg: dict[str, str], tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    other = cfg.write_credentials(tmp_path / "other.toml", "10.1.1.1:7700", "carol", "t")
    monkeypatch.setenv("PTT_CONFIG", str(other))
    assert cfg.load_client_config().user == "carol"
    monkeypatch.setenv("PTT_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigError, match="config file not found"):
        cfg.load_client_config()


def test_explicit_missing_file_is_an_error_unless_allowed(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        cfg.load_client_config(tmp_path / "nope.toml", env={})
    assert cfg.load_client_config(tmp_path / "nope.toml", env={}, missing_ok=True) == ClientConfig()


@pytest.mark.parametrize(
    ("var", "value", "needle"),
    [
        ("PTT_BITRATE", "fast", "PTT_BITRATE: expected an integer, got 'fast'"),
        ("PTT_BITRATE", "1000", "PTT_BITRATE: expected 6000-128000 bit/s"),
        ("PTT_SERVER", "[::1:7700", "PTT_SERVER: invalid address"),
        ("PTT_SERVER", "host:99999", "PTT_SERVER: invalid address"),
        ("PTT_USER", "-bob", "PTT_USER: invalid user name"),
        ("PTT_TOKEN", "has space", "PTT_TOKEN: invalid token"),
        ("PTT_TONES", "beep", "PTT_TONES: unknown tone 'beep'"),
        ("PTT_GROUP", "a/b", "PTT_GROUP: invalid group name"),
    ],
)
def test_bad_environment_values_name_the_variable(
    xdg: dict[str, str], monkeypatch: pytest.MonkeyPatch, var: str, value: str, needle: str
) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError) as err:
        cfg.load_client_config()
    assert needle in str(err.value)
    assert "\n" not in str(err.value)


# --- bad files ---------------------------------------------------------------------------------


def test_malformed_toml_is_one_clear_line(tmp_path: Path) -> None:
    path = tmp_path / "client.toml"
    path.write_text('user = "alice"\nserver = \n')
    with pytest.raises(ConfigError) as err:
        cfg.load_client_config(path, env={})
    msg = str(err.value)
    assert msg.startswith(f"{path}: malformed TOML:") and "line 2" in msg
    assert "\n" not in msg


def test_non_utf8_file_is_malformed(tmp_path: Path) -> None:
    path = tmp_path / "client.toml"
    path.write_bytes(b'user = "\xff"\n')
    with pytest.raises(ConfigError, match="malformed TOML"):
        cfg.load_client_config(path, env={})


def test_unreadable_path_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        cfg.load_client_config(tmp_path, env={})  # a directory


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('usr = "alice"\n', "unknown setting 'usr'"),
        ("bitrate = true\n", "bitrate: expected an integer, got True"),
        ("bitrate = 1.5\n", "bitrate: expected an integer"),
        ('server = "nohost"\n', None),  # a bare host is fine: default port
        ("server = 7700\n", "server: expected text"),
        ("[tones]\nbusy = 3\n", "tones: expected true or false"),
        ("[tones]\nchime = true\n", "tones: unknown tone 'chime'"),
        ("input_device = -1\n", "input_device: expected a device name or index"),
        ('user = "a:b"\n', "user: invalid user name"),
    ],
)
def test_bad_values_in_the_file_name_file_and_key(tmp_path: Path, text: str,
                                                  needle: str | None) -> None:
    path = tmp_path / "client.toml"
    path.write_text(text)
    if needle is None:
        assert cfg.load_client_config(path, env={}).server == "nohost:7700"
        return
    with pytest.raises(ConfigError) as err:
        cfg.load_client_config(path, env={})
    assert str(err.value).startswith(f"{path}: ")
    assert needle in str(err.value)


def test_invalid_values_in_code_raise_config_error() -> None:
    with pytest.raises(ConfigError, match="bitrate"):
        ClientConfig(bitrate=10)
    with pytest.raises(ConfigError, match="tones.busy"):
        Tones(busy="maybe")  # type: ignore[arg-type]


# --- server config -----------------------------------------------------------------------------


def test_server_defaults(xdg: dict[str, str], tmp_path: Path) -> None:
    s = cfg.load_server_config()
    assert s.address == ("127.0.0.1", 7700)
    assert s.db == tmp_path / "data/ptt/ptt.db"
    assert s.multicast_network == "239.255.0.0/16" and s.multicast_ttl == 1
    assert s.metrics is None
    assert s.session_timeout > s.heartbeat_interval > 0


def test_server_file_and_environment(xdg: dict[str, str], tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    path = cfg.server_config_path()
    path.parent.mkdir(parents=True)
    path.write_text(
        'host = "0.0.0.0"\nport = 7800\ndb = "~/x/ptt.db"\nmetrics = "127.0.0.1:9770"\n'
        'multicast_network = "239.192.0.0/14"\nsession_timeout = 8\n'
    )
    monkeypatch.setenv("PTT_SERVER_PORT", "0")
    monkeypatch.setenv("PTT_SERVER_RECORD_DIR", str(tmp_path / "rec"))
    s = cfg.load_server_config()
    assert (s.host, s.port) == ("0.0.0.0", 0)
    assert s.db == Path("~/x/ptt.db").expanduser()
    assert s.record_dir == tmp_path / "rec"
    assert s.metrics == "127.0.0.1:9770"
    assert s.multicast_network == "239.192.0.0/14"
    assert s.session_timeout == 8.0
    saved = cfg.save_server_config(s, tmp_path / "s.toml")
    assert cfg.load_server_config(saved, env={}) == s
    assert ServerConfig(db=":memory:").db == Path(":memory:")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"multicast_network": "10.0.0.0/8"}, "not a multicast range"),
        ({"multicast_network": "bogus"}, "expected a multicast network"),
        ({"multicast_ttl": 300}, "multicast_ttl: expected 0-255"),
        ({"port": 70000}, "port: invalid port"),
        ({"host": "not a host"}, "host: invalid host"),
        ({"heartbeat_interval": 0}, "heartbeat_interval: expected a positive number"),
        ({"heartbeat_interval": 5.0, "session_timeout": 5.0}, "must exceed heartbeat_interval"),
        ({"metrics": "9770"}, "metrics: invalid address"),
        ({"emergency_roles": "volunteer,pilot"}, "emergency_roles: invalid role 'pilot'"),
        ({"emergency_roles": "dispatcher,"}, "emergency_roles: expected role names"),
        ({"emergency_roles": ""}, "emergency_roles: expected role names"),
        ({"emergency_roles": 2}, "emergency_roles: expected a list of roles"),
    ],
)
def test_bad_server_values(kwargs: dict[str, object], needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        ServerConfig(**kwargs)  # type: ignore[arg-type]
    assert needle in str(err.value)


def test_emergency_roles_default_file_environment_and_round_trip(
        xdg: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    volunteer, dispatcher, coordinator = Role.VOLUNTEER, Role.DISPATCHER, Role.COORDINATOR
    # a volunteer in trouble must be able to call, unless the operator says otherwise
    assert cfg.load_server_config().emergency_roles == {volunteer, dispatcher, coordinator}
    path = cfg.server_config_path()
    path.parent.mkdir(parents=True)
    path.write_text('emergency_roles = ["Coordinator", "dispatcher"]\n')
    s = cfg.load_server_config()
    assert s.emergency_roles == {dispatcher, coordinator}
    saved = cfg.save_server_config(s, tmp_path / "s.toml")
    assert tomllib.loads(saved.read_text())["emergency_roles"] == ["dispatcher", "coordinator"]
    assert cfg.load_server_config(saved, env={}) == s
    monkeypatch.setenv("PTT_SERVER_EMERGENCY_ROLES", " coordinator ")  # the variable wins
    assert cfg.load_server_config().emergency_roles == {coordinator}
    monkeypatch.setenv("PTT_SERVER_EMERGENCY_ROLES", "none")
    assert cfg.load_server_config().emergency_roles == frozenset()
    monkeypatch.delenv("PTT_SERVER_EMERGENCY_ROLES")
    path.write_text("emergency_roles = []\n")
    assert cfg.load_server_config().emergency_roles == frozenset()
    assert ServerConfig(emergency_roles=(volunteer,)).emergency_roles == {volunteer}  # type: ignore[arg-type]


def test_bad_emergency_roles_name_file_key_or_variable(
        xdg: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    path = cfg.server_config_path()
    path.parent.mkdir(parents=True)
    path.write_text('emergency_roles = ["dispatcher", "pilot"]\n')
    with pytest.raises(ConfigError, match=r"server\.toml: emergency_roles: invalid role 'pilot'"):
        cfg.load_server_config()
    path.unlink()
    monkeypatch.setenv("PTT_SERVER_EMERGENCY_ROLES", "volunteer;dispatcher")
    with pytest.raises(ConfigError, match="^PTT_SERVER_EMERGENCY_ROLES: invalid role"):
        cfg.load_server_config()


def test_bad_server_env_names_the_variable(xdg: dict[str, str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PTT_SERVER_SESSION_TIMEOUT", "soon")
    with pytest.raises(ConfigError, match="^PTT_SERVER_SESSION_TIMEOUT: expected a number"):
        cfg.load_server_config()


def test_tones_match_the_audio_tone_set(tmp_path: Path) -> None:
    tones = pytest.importorskip("ptt.audio.tones")
    assert set(cfg.TONE_KINDS) == set(tones.TONES)
    assert tones.ToneSet(**dataclasses.asdict(Tones(busy=False))).busy is False
    off = cfg.load_client_config(tmp_path / "none.toml", {"PTT_TONES": "off"}, missing_ok=True)
    assert off.tones == Tones(
        **dict.fromkeys(cfg.TONE_KINDS, False))


def test_configs_are_frozen_and_replaceable() -> None:
    c = ClientConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.user = "x"  # type: ignore[misc]
    assert dataclasses.replace(c, user="Bob").user == "bob"  # validation runs again


def test_a_cluster_server_list_from_the_file_or_the_environment(
        xdg: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    c = ClientConfig(server="127.0.0.1:7701",
                     servers=("127.0.0.1:7702", "[::1]:7703", "127.0.0.1:7701", "127.0.0.1:7702"))
    assert c.servers == ("127.0.0.1:7702", "[::1]:7703", "127.0.0.1:7701")  # repeats once
    assert c.other_servers == [("127.0.0.1", 7702), ("::1", 7703)]  # without `server`
    path = cfg.save_client_config(c, tmp_path / "c.toml")
    assert tomllib.loads(path.read_text())["servers"] == list(c.servers)
    assert cfg.load_client_config(path) == c
    monkeypatch.setenv("PTT_SERVERS", "10.0.0.1:7700, 10.0.0.2")  # the default port
    assert cfg.load_client_config(path).servers == ("10.0.0.1:7700", "10.0.0.2:7700")
    monkeypatch.setenv("PTT_SERVERS", "10.0.0.1:99999")
    with pytest.raises(ConfigError, match="^PTT_SERVERS: invalid address"):
        cfg.load_client_config(path)
    bad = tmp_path / "bad.toml"
    bad.write_text('servers = "10.0.0.1:7700"\nserver = "10.0.0.1:7700"\n')
    monkeypatch.delenv("PTT_SERVERS")
    assert cfg.load_client_config(bad).other_servers == []  # a string in the file works too
    bad.write_text("servers = 7700\n")
    with pytest.raises(ConfigError, match="servers: expected a list of HOST:PORT"):
        cfg.load_client_config(bad)
