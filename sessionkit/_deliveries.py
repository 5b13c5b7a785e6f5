"""Deliveries: the endings a manager takes from its store's outbox, acknowledged once reported.

A store shared by processes (one with :attr:`~sessionkit.SessionStore.redelivery_after`)
records every ending in an outbox, in the step that ended the session, and delivers it again,
under the same id, if nobody acknowledges it in time. The manager holds an ending from the
moment it starts reporting it; once every step of the report has run, the ending is
acknowledged, in batches, from the manager's own task. While a report takes long (a slow
handler), the store hears every third of ``redelivery_after`` that the ending is still held.
An ending held but never reported (the manager closed first) is left to the other workers.
"""

from __future__ import annotations

import asyncio

import anyio

from sessionkit._outage import Outage
from sessionkit._tasks import LoopTasks
from sessionkit.events import Dispatcher
from sessionkit.stores.base import SessionStore

_ACK = "acknowledging reported endings"
_POLL = 0.25  # seconds: how soon the acknowledging job notices that the manager closes


class Deliveries:
    """The endings one manager holds, and their acknowledgement."""

    def __init__(
        self, store: SessionStore, tasks: LoopTasks, events: Dispatcher, outage: Outage
    ) -> None:
        self._store = store
        self._tasks = tasks
        self._events = events
        self._outage = outage
        self._held: dict[str, float] = {}  # event id -> loop time it was last held
        self._reported: list[str] = []  # held, reported, not yet acknowledged
        self._wake = asyncio.Event()
        self._running = False

    def bind(self) -> None:
        """Start again on a new loop: what was held on the old one is left to the store."""
        self._held.clear()
        self._reported.clear()
        self._wake = asyncio.Event()
        self._running = False

    def hold(self, event_ids: list[str]) -> None:
        """Hold these endings while the steps that report them run (:meth:`reported` once
        they have)."""
        now = asyncio.get_running_loop().time()
        for event_id in event_ids:
            self._held[event_id] = now
        if not self._running and self._tasks.running:
            self._running = True
            self._tasks.spawn(self._acknowledge_forever)

    def reported(self, event_ids: list[str]) -> None:
        """Every step of the report of these endings has run: acknowledge them."""
        self._reported.extend(event_ids)
        self._wake.set()

    async def flush(self, within: float) -> None:
        """Acknowledge what is reported, for at most ``within`` seconds (the manager closes)."""
        with anyio.move_on_after(within):
            while self._reported:
                try:
                    await self._acknowledge()
                except Exception:
                    await anyio.sleep(0.05)

    async def _acknowledge(self) -> None:
        batch, self._reported = self._reported, []
        try:
            await self._store.acknowledge(batch)
        except BaseException:
            self._reported[:0] = batch
            raise
        for event_id in batch:
            self._held.pop(event_id, None)

    async def _acknowledge_forever(self) -> None:
        redelivery = self._store.redelivery_after or 1.0
        stop, loop = self._tasks.stop, asyncio.get_running_loop()
        try:
            while self._held and not stop.is_set():
                self._wake.clear()
                wait = min(redelivery / 3, _POLL)
                try:
                    if self._reported:
                        await self._acknowledge()
                    now = loop.time()
                    stale = [i for i, t in self._held.items() if now - t >= redelivery / 3]
                    if stale:
                        await self._store.hold(stale)
                        for event_id in stale:
                            self._held[event_id] = now
                except Exception as exc:
                    wait = self._outage.failed(_ACK, exc, first=min(redelivery / 3, 1.0))
                    await self._events.report(exc, _ACK, log=False)
                    with anyio.move_on_after(wait):
                        await stop.wait()
                    continue
                self._outage.worked(_ACK)
                if not self._reported:  # else: reported meanwhile, acknowledged at once
                    with anyio.move_on_after(wait):
                        await self._wake.wait()
        finally:
            self._running = False
