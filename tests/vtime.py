"""A virtual clock for timing tests: an event loop whose time jumps ahead instead of waiting.

Whenever the loop has nothing ready and would sleep until its next timer, the clock moves to
that timer at once, so a test of a 3000-second timeout runs in milliseconds and the order of
events is exactly what it would be in real time.
"""

from __future__ import annotations

import asyncio
import functools
import selectors
from collections.abc import Callable, Coroutine
from typing import Any

from sessionkit import MemoryStore, SessionManager

START = 10_000.0  # seconds; far from zero so that "earlier than creation" is still positive


class VirtualClockLoop(asyncio.SelectorEventLoop):
    """A selector loop on a virtual clock (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self.now = START
        selector: selectors.BaseSelector = self._selector  # type: ignore[attr-defined]
        real_select = selector.select

        def select(timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
            if timeout is None or timeout <= 0:
                return real_select(timeout)
            events = real_select(0)
            if not events:
                self.now += timeout
            return events

        selector.select = select  # type: ignore[method-assign]

    def time(self) -> float:
        return self.now

    def jump(self, seconds: float) -> None:
        """Move the clock ahead without running anything: a loop that was blocked."""
        self.now += seconds


def virtual_time(
    test: Callable[..., Coroutine[Any, Any, None]],
) -> Callable[..., None]:
    """Run an ``async def`` test on a fresh :class:`VirtualClockLoop`."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        with asyncio.Runner(loop_factory=VirtualClockLoop) as runner:
            runner.run(test(*args, **kwargs))

    return run


def loop() -> VirtualClockLoop:
    """The running virtual loop."""
    running = asyncio.get_running_loop()
    assert isinstance(running, VirtualClockLoop)
    return running


def manager(**options: Any) -> SessionManager:
    """A :class:`SessionManager` whose in-memory store reads the virtual clock too."""
    return SessionManager(store=MemoryStore(clock=loop().time), **options)
