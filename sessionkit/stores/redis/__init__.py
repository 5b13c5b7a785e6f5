"""RedisStore: sessions shared by many processes and hosts through one Redis (or Valkey), or a
Redis Cluster.

The package: ``store`` (the store), ``_schema`` (every key name, hash field and the record's
reply order), ``_scripts`` with ``lua/`` (one file per script), ``_pipeline`` (the connections
the store owns) and ``_cluster`` (a pipeline per primary).
"""

from __future__ import annotations

try:
    import redis.asyncio  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "sessionkit.stores.redis needs redis-py: pip install 'sessionkit[redis]'"
    ) from exc

from sessionkit.stores.redis.store import RedisStore

__all__ = ("RedisStore",)
