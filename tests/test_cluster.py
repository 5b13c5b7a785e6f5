"""The local Redis Cluster the suite starts (tests/cluster.py): three primaries on loopback,
every slot covered, and a cluster client that reaches each of them; and what is particular to
RedisStore's cluster layout (the contract suite itself runs on the cluster through
``make_store``, and tests/test_redis_processes.py expires 1,000 sessions there)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from redis import Redis
from redis.asyncio import Redis as AsyncRedis
from redis.crc import key_slot

from sessionkit import SessionManager, StoreUnavailable
from sessionkit.keys import hash_key
from sessionkit.stores import NewSession
from sessionkit.stores.redis import RedisStore
from tests.cluster import SLOTS, RedisClusterServers, cluster, cluster_info, slot_ranges
from tests.conftest import cluster_client, fresh_prefix, started_cluster
from tests.faultkit import eventually
from tests.internals import bucket_tags, schema
from tests.recorder import ALL_EVENTS, Recorder

if TYPE_CHECKING:
    from redis.asyncio import RedisCluster


def test_three_primaries_cover_every_slot(redis_cluster: RedisClusterServers) -> None:
    assert len(redis_cluster.ports) == 3
    for port in redis_cluster.ports:
        with Redis(host="127.0.0.1", port=port) as node:
            info = cluster_info(node)
            assert info["cluster_state"] == "ok"
            assert int(info["cluster_slots_assigned"]) == SLOTS
            assert int(info["cluster_slots_ok"]) == SLOTS
            assert int(info["cluster_known_nodes"]) == 3
            assert int(info["cluster_size"]) == 3  # primaries serving slots
            lines = cluster(node, "NODES")
            text = lines.decode() if isinstance(lines, bytes) else str(lines)
            primaries = [ln for ln in text.splitlines() if "master" in ln.split()[2]]
            assert len(primaries) == 3
            assert all(
                ":" in ln.split()[1] and ln.split()[1].startswith("127.0.0.1") for ln in primaries
            )
    assert redis_cluster.startup_s is not None
    assert redis_cluster.startup_s < 10  # about 2 s: the primaries' writable delay


def tags_per_node(ranges: list[tuple[int, int]]) -> list[str]:
    """A hash tag whose slot falls in each range, in range order."""
    found: dict[int, str] = {}
    n = 0
    while len(found) < len(ranges):
        tag = f"t{n}"
        slot = key_slot(f"{{{tag}}}".encode())
        for i, (first, last) in enumerate(ranges):
            if first <= slot <= last:
                found.setdefault(i, tag)
        n += 1
    return [found[i] for i in range(len(ranges))]


async def test_cluster_client_reaches_each_primary(
    redis_cluster: RedisClusterServers, redis_cluster_client: RedisCluster
) -> None:
    ranges = slot_ranges(3)
    for port, tag in zip(redis_cluster.ports, tags_per_node(ranges), strict=True):
        key = f"{{{tag}}}:cluster-check"
        node_of_key = redis_cluster_client.get_node_from_key(key)
        assert node_of_key is not None
        assert node_of_key.port == port
        assert await redis_cluster_client.set(key, f"on {port}")
        assert await redis_cluster_client.get(key) == f"on {port}".encode()
        # The key lives on that primary itself: a plain client to it reads it directly.
        with Redis(host="127.0.0.1", port=port) as node:
            assert node.get(key) == f"on {port}".encode()
        await redis_cluster_client.delete(key)


# -- RedisStore's cluster layout ------------------------------------------------------------


async def test_sessions_spread_over_every_primary(
    redis_cluster: RedisClusterServers, redis_cluster_client: RedisCluster
) -> None:
    """3,000 sessions of 3,000 users land on all three primaries, none holding half."""
    prefix = fresh_prefix()
    store = RedisStore(redis_cluster_client, prefix=prefix)
    async with SessionManager(timeout=60, store=store) as sm:
        keys = [await sm.load_new_session(f"user{i}") for i in range(3000)]
        assert await sm.count_sessions() == 3000
        per_node = []
        for port in redis_cluster.ports:
            async with AsyncRedis(host="127.0.0.1", port=port) as node:
                found = [k async for k in node.scan_iter(match=f"{prefix}*s:*", count=1000)]
                per_node.append(len(found))
        print("sessions per primary:", per_node)
        assert sum(per_node) == 3000
        assert all(0 < n <= 1500 for n in per_node), per_node
        assert len(await sm.get_logged_users()) == 3000
        assert await sm.delete_all_sessions() == 3000
        assert not any(await asyncio.gather(*(sm.check_session_status(k) for k in keys[:50])))
        assert await sm.count_sessions() == 0


async def test_keys_name_their_users_bucket(redis_cluster_client: RedisCluster) -> None:
    """A user's keys all start with the user's bucket character, a rotation keeps it, and a key
    made otherwise is refused before anything is stored."""
    store = RedisStore(redis_cluster_client, prefix=fresh_prefix())
    async with SessionManager(timeout=60, store=store, max_sessions_per_user=3) as sm:
        firsts = {(await sm.load_new_session("ada"))[0] for _ in range(5)}
        assert len(firsts) == 1  # and the cap, one slot's script, held across them:
        assert len(await sm.get_user_sessions("ada")) == 3
        key = await sm.load_new_session("grace")
        rotated = await sm.rotate_session_key(key)
        assert rotated[0] == key[0] and rotated != key
        assert len(rotated) == len(key) == 44
        assert await sm.check_session_status(rotated)
    other = next(c for c in "ABCDEFGH" if c != key[0])
    with pytest.raises(ValueError, match="new_key"):
        await store.create(other + key[1:], NewSession("grace", 60))
    with pytest.raises(ValueError, match="rotated_key"):
        await store.rotate(rotated, other + rotated[1:])
    assert [s.key_hash for s in await store.user_sessions("grace")] == [hash_key(rotated)]
    await store.aclose()


def test_cluster_prefix_without_braces(redis_cluster_client: RedisCluster) -> None:
    with pytest.raises(ValueError, match="hash tags"):
        RedisStore(redis_cluster_client, prefix="app{1}:")


def test_bucket_tags_spread_evenly_and_never_change() -> None:
    """The 64 hash tags are part of what is stored: each falls in its own 64th of the slots,
    and they are the same from one version to the next."""
    tags = bucket_tags()
    assert [key_slot(tag.encode()) * 64 // SLOTS for tag in tags] == list(range(64))
    assert tags[:8] == ["10", "18", "113", "342", "29", "21", "3", "122"]


async def test_a_hung_primary_fails_its_own_calls_only_and_loses_nothing(
    tmp_path: Path,
) -> None:
    """One primary of three stops answering (SIGSTOP) while 60 sessions of 2 s run out. Calls
    for sessions elsewhere still answer; calls that need the hung primary raise
    StoreUnavailable within op_timeout; sessions elsewhere are reported expired on time (their
    claims went with a claim that failed in the hung bucket); once the primary answers again,
    its sessions are reported too: every session once."""
    servers = started_cluster(tmp_path)
    client = await cluster_client(servers)
    prefix = fresh_prefix()
    store = RedisStore(client, prefix=prefix, op_timeout=0.5, sweep_interval=0.2)
    sm = SessionManager(timeout=2, store=store)
    rec = Recorder(sm)
    try:
        keys = [await sm.load_new_session(f"user{i}") for i in range(60)]
        hung = servers.nodes[1]
        async with AsyncRedis(host="127.0.0.1", port=hung.port) as node:
            on_hung = set(await stored_on(node, prefix, keys))
        elsewhere = [k for k in keys if k not in on_hung]
        assert 10 < len(on_hung) < 40, len(on_hung)
        hung.pause()
        try:
            assert all([await sm.check_session_status(k) for k in elsewhere[:5]])
            began = time.monotonic()
            with pytest.raises(StoreUnavailable):
                await sm.check_session_status(next(iter(on_hung)))
            assert 0.45 <= time.monotonic() - began < 0.5 + 2
            with pytest.raises(StoreUnavailable):
                await sm.count_sessions()

            async def elsewhere_expired() -> object:
                expired = {e.key_hash for e in rec.of("session_expired")}
                return {hash_key(k) for k in elsewhere} - expired

            assert not await eventually(elsewhere_expired, 5.0)
            reported = {e.key_hash for e in rec.of("session_expired")}
            assert not reported & {hash_key(k) for k in on_hung}
        finally:
            hung.resume()

        async def all_expired() -> object:
            return {hash_key(k) for k in keys} - {e.key_hash for e in rec.of("session_expired")}

        assert not await eventually(all_expired, 8.0)
        await sm.idle()  # no claim left to try again, nothing being settled or reported
        assert await store.sweep() == []  # and a later sweep would find nothing to report
        assert rec.doubled("session_expired") == {}
        assert rec.doubled("session_deleted") == {}
        assert len(rec.of("session_expired")) == 60
        assert await sm.count_sessions() == 0
    finally:
        await sm.aclose()
        await client.aclose()
        servers.stop()


def _migrate_slot(servers: RedisClusterServers, slot: int, source: int, target: int) -> None:
    """Move one slot, with its keys, from one primary to another (as a resharding does)."""
    nodes = [Redis(host="127.0.0.1", port=port) for port in servers.ports]
    try:
        src, dst = nodes[source], nodes[target]
        src_id, dst_id = (cluster(node, "MYID") for node in (src, dst))
        cluster(dst, "SETSLOT", slot, "IMPORTING", src_id)
        cluster(src, "SETSLOT", slot, "MIGRATING", dst_id)
        while keys := cluster(src, "GETKEYSINSLOT", slot, 100):
            port = servers.ports[target]
            src.execute_command("MIGRATE", "127.0.0.1", port, "", 0, 5000, "KEYS", *keys)  # type: ignore[no-untyped-call]
        for node in nodes:
            cluster(node, "SETSLOT", slot, "NODE", dst_id)
    finally:
        for node in nodes:
            node.close()


async def stored_on(node: AsyncRedis, prefix: str, keys: Iterable[str]) -> list[str]:
    """Those of ``keys`` whose session (under ``prefix``) the primary ``node`` holds."""
    return [k for k in keys if await node.keys(f"{prefix}*s:{schema.stored_key_hash(k)}")]


async def _evalsha_seen(node: AsyncRedis) -> int:
    # EVALSHA calls a node answered, failed or redirected (a MOVED reply counts as rejected).
    stats = (await node.info("commandstats")).get("cmdstat_evalsha", {})
    return sum(int(stats.get(k, 0)) for k in ("calls", "rejected_calls", "failed_calls"))


async def test_a_moved_slot_is_followed_and_its_sessions_keep_working(tmp_path: Path) -> None:
    """A bucket's slot moves to another primary (a resharding) while its sessions live: the
    next call is redirected and still answers right, and later calls go straight to the new
    primary down its own pipeline."""
    servers = started_cluster(tmp_path)
    client = await cluster_client(servers)
    prefix = fresh_prefix()
    sm = SessionManager(timeout=60, store=RedisStore(client, prefix=prefix))
    rec = Recorder(sm, names=ALL_EVENTS)
    try:
        keys = [await sm.load_new_session("ada") for _ in range(3)]
        other = await sm.load_new_session("grace")
        found = []
        for i, port in enumerate(servers.ports):
            async with AsyncRedis(host="127.0.0.1", port=port) as node:
                found += [
                    (i, k) for k in await node.keys(f"{prefix}*s:{schema.stored_key_hash(keys[0])}")
                ]
        [(source, name)] = found
        slot = key_slot(name if isinstance(name, bytes) else name.encode())
        target = (source + 1) % 3
        _migrate_slot(servers, slot, source, target)

        assert await sm.check_session_status(keys[0])  # redirected, then answered
        assert await sm.restart_session_timer(keys[1])
        assert [s.id for s in await sm.get_user_sessions("ada")] == [hash_key(k) for k in keys]
        assert await sm.delete_user_session("ada", hash_key(keys[2]))
        assert await sm.count_sessions() == 3
        assert await sm.check_session_status(other)
        async with (
            AsyncRedis(host="127.0.0.1", port=servers.ports[source]) as old,
            AsyncRedis(host="127.0.0.1", port=servers.ports[target]) as new,
        ):
            assert len(await new.keys(f"{prefix}*")) >= 3  # the user index and sessions
            before = [await _evalsha_seen(node) for node in (old, new)]
            for key in keys[:2]:
                assert await sm.check_session_status(key)
            after = [await _evalsha_seen(node) for node in (old, new)]
            assert [a - b for a, b in zip(after, before, strict=True)] == [0, 2]  # no redirect
        assert await sm.delete_all_sessions() == 3
        assert rec.errors() == []
    finally:
        await sm.aclose()
        await client.aclose()
        servers.stop()


async def test_a_restarted_primary_is_reached_again(tmp_path: Path) -> None:
    """A primary goes down (SIGTERM; no persistence, so its sessions go with it) and comes back
    on its port: while it is down its calls raise StoreUnavailable and the others answer; once
    it is back its slots answer again, through the same store."""
    servers = started_cluster(tmp_path)
    client = await cluster_client(servers)
    prefix = fresh_prefix()
    sm = SessionManager(timeout=60, store=RedisStore(client, prefix=prefix, op_timeout=0.5))
    try:
        keys = {f"user{i}": await sm.load_new_session(f"user{i}") for i in range(30)}
        down = servers.nodes[2]
        async with AsyncRedis(host="127.0.0.1", port=down.port) as node:
            there = await stored_on(node, prefix, keys.values())
        on_down = {u for u, k in keys.items() if k in there}
        assert on_down and len(on_down) < len(keys)
        down.stop()
        for user in sorted(on_down)[:2]:
            with pytest.raises(StoreUnavailable):
                await sm.check_session_status(keys[user])
        for user in keys.keys() - on_down:
            assert await sm.check_session_status(keys[user])
        down.start()
        down.wait_ready(time.monotonic() + 10)

        async def answers_again() -> object:
            user = next(iter(on_down))
            fresh = await sm.load_new_session(user)  # a login in the restarted primary's bucket
            return None if await sm.check_session_status(fresh) else "not live"

        assert not await eventually(answers_again, 10.0)
        for user, key in keys.items():  # lost with the primary's memory, but an answer
            assert await sm.check_session_status(key) is (user not in on_down)
    finally:
        await sm.aclose()
        await client.aclose()
        servers.stop()


async def replica_holds(port: int, prefix: str, keys: list[str]) -> None:
    """Wait until the replica on ``port`` holds the sessions of ``keys`` (a WAIT on a test's
    own connection, which wrote nothing, would vouch for nothing: the store wrote them)."""
    async with AsyncRedis(host="127.0.0.1", port=port) as copy:

        async def missing() -> object:
            found = await stored_on(copy, prefix, keys)
            return (
                None if len(found) == len(keys) else f"{len(found)} of {len(keys)} on the replica"
            )

        assert not await eventually(missing, 10.0)


async def test_a_failover_is_followed_to_the_new_primary(tmp_path: Path) -> None:
    """A primary with a replica dies (SIGKILL): once the replica has taken over, the store's
    calls for that primary's sessions reach it there, each session as it was."""
    servers = started_cluster(tmp_path, node_timeout_ms=1000)
    client = None
    try:
        replica = servers.add_replica(0)
        client = await cluster_client(servers)
        prefix = fresh_prefix()
        sm = SessionManager(timeout=60, store=RedisStore(client, prefix=prefix, op_timeout=0.5))
        keys = [await sm.load_new_session(f"user{i}") for i in range(30)]
        dying = servers.nodes[0]
        async with AsyncRedis(host="127.0.0.1", port=dying.port) as node:
            moved = await stored_on(node, prefix, keys)
        assert moved
        await replica_holds(replica.port, prefix, moved)
        assert all([await sm.check_session_status(k) for k in keys])  # pipelines to all three
        dying.kill()

        async def moved_answer() -> object:
            live = [await sm.check_session_status(k) for k in moved]
            return None if all(live) else f"{live.count(False)} of {len(moved)} not live"

        began = time.monotonic()
        assert not await eventually(moved_answer, 15.0)
        print(f"answered from the new primary {time.monotonic() - began:.1f} s after the kill")
        async with AsyncRedis(host="127.0.0.1", port=replica.port) as node:
            assert (await node.info("replication"))["role"] == "master"
        assert all([await sm.check_session_status(k) for k in keys])
        assert await sm.count_sessions() == 30
        await sm.aclose()
    finally:
        if client is not None:
            await client.aclose()
        servers.stop()


async def test_a_decoding_cluster_client_and_braced_usernames(
    redis_cluster: RedisClusterServers,
) -> None:
    """A client that decodes replies, and usernames with hash-tag braces in them: the bucket's
    own tag comes first in every key, so a username's braces change no slot."""
    from redis.asyncio import RedisCluster

    client = RedisCluster(host="127.0.0.1", port=redis_cluster.ports[0], decode_responses=True)
    store = RedisStore(client, prefix=fresh_prefix())
    try:
        async with SessionManager(timeout=60, store=store, max_sessions_per_user=2) as sm:
            users = ["{a}", "b{c}d", "}{", "ünï{cödé}"]
            keys = {u: [await sm.load_new_session(u) for _ in range(3)] for u in users}
            for user, made in keys.items():
                listed = [s.id for s in await sm.get_user_sessions(user)]
                assert listed == [hash_key(k) for k in made[1:]], user  # the first evicted
                assert await sm.check_session_status(made[2])
            assert sorted(await sm.get_logged_users()) == sorted(u for u in users for _ in "xy")
            assert await sm.delete_user_sessions("{a}") == 2
            assert await sm.delete_all_sessions() == 6
    finally:
        await client.aclose()


async def test_a_hung_primary_failed_over_is_left_for_its_replica(tmp_path: Path) -> None:
    """A primary with a replica stops answering (SIGSTOP) and is failed over: the calls that
    time out on it have the client learn the new slot table, and its sessions answer from the
    promoted replica while it still hangs."""
    servers = started_cluster(tmp_path, node_timeout_ms=1000)
    hung = servers.nodes[0]
    client = None
    try:
        replica = servers.add_replica(0)
        # Through another node: the hung one answers no question about the slots either.
        client = await cluster_client(servers, node=1)
        prefix = fresh_prefix()
        sm = SessionManager(timeout=60, store=RedisStore(client, prefix=prefix, op_timeout=0.5))
        keys = [await sm.load_new_session(f"user{i}") for i in range(30)]
        async with AsyncRedis(host="127.0.0.1", port=hung.port) as node:
            on_hung = await stored_on(node, prefix, keys)
        assert on_hung
        await replica_holds(replica.port, prefix, on_hung)
        hung.pause()

        async def answered_by_replica() -> object:
            for key in on_hung:  # the first that times out ends this try
                if not await sm.check_session_status(key):
                    return "a session is not live"
            return None

        began = time.monotonic()
        assert not await eventually(answered_by_replica, 20.0)
        print(f"answered from the promoted replica {time.monotonic() - began:.1f} s after the hang")
        async with AsyncRedis(host="127.0.0.1", port=replica.port) as node:
            assert (await node.info("replication"))["role"] == "master"
        assert all([await sm.check_session_status(k) for k in keys])
        await sm.aclose()
    finally:
        hung.resume()
        if client is not None:
            await client.aclose()
        servers.stop()
