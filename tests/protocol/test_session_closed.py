"""SessionClosed (the oldest device of a user ended by a login from one device too many) is a
reliable server notice: resent until the client acknowledges it, at most RETRY_TOTAL, so a lost
copy does not leave the old device believing it is online."""

from __future__ import annotations

import pytest

from ptt.protocol.client import ClientCore, ConnState, Disconnected
from ptt.protocol.server import SessionEnded, SessionStarted
from ptt.protocol.transactions import RETRY_TOTAL
from tests.protocol.simnet import SimNet

MAX_DEVICES = 4  # the server's default


def _devices(net: SimNet, n: int) -> list[str]:
    """``n`` devices of bob (net.clients keys), each on its own address, in the group "g"."""
    net.add_user("bob")
    net.add_group("g", ["bob"], 1)
    token = "token-of-bob-0123456789abcdef"  # SimNet.add_user's
    keys = ["bob"]
    for i in range(1, n):
        key = f"bob@d{i}"
        net.clients[key] = ClientCore("bob", token, net.rng.randbytes, device=f"d{i}")
        net.addrs[key] = ("10.255.1.%d" % i, 40000)
        net.client_events[key] = []
        keys.append(key)
    return keys


def _online(net: SimNet, key: str, bound: float = 10.0) -> None:
    c = net.clients[key]
    c.connect(net.now)
    c.join("g", net.now)
    end = net.now + bound
    while c.conn is not ConnState.CONNECTED and net.now < end:
        net.run_until(net.now + 0.05)
    assert c.conn is ConnState.CONNECTED


def _told(net: SimNet, key: str) -> list[Disconnected]:
    return [e for e in net.client_events[key] if isinstance(e, Disconnected) and e.final]


def test_a_lost_session_closed_is_resent_until_acknowledged() -> None:
    net = SimNet(seed=4)
    keys = _devices(net, MAX_DEVICES + 1)
    for key in keys[:MAX_DEVICES]:
        _online(net, key)
        net.run_until(net.now + 0.1)  # the first is the oldest beyond doubt
    oldest = net.clients[keys[0]]
    to_oldest: list[float] = []
    send = net._send

    def lossy(dest: object, data: bytes) -> None:
        if dest == keys[0]:
            to_oldest.append(net.now)
            if net.now < lost_until:
                return  # the first copies of the SessionClosed are lost
        send(dest, data)

    lost_until = net.now + 0.5
    net._send = lossy  # type: ignore[method-assign]
    _online(net, keys[MAX_DEVICES])
    net.run_until(lost_until + 1.0)
    told = _told(net, keys[0])
    assert len(told) == 1 and f"at most {MAX_DEVICES}" in told[0].reason
    assert oldest.conn is ConnState.DISCONNECTED
    # acknowledged: the server stops resending well before RETRY_TOTAL
    quiet_from = net.now
    net.run_until(net.now + RETRY_TOTAL + 1.0)
    assert [t for t in to_oldest if t > quiet_from] == []
    assert all(net.clients[k].conn is ConnState.CONNECTED for k in keys[1:])
    ended = [e for e in net.server_events if isinstance(e, SessionEnded)]
    assert [e.reason for e in ended] == ["too many devices"]  # the old device did not come back
    assert len([e for e in net.server_events if isinstance(e, SessionStarted)]) == len(keys)


@pytest.mark.parametrize("seed", range(40, 48))
def test_the_oldest_device_is_told_within_2_s_at_30_percent_loss(seed: int) -> None:
    net = SimNet(seed=seed)
    keys = _devices(net, MAX_DEVICES + 1)
    for key in keys[:MAX_DEVICES]:
        _online(net, key)
        net.run_until(net.now + 0.1)
    net.loss = 0.3
    net.delay = (0.001, 0.03)
    _online(net, keys[MAX_DEVICES], bound=30.0)
    t0 = net.now
    while not _told(net, keys[0]) and net.now < t0 + 2.0:
        net.run_until(net.now + 0.02)
    assert _told(net, keys[0]), f"not told within 2 s (seed {seed})"
    net.run_until(t0 + RETRY_TOTAL + 1.0)
    assert net.clients[keys[0]].conn is ConnState.DISCONNECTED
    started = [e for e in net.server_events if isinstance(e, SessionStarted)]
    assert len(started) == len(keys)  # nobody was ended in turn by the old device coming back
