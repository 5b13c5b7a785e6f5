"""RedisStore: sessions shared by many processes and hosts through one Redis (or Valkey), or a
Redis Cluster.

The package: ``store`` (the store), ``_schema`` (every key name, hash field and the record's
reply order), ``_scripts`` with ``lua/`` (one file per script), ``_pipeline`` (the connections
the store owns), ``_cluster`` (a pipeline per primary) and ``_compat`` (what it uses of
redis-py beyond its documented API, checked here).
"""

from __future__ import annotations

try:
    import redis.asyncio  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "sessionkit.stores.redis needs redis-py: pip install 'sessionkit[redis]'"
    ) from exc

from sessionkit.stores.redis._compat import check

check()  # what the store uses of redis-py beyond its documented API is still there

from sessionkit.stores.redis.store import RedisStore  # noqa: E402

__all__ = ("RedisStore",)
