"""Fixtures shared by the whole suite."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from sessionkit import MemoryStore, SessionManager, SessionStore
from tests.cluster import RedisClusterServers
from tests.redis_server import RedisServer, require_server

if TYPE_CHECKING:
    from redis.asyncio import Redis, RedisCluster

#: Store kinds the store-contract suite runs on; each must make a fresh, empty store.
STORE_KINDS = ["memory", "redis"]

_prefixes = itertools.count()


def fresh_prefix() -> str:
    """A key prefix no other store in this test run uses."""
    return f"sktest:{next(_prefixes)}:"


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One Redis-compatible server for the whole run (skipped, or failed under CI=true,
    when none can be found)."""
    server = RedisServer(require_server(), tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def redis_client(redis_server: RedisServer) -> AsyncIterator[Redis]:
    """A ``redis.asyncio.Redis`` client to the run's server, closed after the test."""
    from redis.asyncio import Redis

    client = Redis(host="127.0.0.1", port=redis_server.port)
    yield client
    await client.aclose()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterServers]:
    """A 3-primary Redis Cluster on loopback for the whole run; ``.ports`` are its primaries'
    (skipped, or failed under CI=true, when no server can be found)."""
    cluster = RedisClusterServers(require_server(), tmp_path_factory.mktemp("cluster"))
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture
async def redis_cluster_client(
    redis_cluster: RedisClusterServers,
) -> AsyncIterator[RedisCluster]:
    """A ``redis.asyncio.RedisCluster`` client to the run's cluster, closed after the test."""
    from redis.asyncio import RedisCluster

    client = RedisCluster(host="127.0.0.1", port=redis_cluster.ports[0])
    await client.initialize()  # learns the slots now, so that routing needs no await
    yield client
    await client.aclose()


@pytest.fixture(params=STORE_KINDS)
async def make_store(request: pytest.FixtureRequest) -> AsyncIterator[Callable[[], SessionStore]]:
    """A factory of fresh, empty stores of one kind (the test runs once per kind)."""
    if request.param == "memory":
        yield MemoryStore
    elif request.param == "redis":
        from redis.asyncio import Redis

        from sessionkit.stores.redis import RedisStore

        server: RedisServer = request.getfixturevalue("redis_server")
        client = Redis(host="127.0.0.1", port=server.port)

        def make() -> SessionStore:
            return RedisStore(client, prefix=fresh_prefix())

        yield make
        await client.aclose()
    else:  # pragma: no cover - every kind in STORE_KINDS is handled above
        raise AssertionError(request.param)


@pytest.fixture
async def sm(make_store: Callable[[], SessionStore]) -> AsyncIterator[SessionManager]:
    """A manager on a fresh store of each kind, entered for the test and closed after it."""
    async with SessionManager(store=make_store()) as manager:
        yield manager


#: Values that are not keys of any session: each must be treated as an unknown key.
BAD_KEYS: list[object] = [
    None,
    42,
    4.2,
    b"bytes-key",
    "",
    "x" * 10_000,
    "nul\x00inside",
    "../../etc/passwd",
    "unknown-but-well-formed-key-0123456789abcdefghijklmno",
]


@pytest.fixture
def server_dir(tmp_path: Path) -> Path:
    """A directory for a test's own server."""
    return tmp_path / "redis"
