"""Deliveries: the endings a manager takes from its store's outbox, acknowledged once reported.

A store shared by processes (one with :attr:`~sessionkit.SessionStore.redelivery_after`)
records every ending in an outbox, in the step that ended the session, and delivers it again,
under the same id, if nobody acknowledges it in time. The manager holds an ending from the
moment it starts reporting it; once every step of the report has run, the ending is
acknowledged, in batches, from the manager's own task. While a report takes long (a slow
handler), the store hears every 0.3 s (every third of ``redelivery_after`` if that is
shorter) that the ending is still held, and a failed hold is tried again within 0.15 s, so
that one lost or late reply never lets the hold lapse. An ending held but never reported (the
manager closed first) is left to the other workers.
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
_HOLD_EVERY = 0.3  # seconds at most between two holds of an ending (a third of
# redelivery_after if that is shorter)
_RETRY = 0.05  # seconds after a failed hold or acknowledgement, doubling after each failure
# in a row, up to half the time between holds


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

    def bind(self) -> None:
        """Start again on a new loop: what was held on the old one is left to the store."""
        self._held.clear()
        self._reported.clear()
        self._wake = asyncio.Event()

    def hold(self, event_ids: list[str]) -> None:
        """Hold these endings while the steps that report them run (:meth:`reported` once
        they have)."""
        now = asyncio.get_running_loop().time()
        for event_id in event_ids:
            self._held[event_id] = now
        self._tasks.spawn_once(self._acknowledge_forever)

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
        # Holds come first and go on while acknowledging fails: an ending whose hold lapses
        # for redelivery_after is delivered again by another worker. They go on while the
        # manager closes, as long as other jobs still report what is held (aclose() waits
        # for those handlers; flush() then acknowledges). One hold or acknowledgement that
        # times out leaves a gap of at most every * 1.5 + op_timeout + _RETRY (op_timeout +
        # 0.5 s), under redelivery_after (op_timeout + 1 s).
        redelivery = self._store.redelivery_after or 1.0
        every = min(redelivery / 3, _HOLD_EVERY)
        stop, loop = self._tasks.stop, asyncio.get_running_loop()
        while self._held and (not stop.is_set() or self._reporting_elsewhere()):
            self._wake.clear()
            try:
                now = loop.time()
                stale = [i for i, t in self._held.items() if now - t >= every]
                if stale:
                    await self._store.hold(stale)
                    for event_id in stale:
                        self._held[event_id] = now
                if self._reported:
                    await self._acknowledge()
            except Exception as exc:
                wait = self._outage.failed(_ACK, exc, first=_RETRY, cap=every / 2)
                await self._events.report(exc, _ACK, log=False)
                await self._pause(wait, stop if not stop.is_set() else None)
                continue
            self._outage.worked(_ACK)
            if not self._reported:  # else: reported meanwhile, acknowledged at once
                await self._pause(min(every / 2, _POLL), self._wake)

    def _reporting_elsewhere(self) -> bool:
        # The manager closes: whether another job still runs while an ending held here has not
        # been reported (its handler is one of them).
        return self._tasks.jobs > 1 and not self._held.keys() <= set(self._reported)

    @staticmethod
    async def _pause(seconds: float, until: asyncio.Event | None) -> None:
        with anyio.move_on_after(seconds):
            await (anyio.sleep_forever() if until is None else until.wait())
