"""The ``--cluster`` file of ``ptt server``: which node this is and where the engines are.

::

    node = "a"                           # this node's id: letters, digits, '-', '_'
    address = "127.0.0.1:7701"           # its UDP address (clients log in here)
    nodes = ["a", "b", "c"]              # every node of the cluster, this one included
    nats = ["nats://127.0.0.1:4222"]     # NATS, node-to-node messages (ptt.cluster.bus)
    postgres = "postgresql://..."        # the shared directory (ptt.cluster.directory)
    etcd = ["http://127.0.0.1:2379"]     # group ownership (ptt.cluster.ownership)
    lease_ttl = 1                        # whole seconds a home holds its groups unrenewed
    subject_prefix = "ptt"               # NATS subjects: <prefix>.node.<id>
    steer = true                         # logins told the node homing their groups (affinity)
    peer = "127.0.0.1:0"                 # its UDP peer port: voice from the other nodes (0: any)

    [homes]                              # groups placed by hand (others: by name's CRC-32)
    volunteers = "c"

Only ``node``, ``nodes`` and ``nats`` are required. Without ``etcd`` homes are placed by
:class:`~ptt.protocol.cluster_routing.StaticHomes` alone (no failover); without ``postgres``
each node reads the directory from its own SQLite database, which only copies of one file keep
alike (docs/cluster.md). Anything wrong is one :class:`~ptt.errors.ConfigError` line naming the
file and the setting.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ptt.errors import ConfigError, ValidationError
from ptt.names import parse_hostport

__all__ = ["DEFAULT_PEER", "ClusterConfig", "load_cluster_config", "parse_cluster_config"]

_NODE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_KEYS = {"node", "address", "nodes", "nats", "postgres", "etcd", "lease_ttl", "subject_prefix",
         "homes", "steer", "peer"}
# where a node's peer port listens unless the file says: loopback, as every default binds
DEFAULT_PEER = ("127.0.0.1", 0)
_WILDCARDS = {"0.0.0.0", "::", ""}


@dataclass(frozen=True)
class ClusterConfig:
    node: str
    nodes: tuple[str, ...]
    nats: tuple[str, ...]
    address: tuple[str, int] | None = None
    postgres: str | None = None
    etcd: tuple[str, ...] = ()
    lease_ttl: int | None = None  # None: ptt.cluster.ownership's DEFAULT_TTL
    subject_prefix: str = "ptt"
    homes: dict[str, str] = field(default_factory=dict)
    # each Welcome names the node that homes most of the user's groups, and the client moves
    # there (ptt.protocol.server_list "Steering"); needs etcd (where the nodes are). False: a
    # client stays on the node it chose (tests and benches that place clients themselves)
    steer: bool = True
    # the UDP port voice from the other nodes comes to (ptt.wire.peer); its address is what
    # the other nodes are told (ptt.wire.cluster.Peer), so a specific one, not a wildcard
    peer: tuple[str, int] = DEFAULT_PEER


def load_cluster_config(path: Path) -> ClusterConfig:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cluster config {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"cluster config {path}: not UTF-8 text") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"cluster config {path}: not valid TOML: {exc}") from None
    try:
        return parse_cluster_config(raw)
    except ConfigError as exc:
        raise ConfigError(f"cluster config {path}: {exc}") from None


def _strings(raw: dict[str, Any], key: str, required: bool) -> tuple[str, ...]:
    value = raw.get(key)
    if value is None:
        if required:
            raise ConfigError(f"'{key}' is required")
        return ()
    if isinstance(value, str):
        value = [value]
    if (not isinstance(value, list) or not value
            or not all(isinstance(v, str) and v for v in value)):
        raise ConfigError(f"'{key}' must be a non-empty list of strings")
    return tuple(value)


def _node_id(value: Any, what: str) -> str:
    if not isinstance(value, str) or not _NODE_ID.fullmatch(value):
        raise ConfigError(f"{what} must be a node id of 1-64 letters, digits, '-' or '_', "
                          f"not {value!r}")
    return value


def _hostport(raw: dict[str, Any], key: str) -> tuple[str, int] | None:
    if key not in raw:
        return None
    if not isinstance(raw[key], str):
        raise ConfigError(f"'{key}' must be a string HOST:PORT")
    try:
        return parse_hostport(raw[key], allow_zero=True)
    except ValidationError as exc:
        raise ConfigError(f"'{key}': {exc}") from None


def parse_cluster_config(raw: dict[str, Any]) -> ClusterConfig:
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        raise ConfigError(f"unknown setting '{unknown[0]}' (known: {', '.join(sorted(_KEYS))})")
    node = _node_id(raw.get("node"), "'node'")
    nodes = tuple(_node_id(n, "each of 'nodes'") for n in _strings(raw, "nodes", True))
    if len(set(nodes)) != len(nodes):
        raise ConfigError("'nodes' lists a node twice")
    if node not in nodes:
        raise ConfigError(f"'node' ({node}) is not one of 'nodes' ({', '.join(nodes)})")
    nats = _strings(raw, "nats", True)
    for url in nats:
        if not url.startswith(("nats://", "tls://")):
            raise ConfigError(f"'nats': {url!r} is not a nats:// URL")
    address = _hostport(raw, "address")
    postgres = raw.get("postgres")
    if postgres is not None and (not isinstance(postgres, str) or not postgres):
        raise ConfigError("'postgres' must be a DSN string")
    ttl = raw.get("lease_ttl")
    if ttl is not None and (type(ttl) is not int or not 1 <= ttl <= 60):
        raise ConfigError("'lease_ttl' must be a whole number of seconds from 1 to 60 "
                          "(etcd leases count in seconds)")
    prefix = raw.get("subject_prefix", "ptt")
    if not isinstance(prefix, str) or not re.fullmatch(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*",
                                                        prefix):
        raise ConfigError("'subject_prefix' must be NATS subject tokens separated by '.'")
    homes_raw = raw.get("homes", {})
    if not isinstance(homes_raw, dict):
        raise ConfigError("'homes' must be a table: group = \"node\"")
    homes = {}
    for group, home in homes_raw.items():
        homes[group] = _node_id(home, f"homes.{group}")
        if home not in nodes:
            raise ConfigError(f"homes.{group}: '{home}' is not one of 'nodes'")
    steer = raw.get("steer", True)
    if not isinstance(steer, bool):
        raise ConfigError("'steer' must be true or false")
    peer = _hostport(raw, "peer") or DEFAULT_PEER
    if peer[0] in _WILDCARDS:
        raise ConfigError("'peer' must be this node's own address (the other nodes send "
                          f"voice to it), not the wildcard {peer[0] or '*'}")
    return ClusterConfig(node, nodes, nats, address, postgres, _strings(raw, "etcd", False),
                         ttl, prefix, homes, steer, peer)
