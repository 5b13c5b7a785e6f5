"""The local Redis Cluster the suite starts (tests/cluster.py): three primaries on loopback,
every slot covered, and a cluster client that reaches each of them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from redis import Redis
from redis.crc import key_slot

from tests.cluster import SLOTS, RedisClusterServers, cluster, cluster_info, slot_ranges

if TYPE_CHECKING:
    from redis.asyncio import RedisCluster


def test_three_primaries_cover_every_slot(redis_cluster: RedisClusterServers) -> None:
    assert len(redis_cluster.ports) == 3
    for port in redis_cluster.ports:
        with Redis(host="127.0.0.1", port=port) as node:
            info = cluster_info(node)
            assert info["cluster_state"] == "ok"
            assert int(info["cluster_slots_assigned"]) == SLOTS
            assert int(info["cluster_slots_ok"]) == SLOTS
            assert int(info["cluster_known_nodes"]) == 3
            assert int(info["cluster_size"]) == 3  # primaries serving slots
            lines = cluster(node, "NODES")
            text = lines.decode() if isinstance(lines, bytes) else str(lines)
            primaries = [ln for ln in text.splitlines() if "master" in ln.split()[2]]
            assert len(primaries) == 3
            assert all(
                ":" in ln.split()[1] and ln.split()[1].startswith("127.0.0.1") for ln in primaries
            )
    assert redis_cluster.startup_s is not None
    assert redis_cluster.startup_s < 10  # about 2 s: the primaries' writable delay


def tags_per_node(ranges: list[tuple[int, int]]) -> list[str]:
    """A hash tag whose slot falls in each range, in range order."""
    found: dict[int, str] = {}
    n = 0
    while len(found) < len(ranges):
        tag = f"t{n}"
        slot = key_slot(f"{{{tag}}}".encode())
        for i, (first, last) in enumerate(ranges):
            if first <= slot <= last:
                found.setdefault(i, tag)
        n += 1
    return [found[i] for i in range(len(ranges))]


async def test_cluster_client_reaches_each_primary(
    redis_cluster: RedisClusterServers, redis_cluster_client: RedisCluster
) -> None:
    ranges = slot_ranges(3)
    for port, tag in zip(redis_cluster.ports, tags_per_node(ranges), strict=True):
        key = f"{{{tag}}}:cluster-check"
        node_of_key = redis_cluster_client.get_node_from_key(key)
        assert node_of_key is not None
        assert node_of_key.port == port
        assert await redis_cluster_client.set(key, f"on {port}")
        assert await redis_cluster_client.get(key) == f"on {port}".encode()
        # The key lives on that primary itself: a plain client to it reads it directly.
        with Redis(host="127.0.0.1", port=port) as node:
            assert node.get(key) == f"on {port}".encode()
        await redis_cluster_client.delete(key)
