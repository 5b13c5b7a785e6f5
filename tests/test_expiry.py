"""Expiry: idle and absolute deadlines, restarts, warnings, lateness and races, each session
ending exactly once. On looptime's virtual clock, but for the tests of a loop that is late
(``@late_loop``, see tests/clock.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from itertools import pairwise

import pytest

from sessionkit import SessionEvent, SessionManager, SessionNotFound, StoreUnavailable
from sessionkit.models import SessionRecord
from sessionkit.stores.base import Pending
from tests import internals
from tests.clock import LATE, LoopClockStore, jump, late_loop, manager
from tests.recorder import Recorder


@pytest.mark.looptime
async def test_idle_expiry_fires_once_at_the_deadline() -> None:
    async with manager(timeout=3000) as sm:
        log = Recorder(sm)
        key = await sm.load_new_session("Luca")
        await asyncio.sleep(2999.9)
        assert await sm.check_session_status(key)
        await asyncio.sleep(1)
        assert not await sm.check_session_status(key)
        [(when, user, reason)] = log.timeline("session_expired")
        assert 3000 <= when <= 3000 + LATE
        assert (user, reason) == ("Luca", "expired")
        assert log.names() == [
            "session_created",
            "session_deleted",
            "session_expired",
            "notify_client_to_logout",
        ]
        await asyncio.sleep(10_000)
        assert len(log.timeline("session_deleted")) == 1


@pytest.mark.looptime
async def test_restart_extends_the_session() -> None:
    async with manager(timeout=100) as sm:
        log = Recorder(sm)
        key = await sm.load_new_session("Luca")
        for _ in range(5):
            await asyncio.sleep(60)
            await sm.restart_session_timer(key)
        # Last restart at t=300: the session lives until t=400.
        await asyncio.sleep(99)
        assert await sm.check_session_status(key)
        assert log.timeline("session_expired") == []
        await asyncio.sleep(2)
        [(when, _, _)] = log.timeline("session_expired")
        assert 400 <= when <= 400 + LATE


@pytest.mark.looptime
async def test_new_timeout_applies_only_to_later_sessions_and_restarts() -> None:
    async with manager(timeout=1000) as sm:
        log = Recorder(sm)
        old = await sm.load_new_session("old")
        restarted = await sm.load_new_session("restarted")
        sm.set_session_timeout(10)
        new = await sm.load_new_session("new")
        await sm.restart_session_timer(restarted)  # a shorter deadline re-arms its timer
        await asyncio.sleep(11)
        assert await sm.check_session_status(old)
        assert not await sm.check_session_status(new)
        assert not await sm.check_session_status(restarted)
        assert {user for _, user, _ in log.timeline("session_expired")} == {"new", "restarted"}
        await asyncio.sleep(1000)
        assert [user for _, user, _ in log.timeline("session_expired")][-1] == "old"


@pytest.mark.looptime
async def test_absolute_timeout_caps_an_active_session() -> None:
    async with manager(timeout=100, absolute_timeout=250) as sm:
        log = Recorder(sm)
        key = await sm.load_new_session("Luca")
        for _ in range(10):
            await asyncio.sleep(30)
            if await sm.check_session_status(key):
                await sm.restart_session_timer(key)
        [(when, user, reason)] = log.timeline("session_expired")
        assert 250 <= when <= 250 + LATE
        assert (user, reason) == ("Luca", "absolute_timeout")
        assert log.timeline("session_deleted")[0][2] == "absolute_timeout"


@pytest.mark.looptime
async def test_warn_before_fires_once_per_idle_deadline() -> None:
    async with manager(timeout=100, warn_before=20) as sm:
        log = Recorder(sm)
        key = await sm.load_new_session("Luca")
        await asyncio.sleep(90)  # warned at t=80
        await sm.restart_session_timer(key)  # new deadline t=190, next warning t=170
        await asyncio.sleep(200)
        warnings = [t for t, _, _ in log.timeline("session_expiring")]
        assert len(warnings) == 2
        assert 80 <= warnings[0] <= 80 + LATE
        assert 170 <= warnings[1] <= 170 + LATE
        [(when, _, _)] = log.timeline("session_expired")
        assert 190 <= when <= 190 + LATE


@pytest.mark.looptime
async def test_no_warning_for_an_absolute_deadline() -> None:
    async with manager(timeout=100, absolute_timeout=50, warn_before=20) as sm:
        log = Recorder(sm)
        await sm.load_new_session("Luca")
        await asyncio.sleep(60)
        assert log.timeline("session_expiring") == []
        assert [r for _, _, r in log.timeline("session_expired")] == ["absolute_timeout"]


@late_loop
async def test_a_late_loop_never_reports_an_expired_session_live() -> None:
    async with manager(timeout=10) as sm:
        log = Recorder(sm)
        key = await sm.load_new_session("Luca")
        other = await sm.load_new_session("Fabio", timeout=1000)
        jump(10.001)  # the loop was blocked past the deadline: no timer has run
        assert not await sm.check_session_status(key)
        assert await sm.get_username_from_session_key(key) is None
        assert await sm.get_logged_users() == ["Fabio"]
        assert await sm.count_sessions() == 1
        assert [s.username for s in await sm.get_user_sessions("Luca")] == []
        for call in (sm.get_session_details(key), sm.restart_session_timer(key)):
            with pytest.raises(SessionNotFound):
                await call
        assert await sm.delete_session(key) is False
        assert await sm.check_session_status(other)
        assert log.timeline("session_deleted") == []  # the loop has not caught up yet
        # The timer catches up, and the session ends once, as an expiry.
        await log.wait_for("session_expired")
    assert [(u, r) for _, u, r in log.timeline("session_deleted")] == [("Luca", "expired")]


OPS = ["delete", "restart", "rotate"]


async def _op(sm: SessionManager, op: str, key: str) -> object:
    try:
        if op == "delete":
            return await sm.delete_session(key)
        if op == "restart":
            return await sm.restart_session_timer(key)
        return await sm.rotate_session_key(key)
    except SessionNotFound as exc:
        return exc


@pytest.mark.parametrize("op", OPS)
@pytest.mark.looptime
async def test_an_op_in_the_last_moment_before_the_deadline_wins(op: str) -> None:
    async with manager(timeout=10) as sm:
        log = Recorder(sm)
        key = await sm.load_new_session("Luca")
        await asyncio.sleep(9.9999)  # the op lands in the last moment before the deadline
        result = await _op(sm, op, key)
        await asyncio.sleep(100)
    ended = log.timeline("session_deleted")
    assert len(ended) == 1, log.events
    expired = log.timeline("session_expired")
    if op == "delete":
        assert result is True
        assert [r for _, _, r in ended] == ["logout"]
        assert expired == []
    elif op == "restart":
        # Restarted in time: it lives 10 s more, then expires once.
        assert result is True
        assert len(expired) == 1
        assert expired[0][0] >= 19.99
    else:
        # Rotated in time: a new key, the same deadline, one expiry under the new key.
        assert isinstance(result, str)
        assert len(expired) == 1
        assert 10 <= expired[0][0] <= 10 + LATE
        assert len(log.timeline("session_rotated")) == 1


@pytest.mark.parametrize("op", OPS)
@late_loop
async def test_a_due_timer_wins_over_an_op_that_comes_late(op: str) -> None:
    async with manager(timeout=10) as sm:
        log = Recorder(sm)
        key = await sm.load_new_session("Luca")
        jump(10 + 2 * LATE)  # the timer is due, and has not run yet
        result = await _op(sm, op, key)
        # Past its deadline the session is not live: the op fails, the timer ends it.
        assert result is False or isinstance(result, SessionNotFound)
        await log.wait_for("session_expired")
        jump(100)  # whatever else was armed is due now too, and runs before the close
        await asyncio.sleep(0.05)
    assert [r for _, _, r in log.timeline("session_deleted")] == ["expired"]
    assert len(log.timeline("session_expired")) == 1
    assert log.timeline("session_rotated") == []


@pytest.mark.looptime
async def test_sessions_ended_early_leave_no_timer_behind() -> None:
    # A logout or a rotation leaves the old key in its timer bucket; when the bucket fires the
    # store reports it gone, and nothing is left armed or reported twice: after the one round
    # of claims at the deadline, the timers never ask the store anything again.
    store = LoopClockStore()
    async with SessionManager(timeout=60, store=store) as sm:
        log = Recorder(sm)
        start = asyncio.get_running_loop().time()
        keys = [await sm.load_new_session(f"user{i}") for i in range(1000)]
        for key in keys[:500]:
            await sm.delete_session(key)
        for key in keys[500:]:
            await sm.rotate_session_key(key)
        await asyncio.sleep(61)
        assert len(log.timeline("session_deleted")) == 1000
        assert len(log.timeline("session_expired")) == 500
        assert await sm.count_sessions() == 0
        asked = {key for _, batch in store.claims for key in batch}
        assert len(asked) == 1500  # every key ever armed, old and rotated
        assert all(60 <= at - start <= 60 + LATE for at, _ in store.claims)
        claims = len(store.claims)
        await asyncio.sleep(10 * 60)  # ten timeouts: a timer left armed would have fired
        assert len(store.claims) == claims
        assert len(log.timeline("session_deleted")) == 1000


@late_loop
async def test_a_burst_of_expiries_leaves_the_loop_to_others_between_endings() -> None:
    # 100 sessions due at once, each ending costing a millisecond of CPU in its handler: the
    # manager hands the loop back every few milliseconds (a time slice), so another task runs
    # between endings, not once after all of them. The CPU time is real: on a virtual clock
    # no time would pass while the handlers run.
    count = 100
    async with manager(timeout=60) as sm:
        log = Recorder(sm, names=("session_deleted",))

        def busy(event: SessionEvent) -> None:
            until = time.perf_counter() + 0.001
            while time.perf_counter() < until:
                pass

        sm.on("session_deleted", busy)
        for i in range(count):
            await sm.load_new_session(f"user{i}")
        turns: list[int] = []  # how many sessions had ended each time the other task ran

        async def other_task() -> None:
            while len(log.events) < count:
                turns.append(len(log.events))
                await asyncio.sleep(0)

        jump(61)  # every deadline is due at once
        other = asyncio.create_task(other_task())
        await log.wait_for("session_deleted", count, within=30)
        await other
    assert await sm.count_sessions() == 0
    # The other task ran while the burst was being worked off, every few endings.
    assert any(0 < n < count for n in turns), turns
    longest = max(b - a for a, b in pairwise([*turns, count]))
    assert longest <= 25, f"{longest} endings in a row without a turn for the other task"


@pytest.mark.looptime
async def test_idle_waits_for_a_handler_the_manager_runs_and_not_for_what_is_to_come() -> None:
    """``sm.idle()`` (docs/guides/testing.md, "Checking that nothing more happens"): an
    expiry's handler runs in the manager's task, and idle() returns once it has; a deadline
    still to come is not waited for."""
    release = asyncio.Event()
    async with manager(timeout=100) as sm:
        await sm.idle()  # nothing running yet
        log = Recorder(sm, names=("session_expired",))

        @sm.on("session_expired")
        async def slow(event: SessionEvent) -> None:
            await release.wait()

        await sm.load_new_session("Luca")
        later = await sm.load_new_session("Ada", timeout=10_000)
        await asyncio.sleep(101)
        assert log.names() == ["session_expired"]
        idle = asyncio.create_task(sm.idle())
        await asyncio.sleep(50)
        assert not idle.done()  # the handler still runs
        release.set()
        await asyncio.wait_for(idle, 1)
        assert await sm.check_session_status(later)  # its deadline was not waited for

        @sm.on("session_expired")
        async def waits_for_itself(event: SessionEvent) -> None:
            with pytest.raises(RuntimeError, match="wait for itself"):
                await sm.idle()
            log.record(event)  # recorded twice: the check above ran

        await sm.load_new_session("Grace")
        await log.wait_for("session_expired", 3, within=200)
        assert [e.username for e in log.events] == ["Luca", "Grace", "Grace"]


class FailingClaims(LoopClockStore):
    """Its first ``failures`` claims raise :class:`StoreUnavailable`, changing nothing."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    async def claim_expired(self, keys: Sequence[str]) -> tuple[list[SessionRecord], list[Pending]]:
        if self.failures:
            self.failures -= 1
            self.claims.append((asyncio.get_running_loop().time(), list(keys)))
            raise StoreUnavailable("the store is down")
        return await super().claim_expired(keys)


@pytest.mark.looptime
async def test_idle_waits_for_a_claim_to_be_tried_again_after_it_failed() -> None:
    """A claim that failed is tried again on a timer (RETRY_FIRST, then longer): idle()
    returns only once a retry has claimed the session and its ending is reported."""
    store = FailingClaims(failures=2)
    async with SessionManager(timeout=10, store=store) as sm:
        log = Recorder(sm, names=("session_expired",))
        await sm.load_new_session("Luca")
        await asyncio.sleep(10.1)
        assert len(store.claims) == 1 and log.events == []  # failed once, retry armed
        started = asyncio.get_running_loop().time()
        await sm.idle()
        assert len(store.claims) == 3  # two failures, then the claim that worked
        assert [e.username for e in log.events] == ["Luca"]
        assert asyncio.get_running_loop().time() - started >= 1  # a retry waits a while


async def test_a_worker_spawned_once_runs_one_at_a_time_and_again_once_it_has_ended() -> None:
    """The outbox's acknowledging job and the Socket.IO bridge's disconnects each drain a queue
    of their own: spawned on every new item, one runs at a time (``LoopTasks.spawn_once``)."""
    tasks = internals.LoopTasks()
    tasks.start(asyncio.get_running_loop())
    began, release, runs = asyncio.Event(), asyncio.Event(), list[int]()

    async def worker() -> None:
        runs.append(len(runs))
        began.set()
        await release.wait()

    tasks.spawn_once(worker)
    tasks.spawn_once(worker)  # queued already
    await began.wait()
    tasks.spawn_once(worker)  # running
    release.set()
    await tasks.idle()
    assert runs == [0]
    tasks.spawn_once(worker)  # it has ended: it runs again
    await tasks.idle()
    assert runs == [0, 1]
    await tasks.aclose()
