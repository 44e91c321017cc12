"""A dead access node's clients move to another node (issue #17): three real ``ptt server
--cluster`` processes (NATS, etcd with short election timers; each node on its own copy of one
SQLite directory), the real ``ptt`` console scripts with a server list, node b SIGKILLed after a
false hint (a connection under b's name closing while b lives) moved nobody."""

from __future__ import annotations

import asyncio
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import nats as nats_py
import pytest

from ptt.cluster.bus import CLIENT_NAME
from ptt.cluster.engines import Etcd, Nats
from ptt.protocol import client as cl
from tests.acceptance.harness import (
    finish,
    no_traceback,
    read_until,
    tone_wav,
    voiced_seconds,
)
from tests.cluster.test_nodes import HOME, Cluster, _start, interrupt, read_log_until


@pytest.fixture
def cluster(tmp_path: Path, nats: Nats, etcd_fast: Etcd) -> Iterator[Cluster]:
    yield from _start(tmp_path, nats, etcd_fast)


def _listed(cluster: Cluster, user: str, first: str) -> dict[str, str]:
    """``user``'s environment: ``first`` as its server, every node in its server list."""
    port = {n: srv.port for n, srv in cluster.nodes.items()}
    return cluster.site.env(user, PTT_SERVER=f"127.0.0.1:{port[first]}",
                            PTT_SERVERS=",".join(f"127.0.0.1:{p}" for p in port.values()))


async def _connect_and_close(url: str, name: str) -> None:
    nc = await nats_py.connect(url, name=name, connect_timeout=5)
    await nc.flush()
    await nc.close()


def test_an_access_node_killed_its_clients_back_on_another_node(cluster: Cluster, nats: Nats,
                                                                 tmp_path: Path) -> None:
    """bob listens on node b (configured with b alone: its Welcome lists every live node) and
    dan talks through b (configured with all three); b is SIGKILLed. NATS tells a and c that
    b's connection closed, nothing is subscribed to b's subject, and they tell b's clients
    while b's lease still stands (so less than a lease TTL after the kill); bob's listener
    moves to a or c by itself; dan's talk says its session was lost, moves too and sends its
    page again; ann, whose list starts with the dead b, keys and talks through another node;
    bob hears both pages after the move. Before the kill, a false hint: a connection under b's
    name closes while b lives (as when b's NATS member dies and b reconnects elsewhere, or
    anyone connects under its name); a and c ask b's subject, b answers, nobody is told. After
    the kill a second connection under b's name closes while they probe: each tells b's
    clients once."""
    for node in ("a", "c"):  # up, and following the nodes' keys in etcd
        read_log_until(cluster.nodes[node], "cluster node")
    site = cluster.site
    page = tone_wav(tmp_path / "dan.wav", 3.0)
    short = tone_wav(tmp_path / "ann.wav", 1.0, 660.0)
    heard = tmp_path / "bob.wav"
    # bob configures node b alone: b's Welcome names a and c too
    bob = site.spawn("bob", "listen", "g", "--out", str(heard),
                     env=site.env("bob", PTT_SERVER=f"127.0.0.1:{cluster.nodes['b'].port}"))
    dan = None
    try:
        read_until(bob, "g", timeout=20)  # joined on b
        dan = site.spawn("dan", "talk", "g", "--wav", str(page), env=_listed(cluster, "dan", "b"))
        read_until(dan, "floor granted", timeout=20)
        time.sleep(0.5)  # b has published where its clients are (every 0.5 s)
        asyncio.run(_connect_and_close(nats.url, f"{CLIENT_NAME}b"))
        for node in ("a", "c"):
            read_log_until(cluster.nodes[node], "node b: NATS said its connection closed, but it "
                           "answers on the bus: its clients stay", within=10)
        time.sleep(0.5)  # a notice, had one gone, would be out by now
        for node in ("a", "c"):
            assert "telling" not in cluster.nodes[node].output(), cluster.nodes[node].output()
        killed = time.monotonic()
        cluster.nodes["b"].kill()
        # a second event naming b while the survivors probe: one notice each all the same
        asyncio.run(_connect_and_close(nats.url, f"{CLIENT_NAME}b"))
        read_until(bob, "connection lost", timeout=20)
        lost = time.monotonic() - killed
        read_until(bob, "connected", timeout=20)
        back = time.monotonic() - killed
        # b's clients (bob, and dan once b had published him) were told, each by one survivor,
        # before b's lease expired: its expiry is at most a TTL after its last renewal, which
        # came before the kill
        told = [read_log_until(cluster.nodes[n], "node b died") for n in ("a", "c")]
        assert all("its lease not expired yet" in t for t in told), told
        # b's own end closed its connection (its process is gone): one probe, no second
        assert all("closed by it, nothing subscribed" in t for t in told), told
        shares = [re.search(r"telling (\d) of its ([12]) client\(s\) to move", t) for t in told]
        assert all(shares), told
        assert shares[0][2] == shares[1][2], told  # the same list read by both
        assert int(shares[0][1]) + int(shares[1][1]) == int(shares[0][2]), told
        for n in ("a", "c"):  # b's list read and its clients told once by each survivor
            assert cluster.nodes[n].output().count("node b died") == 1, cluster.nodes[n].output()
        code, out, err = finish(dan, timeout=30)
        no_traceback(err)
        assert code == 0, (out, err)
        assert f"session lost ({cl.LOST_NODE}): sending the page again" in out, out
        started = time.monotonic()
        talk = site.ptt("ann", "talk", "g", "--wav", str(short), timeout=60,
                        env=_listed(cluster, "ann", "b"))
        code, out, err = talk.returncode, talk.stdout, talk.stderr
        no_traceback(err)
        assert code == 0 and "floor granted" in out, (out, err)
        keyed = time.monotonic() - started
        read_until(bob, "ann is talking", timeout=10)
        time.sleep(1.5)  # the rest of ann's second of voice
    finally:
        for p in (bob, dan):
            if p is not None and p.poll() is None:
                p.send_signal(signal.SIGINT)
                finish(p, timeout=10)
    # before the kill bob heard about a second of dan; after the move, dan's whole page again
    # (3 s) and ann's (1 s)
    voiced = voiced_seconds(heard)
    assert voiced >= 4.0, f"bob heard only {voiced:.1f} s of voice"
    print(f"b killed: bob's session lost (notice + its 0.3 s check) {lost:.2f} s, back on "
          f"another node after {back:.2f} s; ann (list starting with "
          f"the dead b) granted the floor {keyed:.2f} s after starting; bob heard {voiced:.1f} s")


@pytest.fixture
def steering(tmp_path: Path, nats: Nats, etcd_fast: Etcd) -> Iterator[Cluster]:
    yield from _start(tmp_path, nats, etcd_fast, steer=True)


def test_a_client_moves_to_its_groups_home_and_stays_there(steering: Cluster,
                                                           tmp_path: Path) -> None:
    """Group affinity with real nodes: bob, configured with node a alone, listens to g (homed
    on c): a's Welcome names c, bob moves there once (a second "connected", no loss) and
    stays. Node a is then SIGKILLed: bob, on c, does not notice, and hears dan's page sent
    through node b."""
    cluster = steering
    for node in ("a", "b", "c"):
        read_log_until(cluster.nodes[node], "cluster node")
    site = cluster.site
    heard = tmp_path / "bob.wav"
    bob = site.spawn("bob", "listen", "g", "--out", str(heard),
                     env=site.env("bob", PTT_SERVER=f"127.0.0.1:{cluster.nodes['a'].port}"))
    try:
        first = read_until(bob, "g", timeout=20)  # joined on a
        try:
            moved = read_until(bob, "connected", timeout=20)  # within the steer's jitter
        except AssertionError:
            for n, srv in cluster.nodes.items():
                print(n, srv.output()[-3000:])
            raise
        assert not any("connection lost" in line for line in first + moved), moved
        cluster.nodes["a"].kill()
        time.sleep(2.0)  # a's lease expired: its last clients (none now) were told to move
        page = tone_wav(tmp_path / "dan.wav", 1.0)
        talk = site.ptt("dan", "talk", "g", "--wav", str(page), timeout=60,
                        env=site.env("dan", PTT_SERVER=f"127.0.0.1:{cluster.nodes['b'].port}"))
        no_traceback(talk.stderr)
        assert talk.returncode == 0 and "floor granted" in talk.stdout, (talk.stdout,
                                                                         talk.stderr)
        after = read_until(bob, "dan is talking", timeout=10)
        assert not any("connection lost" in line or line.strip() == "connected"
                       for line in after), after  # never left c
        time.sleep(1.5)
    finally:
        if bob.poll() is None:
            bob.send_signal(signal.SIGINT)
            finish(bob, timeout=10)
    assert voiced_seconds(heard) >= 0.5


async def _connect_and_close(url: str, name: str) -> None:
    nc = await nats_py.connect(url, name=name, connect_timeout=5)
    await nc.flush()
    await nc.close()



def test_the_talker_moved_off_a_killed_node_is_granted_again_at_once(cluster: Cluster,
                                                                      tmp_path: Path) -> None:
    """dan pages g through node b (configured with all three); bob listens on a. b is
    SIGKILLed mid-page: dan's ``ptt talk`` says its session was lost, moves to the survivor
    that told it to and asks again at once, while the home c still holds his burst (the
    same burst id granted again shows it): his own device, it is granted, not told "busy:
    try again later" as a second device of the holder is; it sends the page from the start
    and exits 0, and bob hears it."""
    for node in ("a", "c"):
        read_log_until(cluster.nodes[node], "cluster node")
    page = tone_wav(tmp_path / "dan.wav", 2.0)
    heard = tmp_path / "bob.wav"
    bob = cluster.spawn("bob", "a", "listen", "g", "--out", str(heard))
    dan = None
    try:
        read_until(bob, "joined g", timeout=20)
        dan = cluster.site.spawn("dan", "talk", "g", "--wav", str(page),
                                 env=_listed(cluster, "dan", "b"))
        read_until(dan, "floor granted", timeout=20)
        read_until(bob, "dan is talking", timeout=10)
        time.sleep(0.5)  # b has published where its clients are (every 0.5 s)
        mark = len(cluster.nodes[HOME].output())
        cluster.nodes["b"].kill()
        killed = time.monotonic()
        lines = read_until(dan, "floor granted", timeout=20)
        again = time.monotonic() - killed
        assert any("sending the page again from the start" in x for x in lines), lines
        code, out, err = finish(dan, timeout=30)
        no_traceback(err)
        assert code == 0 and "busy" not in out + err, (lines, out, err)
        read_until(bob, "floor idle", timeout=10)
    finally:
        interrupt(dan, bob)
    log = cluster.nodes[HOME].output()
    grants = re.findall(r"event=floor_granted group=g user=dan burst=(\d+)", log)
    assert len(grants) == 2 and grants[0] == grants[1], log  # granted while the home held it
    assert "event=floor_denied" not in log[mark:], log[mark:]
    voiced = voiced_seconds(heard)
    print(f"b killed: dan granted his burst again after {again:.2f} s; bob heard {voiced:.1f} s")
    assert voiced >= 2.0, f"bob heard {voiced:.1f} s: not dan's whole page again"
