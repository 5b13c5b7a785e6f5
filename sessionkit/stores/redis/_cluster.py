"""Calls on a Redis Cluster: a :class:`~sessionkit.stores.redis._pipeline.Pipeline` per
primary, each on connections of its own made from that node's settings."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from redis.asyncio import RedisCluster
from redis.asyncio.cluster import ClusterNode
from redis.exceptions import ClusterDownError, MovedError, SlotNotCoveredError, TryAgainError
from redis.exceptions import ConnectionError as RedisConnectionError

from sessionkit.stores.redis._pipeline import Pipeline, dial


class ClusterCalls:
    """Calls on a Redis Cluster, pipelined per primary: each goes down the pipeline to the
    primary that serves its bucket's slot, by the client's slot table.

    A call the primary redirects (the slot moved or is moving, a failover) is sent again
    through the client itself, which follows the redirection and learns the new slot table
    that later calls then route by; the script did not run where it was redirected from. So is
    a call whose connection broke (a primary that died: the client asks the others which node
    serves the slot now); the script may have run, and operation ids make that safe. A call
    that timed out has the client ask the nodes again, in the background, which of them serve
    which slots: a primary that hangs may have been failed over.
    """

    def __init__(self, client: RedisCluster, timeout: float) -> None:
        self._client = client
        self._timeout = timeout
        self._pipes: dict[str, tuple[ClusterNode, Pipeline]] = {}  # by node name
        self._closing: set[asyncio.Task[None]] = set()
        self._asking: asyncio.Task[None] | None = None  # a refresh of the slot table

    async def call(
        self, deadline: float, slot: int, packed: bytes, command: tuple[Any, ...]
    ) -> Any:
        # ``packed`` is ``command`` encoded; ``slot`` the slot of every key it declares.
        client = self._client
        try:
            node = client.nodes_manager.get_node_from_slot(slot)
        except (KeyError, SlotNotCoveredError):  # no slot table yet (or any more)
            return await self._redirected(deadline, command)
        name = node.name
        entry = self._pipes.get(name)
        if entry is None or entry[0] is not node:  # a new node, or the client remade it
            if entry is not None:
                self._retire(entry[1])
            pipe = Pipeline(dial(node.connection_class, node.connection_kwargs), self._timeout)
            entry = self._pipes[name] = (node, pipe)
        try:
            return await entry[1].call(deadline, packed)
        except (MovedError, TryAgainError, ClusterDownError, RedisConnectionError):
            return await self._redirected(deadline, command)  # MovedError covers ASK too
        except TimeoutError:
            if self._asking is None or self._asking.done():  # one at a time
                self._asking = asyncio.get_running_loop().create_task(self._ask_slots())
            raise

    async def _ask_slots(self) -> None:
        # Ask the nodes which of them serve which slots (the client's own refresh, as after a
        # MOVED): whatever fails here, the next timeout asks again.
        with contextlib.suppress(Exception):
            await self._client.nodes_manager.initialize()

    async def _redirected(self, deadline: float, command: tuple[Any, ...]) -> Any:
        async with asyncio.timeout_at(deadline):
            # Learn the slots first (a no-op once known): commands sent together to a client
            # that had not yet done so raced its start (redis-py 8.1 closed a connection
            # another command had just taken).
            await self._client.initialize()
            return await self._client.execute_command(*command)

    def _retire(self, pipe: Pipeline) -> None:
        task = asyncio.get_running_loop().create_task(pipe.aclose())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def aclose(self) -> None:
        pipes = [pipe for _, pipe in self._pipes.values()]
        self._pipes.clear()
        if self._asking is not None:
            self._asking.cancel()
        asking = [] if self._asking is None else [self._asking]
        await asyncio.gather(*(pipe.aclose() for pipe in pipes), *self._closing)
        await asyncio.gather(*asking, return_exceptions=True)
