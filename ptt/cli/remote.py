"""Talking to the server from a command: load the client config, log in, run one admin op.

Every admin command is ``print(admin(op, args))``: this module owns the connection so that the
commands stay declarations. Server-side errors arrive as ``RequestError(message, code)``;
:func:`admin` turns the codes back into the local exception classes, so an unknown group exits
1 and an invalid name exits 2 whether the CLI or the server noticed it first.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from ptt.cli.completion import remember_answer
from ptt.cli.options import CliState
from ptt.client.connection import Connection, multicast_options
from ptt.config import ClientConfig, load_client_config
from ptt.errors import (
    AuthError,
    ConflictError,
    NetError,
    NotFoundError,
    PttError,
    RequestError,
    ValidationError,
)
from ptt.names import format_hostport
from ptt.protocol import client as cl

# wire error code (lower-case ErrorCode name) -> the local error class with the right exit code
_BY_CODE: dict[str, type[PttError]] = {
    "not_found": NotFoundError,
    "conflict": ConflictError,
    "invalid": ValidationError,
    "forbidden": AuthError,
    "auth_failed": AuthError,
}


def client_config(state: CliState) -> ClientConfig:
    """Defaults < config file < ``PTT_*`` variables < ``--server`` (see :mod:`ptt.config`)."""
    config = load_client_config(state.config_path)
    if state.server is not None:
        config = dataclasses.replace(config, server=state.server)
    return config


async def connect(config: ClientConfig, timeout: float) -> tuple[Connection, cl.Connected]:
    """A logged-in connection; the caller closes it. Errors name the server and a next step."""
    user, token = config.require_login()
    conn = Connection(config.address, user, token, multicast_options(config),
                      servers=config.other_servers)
    where = format_hostport(*config.address)
    try:
        connected = await conn.open(timeout)
    except NetError as exc:
        await conn.close()
        # UDP cannot tell "nobody listens" from "slow": say both things worth checking
        if config.other_servers:
            raise NetError(f"{exc}: is 'ptt server' running at any of them?") from None
        raise NetError(f"{exc}: is 'ptt server' running at {where}?") from None
    except AuthError as exc:
        await conn.close()
        raise AuthError(f"{exc} (user '{user}' at {where}): check the token, or ask a "
                        f"coordinator for a new one") from None
    except BaseException:
        await conn.close()
        raise
    return conn, connected


async def _admin(config: ClientConfig, timeout: float, op: str, args: dict[str, Any]
                 ) -> dict[str, Any]:
    conn, _ = await connect(config, timeout)
    try:
        return await conn.admin(op, args, timeout)
    except AuthError as exc:
        command = "ptt " + op.replace(".", " ")
        raise AuthError(f"permission denied: {exc} ('{conn.user}' cannot run '{command}')"
                        ) from None
    finally:
        await conn.close()


def admin(state: CliState, op: str, args: dict[str, Any]) -> dict[str, Any]:
    """Run one coordinator operation (see :mod:`ptt.server.admin`) and return its result."""
    config = client_config(state)
    config.require_login()  # before any socket: the most common first-run mistake
    try:
        result = asyncio.run(_admin(config, state.timeout, op, args))
    except RequestError as exc:
        cls = _BY_CODE.get(exc.code)
        if cls is None:
            raise
        raise cls(str(exc)) from None
    remember_answer(op, result)  # names for shell completion, which never asks the server
    return result
