"""Several uvicorn workers sharing their sessions through one Redis.

Each worker process builds this app: its own ``SessionManager`` on a ``RedisStore``, and a
Socket.IO server whose ``AsyncRedisManager`` relays each ``logout`` push to whichever worker
holds the browser's socket. A session created by one worker is checked, restarted and ended by
any other; its expiry is reported once, by one worker.

Run it by hand against a Redis you have::

    SESSIONKIT_REDIS_URL=redis://127.0.0.1:6379/0 \\
        uvicorn examples.multiworker.app:app --workers 4 --port 8000 \\
        --ws websockets-sansio --ws-per-message-deflate false

or let ``python examples/multiworker/run.py`` start a server and two workers and walk
through a session for you.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from typing import Any

import socketio
from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from sessionkit import SessionEvent, SessionManager
from sessionkit.socketio import bind_socketio
from sessionkit.starlette import RequireSession, get_session
from sessionkit.stores.redis import RedisStore

REDIS_URL = os.environ.get("SESSIONKIT_REDIS_URL", "redis://127.0.0.1:6379/0")
TIMEOUT = float(os.environ.get("SESSIONKIT_TIMEOUT", "30"))  # idle seconds
PREFIX = os.environ.get("SESSIONKIT_PREFIX", "sessionkit:")


def create_app(
    redis_url: str = REDIS_URL, *, timeout: float = TIMEOUT, prefix: str = PREFIX
) -> Any:
    """Build one worker's app: the JSON API and the Socket.IO server, on one shared Redis.

    :param redis_url: the Redis every worker shares.
    :param timeout: the sessions' idle timeout in seconds.
    :param prefix: the prefix of the store's keys and of the Socket.IO channel.
    :return: the ASGI app (Socket.IO wrapping Starlette).
    """
    client = Redis.from_url(redis_url)
    # Fast sweeps: a worker that dies leaves its sessions to the others for at most ~2 s.
    store = RedisStore(client, prefix=prefix, sweep_interval=1.0)
    sm = SessionManager(timeout=timeout, store=store)
    # Every worker's Socket.IO server relays its emits through Redis pub/sub: room names
    # are hashes of the keys (sessionkit.socketio.room_for), so no key is published.
    relay = socketio.AsyncRedisManager(redis_url, channel=f"{prefix}socketio")
    sio = socketio.AsyncServer(async_mode="asgi", client_manager=relay)
    bind_socketio(sm, sio)
    pid = os.getpid()

    @sm.on("session_expired")
    def expired(event: SessionEvent) -> None:
        # One line per expiry across all the workers: the one that claimed it prints it.
        print(
            f"worker {pid}: session {event.key_hash[:12]} of {event.username} expired", flush=True
        )

    async def login(request: Request) -> JSONResponse:
        body = await request.json()
        username = body.get("username") if isinstance(body, dict) else None
        if not isinstance(username, str) or not username:
            return JSONResponse({"error": "username required"}, status_code=400)
        key = await sm.load_new_session(username)
        return JSONResponse({"session_key": key, "worker": pid})

    async def whoami(request: Request) -> JSONResponse:
        session = get_session(request)  # checked and restarted, on whichever worker
        return JSONResponse({"username": session.username, "worker": pid})

    async def logout(request: Request) -> JSONResponse:
        key = get_session(request).key
        assert key is not None  # the guard's details carry the key the request sent
        await sm.delete_session(key)
        return JSONResponse({"ok": True, "worker": pid})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with sm:
            yield
        await client.aclose()

    web = Starlette(
        routes=[
            Route("/login", login, methods=["POST"]),
            Route("/whoami", RequireSession(whoami, sm)),
            Route("/logout", RequireSession(logout, sm, restart=False), methods=["POST"]),
        ],
        lifespan=lifespan,
    )
    return socketio.ASGIApp(sio, other_asgi_app=web)


app = create_app()
