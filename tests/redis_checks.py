"""Checks on what a RedisStore left in Redis: TTLs everywhere, no raw session key anywhere."""

from __future__ import annotations

from collections.abc import Iterable

from redis.asyncio import Redis


async def _dump(client: Redis, key: bytes) -> list[bytes]:
    kind = (await client.type(key)).decode()
    if kind == "hash":
        pairs = await client.hgetall(key)
        return [part for pair in pairs.items() for part in pair]
    if kind == "zset":
        return list(await client.zrange(key, 0, -1))
    if kind == "list":
        return list(await client.lrange(key, 0, -1))
    if kind == "set":
        return list(await client.smembers(key))
    if kind == "string":
        value = await client.get(key)
        return [] if value is None else [value]
    return []


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
        blobs = [key, *await _dump(client, key)]
        for blob in blobs:
            for needle in needles:
                assert needle not in blob, f"a raw session key is stored in {key!r}"
    return seen
