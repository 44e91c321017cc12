"""One exception tree for all of ptt.

::

    PttError                      root: the CLI turns any of these into one clean line
    ├── ProtocolError             bytes that are not a valid ptt datagram (wire decoding)
    ├── FloorError                an illegal use of the floor state machines (a local bug)
    ├── ConfigError               missing or invalid settings, config files, env vars
    ├── StoreError                the SQLite store refused an operation
    │   ├── NotFoundError         unknown user or group
    │   └── ConflictError         a name that is already taken
    ├── ValidationError           an invalid name, role, number, file argument
    ├── AuthError                 wrong token, not a coordinator, session refused
    ├── RequestError              the server answered a request with an error code
    ├── NetError                  sockets, unreachable server, timeouts, multicast routes
    ├── AudioError                devices, WAV files, the Opus codec
    ├── RecordingError            Ogg Opus files and event logs that cannot be read or written
    ├── ClusterError              the cluster's engines, ownership, directory or bus failed
    │   └── EngineError           PostgreSQL, NATS or etcd would not start or answer
    └── Interrupted               SIGINT or SIGTERM stopped a command (after a clean finish)

Every error carries a message meant for a person, so ``str(err)`` is what the CLI prints.
"""

from __future__ import annotations


class PttError(Exception):
    """Root of every error ptt raises on purpose."""

    exit_code: int = 1


class ProtocolError(PttError):
    """A datagram could not be decoded, or broke the protocol's rules."""


class FloorError(PttError):
    """The floor state machines were driven in a way the rules forbid."""


class ConfigError(PttError):
    """Settings are missing or invalid."""

    exit_code = 2


class ValidationError(PttError):
    """An argument or input value is invalid."""

    exit_code = 2


class StoreError(PttError):
    """The persistent store refused an operation."""


class NotFoundError(StoreError):
    """An unknown user or group."""


class ConflictError(StoreError):
    """A name that is already taken."""


class AuthError(PttError):
    """Authentication or authorisation failed."""

    exit_code = 3


class RequestError(PttError):
    """The server answered a request with an error code."""

    def __init__(self, message: str, code: str = "error") -> None:
        super().__init__(message)
        self.code = code


class NetError(PttError):
    """A network problem: unreachable server, timeout, missing multicast route."""

    exit_code = 4


class AudioError(PttError):
    """An audio device, a WAV file or the codec failed."""


class RecordingError(PttError):
    """A recording or event log could not be read or written."""


class ClusterError(PttError):
    """A cluster node's engines, group ownership, directory or bus failed."""


class EngineError(ClusterError):
    """An engine (PostgreSQL, NATS, etcd) would not start, answer or stop; the message names
    the engine and ends with the last lines of its log."""


class Interrupted(PttError):
    """SIGINT or SIGTERM stopped a command after it finished cleanly (floor released, files
    closed): exit 128 + the signal's number, as shells report it (130 for Ctrl-C, 143 for
    SIGTERM). ``str(err)`` says what was done before the stop, or is empty."""

    def __init__(self, message: str = "", signum: int = 2) -> None:
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + signum
