"""What :class:`~sessionkit.stores.redis.RedisStore` uses of redis-py beyond its documented
API, in one place, checked when ``sessionkit.stores.redis`` is imported: a redis-py release that
changes one of them fails that import with an :class:`ImportError` naming it, rather than every
call later with a raw error.

- ``ConnectionPool.connection_class`` / ``connection_kwargs`` and the same on a cluster's
  ``ClusterNode``: the store makes connections of its own with the client's settings.
- On a connection: ``connect()`` (which opens and greets it), ``encoder`` (how the client
  decodes replies), ``_writer`` (the ``asyncio.StreamWriter`` it was opened with: the pipeline
  takes its transport over once greeted, to write and parse replies itself) and
  ``disconnect(nowait=True)``.
- ``redis._parsers.BaseParser.parse_error``: an error reply made into the exception redis-py
  would raise for it (``NoScriptError``, ``MovedError``...), by the pipeline's own parser.
- ``RedisCluster.nodes_manager``'s ``get_node_from_slot(slot)`` and ``initialize()``: calls are
  routed per primary by the client's own slot table, which is refreshed after a timeout.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, cast

from redis._parsers import BaseParser
from redis.asyncio import ConnectionPool
from redis.asyncio.cluster import ClusterNode, NodesManager
from redis.asyncio.connection import AbstractConnection, Connection

__all__ = ("check",)

_MISSING = object()

#: (what, the object, its attribute, the parameters a method must take)
_USES: list[tuple[str, Any, str, tuple[str, ...]]] = [
    ("a connection", AbstractConnection, "connect", ()),
    ("a connection", AbstractConnection, "disconnect", ("nowait",)),
    ("redis-py's reply parser", BaseParser, "parse_error", ("response",)),
    ("a cluster's nodes manager", NodesManager, "get_node_from_slot", ()),
    ("a cluster's nodes manager", NodesManager, "initialize", ()),
]


def check() -> None:
    """Check that redis-py still offers what the store uses of it.

    :raises ImportError: naming what is missing or changed.
    """
    connection = Connection()
    uses: list[tuple[str, Any, str, tuple[str, ...]]] = [
        *_USES,
        ("a connection", connection, "encoder", ()),
        ("a connection", connection, "_writer", ()),
        ("a client's connection pool", ConnectionPool(), "connection_class", ()),
        ("a client's connection pool", ConnectionPool(), "connection_kwargs", ()),
        ("a cluster node", ClusterNode("127.0.0.1", 1), "connection_class", ()),
        ("a cluster node", ClusterNode("127.0.0.1", 1), "connection_kwargs", ()),
    ]
    for what, owner, name, parameters in uses:
        found = getattr(owner, name, _MISSING)  # (a connection's _writer is None until open)
        if found is _MISSING:
            raise ImportError(f"sessionkit.stores.redis needs {what}'s {name} (redis-py changed)")
        if parameters:
            taken = inspect.signature(cast(Callable[..., Any], found)).parameters
            missing = [p for p in parameters if p not in taken]
            if missing:
                raise ImportError(
                    f"sessionkit.stores.redis needs {what}'s {name} to take {', '.join(missing)}"
                    " (redis-py changed)"
                )
