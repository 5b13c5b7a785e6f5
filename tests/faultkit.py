"""Helpers for the fault-injection tests: polling, Redis reads, a server kept busy (the events
they record: tests/recorder.py)."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable

from redis.asyncio import Redis

from sessionkit import SessionDetails, StoreUnavailable
from sessionkit.keys import hash_key
from tests.internals import schema

#: A Lua script that loops ARGV[1] times, holding the server: every other client waits. (A
#: loop on redis.call('TIME') would never end: the server freezes TIME while a script runs.)
SPIN_LUA = "local x = 0 for i = 1, tonumber(ARGV[1]) do x = x + i % 7 end return 1"

_DIGEST = re.compile(rb"[0-9a-f]{64}")
_STORED = re.compile(rb"[sa]:([A-Za-z0-9_-]{43})$")  # a session's or alias's key name


def session_id(details: SessionDetails) -> str:
    """A listed session's public id (its key's SHA-256 digest). docs/contract.md names it
    ``id``; until that field exists, listings on RedisStore put the digest in ``key``,
    MemoryStore the key."""
    ident = getattr(details, "id", None)
    if isinstance(ident, str):
        return ident
    key = details.key
    assert key is not None
    return key if _DIGEST.fullmatch(key.encode()) else hash_key(key)


async def eventually(check: Callable[[], Awaitable[object]], within: float) -> object:
    """Poll ``check`` until it returns something falsy (no complaint) or ``within`` passes;
    return its last answer (the complaint, or a falsy value when all is well)."""
    deadline = time.monotonic() + within
    while True:
        try:
            complaint = await check()
        except StoreUnavailable as exc:  # the store is not answering yet: ask again
            complaint = f"the store did not answer: {exc}"
        if not complaint or time.monotonic() > deadline:
            return complaint
        await asyncio.sleep(0.05)


async def stored_digests(client: Redis, prefix: str) -> set[str]:
    """The SHA-256 digests (session ids) named by any key under ``prefix`` in Redis: a live
    session that no listing shows still has its record there."""
    found: set[str] = set()
    async for name in client.scan_iter(match=prefix + "*", count=1000):
        raw = name if isinstance(name, bytes) else str(name).encode()
        found.update(schema.hex_hash(m) for m in _STORED.findall(raw))
    return found


class Hog:
    """Keeps a server busy for at least about ``seconds`` with one script, from a connection of
    its own; calibrated on the spot, because the machine's speed varies with its load."""

    def __init__(self, client: Redis) -> None:
        self.client = client
        self.per_second = 0.0

    async def calibrate(self) -> None:
        """The fastest of three timed runs on an open connection: a run slowed by a load spike
        (or by the connection's handshake) would make the hog itself come out short, and the
        tests need it to outlast the call it blocks (a CI run saw 0.39 s for 1.2 s asked)."""
        await self.client.ping()
        loops = 2_000_000
        for _ in range(3):
            started = time.monotonic()
            await self.client.eval(SPIN_LUA, 0, str(loops))
            self.per_second = max(self.per_second, loops / max(time.monotonic() - started, 1e-3))

    async def run(self, seconds: float) -> float:
        """Hold the server at least about ``seconds`` (longer on a busy machine); return how
        long it really took."""
        if not self.per_second:
            await self.calibrate()
        started = time.monotonic()
        await self.client.eval(SPIN_LUA, 0, str(round(seconds * self.per_second)))
        return time.monotonic() - started

    async def hold(self, seconds: float, probe: Redis) -> asyncio.Task[float]:
        """Start :meth:`run` and return its task once the server is busy with it: once a
        ``PING`` from ``probe`` (a client of its own, left with a connection waiting on the
        hog) goes unanswered for 0.2 s. A fixed pause instead lets a call sent on a loaded
        machine reach the server before the hog's script does."""
        if not self.per_second:
            await self.calibrate()
        await probe.ping()  # its connection open, so that a handshake is not what waits
        hog = asyncio.create_task(self.run(seconds))
        while not hog.done():
            try:
                await asyncio.wait_for(probe.ping(), 0.2)
            except TimeoutError:
                break
            await asyncio.sleep(0.01)
        return hog
