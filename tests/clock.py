"""Clocks for the timing tests.

Most timing tests run on looptime's virtual clock (``@pytest.mark.looptime``): whenever the
loop would wait for its next timer, its time jumps there at once, so a 3000-second timeout takes
milliseconds and events come in the order real time would give them. Give the manager a
:class:`LoopClockStore` (or build it with :func:`manager`) so that its store reads that clock too.

What looptime cannot do is a loop that is late on purpose: its clock moves only while the loop
waits, so no deadline ever passes without its timer running, and CPU time spent in a handler
never counts. :class:`LateLoop` keeps the real clock and can also :meth:`~LateLoop.jump` ahead
without running anything, as a loop blocked by a long pause would be; :func:`late_loop` runs a
test on one.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from sessionkit import MemoryStore, SessionManager
from sessionkit.models import SessionRecord
from sessionkit.stores.base import Pending

#: The most a timer may fire after its deadline on an idle loop (timers are kept in buckets a
#: few hundredths of a second wide).
LATE = 0.1  # seconds


class LoopClockStore(MemoryStore):
    """A :class:`MemoryStore` on the running loop's clock that notes, at that clock's time,
    every set of keys the manager's timers ask it to claim: what they fired for, and when."""

    def __init__(self) -> None:
        super().__init__(clock=asyncio.get_running_loop().time)
        self.claims: list[tuple[float, list[str]]] = []

    async def claim_expired(self, keys: Sequence[str]) -> tuple[list[SessionRecord], list[Pending]]:
        self.claims.append((asyncio.get_running_loop().time(), list(keys)))
        return await super().claim_expired(keys)


def manager(**options: Any) -> SessionManager:
    """A :class:`SessionManager` whose in-memory store reads the running loop's clock."""
    return SessionManager(store=LoopClockStore(), **options)


class LateLoop(asyncio.SelectorEventLoop):
    """An event loop on the real clock that can be made late (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self.late = 0.0  # seconds the clock has been moved ahead

    def time(self) -> float:
        return super().time() + self.late

    def jump(self, seconds: float) -> None:
        """Move the clock ahead without running anything: the loop was blocked that long."""
        self.late += seconds


def late_loop(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an ``async def`` test on a fresh :class:`LateLoop`."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        with asyncio.Runner(loop_factory=LateLoop) as runner:
            runner.run(test(*args, **kwargs))

    return run


def jump(seconds: float) -> None:
    """Make the running :class:`LateLoop` late by ``seconds``."""
    loop = asyncio.get_running_loop()
    assert isinstance(loop, LateLoop), "run the test with @late_loop"
    loop.jump(seconds)
