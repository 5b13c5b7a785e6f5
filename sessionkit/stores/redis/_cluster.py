"""Calls on a Redis Cluster: a :class:`~sessionkit.stores.redis._pipeline.Pipeline` per
primary, each on connections of its own made from that node's settings."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from redis.asyncio import RedisCluster
from redis.asyncio.cluster import ClusterNode
from redis.exceptions import (
    AskError,
    ClusterDownError,
    MovedError,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError

from sessionkit._tasks import TaskSet
from sessionkit.stores.redis._pipeline import Pipeline, dial

_ASKS = 5  # times one call that must not go through the client asks who serves its slot, at most
_MOVING = 0.05  # seconds between sends of such a call while its slot moves


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
        self._tasks = TaskSet()  # refreshes of the slot table; pipelines being retired
        self._asking: asyncio.Task[None] | None = None  # the refresh under way

    async def call(
        self, deadline: float, slot: int, packed: bytes, command: tuple[Any, ...]
    ) -> Any:
        # ``packed`` is ``command`` encoded; ``slot`` the slot of every key it declares.
        client = self._client
        try:
            node = client.nodes_manager.get_node_from_slot(slot)
        except (KeyError, SlotNotCoveredError):  # no slot table yet (or any more)
            return await self._redirected(deadline, command)
        try:
            return await self._pipe(node).call(deadline, packed)
        except (MovedError, TryAgainError, ClusterDownError, RedisConnectionError):
            return await self._redirected(deadline, command)  # MovedError covers ASK too
        except TimeoutError:
            self._ask()
            raise

    async def call_together(self, deadline: float, slot: int, packed: bytes, replies: int) -> Any:
        """Send ``packed``, ``replies`` commands that must go down one connection back to back
        (a script and the ``WAIT`` that follows it), to the primary that serves ``slot``; the
        list of their replies.

        Never through the client, which would pick a connection per command. Redirected (a
        failover, a slot that moved), the call goes again to the slot's primary once the nodes
        have been asked who serves it. While the slot is moving (ASK, TRYAGAIN) it is sent
        again in a moment, until the slot has moved: every such script declares its operation's
        outcome key, which exists nowhere yet, so the node importing the slot would refuse it
        even after ``ASKING``. The script did not run where it was refused. A call whose
        connection broke is not sent again: its script may have run.
        """
        loop = asyncio.get_running_loop()
        nodes = self._client.nodes_manager
        asked = 0
        while True:
            try:
                node = nodes.get_node_from_slot(slot)
                return await self._pipe(node).call(deadline, packed, replies)
            except (MovedError, ClusterDownError, KeyError, SlotNotCoveredError):
                if asked >= _ASKS:
                    raise
                asked += 1
                async with asyncio.timeout_at(deadline):  # who serves the slot now?
                    await self._client.initialize()  # learns the slots first (once)
                    await asyncio.shield(self._ask())
            except (AskError, TryAgainError):  # MovedError is an AskError: caught above
                if loop.time() + _MOVING > deadline:
                    raise
                await asyncio.sleep(_MOVING)
            except (RedisConnectionError, TimeoutError):
                self._ask()  # the primary may have died, or hung and been failed over
                raise

    def _pipe(self, node: ClusterNode) -> Pipeline:
        # The pipeline to ``node``: made for a new node, or one the client made again.
        entry = self._pipes.get(node.name)
        if entry is None or entry[0] is not node:
            if entry is not None:
                self._retire(entry[1])
            pipe = Pipeline(dial(node.connection_class, node.connection_kwargs), self._timeout)
            entry = self._pipes[node.name] = (node, pipe)
        return entry[1]

    def _ask(self) -> asyncio.Task[None]:
        # The nodes are asked which slots they serve, once at a time: after a timeout, or a
        # redirection of a call that must not go through the client.
        asking = self._asking
        if asking is None or asking.done() or asking.get_loop() is not asyncio.get_running_loop():
            asking = self._asking = self._tasks.start(self._ask_slots(), "sessionkit cluster slots")
        return asking

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
        self._tasks.start(pipe.aclose(), "sessionkit cluster retire")

    async def aclose(self) -> None:
        pipes = [pipe for _, pipe in self._pipes.values()]
        self._pipes.clear()
        asking, self._asking = self._asking, None
        if asking is not None and asking.get_loop() is asyncio.get_running_loop():
            asking.cancel()  # (one on a past loop went with it)
        await asyncio.gather(*(pipe.aclose() for pipe in pipes))
        await self._tasks.join()
