"""Checks on what a RedisStore left in Redis: TTLs everywhere, no raw session key anywhere."""

from __future__ import annotations

from collections.abc import Iterable

from redis.asyncio import Redis


def _bytes(value: object) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


async def _dump(client: Redis, key: bytes | str) -> list[bytes]:
    kind = _bytes(await client.type(key))
    parts: list[object]
    if kind == b"hash":
        pairs = await client.hgetall(key)
        parts = [part for pair in pairs.items() for part in pair]
    elif kind == b"zset":
        parts = list(await client.zrange(key, 0, -1))
    elif kind == b"list":
        parts = list(await client.lrange(key, 0, -1))
    elif kind == b"set":
        parts = list(await client.smembers(key))
    elif kind == b"string":
        parts = [await client.get(key)]
    else:
        parts = []
    return [_bytes(part) for part in parts if part is not None]


async def assert_clean(client: Redis, raw_keys: Iterable[str]) -> int:
    """Assert that every key on the server has a TTL and that no raw session key appears in
    any key name, hash field, value or set member.

    :return: how many keys were looked at.
    """
    needles = [key.encode() for key in raw_keys]
    seen = 0
    async for key in client.scan_iter(count=1000):
        seen += 1
        ttl = await client.pttl(key)
        assert ttl != -1, f"key {key!r} has no TTL"
        blobs = [_bytes(key), *await _dump(client, key)]
        for blob in blobs:
            for needle in needles:
                assert needle not in blob, f"a raw session key is stored in {key!r}"
    return seen
