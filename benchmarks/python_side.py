"""The sessionkit side of the benchmark: the same workload as ``seed_bench.js``, one JSON line out.

Run by :mod:`benchmarks.run` in a fresh process per measurement, so that one figure's garbage
never weighs on the next::

    python -m benchmarks.python_side ops SESSIONS OPS LOGGED_USERS(0|1)
    python -m benchmarks.python_side memory SESSIONS
    python -m benchmarks.python_side expiry SESSIONS TIMEOUT_SECONDS
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import random
import sys
import time
import tracemalloc
from typing import Any

from sessionkit import SessionEvent, SessionManager

HOUR = 3600  # seconds: nothing expires during the ops run
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss() -> int:
    """Resident set size of this process now, in bytes (Linux; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * _PAGE
    except OSError:
        return 0


def full_collect() -> None:
    gc.collect()
    gc.collect()


def per_second(calls: int, start: float) -> float:
    return calls / (time.perf_counter() - start)


class Entry:
    """A session record cut down to what a check reads."""

    __slots__ = ("deadline",)

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline


async def check_floors(keys: list[str], picked: list[str]) -> dict[str, float]:
    """What a check costs plain Python on the same keys, in the same order, with no library:
    a dict of the benchmark's own (each key to an entry with its own float deadline) looked up
    in a plain loop, then the same lookup inside one awaited coroutine per key."""
    monotonic = time.monotonic
    table = {key: Entry(monotonic() + HOUR) for key in keys}
    result: dict[str, float] = {}

    start = time.perf_counter()
    live = 0
    for key in picked:
        entry = table.get(key)
        live += entry is not None and entry.deadline > monotonic()
    result["check_floor_dict_ops"] = per_second(len(picked), start)
    if live != len(picked):
        raise AssertionError("check floor: a live key was not found")

    get = table.get

    async def check(key: str) -> bool:
        entry = get(key)
        return entry is not None and entry.deadline > monotonic()

    start = time.perf_counter()
    live = 0
    for key in picked:
        live += await check(key)
    result["check_floor_await_ops"] = per_second(len(picked), start)
    if live != len(picked):
        raise AssertionError("check floor: a live key was not found")
    return result


async def restart_floor(keys: list[str], picked: list[str]) -> dict[str, float]:
    """What a restart costs plain Python on the same keys, in the same order: the check floor's
    lookup and deadline comparison inside one awaited coroutine per key, which then writes the
    new deadline as a new tuple in the dict, as ``MemoryStore.touch`` does (each session a
    tuple of the store's seven fields)."""
    monotonic = time.monotonic
    now = monotonic()
    table: dict[str, tuple[str, float, float | None, float | None, str | None, float, float]]
    table = {key: ("user", now, None, None, None, now, now + HOUR) for key in keys}
    get = table.get

    async def restart(key: str) -> bool:
        entry = get(key)
        if entry is None:
            return False
        now = monotonic()
        username, created, absolute, own, data, _, deadline = entry
        if deadline <= now:
            return False
        table[key] = (username, created, absolute, own, data, now, now + HOUR)
        return True

    start = time.perf_counter()
    live = 0
    for key in picked:
        live += await restart(key)
    result = {"restart_floor_await_ops": per_second(len(picked), start)}
    if live != len(picked):
        raise AssertionError("restart floor: a live key was not found")
    return result


async def ops(sessions: int, count: int, logged_users: bool) -> dict[str, Any]:
    usernames = [f"user{i}" for i in range(sessions)]
    keys: list[str] = [""] * sessions
    async with SessionManager(timeout=HOUR) as sm:
        create = sm.load_new_session
        full_collect()
        rss0 = rss()
        start = time.perf_counter()
        for i in range(sessions):
            keys[i] = await create(usernames[i])
        create_elapsed = time.perf_counter() - start
        full_collect()
        rss1 = rss()

        picked = random.Random(12345).sample(keys, count)
        result: dict[str, Any] = {
            "sessions": sessions,
            "ops": count,
            "create_ops": sessions / create_elapsed,
            "rss_per_session": (rss1 - rss0) / sessions,
        }
        # Each loop calls the manager the way a request handler would, with nothing between
        # the calls but the loop itself (a wrapper coroutine per call would be timed too).
        check = sm.check_session_status
        start = time.perf_counter()
        live = 0
        for key in picked:
            live += await check(key)
        result["check_ops"] = per_second(count, start)
        if live != count:
            raise AssertionError("a live session was reported dead")
        # References, not sessionkit: the same keys over a plain dict (freed before going on).
        result |= await check_floors(keys, picked)
        full_collect()

        restart = sm.restart_session_timer
        start = time.perf_counter()
        for key in picked:
            await restart(key)
        result["restart_ops"] = per_second(count, start)
        result |= await restart_floor(keys, picked)  # a reference, like the check floors
        full_collect()

        set_data = sm.set_session_data
        start = time.perf_counter()
        for i, key in enumerate(picked):
            await set_data(key, {"n": i, "role": "user"})
        result["set_data_ops"] = per_second(count, start)

        get_data = sm.get_session_data
        start = time.perf_counter()
        for key in picked:
            await get_data(key)
        result["get_data_ops"] = per_second(count, start)
        if logged_users:
            start = time.perf_counter()
            users = await sm.get_logged_users()
            result["get_logged_users_s"] = time.perf_counter() - start
            if len(users) != sessions:
                raise AssertionError("get_logged_users lost sessions")
        delete = sm.delete_session
        start = time.perf_counter()
        for key in picked:
            await delete(key)
        result["delete_ops"] = per_second(count, start)
        return result


async def memory(sessions: int) -> dict[str, Any]:
    """Python heap per live session, by tracemalloc (slow: kept apart from the timed run)."""
    usernames = [f"user{i}" for i in range(sessions)]
    keys: list[str] = [""] * sessions
    async with SessionManager(timeout=HOUR) as sm:
        await sm.load_new_session("warm-up")  # binds the loop, builds lazy structures
        full_collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        for i in range(sessions):
            keys[i] = await sm.load_new_session(usernames[i])
        full_collect()
        after = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        return {"sessions": sessions, "heap_per_session": (after - before) / sessions}


async def expiry(sessions: int, seconds: float) -> dict[str, Any]:
    """Create ``sessions`` sessions at once, timing out after ``seconds``, and watch the loop
    while they all end."""
    loop = asyncio.get_running_loop()
    deadlines: dict[str, float] = {}
    state = {"ended": 0, "last_end": 0.0, "lateness": 0.0, "stall": 0.0}
    finished = asyncio.Event()

    def expired(event: SessionEvent) -> None:
        now = loop.time()
        assert event.key is not None
        state["lateness"] = max(state["lateness"], now - deadlines[event.key])
        state["last_end"] = now
        state["ended"] += 1
        if state["ended"] == sessions:
            finished.set()

    async def probe() -> None:
        # A 1 ms sleeper: anything beyond 1 ms between wake-ups is the loop busy elsewhere.
        last = loop.time()
        while True:
            await asyncio.sleep(0.001)
            now = loop.time()
            state["stall"] = max(state["stall"], now - last - 0.001)
            last = now

    async with SessionManager(timeout=seconds) as sm:
        sm.on("session_expired", expired)
        first = None
        for i in range(sessions):
            key = await sm.load_new_session(f"user{i}")
            deadlines[key] = loop.time() + seconds
            if first is None:
                first = deadlines[key]
        assert first is not None
        prober = asyncio.create_task(probe())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(finished.wait(), seconds + 15)
        prober.cancel()
    return {
        "sessions": sessions,
        "ended": state["ended"],
        "expiry_stall_ms": state["stall"] * 1000,
        "expiry_drain_s": state["last_end"] - first,
        "expiry_lateness_s": state["lateness"],
    }


def main(argv: list[str]) -> None:
    mode, *args = argv
    numbers = [float(a) for a in args]
    result: dict[str, Any]
    if mode == "ops":
        result = asyncio.run(ops(int(numbers[0]), int(numbers[1]), numbers[2] == 1))
    elif mode == "memory":
        result = asyncio.run(memory(int(numbers[0])))
    elif mode == "expiry":
        result = asyncio.run(expiry(int(numbers[0]), numbers[1]))
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
