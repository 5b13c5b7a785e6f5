"""Failures the manager must survive on any store (docs/contract.md, "Failures"): hostile
handlers, huge timeouts, deep data, bulk calls cancelled half-way, users with many sessions."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from typing import Any

import pytest

import sessionkit
from sessionkit import MemoryStore, SessionEvent, SessionManager, SessionStore
from sessionkit.keys import hash_key
from tests.faultkit import eventually, session_id
from tests.recorder import ALL_EVENTS, Recorder


class Boom(BaseException):
    """A BaseException that is neither KeyboardInterrupt nor SystemExit."""


async def test_handlers_that_raise_block_or_close_cannot_hurt_the_manager(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Each manager's first expiry meets a hostile ``session_expired`` handler; a session
    expiring after it must still be reported, and what the handler raised must arrive as an
    ``error`` event carrying the exception itself, with no raw key in any log record."""
    caplog.set_level(logging.DEBUG, logger="sessionkit")
    release = asyncio.Event()
    raised: dict[str, BaseException] = {}
    closed: dict[str, str] = {}
    managers: dict[str, SessionManager] = {}
    first: dict[str, str] = {}

    def hostile(kind: str) -> Callable[[SessionEvent], Any]:
        async def handler(event: SessionEvent) -> None:
            if event.key != first[kind]:
                return
            sm = managers[kind]
            if kind == "block":
                await release.wait()
            elif kind == "aclose":
                closed[kind] = "deadlocked: still waiting"
                try:
                    await asyncio.wait_for(sm.aclose(), 2)
                    closed[kind] = "closed"
                except BaseException as exc:
                    closed[kind] = f"deadlocked: wait_for(aclose(), 2) raised {exc!r}"
                    raise
            elif kind == "rotate+delete":
                await sm.delete_session(await sm.rotate_session_key(first["other:" + kind]))
            else:
                error: BaseException = {
                    "ValueError": ValueError("bad"),
                    "KeyError(key)": KeyError(event.key),
                    "CancelledError": asyncio.CancelledError(),
                    "GeneratorExit": GeneratorExit(),
                    "BaseException": Boom("boom"),
                }[kind]
                raised[kind] = error
                raise error

        return handler

    kinds = ["ValueError", "KeyError(key)", "CancelledError", "GeneratorExit", "BaseException"]
    kinds += ["block", "rotate+delete", "aclose"]
    recorders = {}
    for kind in kinds:
        sm = managers[kind] = SessionManager(timeout=2, store=MemoryStore())
        recorders[kind] = Recorder(sm, names=ALL_EVENTS)
        sm.on("session_expired", hostile(kind))
        first[kind] = await sm.load_new_session("first")
        first["other:" + kind] = await sm.load_new_session("other", timeout=60)
    await asyncio.sleep(0.5)
    later = {kind: await managers[kind].load_new_session("later") for kind in kinds}

    def missing() -> dict[str, str]:
        return {
            kind: "the later session's expiry was never reported"
            for kind in kinds
            if kind != "aclose"  # a closed manager rightly stops expiring
            and not recorders[kind].of("session_expired", key_hash=hash_key(later[kind]))
        }

    async def check() -> dict[str, str]:
        return missing()

    await eventually(check, 4.0)
    broken = missing()
    for kind, error in raised.items():
        reported = [e for e in recorders[kind].errors() if e is error]
        if len(reported) != 1:
            broken[kind] = f"{len(reported)} error event(s) carrying the raised exception"
    if closed.get("aclose") != "closed":
        broken["aclose"] = f"aclose() from a handler: {closed.get('aclose', 'never ran')}"
    for kind in kinds:
        if recorders[kind].doubled() or recorders[kind].doubled("session_expired"):
            broken[kind] = "a session reported twice"
    release.set()
    for kind in kinds:
        try:
            await asyncio.wait_for(managers[kind].aclose(), 3)
        except TimeoutError:
            broken.setdefault(kind, "aclose() hung after the test")
        except BaseException as exc:
            broken.setdefault(kind, f"aclose() raised {exc!r}")
    formatter = logging.Formatter("%(message)s")
    leaked = [r for r in caplog.records if first["KeyError(key)"] in formatter.format(r)]
    if leaked:
        broken["KeyError(key)"] = f"the raw key is in {len(leaked)} sessionkit log record(s)"
    assert broken == {}


async def test_rotating_in_session_expiring_does_not_loop() -> None:
    """A ``session_expiring`` handler that rotates the key: one warning per deadline."""
    sm = SessionManager(timeout=2, warn_before=1, store=MemoryStore())
    rec = Recorder(sm)
    warnings: list[SessionEvent] = []

    @sm.on("session_expiring")
    async def rotate(event: SessionEvent) -> None:
        warnings.append(event)
        if len(warnings) < 10_000 and event.key is not None:
            await sm.rotate_session_key(event.key)

    async with sm:
        await sm.load_new_session("ada")

        async def ended() -> bool:
            return not rec.of("session_deleted")

        await eventually(ended, 4.0)
    assert len(rec.of("session_deleted")) == 1
    assert 1 <= len(warnings) <= 2, f"{len(warnings)} session_expiring events for one deadline"


def test_timeouts_above_one_year_are_refused() -> None:
    year = 365 * 24 * 60 * 60
    assert getattr(sessionkit, "MAX_SESSION_TIMEOUT", None) == year
    assert "MAX_SESSION_TIMEOUT" in sessionkit.__all__
    for options in ({"timeout": 1e12}, {"absolute_timeout": 1e20}):
        with pytest.raises(ValueError):
            SessionManager(**options)  # type: ignore[arg-type]
    sm = SessionManager(timeout=60)
    with pytest.raises(ValueError):
        sm.set_session_timeout(1e308)
    assert sm.get_session_timeout() == 60
    assert sm.set_session_timeout(year)  # one year itself is fine


async def test_a_login_with_a_timeout_above_one_year_stores_nothing(
    make_store: Callable[[], SessionStore],
) -> None:
    async with SessionManager(timeout=60, store=make_store()) as sm:
        with pytest.raises(ValueError):
            await sm.load_new_session("ada", timeout=1e12)
        assert await sm.count_sessions() == 0


async def test_data_nested_50000_deep_is_a_type_error(
    make_store: Callable[[], SessionStore],
) -> None:
    deep: list[Any] = []
    for _ in range(50_000):
        deep = [deep]
    async with SessionManager(timeout=60, store=make_store()) as sm:
        with pytest.raises(TypeError):
            await sm.load_new_session("ada", deep)
        assert await sm.count_sessions() == 0
        key = await sm.load_new_session("ada", {"kept": True})
        with pytest.raises(TypeError):
            await sm.set_session_data(key, deep)
        assert await sm.get_session_data(key) == {"kept": True}


async def test_delete_all_cancelled_half_way_reports_every_removed_session(
    make_store: Callable[[], SessionStore],
) -> None:
    """1,200 sessions, an async ``session_deleted`` handler that takes a little while, and the
    caller gives up half-way: every removed session still gets its one event, eventually."""
    sm = SessionManager(timeout=60, store=make_store())
    rec = Recorder(sm)

    @sm.on("session_deleted")
    async def slow(event: SessionEvent) -> None:
        await asyncio.sleep(0.001)

    async with sm:
        keys = [await sm.load_new_session(f"u{i % 7}") for i in range(1200)]
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(sm.delete_all_sessions(), 0.4)
        reported_at_cancel = len(rec.of("session_deleted"))

        async def removed() -> set[str]:
            live = {session_id(d) for u in range(7) for d in await sm.get_user_sessions(f"u{u}")}
            return {hash_key(k) for k in keys} - live

        async def unreported() -> set[str]:
            got = {e.key_hash for e in rec.of("session_deleted")}
            return await removed() - got

        await eventually(unreported, 3.0)
        await asyncio.sleep(0.3)
        gone = await removed()
        assert reported_at_cancel < len(gone)  # the cancel came while reporting was under way
        assert rec.doubled() == {}
        reported = {e.key_hash for e in rec.of("session_deleted")}
        assert len(gone - reported) == 0, (
            f"{len(gone)} removed, {len(gone & reported)} reported ({reported_at_cancel} at cancel)"
        )


async def test_logouts_of_one_user_with_40000_sessions_cost_o1_each() -> None:
    """40k logouts of one user's sessions against 40k logouts of 40k users (MemoryStore):
    within 5x, measured in the same test."""
    n = 40_000
    sm = SessionManager(timeout=600, store=MemoryStore())
    async with sm:
        many = [await sm.load_new_session(f"user{i}") for i in range(n)]
        random.Random(1).shuffle(many)  # logouts come in any order, not oldest first
        await sm.get_user_sessions("user0")  # a "your devices" page: per-user lookups in use
        started = time.perf_counter()
        for key in many:
            await sm.delete_session(key)
        distinct = time.perf_counter() - started

        one = [await sm.load_new_session("one") for _ in range(n)]
        random.Random(1).shuffle(one)
        await sm.get_user_sessions("one")
        budget = 5 * distinct
        started = time.perf_counter()
        done = 0
        for key in one:
            await sm.delete_session(key)
            done += 1
            if done % 1000 == 0 and time.perf_counter() - started > budget:
                break  # already over: no need to wait for the whole quadratic run
        same_user = time.perf_counter() - started
    assert done == n and same_user <= budget, (
        f"{done} logouts of one user took {same_user:.2f} s; {n} of distinct users {distinct:.2f} s"
    )


async def test_a_handler_running_when_its_caller_is_cancelled_runs_to_its_end(
    make_store: Callable[[], SessionStore],
) -> None:
    """``delete_all_sessions`` cancelled while a ``session_deleted`` handler is part-way: that
    handler still runs to its end, once, and so does every later one."""
    sm = SessionManager(timeout=60, store=make_store())
    started: list[str] = []
    finished: list[str] = []
    tenth = asyncio.Event()

    @sm.on("session_deleted")
    async def slow(event: SessionEvent) -> None:
        started.append(event.key_hash)
        if len(started) == 100:
            tenth.set()
        await asyncio.sleep(0.001)
        finished.append(event.key_hash)

    async with sm:
        for i in range(1000):
            await sm.load_new_session(f"u{i % 7}")
        caller = asyncio.create_task(sm.delete_all_sessions())
        await tenth.wait()  # the caller is in its 100th handler's sleep: cancel it there
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller
        assert 100 <= len(started) < 1000  # the cancel came while handlers were running
    # aclose() waited for the rest.
    assert sorted(finished) == sorted(started)
    assert len(set(finished)) == len(finished) == 1000


async def test_a_login_cancelled_before_it_returned_its_key_ends_that_session(
    make_store: Callable[[], SessionStore],
) -> None:
    """No orphans: the caller of ``load_new_session`` gave up while the ``session_created``
    handlers ran, so nobody holds the new key. The session ends (one ``session_created``, one
    ``session_deleted``), reported from the manager's own task."""
    sm = SessionManager(timeout=60, store=make_store())
    rec = Recorder(sm)
    handled = asyncio.Event()

    async def slow(event: SessionEvent) -> None:
        handled.set()
        await asyncio.sleep(0.2)

    sm.on("session_created", slow)
    async with sm:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(sm.load_new_session("luca"), 0.05)
        assert handled.is_set()  # the store made the session: the handler saw it

        async def complaint() -> str | None:
            count = await sm.count_sessions()
            deleted = rec.of("session_deleted")
            return None if count == 0 and len(deleted) == 1 else f"{count} live, {deleted}"

        assert await eventually(complaint, 3.0) is None
        [created] = rec.of("session_created")
        [deleted] = rec.of("session_deleted")
        assert created.key_hash == deleted.key_hash and deleted.reason == "logout"
