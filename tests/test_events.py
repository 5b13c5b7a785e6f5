"""Events: subscription, order, sync and async handlers, failures, and the lifecycle."""

from __future__ import annotations

import asyncio
import gc
import logging
import weakref

import anyio
import pytest

from sessionkit import EVENTS, MemoryStore, SessionEvent, SessionManager
from sessionkit.keys import hash_key
from sessionkit.stores.base import Outcome
from tests.clock import LATE, LoopClockStore, manager


def test_on_rejects_unknown_events_and_hints_the_python_name() -> None:
    sm = SessionManager()
    with pytest.raises(ValueError, match="session_created"):
        sm.on("sessionCreated", print)  # type: ignore[call-overload]
    with pytest.raises(ValueError, match="unknown event"):
        sm.on("nope")(print)  # type: ignore[call-overload]
    with pytest.raises(ValueError):
        sm.off("nope", print)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        sm.on("error", "not callable")  # type: ignore[call-overload]


async def test_on_as_decorator_and_off() -> None:
    sm = SessionManager()
    seen: list[str] = []

    @sm.on("session_created")
    def first(event: SessionEvent) -> None:
        seen.append("sync")

    @sm.on("session_created")
    async def second(event: SessionEvent) -> None:
        await asyncio.sleep(0)
        seen.append("async")

    assert first.__name__ == "first"
    await sm.load_new_session("Luca")
    assert seen == ["sync", "async"]
    sm.off("session_created", first)
    with pytest.raises(ValueError, match="not subscribed"):
        sm.off("session_created", first)
    await sm.load_new_session("Luca")
    assert seen == ["sync", "async", "async"]
    await sm.aclose()


async def test_handlers_have_finished_when_the_call_returns() -> None:
    sm = SessionManager()
    finished: list[str] = []

    async def slow(event: SessionEvent) -> None:
        await asyncio.sleep(0.05)
        finished.append(event.name)

    for name in ("session_created", "session_deleted", "session_rotated", "error"):
        sm.on(name, slow)
    key = await sm.load_new_session("Luca")
    assert finished == ["session_created"]
    key = await sm.rotate_session_key(key)
    assert finished[-1] == "session_rotated"
    await sm.delete_session(key)
    assert finished[-1] == "session_deleted"
    await sm.check_session_status(key)
    assert finished[-1] == "error"
    await sm.aclose()


async def test_a_failing_handler_reaches_error_handlers_not_the_caller(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sm = SessionManager()
    boom = RuntimeError("handler bug")
    errors: list[SessionEvent] = []
    after: list[str] = []

    def broken(event: SessionEvent) -> None:
        raise boom

    sm.on("session_created", broken)
    sm.on("session_created", lambda e: after.append(e.name))
    sm.on("error", errors.append)
    with caplog.at_level(logging.WARNING, logger="sessionkit"):
        key = await sm.load_new_session("Luca")
    assert await sm.check_session_status(key)  # the session was made all the same
    assert after == ["session_created"]  # later handlers still ran
    [event] = errors
    assert event.error is boom  # the exception itself, not a wrapper
    assert event.key == key
    assert event.username == "Luca"
    # Logged with its traceback, as text with keys blanked out (not exc_info, which a log
    # handler would format with whatever key the exception quotes).
    assert any("RuntimeError: handler bug" in r.getMessage() for r in caplog.records)
    assert any("Traceback" in r.getMessage() for r in caplog.records)
    await sm.aclose()


async def test_error_without_handlers_is_only_logged(caplog: pytest.LogCaptureFixture) -> None:
    sm = SessionManager()
    with caplog.at_level(logging.INFO, logger="sessionkit"):
        assert await sm.check_session_status("missing") is False
    assert [r.levelname for r in caplog.records] == ["INFO"]
    assert "rejected" in caplog.records[0].getMessage()
    await sm.aclose()


async def test_a_failing_error_handler_is_logged_without_looping(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sm = SessionManager()
    calls = 0

    async def broken(event: SessionEvent) -> None:
        nonlocal calls
        calls += 1
        raise ValueError("error handler bug")

    sm.on("error", broken)
    with caplog.at_level(logging.WARNING, logger="sessionkit"):
        assert await sm.check_session_status("missing") is False
    assert calls == 1
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1
    await sm.aclose()


@pytest.mark.looptime
async def test_timer_driven_handler_failures_do_not_stop_expiry() -> None:
    async with manager(timeout=10) as sm:
        errors: list[BaseException | None] = []
        sm.on("error", lambda e: errors.append(e.error))

        async def broken(event: SessionEvent) -> None:
            raise KeyError("bug")

        sm.on("session_expired", broken)
        for name in ("a", "b", "c"):
            await sm.load_new_session(name)
        await asyncio.sleep(11)
        assert await sm.count_sessions() == 0
        assert len(errors) == 3
        assert all(isinstance(e, KeyError) for e in errors)


@pytest.mark.looptime
async def test_aclose_waits_for_running_handlers_then_cancels_timers() -> None:
    sm = manager(timeout=10)
    done: list[str] = []

    async def slow(event: SessionEvent) -> None:
        await asyncio.sleep(5)
        done.append(event.username or "")

    sm.on("session_expired", slow)
    await sm.load_new_session("expires")
    for i in range(3):
        await sm.load_new_session(f"lives{i}", timeout=1000)
    await asyncio.sleep(10.5)  # the handler is now running, 5 s to go
    assert done == []
    await sm.aclose()
    assert done == ["expires"]
    current = asyncio.current_task()
    assert [t for t in asyncio.all_tasks() if t is not current] == []
    # No timer is left on the loop: nothing there holds the closed manager any more.
    closed = weakref.ref(sm)
    del sm
    gc.collect()
    assert closed() is None


@pytest.mark.looptime
async def test_sessions_outlive_a_closed_manager_and_are_rearmed_when_it_is_used_again() -> None:
    store = LoopClockStore()
    sm = SessionManager(timeout=10, store=store)
    expired: list[str] = []
    sm.on("session_expired", lambda e: expired.append(e.username or ""))
    for i in range(3):
        await sm.load_new_session(f"lives{i}", timeout=1000)
    await sm.aclose()
    assert await store.count() == 3  # asked of the store: a manager call would bind it again
    await asyncio.sleep(2000)  # past every deadline, and the closed manager claims nothing
    assert store.claims == []
    assert expired == []
    assert await sm.count_sessions() == 0  # the store judges them past their deadlines
    await asyncio.sleep(1)  # their timers, armed again, end them at once
    assert sorted(expired) == ["lives0", "lives1", "lives2"]
    await sm.aclose()


async def test_manager_can_be_entered_and_closed_from_different_tasks() -> None:
    sm = SessionManager()
    await asyncio.create_task(sm.__aenter__())
    await sm.load_new_session("Luca")
    await asyncio.create_task(sm.aclose())
    assert await sm.count_sessions() == 1
    await sm.aclose()


def test_a_manager_made_outside_any_loop_works_on_successive_loops() -> None:
    # The seed's style: a module-level manager, then each asyncio.run() a new loop. Real time.
    sm = SessionManager(timeout=2)
    expired: list[str] = []
    sm.on("session_expired", lambda e: expired.append(e.username or ""))

    async def first() -> str:
        return await sm.load_new_session("Luca")

    async def second(key: str) -> None:
        assert await sm.check_session_status(key)
        await asyncio.sleep(2.6)
        assert not await sm.check_session_status(key)
        await sm.aclose()

    key = asyncio.run(first())
    asyncio.run(second(key))
    assert expired == ["Luca"]


def test_events_table_matches_the_seed() -> None:
    assert EVENTS["session_created"] == "sessionCreated"
    assert EVENTS["session_deleted"] == "sessionDeleted"
    assert EVENTS["notify_client_to_logout"] == "notifyClientToLogout"
    assert set(EVENTS) == {
        "session_created",
        "session_deleted",
        "session_expired",
        "session_expiring",
        "session_rotated",
        "session_suspicious",
        "notify_client_to_logout",
        "error",
    }


class SweptStore(MemoryStore):
    """A MemoryStore that asks to be swept, as a shared store does."""

    sweep_interval = 60.0

    def __init__(self) -> None:
        super().__init__()
        self.sweeps = 0

    async def sweep(self) -> list[Outcome]:
        self.sweeps += 1
        return []


@pytest.mark.parametrize("first_use", ["enter", "call"])
async def test_aclose_stops_a_sweep_that_had_not_started_yet(first_use: str) -> None:
    store = SweptStore()
    sm = SessionManager(store=store)
    if first_use == "enter":
        await sm.__aenter__()
    else:
        assert await sm.delete_session("nothing") is False
    with anyio.fail_after(5):  # it used to hang here, waiting for the sweep forever
        await sm.aclose()
    current = asyncio.current_task()
    assert [t for t in asyncio.all_tasks() if t is not current] == []


@pytest.mark.looptime
async def test_a_sweeping_store_is_swept_every_interval_until_close() -> None:
    store = SweptStore()
    async with SessionManager(store=store):
        await asyncio.sleep(150)
    assert store.sweeps == 3  # at 0, 60 and 120 seconds


class RecordingBridge:
    """A socket bridge of the test's own (what ``sessionkit.socketio`` attaches), noting every
    call the manager makes to it."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.calls: list[tuple[object, ...]] = []

    async def logout(self, key_hash: str, reason: str) -> None:
        self.calls.append(("logout", key_hash, reason))
        if self.fail:
            raise ConnectionError("the push transport is down")

    async def expiring(self, key_hash: str, remaining: float) -> None:
        self.calls.append(("expiring", key_hash, remaining))

    async def rotated(self, old_hash: str, new_hash: str, new_key: str) -> None:
        self.calls.append(("rotated", old_hash, new_hash, new_key))

    async def aclose(self) -> None:
        self.calls.append(("aclose",))


@pytest.mark.looptime
async def test_an_attached_bridge_gets_rotations_logouts_and_warnings() -> None:
    async with manager(timeout=100, warn_before=20) as sm:
        bridge, server = RecordingBridge(), object()
        sm.attach_socket_bridge(server, bridge)
        assert sm.get_socket_reference() is server
        key = await sm.load_new_session("Luca")
        fresh = await sm.rotate_session_key(key)
        assert await sm.send_logout_message(fresh) is True  # a server is attached
        await asyncio.sleep(101)  # warned at t=80, expired at t=100
        assert await sm.count_sessions() == 0
    assert bridge.calls == [
        ("rotated", hash_key(key), hash_key(fresh), fresh),
        ("logout", hash_key(fresh), "logout"),
        ("expiring", hash_key(fresh), pytest.approx(20, abs=LATE)),
        ("logout", hash_key(fresh), "expired"),
        ("aclose",),  # once, as the manager closes
    ]


async def test_a_failing_bridge_is_an_error_event_and_the_ending_goes_on() -> None:
    async with SessionManager() as sm:
        bridge = RecordingBridge(fail=True)
        sm.attach_socket_bridge(object(), bridge)
        errors: list[BaseException | None] = []
        ended: list[str | None] = []
        sm.on("error", lambda e: errors.append(e.error))
        sm.on("session_deleted", lambda e: ended.append(e.reason))
        keys = [await sm.load_new_session(name) for name in ("Luca", "Fabio")]
        assert await sm.delete_all_sessions() == 2
        assert ended == ["delete_all", "delete_all"]
        assert [call[1] for call in bridge.calls] == [hash_key(k) for k in keys]
        assert [type(e) for e in errors] == [ConnectionError, ConnectionError]
        assert await sm.count_sessions() == 0
