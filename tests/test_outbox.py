"""The outbox (docs/contract.md, "A worker that dies loses nothing"): every ending a RedisStore
makes is recorded in the same script, delivered once to the process that made it, and again,
under the same id, by another process's sweep if it is never acknowledged. The crash test with
real worker processes and SIGKILLs is tests/test_redis_crash.py."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest

from sessionkit import ClientInfo, SessionEvent, SessionManager, StoreUnavailable
from sessionkit.keys import hash_key
from sessionkit.stores.redis import RedisStore
from tests.conftest import fresh_prefix
from tests.faultkit import eventually
from tests.faultproxy import FaultProxy
from tests.internals import bucket_of_key, schema
from tests.recorder import Recorder

if TYPE_CHECKING:
    from redis.asyncio import Redis, RedisCluster

OP_TIMEOUT = 0.5  # seconds: an ending is delivered again after 1.5 s unacknowledged
SWEEP = 0.2  # seconds
_FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"


def _store(client: Redis | RedisCluster, prefix: str, *, sweep: float = SWEEP) -> RedisStore:
    return RedisStore(client, prefix=prefix, op_timeout=OP_TIMEOUT, sweep_interval=sweep)


async def _entries(client: Redis | RedisCluster, store: RedisStore, key: str) -> int:
    """How many endings the outbox of ``key``'s bucket still holds."""
    return int(await client.xlen(schema.outbox(bucket_of_key(store, key))))


async def _acknowledged(client: Redis | RedisCluster, store: RedisStore, key: str) -> None:
    """Wait until the outbox of ``key``'s bucket is empty (its endings acknowledged: no sweep
    delivers them again), then for two sweeps more (one may have read it just before): a
    second delivery would be in by then. Waiting a fixed ``redelivery_after`` instead waits
    as long when all is well."""

    async def held() -> str | None:
        left = await _entries(client, store, key)
        return f"{left} ending(s) still in the outbox" if left else None

    assert await eventually(held, store.redelivery_after + 3.0) is None
    await asyncio.sleep(2 * SWEEP)


@pytest.fixture(params=["redis", "redis-cluster"])
def client(request: pytest.FixtureRequest) -> Redis | RedisCluster:
    name = "redis_client" if request.param == "redis" else "redis_cluster_client"
    found: Redis | RedisCluster = request.getfixturevalue(name)
    return found


async def test_an_ending_its_worker_never_reported_is_delivered_by_another_with_its_id(
    client: Redis | RedisCluster,
) -> None:
    """A worker ends a session (its script ran) and dies before reporting it: another worker's
    sweep delivers that ending within its sweep interval plus ``redelivery_after``, once, under
    the id the ending was given, and the outbox is empty afterwards."""
    prefix = fresh_prefix()
    dying = _store(client, prefix, sweep=3600)
    key = await SessionManager(store=dying).load_new_session("ada", data={"cart": 3})
    ended = await dying.delete(key)  # the store call ran; its process reported nothing
    assert ended is not None and ended.event_id is not None
    seen: list[SessionEvent] = []
    async with SessionManager(store=_store(client, prefix)) as survivor:
        survivor.on("session_deleted", seen.append)
        loop = asyncio.get_running_loop()
        started = loop.time()

        async def missing() -> str | None:
            return None if seen else "not delivered yet"

        assert await eventually(missing, SWEEP + dying.redelivery_after + 3.0) is None
        took = loop.time() - started
        await _acknowledged(client, dying, key)  # a second delivery, by now
    assert [(e.key_hash, e.reason, e.data, e.id) for e in seen] == [
        (hash_key(key), "logout", {"cart": 3}, ended.event_id)
    ]
    assert took < SWEEP + dying.redelivery_after + 1.0
    await dying.aclose()


async def test_a_report_slower_than_redelivery_is_held_not_delivered_again(
    client: Redis | RedisCluster,
) -> None:
    """A session_deleted handler that takes twice ``redelivery_after``: the worker holds the
    ending meanwhile, so another worker sweeping all along never delivers it."""
    prefix = fresh_prefix()
    slow, sweeper = (
        SessionManager(store=_store(client, prefix, sweep=3600)),
        SessionManager(store=_store(client, prefix)),
    )
    recorder = Recorder(slow, sweeper)
    redelivery = slow.store.redelivery_after
    assert redelivery is not None

    async def slow_handler(event: SessionEvent) -> None:
        await asyncio.sleep(2 * redelivery)

    slow.on("session_deleted", slow_handler)
    async with slow, sweeper:
        key = await slow.load_new_session("ada")
        assert await slow.delete_session(key)
        await _acknowledged(client, slow.store, key)  # type: ignore[arg-type]
    assert [e.name for e in recorder.of("session_deleted")] == ["session_deleted"]


async def test_a_hold_that_times_out_does_not_let_another_worker_deliver_again(
    proxy: FaultProxy, redis_client: Redis, connect: Callable[..., Redis]
) -> None:
    """A slow report's next hold meets a connection that never answers, and times out after
    ``op_timeout`` (1 s here, so ``redelivery_after`` is 2 s): the worker holds again on a
    fresh connection at once, so the ending never sits unheld for ``redelivery_after``, and
    another worker sweeping all along never delivers it. (Holding every third of
    ``redelivery_after`` and retrying as long after a failure, as before, left it unheld for
    about 2.6 s: the sweeper delivered it a second time.)"""
    prefix = fresh_prefix()
    stores = [
        RedisStore(client, prefix=prefix, op_timeout=1.0, sweep_interval=sweep)
        for client, sweep in ((connect(proxy.port), 3600.0), (redis_client, SWEEP))
    ]
    slow, sweeper = SessionManager(store=stores[0]), SessionManager(store=stores[1])
    recorder = Recorder(slow, sweeper)
    redelivery = stores[0].redelivery_after
    assert redelivery == 2.0
    handling = asyncio.Event()

    async def slow_handler(event: SessionEvent) -> None:
        handling.set()
        await asyncio.sleep(redelivery + 1.5)

    slow.on("session_deleted", slow_handler)
    async with slow, sweeper:
        key = await slow.load_new_session("ada")
        deleting = asyncio.create_task(slow.delete_session(key))  # it waits for the handler
        await handling.wait()
        proxy.freeze_open()  # the next hold goes into a connection that never answers
        await asyncio.sleep(redelivery + 1.0)  # it timed out; had the hold lapsed, taken by now
        proxy.release()
        assert await deleting
        await _acknowledged(redis_client, stores[0], key)
    assert [(e.name, e.reason) for e in recorder.of("session_deleted")] == [
        ("session_deleted", "logout")
    ]


async def test_an_ending_reported_while_its_manager_closes_stays_held(
    client: Redis | RedisCluster,
) -> None:
    """A session expires, and its session_deleted handler takes longer than
    ``redelivery_after``; the manager is closed meanwhile (a SIGTERM's graceful stop).
    ``aclose()`` waits for the handler, and the ending stays held all along: another worker
    sweeping all along never delivers it, and once closed the outbox is empty. (Holding
    stopped when the manager began to close: the other worker delivered it a second time.)"""
    prefix = fresh_prefix()
    closing = SessionManager(timeout=2, store=_store(client, prefix, sweep=3600))
    sweeper = SessionManager(store=_store(client, prefix))
    recorder = Recorder(closing, sweeper)
    redelivery = closing.store.redelivery_after
    assert redelivery is not None
    handling = asyncio.Event()

    async def slow_handler(event: SessionEvent) -> None:
        handling.set()
        await asyncio.sleep(redelivery + 1.5)

    closing.on("session_deleted", slow_handler)
    async with sweeper:
        key = await closing.load_new_session("ada")
        await asyncio.wait_for(handling.wait(), 5)  # its timer fired: the handler is a job
        await closing.aclose()  # it waits for the handler, 3 s
        await _acknowledged(client, sweeper.store, key)  # type: ignore[arg-type]
    assert [(e.name, e.reason) for e in recorder.of("session_deleted")] == [
        ("session_deleted", "expired")
    ]


@pytest.mark.parametrize("first", ["settled", "swept"])
async def test_a_lost_logout_reply_is_reported_once_with_other_workers_sweeping(
    proxy: FaultProxy, redis_client: Redis, connect: Callable[..., Redis], first: str
) -> None:
    """A logout whose reply comes after ``op_timeout`` (Redis ran it): the caller gets
    StoreUnavailable; its manager settles the call once Redis answers, while another worker
    sweeps every 0.2 s. Whoever finds the ending first (the settle, or, with the caller cut
    off past ``redelivery_after``, the other worker's sweep) reports it, and nobody else:
    one session_deleted, and the outbox empties."""
    prefix = fresh_prefix()
    caller = SessionManager(store=_store(connect(proxy.port), prefix, sweep=3600))
    sweeper = SessionManager(store=_store(redis_client, prefix))
    recorder = Recorder(caller, sweeper)
    sweeper_saw: list[SessionEvent] = []
    sweeper.on("session_deleted", sweeper_saw.append)
    redelivery = caller.store.redelivery_after
    assert redelivery is not None
    async with caller, sweeper:
        key = await caller.load_new_session("ada")
        # The script loaded first: a NOSCRIPT answered late would keep the logout from running.
        assert await caller.delete_session(await caller.load_new_session("bob"))
        proxy.delay(OP_TIMEOUT + 0.3)
        with pytest.raises(StoreUnavailable):
            await caller.delete_session(key)
        if first == "swept":
            proxy.stall()  # the caller's settle cannot reach Redis until the sweep took it

            async def not_swept() -> str | None:
                return None if sweeper_saw else "the other worker has not delivered it yet"

            assert await eventually(not_swept, redelivery + 3.0) is None
            assert [e.username for e in sweeper_saw] == ["ada"]
            proxy.release()
        proxy.delay(0)

        async def unreported() -> str | None:
            return None if recorder.of("session_deleted", user="ada") else "not reported yet"

        assert await eventually(unreported, 5.0) is None
        await _acknowledged(redis_client, caller.store, key)  # type: ignore[arg-type]
        await caller.idle()  # nothing left to settle or report: a second report would be in
        assert not caller.store.unsettled
    assert [e.key_hash for e in recorder.of("session_deleted", user="ada")] == [hash_key(key)]


@pytest.mark.parametrize("first", ["settled", "swept"])
async def test_a_suspicious_ending_whose_reply_was_lost_is_reported_with_its_own_reason(
    proxy: FaultProxy, redis_client: Redis, connect: Callable[..., Redis], first: str
) -> None:
    """``on_suspicious="end"`` ends a session whose client changed, and the reply of that
    store call comes after ``op_timeout`` (Redis ran it). Whoever reports the ending (the
    caller's settle, or another worker's sweep once the caller is cut off past
    ``redelivery_after``) reports it as the caller would have (docs/contract.md: reason
    ``"suspicious"``, its clients told to log out), not as a plain logout."""
    prefix = fresh_prefix()
    store = _store(connect(proxy.port), prefix, sweep=3600)
    caller = SessionManager(store=store, on_suspicious="end")
    sweeper = SessionManager(store=_store(redis_client, prefix))
    recorder = Recorder(caller, sweeper)
    sweeper_saw: list[SessionEvent] = []
    sweeper.on("session_deleted", sweeper_saw.append)
    redelivery = store.redelivery_after
    home, away = ClientInfo("203.0.113.7", _FIREFOX), ClientInfo("198.51.100.9", _FIREFOX)
    async with caller, sweeper:
        key = await caller.load_new_session("ada", client=home)
        details = await caller.get_session_details(key)
        # The script loaded first: a NOSCRIPT answered late would keep the ending from running.
        assert await caller.delete_session(await caller.load_new_session("bob"))
        proxy.delay(OP_TIMEOUT + 0.3)
        with pytest.raises(StoreUnavailable):
            await caller.check_client(details, away)
        if first == "swept":
            proxy.stall()  # the caller's settle cannot reach Redis until the sweep took it

            async def not_swept() -> str | None:
                return None if sweeper_saw else "the other worker has not delivered it yet"

            assert await eventually(not_swept, redelivery + 3.0) is None
            proxy.release()
        proxy.delay(0)

        async def unreported() -> str | None:
            return None if recorder.of("session_deleted", user="ada") else "not reported yet"

        assert await eventually(unreported, 5.0) is None
        await asyncio.sleep(redelivery + 3 * SWEEP)  # a second report, by now
        assert await _entries(redis_client, store, key) == 0
        assert not store.unsettled
    endings = [
        (e.name, e.key_hash, e.reason)
        for e in recorder.events
        if e.name in ("session_deleted", "notify_client_to_logout") and e.username == "ada"
    ]
    assert endings == [
        ("session_deleted", hash_key(key), "suspicious"),
        ("notify_client_to_logout", hash_key(key), "suspicious"),
    ]
    assert [e.reason for e in sweeper_saw if e.username == "ada"] == (
        ["suspicious"] if first == "swept" else []
    )
