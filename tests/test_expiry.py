"""Expiry on a virtual clock: idle and absolute deadlines, restarts, warnings, lateness and
races, each session ending exactly once."""

from __future__ import annotations

import asyncio

import pytest

from sessionkit import EVENTS, SessionEvent, SessionManager, SessionNotFound
from sessionkit._timers import RESOLUTION
from tests.vtime import loop, manager, virtual_time

LATE = RESOLUTION + 0.001  # the most a deadline may fire after its time on an idle loop


class Log:
    """Records (time since start, event name, username, reason) for every session event."""

    NAMES = tuple(name for name in EVENTS if name != "error")

    def __init__(self, sm: SessionManager) -> None:
        self.start = loop().time()
        self.rows: list[tuple[float, str, str | None, str | None]] = []
        for name in self.NAMES:
            sm.on(name, self.record)

    def record(self, event: SessionEvent) -> None:
        self.rows.append((loop().time() - self.start, event.name, event.username, event.reason))

    def of(self, name: str) -> list[tuple[float, str | None, str | None]]:
        return [(t, user, reason) for t, n, user, reason in self.rows if n == name]


@virtual_time
async def test_idle_expiry_fires_once_at_the_deadline() -> None:
    async with manager(timeout=3000) as sm:
        log = Log(sm)
        key = await sm.load_new_session("Luca")
        await asyncio.sleep(2999.9)
        assert await sm.check_session_status(key)
        await asyncio.sleep(1)
        assert not await sm.check_session_status(key)
        [(when, user, reason)] = log.of("session_expired")
        assert 3000 <= when <= 3000 + LATE
        assert (user, reason) == ("Luca", "expired")
        assert [n for _, n, _, _ in log.rows] == [
            "session_created",
            "session_deleted",
            "session_expired",
            "notify_client_to_logout",
        ]
        await asyncio.sleep(10_000)
        assert len(log.of("session_deleted")) == 1


@virtual_time
async def test_restart_extends_the_session() -> None:
    async with manager(timeout=100) as sm:
        log = Log(sm)
        key = await sm.load_new_session("Luca")
        for _ in range(5):
            await asyncio.sleep(60)
            await sm.restart_session_timer(key)
        # Last restart at t=300: the session lives until t=400.
        await asyncio.sleep(99)
        assert await sm.check_session_status(key)
        assert log.of("session_expired") == []
        await asyncio.sleep(2)
        [(when, _, _)] = log.of("session_expired")
        assert 400 <= when <= 400 + LATE


@virtual_time
async def test_new_timeout_applies_only_to_later_sessions_and_restarts() -> None:
    async with manager(timeout=1000) as sm:
        log = Log(sm)
        old = await sm.load_new_session("old")
        restarted = await sm.load_new_session("restarted")
        sm.set_session_timeout(10)
        new = await sm.load_new_session("new")
        await sm.restart_session_timer(restarted)  # a shorter deadline re-arms its timer
        await asyncio.sleep(11)
        assert await sm.check_session_status(old)
        assert not await sm.check_session_status(new)
        assert not await sm.check_session_status(restarted)
        assert {user for _, user, _ in log.of("session_expired")} == {"new", "restarted"}
        await asyncio.sleep(1000)
        assert [user for _, user, _ in log.of("session_expired")][-1] == "old"


@virtual_time
async def test_absolute_timeout_caps_an_active_session() -> None:
    async with manager(timeout=100, absolute_timeout=250) as sm:
        log = Log(sm)
        key = await sm.load_new_session("Luca")
        for _ in range(10):
            await asyncio.sleep(30)
            if await sm.check_session_status(key):
                await sm.restart_session_timer(key)
        [(when, user, reason)] = log.of("session_expired")
        assert 250 <= when <= 250 + LATE
        assert (user, reason) == ("Luca", "absolute_timeout")
        assert log.of("session_deleted")[0][2] == "absolute_timeout"


@virtual_time
async def test_warn_before_fires_once_per_idle_deadline() -> None:
    async with manager(timeout=100, warn_before=20) as sm:
        log = Log(sm)
        key = await sm.load_new_session("Luca")
        await asyncio.sleep(90)  # warned at t=80
        await sm.restart_session_timer(key)  # new deadline t=190, next warning t=170
        await asyncio.sleep(200)
        warnings = [t for t, _, _ in log.of("session_expiring")]
        assert len(warnings) == 2
        assert 80 <= warnings[0] <= 80 + LATE
        assert 170 <= warnings[1] <= 170 + LATE
        [(when, _, _)] = log.of("session_expired")
        assert 190 <= when <= 190 + LATE


@virtual_time
async def test_no_warning_for_an_absolute_deadline() -> None:
    async with manager(timeout=100, absolute_timeout=50, warn_before=20) as sm:
        log = Log(sm)
        await sm.load_new_session("Luca")
        await asyncio.sleep(60)
        assert log.of("session_expiring") == []
        assert [r for _, _, r in log.of("session_expired")] == ["absolute_timeout"]


@virtual_time
async def test_a_late_loop_never_reports_an_expired_session_live() -> None:
    async with manager(timeout=10) as sm:
        log = Log(sm)
        key = await sm.load_new_session("Luca")
        other = await sm.load_new_session("Fabio", timeout=1000)
        loop().jump(10.001)  # the loop was blocked past the deadline: no timer has run
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
        # The timer catches up, and the session ends once, as an expiry.
        await asyncio.sleep(1)
        assert [(u, r) for _, u, r in log.of("session_deleted")] == [("Luca", "expired")]


async def _race(op: str, before_deadline: bool) -> tuple[Log, str, object]:
    sm = manager(timeout=10)
    log = Log(sm)
    key = await sm.load_new_session("Luca")
    if before_deadline:
        await asyncio.sleep(9.9999)  # the op lands in the last moment before the deadline
    else:
        loop().jump(10 + 2 * RESOLUTION)  # the timer is due, and has not run yet
    result: object
    try:
        if op == "delete":
            result = await sm.delete_session(key)
        elif op == "restart":
            result = await sm.restart_session_timer(key)
        else:
            result = await sm.rotate_session_key(key)
    except SessionNotFound as exc:
        result = exc
    await asyncio.sleep(100)
    await sm.aclose()
    return log, key, result


@pytest.mark.parametrize("before_deadline", [True, False], ids=["op-first", "timer-first"])
@pytest.mark.parametrize("op", ["delete", "restart", "rotate"])
@virtual_time
async def test_each_session_ends_exactly_once_when_ops_race_expiry(
    op: str, before_deadline: bool
) -> None:
    log, _, result = await _race(op, before_deadline)
    ended = log.of("session_deleted")
    assert len(ended) == 1, log.rows
    expired = log.of("session_expired")
    if not before_deadline:
        # Past its deadline the session is not live: the op fails, the timer ends it.
        assert result is False or isinstance(result, SessionNotFound)
        assert [r for _, _, r in ended] == ["expired"]
        assert len(expired) == 1
    elif op == "delete":
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
        assert len(log.of("session_rotated")) == 1


@virtual_time
async def test_sessions_ended_early_leave_no_timer_behind() -> None:
    # A logout or a rotation leaves the old key in its timer bucket; when the bucket fires the
    # store reports it gone, and nothing is left armed or reported twice.
    async with manager(timeout=60) as sm:
        log = Log(sm)
        keys = [await sm.load_new_session(f"user{i}") for i in range(1000)]
        for key in keys[:500]:
            await sm.delete_session(key)
        for key in keys[500:]:
            await sm.rotate_session_key(key)
        await asyncio.sleep(61)
        assert len(log.of("session_deleted")) == 1000
        assert len(log.of("session_expired")) == 500
        armed = [h for h in loop()._scheduled if not h.cancelled()]  # type: ignore[attr-defined]
        assert armed == []
        assert await sm.count_sessions() == 0


@virtual_time
async def test_a_burst_of_expiries_is_handled_in_slices() -> None:
    # 20,000 sessions due in the same tick: the loop must get control back while they end.
    count = 20_000
    async with manager(timeout=60) as sm:
        ended = 0
        progress_seen: list[int] = []

        def on_deleted(event: SessionEvent) -> None:
            nonlocal ended
            ended += 1
            if ended % 7 == 0:  # some real work per event, so slices fill up
                sum(range(300))

        sm.on("session_deleted", on_deleted)
        for i in range(count):
            await sm.load_new_session(f"user{i}")

        async def probe() -> None:
            while ended < count:
                progress_seen.append(ended)
                await asyncio.sleep(0)

        await asyncio.sleep(59.9)
        loop().jump(1)  # every deadline is due at once; a probe task competes for the loop
        prober = asyncio.create_task(probe())
        await prober
        assert ended == count
        assert await sm.count_sessions() == 0
        # The probe ran while the burst was being worked off, not only before and after it.
        assert any(0 < n < count for n in progress_seen)
