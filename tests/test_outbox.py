"""The outbox (docs/contract.md, "A worker that dies loses nothing"): every ending a RedisStore
makes is recorded in the same script, delivered once to the process that made it, and again,
under the same id, by another process's sweep if it is never acknowledged. The crash test with
real worker processes and SIGKILLs is tests/test_redis_crash.py."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest

from sessionkit import SessionEvent, SessionManager, StoreUnavailable
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
