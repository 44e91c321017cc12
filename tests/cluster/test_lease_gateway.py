"""The renewer's renewals over etcd's JSON gateway (``ptt.cluster.lease.GatewayRenewals``),
against a real etcd: a live lease's TTL, 0 for one revoked (the renewer's "lost"), a member that
holds the connection open and answers nothing ends the renewal within its timeout, a kept
connection that broke is opened again once (not taken for a failed member), and a
renewer renews from its one thread (no thread of gRPC's or of its own waits between
renewals). ~1.5 s."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time

import pytest

from ptt.cluster.engines import Etcd
from ptt.cluster.lease import Gateway, GatewayRenewals, LeaseRenewer, RenewalError
from ptt.protocol.cluster_fencing import LeaseClock


def _member(etcd: Etcd) -> tuple[str, int]:
    host, port = etcd.endpoint.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


def _call(member: tuple[str, int], path: str, body: bytes) -> dict[str, object]:
    gateway = Gateway(member)
    try:
        status, answer = gateway.post(path, body, 5.0)
    finally:
        gateway.close()
    assert status == 200, answer
    result = json.loads(answer)
    assert isinstance(result, dict)
    return result


def _grant(member: tuple[str, int], ttl: int) -> int:
    return int(str(_call(member, "/v3/lease/grant", b'{"TTL":%d}' % ttl)["ID"]))


def _revoke(member: tuple[str, int], lease_id: int) -> None:
    _call(member, "/v3/lease/revoke", b'{"ID":%d}' % lease_id)


def test_a_live_lease_is_renewed_and_a_revoked_one_reads_as_gone(etcd: Etcd) -> None:
    member = _member(etcd)
    lease_id = _grant(member, 30)
    renewals = GatewayRenewals(member)
    try:
        # on one connection, again and again
        assert [renewals.renew(lease_id, 2.0) for _ in range(3)] == [30, 30, 30]
        _revoke(member, lease_id)
        assert renewals.renew(lease_id, 2.0) == 0
    finally:
        renewals.close()


def test_a_kept_connection_that_broke_between_renewals_is_opened_again_once(etcd: Etcd) -> None:
    member = _member(etcd)
    lease_id = _grant(member, 30)
    renewals = GatewayRenewals(member)
    try:
        assert renewals.renew(lease_id, 2.0) == 30
        conn = renewals._conn  # the connection kept for the next renewal
        assert conn is not None and conn.sock is not None
        sock = conn.sock
        sock.shutdown(socket.SHUT_RDWR)  # broken as a member's closed or reset one is
        assert renewals.renew(lease_id, 2.0) == 30  # not a failed member: a new connection
        assert renewals._conn is not None and renewals._conn.sock is not sock
    finally:
        renewals.close()
        _revoke(member, lease_id)


def test_a_member_that_answers_nothing_ends_the_renewal_in_time() -> None:
    silent = socket.create_server(("127.0.0.1", 0))  # accepts (the kernel's backlog), never reads
    try:
        renewals = GatewayRenewals(silent.getsockname()[:2])
        started = time.monotonic()
        with pytest.raises(RenewalError) as err:
            renewals.renew(1, 0.3)
        assert err.value.unreachable
        assert time.monotonic() - started < 1.0
    finally:
        silent.close()


def test_the_renewer_renews_from_its_own_thread_alone(etcd: Etcd) -> None:
    member = _member(etcd)
    lease_id = _grant(member, 30)
    clock = LeaseClock(3.0)
    failed: list[object] = []

    async def run() -> tuple[set[str], bool]:
        renewer = LeaseRenewer([member], clock, clock=time.monotonic, timeout=0.5,
                               on_lost=lambda: failed.append("lost"),
                               on_member_failed=failed.append)
        before = {t.name for t in threading.enumerate()}
        renewer.begin(lease_id, time.monotonic() - 10.0, 3.0)  # acknowledged long ago
        renewer.start(asyncio.get_running_loop())
        try:
            renewed = False
            for _ in range(40):  # the renewer's first renewal acknowledges it again
                await asyncio.sleep(0.05)
                renewer.loop_alive(time.monotonic())
                renewed = clock.valid(time.monotonic())
                if renewed:
                    break
            return {t.name for t in threading.enumerate()} - before, renewed
        finally:
            await renewer.stop()
            _revoke(member, lease_id)

    started, renewed = asyncio.run(run())
    assert renewed and not failed, failed
    assert started == {"ptt-lease"}


def _switches(thread: threading.Thread) -> int:
    with open(f"/proc/self/task/{thread.native_id}/status") as f:
        return next(int(line.split()[1]) for line in f
                    if line.startswith("voluntary_ctxt_switches"))


def test_the_renewer_wakes_once_a_renewal_and_its_clock_stays_sure(etcd: Etcd) -> None:
    """Each renewal's answer is read at the thread's next wake-up, not waited for: one wake-up
    of the thread a renewal, and the lease clock sure of the lease all along (sure until an
    interval, a third of the TTL, past the last wake-up's answer). The test's etcd makes a
    lease of 2 s at least (its election timeout): renewals 2/3 s apart."""
    member = _member(etcd)
    lease_id = _grant(member, 2)
    clock = LeaseClock(2.0)
    failed: list[object] = []
    answered: list[float] = []

    async def run() -> tuple[int, bool]:
        renewer = LeaseRenewer([member], clock, clock=time.monotonic, timeout=1 / 3,
                               on_lost=lambda: failed.append("lost"),
                               on_member_failed=failed.append)
        answer = renewer._answered

        def counted(lease: int, sent: float, ttl: int) -> None:
            answered.append(sent)
            answer(lease, sent, ttl)

        renewer._answered = counted  # type: ignore[method-assign]
        renewer.begin(lease_id, time.monotonic(), 2.0)
        renewer.start(asyncio.get_running_loop())
        sure = True
        try:
            await asyncio.sleep(0.1)
            before = _switches(renewer._thread)
            first = len(answered)
            for _ in range(40):  # 2 s: three renewals
                await asyncio.sleep(0.05)
                renewer.loop_alive(time.monotonic())
                sure = sure and clock.valid(time.monotonic())
            switches = _switches(renewer._thread) - before
            print(f"{switches} wake-ups of the thread, {len(answered) - first} renewals")
            return switches - (len(answered) - first), sure
        finally:
            await renewer.stop()
            _revoke(member, lease_id)

    extra, sure = asyncio.run(run())
    assert not failed, failed
    assert len(answered) >= 3, answered
    assert sure
    assert extra <= 1, extra  # one wake-up a renewal (its interval's end), not two


def test_a_renewal_left_unanswered_moves_to_the_next_member_at_the_next_wake_up(
        etcd: Etcd) -> None:
    """A member that takes the renewal and answers nothing is left at the thread's next
    wake-up (an interval, the renewal's timeout) and the renewal is made again on the next
    member, its answer waited for: the lease clock is sure again within an interval and a
    few ms of the unanswered renewal."""
    member = _member(etcd)
    lease_id = _grant(member, 30)
    silent = socket.create_server(("127.0.0.1", 0))  # accepts (the kernel's backlog), never reads
    quiet = silent.getsockname()[:2]
    clock = LeaseClock(0.9)
    failed: list[object] = []

    async def run() -> float:
        renewer = LeaseRenewer([quiet, member], clock, clock=time.monotonic,
                               timeout=0.3, on_lost=lambda: failed.append("lost"),
                               on_member_failed=failed.append)
        # acknowledged long ago; a 0.9 s TTL: renewals 0.3 s apart, each the timeout
        renewer.begin(lease_id, time.monotonic() - 10.0, 0.9)
        started = time.monotonic()
        renewer.start(asyncio.get_running_loop())
        try:
            for _ in range(60):
                await asyncio.sleep(0.02)
                renewer.loop_alive(time.monotonic())
                if clock.valid(time.monotonic()):
                    return time.monotonic() - started
            return float("inf")
        finally:
            await renewer.stop()
            _revoke(member, lease_id)

    try:
        took = asyncio.run(run())
    finally:
        silent.close()
    assert failed == [quiet], failed
    assert 0.28 <= took < 0.3 + 0.2, took  # an interval, the renewal made again and answered
