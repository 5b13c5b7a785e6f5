"""The one recorder of managers' events, for every test that checks what was fired, in what
order and when."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence

import anyio

from sessionkit import EVENTS, EventName, SessionEvent, SessionManager

#: Every event a manager fires, ``error`` included.
ALL_EVENTS: tuple[EventName, ...] = tuple(EVENTS)
#: Every event about sessions: all but ``error``.
SESSION_EVENTS = tuple(name for name in ALL_EVENTS if name != "error")


class Recorder:
    """Subscribes to ``names`` (by default every event about sessions, :data:`ALL_EVENTS` for
    ``error`` too) of each manager given, and keeps each event with the loop time it arrived at, in seconds since the
    recorder was made."""

    def __init__(
        self, *managers: SessionManager, names: Sequence[EventName] = SESSION_EVENTS
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._start = self._loop.time()
        self._arrived = asyncio.Event()
        self.events: list[SessionEvent] = []
        self.times: list[float] = []
        for sm in managers:
            for name in names:
                sm.on(name, self.record)

    def record(self, event: SessionEvent) -> None:
        """Keep ``event`` (the handler the recorder subscribes)."""
        self.events.append(event)
        self.times.append(self._loop.time() - self._start)
        self._arrived.set()

    def names(self) -> list[str]:
        """The names of the events, in the order they came."""
        return [event.name for event in self.events]

    def of(
        self, name: str, *, user: str | None = None, key_hash: str | None = None
    ) -> list[SessionEvent]:
        """The events named ``name``, of one user or one session if given, in order."""
        return [
            e
            for e in self.events
            if e.name == name
            and (user is None or e.username == user)
            and (key_hash is None or e.key_hash == key_hash)
        ]

    def timeline(self, name: str) -> list[tuple[float, str | None, str | None]]:
        """``(time, username, reason)`` of each event named ``name``, in order."""
        return [
            (at, event.username, event.reason)
            for at, event in zip(self.times, self.events, strict=True)
            if event.name == name
        ]

    def doubled(self, name: str = "session_deleted") -> dict[str, int]:
        """Sessions (by the first 12 characters of their hash) that got ``name`` more than once."""
        counts = Counter(e.key_hash for e in self.of(name))
        return {h[:12]: n for h, n in counts.items() if n > 1}

    def errors(self) -> list[BaseException]:
        """What each ``error`` event carried, in order."""
        return [e.error for e in self.of("error") if e.error is not None]

    async def wait_for(self, name: str, count: int = 1, *, within: float = 5) -> None:
        """Wait until ``count`` events named ``name`` have come; fail after ``within`` seconds."""
        with anyio.fail_after(within):
            while len(self.of(name)) < count:
                self._arrived.clear()
                await self._arrived.wait()
