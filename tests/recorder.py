"""One recorder of a manager's events, for every test that checks what was fired and when."""

from __future__ import annotations

import asyncio

import anyio

from sessionkit import EVENTS, EventName, SessionEvent, SessionManager

#: Every event about sessions: all but ``error``.
SESSION_EVENTS = tuple(name for name in EVENTS if name != "error")


class Recorder:
    """Subscribes to ``names`` (by default every session event) and keeps each event with the
    loop time it arrived at, in seconds since the recorder was made."""

    def __init__(self, sm: SessionManager, *names: EventName) -> None:
        self._loop = asyncio.get_running_loop()
        self._start = self._loop.time()
        self._arrived = asyncio.Event()
        self.events: list[SessionEvent] = []
        self.times: list[float] = []
        for name in names or SESSION_EVENTS:
            sm.on(name, self.record)

    def record(self, event: SessionEvent) -> None:
        """Keep ``event`` (the handler the recorder subscribes)."""
        self.events.append(event)
        self.times.append(self._loop.time() - self._start)
        self._arrived.set()

    def names(self) -> list[str]:
        """The names of the events, in the order they came."""
        return [event.name for event in self.events]

    def of(self, name: str) -> list[tuple[float, str | None, str | None]]:
        """``(time, username, reason)`` of each event named ``name``, in order."""
        return [
            (at, event.username, event.reason)
            for at, event in zip(self.times, self.events, strict=True)
            if event.name == name
        ]

    async def wait_for(self, name: str, count: int = 1, *, within: float = 5) -> None:
        """Wait until ``count`` events named ``name`` have come; fail after ``within`` seconds."""
        with anyio.fail_after(within):
            while len(self.of(name)) < count:
                self._arrived.clear()
                await self._arrived.wait()
