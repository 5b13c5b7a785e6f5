"""A reply answers its own call, and only its own (docs: the contract, "Failures").

Connections are killed every 10-60 ms (``CLIENT KILL``, as a flapping network, a proxy restart
or a ``maxclients`` limit does) while 500 calls are in flight. Every call names its own
session, and its reply must name that session back: a record of another session, a forged key
reported live, a live session reported dead, or any exception but ``StoreUnavailable`` is
counted as a wrong answer. Two stores (two prefixes) share one client, as two applications of
one process would; on a cluster, one store alone on its client, with kills on every primary.

``SESSIONKIT_CHAOS_SECONDS`` sets how long each storm lasts: 5 s in the suite, a quick look;
`make chaos` (which CI runs too) 60 s.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from redis.asyncio import Redis, RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError

from sessionkit import StoreUnavailable
from sessionkit.keys import hash_key
from sessionkit.models import SessionRecord
from sessionkit.stores.redis import RedisStore
from tests.cluster import RedisClusterServers
from tests.conftest import cluster_client, fresh_prefix, redis_url

SECONDS = float(os.environ.get("SESSIONKIT_CHAOS_SECONDS", "5"))
IN_FLIGHT = 500
USERS = 30  # per store
FORGED = 30  # keys never given, per store


@dataclass
class Session:
    store: RedisStore
    key: str
    username: str


@dataclass
class Storm:
    """The sessions under test, and what the calls saw."""

    sessions: list[Session]
    forged: list[tuple[RedisStore, str]]
    seen: Counter[str]
    client: Redis | None = None  # a client the stores share, called directly too


async def _setup(stores: list[RedisStore]) -> Storm:
    sessions, forged = [], []
    for s, store in enumerate(stores):
        for u in range(USERS):
            username = f"user-{s}-{u}"
            key = store.new_key(username)
            data = json.dumps({"user": username})
            await store.create(
                key,
                username,
                data,
                timeout=3000,
                fixed_timeout=False,
                absolute_timeout=None,
                max_per_user=None,
            )
            sessions.append(Session(store, key, username))
            forged.append((store, store.new_key(username)))
    return Storm(sessions, forged[: FORGED * len(stores)], Counter())


def _own(record: SessionRecord | None, session: Session) -> str:
    # What is wrong with ``record`` as the reply about ``session``, or "" when it is its own.
    if record is None:
        return "a live session reported dead"
    if record.key_hash != hash_key(session.key) or record.username != session.username:
        return "another session's record"
    if record.data is None or json.loads(record.data)["user"] != session.username:
        return "another session's data"
    return ""


async def _one_call(storm: Storm, rng: random.Random) -> str:
    # One call on a random session; "" when its reply is its own.
    session = rng.choice(storm.sessions)
    pick = rng.randrange(7)
    if pick == 6 and storm.client is not None:  # the client's own pool, beside the stores
        echo = str(rng.getrandbits(64))
        return "" if await storm.client.echo(echo) == echo.encode() else "another call's echo"
    if pick == 0:
        store, forged = rng.choice(storm.forged)
        return "a forged key reported live" if await store.check(forged) is not None else ""
    if pick == 1:
        live = await session.store.check(session.key) is not None
        return "" if live else "a live session reported dead"
    if pick == 2:
        return _own(await session.store.get(session.key), session)
    if pick == 3:
        return _own(await session.store.touch_get(session.key, 3000), session)
    if pick == 4:
        token = rng.getrandbits(64)
        data = json.dumps({"user": session.username, "token": token})
        return "" if await session.store.set_data(session.key, data) else "set_data missed"
    listed = await session.store.user_sessions(session.username)
    ids = [(r.key_hash, r.username) for r in listed]
    return "" if ids == [(hash_key(session.key), session.username)] else "another user's listing"


async def _storm(storm: Storm, kill: Callable[[], Awaitable[bool]], seconds: float) -> int:
    stop = time.monotonic() + seconds

    async def caller(seed: int) -> None:
        rng = random.Random(seed)
        while time.monotonic() < stop:
            try:
                wrong = await _one_call(storm, rng)
            except (StoreUnavailable, RedisConnectionError):  # the client's own: a kill
                storm.seen["StoreUnavailable"] += 1
                continue
            except Exception as exc:  # a raw exception reached the caller
                storm.seen[f"raw {type(exc).__name__}: {exc}"[:120]] += 1
                continue
            storm.seen[wrong or "right"] += 1

    kills = 0

    async def killer() -> None:
        nonlocal kills
        rng = random.Random(0)
        while time.monotonic() < stop:
            await asyncio.sleep(rng.uniform(0.01, 0.06))
            kills += await kill()

    await asyncio.gather(killer(), *(caller(seed) for seed in range(IN_FLIGHT)))
    return kills


async def _connections(admin: Redis) -> int:
    # Connections the server has accepted so far.
    return int((await admin.info("stats"))["total_connections_received"])


def _verdict(storm: Storm, kills: int, least: float) -> None:
    seen = storm.seen
    wrong = {
        k: n for k, n in seen.items() if k not in ("right", "StoreUnavailable", "reconnections")
    }
    assert seen["right"] > 1000, seen  # the storm let calls through
    assert kills > least, kills
    assert seen["reconnections"] > kills / 2, seen  # and the kills reached the store
    print(f"{kills} kills: {dict(seen)}")  # shown with -s: what the storm did
    assert wrong == {}, f"wrong answers under {kills} kills: {wrong} (of {dict(seen)})"


async def test_two_stores_on_one_client_under_a_kill_storm(redis_server: object) -> None:
    client = Redis.from_url(redis_url(redis_server))  # type: ignore[arg-type]
    admin = Redis.from_url(redis_url(redis_server))  # type: ignore[arg-type]
    stores = [RedisStore(client, prefix=fresh_prefix(), op_timeout=2) for _ in range(2)]
    try:
        storm = await _setup(stores)
        storm.client = client

        async def kill() -> bool:
            await admin.client_kill_filter(_type="normal", skipme=True)
            return True

        before = await _connections(admin)
        kills = await _storm(storm, kill, SECONDS)
        storm.seen["reconnections"] = await _connections(admin) - before
        # Everything answers again once the storm stops.
        for session in storm.sessions:
            assert not _own(await session.store.get(session.key), session)
        _verdict(storm, kills, 3 * SECONDS)
    finally:
        for store in stores:
            await store.aclose()
        await client.aclose()
        await admin.aclose()


async def test_a_cluster_store_under_a_kill_storm(redis_cluster: RedisClusterServers) -> None:
    client: RedisCluster = await cluster_client(redis_cluster)
    admins = [Redis(host="127.0.0.1", port=port) for port in redis_cluster.ports]
    store = RedisStore(client, prefix=fresh_prefix(), op_timeout=2)
    rng = random.Random(1)
    try:
        storm = await _setup([store])

        async def kill() -> bool:
            # About twice a second per primary, as in the report (the storm kills every
            # 10-60 ms on one server).
            if rng.random() >= 0.06 * len(admins):
                return False
            await rng.choice(admins).client_kill_filter(_type="normal", skipme=True)
            return True

        before = sum([await _connections(admin) for admin in admins])
        kills = await _storm(storm, kill, SECONDS)
        storm.seen["reconnections"] = sum([await _connections(a) for a in admins]) - before
        for session in storm.sessions:
            assert not _own(await session.store.get(session.key), session)
        _verdict(storm, kills, SECONDS / 2)  # fewer on a busy machine: the killer shares the loop
    finally:
        await store.aclose()
        await client.aclose()
        for admin in admins:
            await admin.aclose()
