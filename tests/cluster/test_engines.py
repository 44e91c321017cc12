"""The engine harness: each engine starts on loopback, answers, survives the loss of one member
of three, pauses and resumes, stops, and leaves no process behind; a failed start names the
engine and quotes its log."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

from ptt.cluster import engines
from ptt.cluster.engines import Engine, Etcd, Nats, Postgres
from ptt.errors import EngineError, PttError
from tests.cluster.conftest import EngineStarter

T = TypeVar("T")
_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _gone(engine: Engine) -> bool:
    """No process of any member's process group is left."""
    for pid in engine.pids:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            continue
        return False
    return True


def _psql(pg: Postgres, sql: str) -> str:
    psql = engines.binary("postgres").parent / "psql"
    out = subprocess.run([str(psql), pg.dsn, "-tAc", sql], capture_output=True, text=True,
                         timeout=20, check=True)
    return out.stdout.strip()


def _etcd_call(endpoint: str, path: str, body: dict[str, str], timeout: float = 1.0) -> dict:
    request = urllib.request.Request(f"{endpoint}/v3/{path}", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with _HTTP.open(request, timeout=timeout) as reply:
        return json.loads(reply.read())


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _etcd_put(endpoint: str, key: str, value: str) -> None:
    _etcd_call(endpoint, "kv/put", {"key": _b64(key), "value": _b64(value)})


def _retried(call: Callable[[], T], within: float = 10.0) -> T:
    """A call tried again on short timeouts: a request in flight when the raft leader dies is
    never answered (measured here: it hangs; a new one 0-1 s later succeeds)."""
    deadline = time.monotonic() + within
    while True:
        try:
            return call()
        except OSError:
            if time.monotonic() > deadline:
                raise


def _etcd_get(endpoint: str, key: str) -> str | None:
    kvs = _etcd_call(endpoint, "kv/range", {"key": _b64(key)}).get("kvs", [])
    return base64.b64decode(kvs[0]["value"]).decode() if kvs else None


async def _nats_roundtrip(publish_url: str, subscribe_url: str, subject: str) -> bytes:
    import nats

    sub_conn = await nats.connect(subscribe_url, connect_timeout=3, allow_reconnect=False)
    pub_conn = await nats.connect(publish_url, connect_timeout=3, allow_reconnect=False)
    try:
        sub = await sub_conn.subscribe(subject)
        await sub_conn.flush()
        # interest crosses the route asynchronously: publish until it arrives
        for _ in range(50):
            await pub_conn.publish(subject, b"over the route")
            await pub_conn.flush()
            try:
                msg = await sub.next_msg(timeout=0.1)
            except TimeoutError:
                continue
            return bytes(msg.data)
        raise AssertionError(f"nothing from {publish_url} reached {subscribe_url}")
    finally:
        await pub_conn.close()
        await sub_conn.close()


def test_postgres_answers_as_an_unprivileged_user(postgres: Postgres) -> None:
    assert postgres.dsn.startswith("postgresql://ptt@127.0.0.1:")
    assert _psql(postgres, "select 40 + 2") == "42"
    _psql(postgres, "create table if not exists harness (n int)")
    if os.geteuid() == 0:
        assert _psql(postgres, "select current_setting('fsync')") == "off"
        owner = os.stat(f"/proc/{postgres.pids[0]}").st_uid
        assert owner != 0, "initdb and postgres refuse root: the launcher runs them as another user"


def test_nats_answers(nats: Nats) -> None:
    assert asyncio.run(_nats_roundtrip(nats.url, nats.url, "harness.one")) == b"over the route"


def test_nats_cluster_routes_between_members(nats_cluster: Nats) -> None:
    first, _, last = nats_cluster.urls
    assert asyncio.run(_nats_roundtrip(first, last, "harness.route")) == b"over the route"


def test_etcd_answers(etcd: Etcd) -> None:
    _etcd_put(etcd.endpoint, "/harness/one", "1")
    assert _etcd_get(etcd.endpoint, "/harness/one") == "1"


def test_etcd_cluster_replicates(etcd_cluster: Etcd) -> None:
    first, _, last = etcd_cluster.endpoints
    _etcd_put(first, "/harness/three", "3")
    assert _etcd_get(last, "/harness/three") == "3"


def test_each_engine_stops_and_leaves_no_process(fresh_engines: EngineStarter) -> None:
    started = [fresh_engines.postgres(), fresh_engines.nats(), fresh_engines.etcd()]
    for engine in started:
        assert engine.running()
        engine.stop()
        assert not engine.running()
        assert _gone(engine), f"{engine.kind} left a process behind"
    assert started[0].data_root is not None and not started[0].data_root.exists()


def test_postgres_kill_takes_its_backends_too(fresh_engines: EngineStarter) -> None:
    pg = fresh_engines.postgres()
    # a session holds a backend process while the postmaster is killed
    holder = subprocess.Popen(
        [str(engines.binary("postgres").parent / "psql"), pg.dsn, "-c", "select pg_sleep(60)"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            if int(_psql(pg, "select count(*) from pg_stat_activity where query like "
                              "'select pg_sleep%'")):
                break
        pg.kill()
        assert _gone(pg)
    finally:
        holder.kill()
        holder.wait()


def test_etcd_cluster_survives_one_member_killed(fresh_engines: EngineStarter) -> None:
    etcd = fresh_engines.etcd(3)
    etcd.members[0].kill()
    first, second, third = etcd.endpoints
    _retried(lambda: _etcd_put(second, "/harness/after-kill", "yes"))
    assert _retried(lambda: _etcd_get(third, "/harness/after-kill")) == "yes"
    # the member comes back on its ports and data, and catches up
    etcd.members[0].start()
    assert _retried(lambda: _etcd_get(first, "/harness/after-kill")) == "yes"


def test_a_paused_etcd_member_answers_nothing_until_resumed(fresh_engines: EngineStarter) -> None:
    etcd = fresh_engines.etcd(3)
    first, second, _ = etcd.endpoints
    etcd.members[0].pause()
    with pytest.raises(OSError):
        _etcd_call(first, "kv/range", {"key": _b64("/harness/x")}, timeout=0.5)
    _retried(lambda: _etcd_put(second, "/harness/paused", "1"))
    etcd.members[0].resume()
    assert _retried(lambda: _etcd_get(first, "/harness/paused")) == "1"
    etcd.stop()
    assert _gone(etcd)


def test_nats_cluster_survives_one_member_killed(fresh_engines: EngineStarter) -> None:
    nats_cluster = fresh_engines.nats(3)
    nats_cluster.members[1].kill()
    first, _, last = nats_cluster.urls
    assert asyncio.run(_nats_roundtrip(first, last, "harness.loss")) == b"over the route"


def test_a_failed_start_names_the_engine_and_quotes_its_log(tmp_path: Path) -> None:
    if engines.missing("nats-server"):
        pytest.skip(engines.missing("nats-server"))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        # every try's client port is the taken one
        draws = itertools.count()

        def source() -> int:
            return port if next(draws) % 2 == 0 else engines.os_port()

        with pytest.raises(EngineError) as caught:
            engines.start_nats(tmp_path, port_source=source, ready_within=10)
    message = str(caught.value)
    assert isinstance(caught.value, PttError)
    assert message.startswith("nats exited while starting")
    assert "address already in use" in message.lower()
    assert str(tmp_path / "nats-n0.log") in message


def test_a_missing_binary_says_which_package_brings_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    assert engines.missing("nats-server") == (
        "nats-server is not installed (Debian package nats-server; `make deps` installs it)"
    )
