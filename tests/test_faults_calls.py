"""Nothing lost (docs/contract.md, "Failures"): a mutating call whose reply never reached the
caller.

Redis applies each call, then the caller does not hear it: the proxy closes the connection
instead of replying (with and without redis-py's own retry, which then sends the script
again), Redis is kept busy past ``op_timeout``, or the caller cancels after sending. Once the
store answers again, every session that ended must have had exactly one ``session_deleted``,
and no session may live under a key nobody was given.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING

import pytest
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from sessionkit import SessionEvent, SessionManager, StoreUnavailable
from sessionkit.keys import hash_key
from sessionkit.stores.redis import RedisStore
from tests.conftest import fresh_prefix
from tests.faultkit import Hog, eventually, session_id, stored_digests
from tests.faultproxy import FaultProxy
from tests.recorder import Recorder

if TYPE_CHECKING:
    pass

OP_TIMEOUT = 0.3  # seconds
SETTLE = 3.0  # seconds the store has to report what it did once Redis answers again


@dataclass
class Scenario:
    """One faulted call on a manager of its own (its own prefix, so faults can target it)."""

    name: str
    sm: SessionManager
    prefix: str
    rec: Recorder
    call: Callable[[], Awaitable[object]] = field(init=False)
    check: Callable[[], Awaitable[str | None]] = field(init=False)
    outcome: str = "not run"
    result: object = None  # what the call returned, if it did


async def _scenarios(client: Redis, direct: Redis) -> list[Scenario]:
    """The seven mutating calls, each set up on its own manager, not yet called."""
    # Each call once, fault-free, so that the server holds every script: a first use answers
    # NOSCRIPT (nothing applied), which is not the fault under test.
    store = RedisStore(client, prefix=fresh_prefix(), sweep_interval=3600)
    async with SessionManager(timeout=60, store=store, max_sessions_per_user=1) as warm:
        await warm.load_new_session("w")
        await warm.delete_session(await warm.rotate_session_key(await warm.load_new_session("w")))
        await warm.delete_user_sessions("w")
        await warm.delete_all_sessions()
    made: list[Scenario] = []

    def new(name: str, **options: object) -> Scenario:
        prefix = fresh_prefix()
        store = RedisStore(client, prefix=prefix, op_timeout=OP_TIMEOUT, sweep_interval=3600)
        sm = SessionManager(timeout=60, store=store, **options)  # type: ignore[arg-type]
        made.append(Scenario(name, sm, prefix, Recorder(sm)))
        return made[-1]

    async def orphans(s: Scenario, held: set[str]) -> str | None:
        # Nothing live but what a caller holds the key for, by listing and by reading Redis.
        live = {session_id(d) for d in await s.sm.get_user_sessions("u")}
        if live - held:
            return f"{len(live - held)} live session(s) under a key nobody was given"
        if await s.sm.count_sessions() != len(live):
            return f"count_sessions() {await s.sm.count_sessions()} != listed {len(live)}"
        stray = await stored_digests(direct, s.prefix) - held
        return f"{len(stray)} session record(s) in Redis for keys nobody holds" if stray else None

    def ended_once(s: Scenario, hashes: set[str], reason: str) -> str | None:
        got = {h: len(s.rec.of("session_deleted", key_hash=h)) for h in hashes}
        wrong = {h[:8]: n for h, n in got.items() if n != 1}
        if wrong:
            return f"session_deleted per ended session {wrong} (want 1 each)"
        reasons = {e.reason for h in hashes for e in s.rec.of("session_deleted", key_hash=h)}
        return None if reasons <= {reason} else f"reasons {reasons}, want {reason!r}"

    # delete_session: the session is gone, so it must have been reported once.
    s = new("delete_session")
    key = await s.sm.load_new_session("u")

    async def check_delete(s: Scenario = s, key: str = key) -> str | None:
        if await s.sm.check_session_status(key):
            return "the deleted session is still live (the fault did not apply the call)"
        return ended_once(s, {hash_key(key)}, "logout") or await orphans(s, set())

    s.call, s.check = partial(s.sm.delete_session, key), check_delete

    # load_new_session: the caller never got the key, so no session may be left under it.
    s = new("load_new_session")
    s.call = partial(s.sm.load_new_session, "u")

    async def check_login(s: Scenario = s) -> str | None:
        created, deleted = s.rec.of("session_created"), s.rec.of("session_deleted")
        if isinstance(s.result, str):  # the call returned after all: its caller holds the key
            if len(created) != 1 or deleted:
                return f"login returned; {len(created)} session_created, {len(deleted)} deleted"
            return await orphans(s, {hash_key(s.result)})
        if len(created) > 1 or len(deleted) > 1 or (created and not deleted):
            return f"{len(created)} session_created, {len(deleted)} session_deleted"
        return await orphans(s, set())

    s.check = check_login

    # load_new_session evicting the user's oldest: the eviction happened, it must be reported.
    s = new("load_new_session(evict)", max_sessions_per_user=1)
    oldest = await s.sm.load_new_session("u")
    s.call = partial(s.sm.load_new_session, "u")

    async def check_evict(s: Scenario = s, oldest: str = oldest) -> str | None:
        if await s.sm.check_session_status(oldest):
            return "the oldest session is still live (the fault did not apply the call)"
        new_created = [e for e in s.rec.of("session_created") if e.key != oldest]
        evicted = len(s.rec.of("session_deleted", key_hash=hash_key(oldest)))
        if evicted != 1:
            return f"evicted session got {evicted} session_deleted"
        if isinstance(s.result, str):  # the login returned: its caller holds the new key
            if len(new_created) != 1 or len(s.rec.of("session_deleted")) != 1:
                return "login returned, yet its session was not reported created once"
            held = {hash_key(s.result)}
            return ended_once(s, {hash_key(oldest)}, "evicted") or await orphans(s, held)
        if new_created and len(s.rec.of("session_deleted")) != 2:
            return "the new session was reported created but its end was not"
        return ended_once(s, {hash_key(oldest)}, "evicted") or await orphans(s, set())

    s.check = check_evict

    # rotate_session_key: the old key live, or the session ended with its event; nothing else.
    s = new("rotate_session_key")
    key = await s.sm.load_new_session("u")
    s.call = partial(s.sm.rotate_session_key, key)

    async def check_rotate(s: Scenario = s, key: str = key) -> str | None:
        deleted = s.rec.of("session_deleted")
        if isinstance(s.result, str):  # the rotation returned: its caller holds the new key
            if deleted or not await s.sm.check_session_status(s.result):
                return f"rotation returned, yet its key is dead ({len(deleted)} session_deleted)"
            return await orphans(s, {hash_key(s.result)})
        if await s.sm.check_session_status(key):
            return (
                f"old key live yet {len(deleted)} session_deleted"
                if deleted
                else await orphans(s, {hash_key(key)})
            )
        if len(deleted) != 1:
            return f"old key dead, {len(deleted)} session_deleted for the session (want 1)"
        return await orphans(s, set())

    s.check = check_rotate

    # renew_if_due: a rotation leaving an alias for the grace; settled as a rotation is.
    s = new("renew_if_due", renew_every=60, renew_grace=30)
    key = await s.sm.load_new_session("u")
    due = replace(
        await s.sm.get_session_details(key), key_created_at=datetime(2000, 1, 1, tzinfo=UTC)
    )
    s.call = partial(s.sm.renew_if_due, due)

    async def check_renew(s: Scenario = s, key: str = key) -> str | None:
        deleted = s.rec.of("session_deleted")
        if isinstance(s.result, str):  # renewed: the new key and, in its grace, the old one
            if deleted or not await s.sm.check_session_status(s.result):
                return f"renewal returned, yet its key is dead ({len(deleted)} session_deleted)"
            if not await s.sm.check_session_status(key):
                return "renewal returned, yet the old key stopped before its grace"
            return await orphans(s, {hash_key(s.result), hash_key(key)})
        if await s.sm.check_session_status(key):
            if deleted:
                return f"old key live yet {len(deleted)} session_deleted"
            if (await s.sm.get_session_details(key)).id != hash_key(key):
                return "the old key works only as an alias: the renewal was not undone"
            return await orphans(s, {hash_key(key)})
        if len(deleted) != 1:
            return f"old key dead, {len(deleted)} session_deleted for the session (want 1)"
        return await orphans(s, set())

    s.check = check_renew

    # The bulk calls: every session they removed reported once.
    for name, reason in (
        ("delete_all_sessions", "delete_all"),
        ("delete_user_sessions", "logout_all"),
    ):
        s = new(name)
        keys = [await s.sm.load_new_session("u") for _ in range(3)]
        if name == "delete_all_sessions":
            s.call = s.sm.delete_all_sessions
        else:
            s.call = partial(s.sm.delete_user_sessions, "u")

        async def check_bulk(
            s: Scenario = s, keys: list[str] = keys, reason: str = reason
        ) -> str | None:
            if await s.sm.count_sessions():
                return "sessions still live (the fault did not apply the call)"
            return ended_once(s, {hash_key(k) for k in keys}, reason) or await orphans(s, set())

        s.check = check_bulk
    # Open a connection for each call now: a fresh one would wait on the fault for its own
    # handshake, and the call would never be sent.
    await asyncio.gather(*(client.ping() for _ in range(2 * len(made))))
    for s in made:
        await s.sm.count_sessions()  # binds the manager: its first sweep runs now, not later
    for s in made:
        await s.sm.idle()  # each manager's first sweep has run: only the faulted call is left
    return made


async def _run(s: Scenario, cancel_after: float | None = None) -> None:
    started = time.monotonic()
    try:
        if cancel_after is None:
            result = await s.call()
        else:
            result = await asyncio.wait_for(s.call(), cancel_after)
    except BaseException as exc:
        s.outcome = f"raised {type(exc).__name__} after {time.monotonic() - started:.2f} s"
    else:
        s.outcome = "returned"
        s.result = result


async def _settle_and_judge(scenarios: list[Scenario]) -> None:
    async def complaints() -> dict[str, str]:
        found = {}
        for s in scenarios:
            complaint = await s.check()
            if complaint:
                found[s.name] = complaint
        return found

    await eventually(complaints, SETTLE)
    for s in scenarios:
        await s.sm.idle()  # nothing is being settled or reported: a second report would be in
    broken = await complaints()
    for s in scenarios:
        doubled = s.rec.doubled()
        if doubled:
            broken[s.name] = f"session_deleted twice for {doubled}"
    for s in scenarios:
        await s.sm.aclose()
    report = {s.name: f"{s.outcome}; {broken[s.name]}" for s in scenarios if s.name in broken}
    assert report == {}, "rules broken:\n" + "\n".join(f"  {k}: {v}" for k, v in report.items())


@pytest.mark.parametrize("retry", [False, True], ids=["no-retry", "redis-py-retry"])
async def test_reply_dropped_after_redis_applied(
    proxy: FaultProxy, redis_client: Redis, connect: Callable[..., Redis], retry: bool
) -> None:
    """The connection closes instead of replying. With redis-py's default Retry the client
    sends the same script again on a new connection: it must not apply twice either."""
    client = (
        connect(proxy.port)  # the default Retry: 3 retries
        if retry
        else connect(proxy.port, retry=Retry(NoBackoff(), 0))
    )
    scenarios = await _scenarios(client, redis_client)
    for s in scenarios:
        proxy.drop_after_reply(command=s.prefix.encode())
    await asyncio.gather(*(_run(s) for s in scenarios))
    assert proxy.dropped == len(scenarios)  # each call applied in Redis, its reply lost
    # A call may raise StoreUnavailable, or return: RedisStore sends a script again on a new
    # connection once, and the operation id makes the second send return the first outcome.
    # Either way the rules below hold.
    await _settle_and_judge(scenarios)


async def test_busy_server_past_op_timeout(
    proxy: FaultProxy, redis_client: Redis, connect: Callable[..., Redis]
) -> None:
    """A slow script holds Redis for 1 s: each call gives up at op_timeout (0.3 s), and Redis
    runs it afterwards anyway."""
    client = connect(proxy.port)
    scenarios = await _scenarios(client, redis_client)
    hogger = Hog(connect(proxy.upstream_port))
    await hogger.calibrate()
    hog = asyncio.create_task(hogger.run(1.2))
    await asyncio.sleep(0.1)
    await asyncio.gather(*(_run(s) for s in scenarios))
    assert not hog.done()  # every call gave up while the server was still busy
    assert all(s.outcome.startswith("raised StoreUnavailable") for s in scenarios), [
        s.outcome for s in scenarios
    ]
    assert await hog > OP_TIMEOUT + 0.1
    await _settle_and_judge(scenarios)


async def test_caller_cancels_after_sending(
    proxy: FaultProxy, redis_client: Redis, connect: Callable[..., Redis]
) -> None:
    """The caller gives up (``asyncio.wait_for``) after the script reached Redis: the replies
    are held by the proxy, Redis has applied each call."""
    client = connect(proxy.port)
    scenarios = await _scenarios(client, redis_client)
    proxy.delay(0.6)
    await asyncio.gather(*(_run(s, cancel_after=0.2) for s in scenarios))
    proxy.delay(0)
    assert all(s.outcome.startswith("raised TimeoutError") for s in scenarios), [
        s.outcome for s in scenarios
    ]
    await _settle_and_judge(scenarios)


async def test_a_connection_that_stops_reading_is_left_for_a_new_one(
    proxy: FaultProxy, connect: Callable[..., Redis]
) -> None:
    """The store's connection stops being read (the proxy holds it; its socket buffers fill
    with 40 MB of session data): the calls on it fail at op_timeout, the write held up on it
    is left behind, and the calls after go out on a new connection and answer."""
    store = RedisStore(connect(proxy.port), prefix=fresh_prefix(), op_timeout=OP_TIMEOUT)
    async with SessionManager(timeout=60, store=store) as sm:
        key = await sm.load_new_session("ada")
        proxy.freeze_open()
        blob = "x" * 1_000_000
        stuck = await asyncio.gather(
            *(sm.set_session_data(key, blob) for _ in range(40)), return_exceptions=True
        )
        assert all(isinstance(r, StoreUnavailable) for r in stuck), stuck
        assert proxy.bytes_up < 2_000_000  # the writes did back up behind the frozen one

        async def answers() -> object:
            return None if await sm.check_session_status(key) else "the session is not live"

        began = time.monotonic()
        assert not await eventually(answers, 3.0)
        print(f"answered again {time.monotonic() - began:.2f} s after the stuck calls failed")
        assert await sm.set_session_data(key, "fine")
        assert await sm.get_session_data(key) == "fine"
        proxy.release()


async def test_aclose_reports_what_a_timed_out_call_did(
    proxy: FaultProxy, connect: Callable[..., Redis]
) -> None:
    """docs: the contract, "A worker that dies loses nothing": a logout that Redis applied but
    whose reply came after ``op_timeout`` is reported by ``aclose()``, run once Redis answers
    again, before it returns (it used to drop the calls still to be settled)."""
    store = RedisStore(connect(proxy.port), prefix=fresh_prefix(), op_timeout=OP_TIMEOUT)
    sm = SessionManager(timeout=60, store=store)
    rec = Recorder(sm)
    await sm.delete_session(await sm.load_new_session("warm"))  # its scripts are loaded
    key = await sm.load_new_session("u")
    proxy.delay(OP_TIMEOUT * 2)  # Redis applies the logout; its reply comes too late
    with pytest.raises(StoreUnavailable):
        await sm.delete_session(key)
    proxy.delay(0)
    await sm.aclose()
    ended = rec.of("session_deleted", key_hash=hash_key(key))
    assert [e.reason for e in ended] == ["logout"]


async def test_a_handler_that_hangs_holds_up_only_its_own_late_report(
    proxy: FaultProxy, connect: Callable[..., Redis]
) -> None:
    """Two logouts lose their reply; the handler of the first one's late report never returns
    (until the test lets it): the second is reported all the same. Settling never waits on a
    handler inline."""
    store = RedisStore(connect(proxy.port), prefix=fresh_prefix(), op_timeout=OP_TIMEOUT)
    sm = SessionManager(timeout=60, store=store)
    await sm.delete_session(await sm.load_new_session("warm"))  # its scripts are loaded
    first, second = await sm.load_new_session("u"), await sm.load_new_session("u")
    hang, reported = asyncio.Event(), asyncio.Event()

    @sm.on("session_deleted")
    async def deleted(event: SessionEvent) -> None:
        if event.key_hash == hash_key(first):
            await hang.wait()
        else:
            reported.set()

    # Redis applies both logouts (sent together, on the connection open now); their replies
    # come too late.
    proxy.delay(OP_TIMEOUT * 2)
    calls = await asyncio.gather(*map(sm.delete_session, (first, second)), return_exceptions=True)
    assert all(isinstance(call, StoreUnavailable) for call in calls), calls
    proxy.delay(0)
    try:
        async with asyncio.timeout(10):
            await reported.wait()
    finally:
        hang.set()
        await sm.aclose()
