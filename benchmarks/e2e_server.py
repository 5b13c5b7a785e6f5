"""One Python side of the end-to-end benchmark, served by one uvicorn worker.

    python -m benchmarks.e2e_server SIDE PORT KEYFILE SESSIONS [REDIS_PORT]

Every side serves the same tiny JSON route, ``GET /api/me``, on 127.0.0.1:PORT. Before it
listens, the side creates SESSIONS sessions and writes one request header line per session
(``session_key: ...`` or ``Cookie: ...``) to KEYFILE, which the load generator cycles through.
uvicorn starts listening only once that is done, so a port that accepts connections means the
key file is complete. uvloop and httptools are used when installed (the ``bench`` extra).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import secrets
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

#: Every Python side; ``express`` is served by ``e2e_express.js``.
SIDES = (
    "bare",
    "sessionkit-memory",
    "sessionkit-redis",
    "starsessions-memory",
    "starsessions-redis",
)
HOUR = 3600  # seconds: no session idles out during a run
PATH = "/api/me"
BATCH = 50  # sessions created concurrently at start (within redis-py's default pool of 100)

Lifespan = Callable[[Starlette], contextlib.AbstractAsyncContextManager[None]]


def loop_and_http() -> tuple[str, str]:
    """uvicorn's ``loop`` and ``http`` settings: the fast ones when installed."""
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    return loop, http


def write_keys(keyfile: Path, lines: list[str]) -> None:
    # Written whole, then renamed: the driver never reads half a file.
    partial = keyfile.with_suffix(".partial")
    partial.write_text("".join(line + "\n" for line in lines))
    partial.replace(keyfile)


async def gather_batches(count: int, make: Callable[[int], Awaitable[str]]) -> list[str]:
    import asyncio

    out: list[str] = []
    for start in range(0, count, BATCH):
        out += await asyncio.gather(*(make(i) for i in range(start, min(count, start + BATCH))))
    return out


def redis_client(redis_port: int | None) -> Any:
    from redis.asyncio import Redis

    if redis_port is None:
        raise SystemExit("this side needs REDIS_PORT")
    return Redis(host="127.0.0.1", port=redis_port)


def bare_app(keyfile: Path, sessions: int) -> Starlette:
    async def me(request: Request) -> Response:
        return JSONResponse({"user": "anonymous"})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # The bare route ignores the header, but it is sent all the same: the same bytes
        # cross the wire on every side.
        write_keys(keyfile, [f"session_key: {secrets.token_urlsafe(32)}" for _ in range(sessions)])
        yield

    return Starlette(routes=[Route(PATH, me)], lifespan=lifespan)


def sessionkit_app(
    keyfile: Path, sessions: int, redis_port: int | None, *, redis: bool
) -> Starlette:
    from sessionkit import MemoryStore, SessionManager, SessionStore
    from sessionkit.starlette import RequireSession, get_session

    client = redis_client(redis_port) if redis else None
    store: SessionStore
    if client is not None:
        from sessionkit.stores.redis import RedisStore

        store = RedisStore(client, prefix="e2e:")
    else:
        store = MemoryStore()
    sm = SessionManager(timeout=HOUR, store=store)

    async def me(request: Request) -> Response:
        return JSONResponse({"user": get_session(request).username})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with sm:
            keys = await gather_batches(sessions, lambda i: sm.load_new_session(f"user{i}"))
            write_keys(keyfile, [f"session_key: {key}" for key in keys])
            yield
        if client is not None:
            await client.aclose()

    return Starlette(routes=[Route(PATH, RequireSession(me, sm))], lifespan=lifespan)


def starsessions_app(
    keyfile: Path, sessions: int, redis_port: int | None, *, redis: bool
) -> Starlette:
    from starsessions import InMemoryStore, JsonSerializer, SessionMiddleware, load_session
    from starsessions import SessionStore as StarStore
    from starsessions.stores.redis import RedisStore as StarRedisStore

    client = redis_client(redis_port) if redis else None
    store: StarStore = (
        StarRedisStore(connection=client, prefix="starsessions.")
        if client is not None
        else InMemoryStore()
    )
    serializer = JsonSerializer()

    async def me(request: Request) -> Response:
        await load_session(request)
        user = request.session.get("user")
        if user is None:
            return JSONResponse({"logout": True}, status_code=401)
        return JSONResponse({"user": user})

    async def make(i: int) -> str:
        # What starsessions itself writes for a session holding {"user": ...}.
        now = time.time()
        meta = {"lifetime": HOUR, "created": now, "last_access": now}
        data = serializer.serialize({"user": f"user{i}", "__metadata__": meta})
        return str(await store.write(secrets.token_hex(16), data, lifetime=HOUR, ttl=HOUR))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        ids = await gather_batches(sessions, make)
        write_keys(keyfile, [f"Cookie: session={sid}" for sid in ids])
        yield
        if client is not None:
            await client.aclose()

    middleware = [
        Middleware(SessionMiddleware, store=store, lifetime=HOUR, rolling=True),
    ]
    return Starlette(routes=[Route(PATH, me)], middleware=middleware, lifespan=lifespan)


def build(side: str, keyfile: Path, sessions: int, redis_port: int | None) -> Starlette:
    """The app of one side."""
    if side == "bare":
        return bare_app(keyfile, sessions)
    if side.startswith("sessionkit-"):
        return sessionkit_app(keyfile, sessions, redis_port, redis=side.endswith("redis"))
    if side.startswith("starsessions-"):
        return starsessions_app(keyfile, sessions, redis_port, redis=side.endswith("redis"))
    raise SystemExit(f"unknown side {side!r}; one of {', '.join(SIDES)}")


def main(argv: list[str]) -> None:
    side, port, keyfile, sessions = argv[0], int(argv[1]), Path(argv[2]), int(argv[3])
    redis_port = int(argv[4]) if len(argv) > 4 else None
    app = build(side, keyfile, sessions, redis_port)
    loop, http = loop_and_http()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        loop=loop,
        http=http,
        log_level="warning",
        access_log=False,
        lifespan="on",
    )
    print(f"serving {side} on 127.0.0.1:{port} (pid {os.getpid()}, {loop}, {http})", flush=True)
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main(sys.argv[1:])
