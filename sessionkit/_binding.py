"""The loop a manager runs on: the one place that decides "this manager now runs on loop L" and
moves its parts there in one call (its task group, then its expiry: timers, deliveries, sweep).

Managers made at import time (or by ``shared()``) meet their loop at first use, and may meet
several loops one after another (pytest-asyncio's per-test loops): each call binds through
:meth:`LoopBinding.bind`, or, on the hot paths, :meth:`LoopBinding.current`.
"""

from __future__ import annotations

import asyncio
import os
import weakref
from collections.abc import Callable

# Bindings to a loop. A child forked while that loop ran holds a copy that says it is running,
# yet never runs there: the hot paths, which ask the bound loop rather than asyncio (see
# LoopBinding.current), must bind afresh in the child.
_bound: weakref.WeakSet[LoopBinding] = weakref.WeakSet()


def _forget_loops() -> None:
    for binding in _bound:
        binding.loop = None


os.register_at_fork(after_in_child=_forget_loops)


class LoopBinding:
    """Which loop one manager runs on; moves the manager's parts when that changes."""

    __slots__ = ("__weakref__", "_parts", "loop")

    def __init__(self, *parts: Callable[[asyncio.AbstractEventLoop], None]) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self._parts = parts  # each told the new loop, in this order

    def bind(self) -> asyncio.AbstractEventLoop:
        """Return the running loop, moving the manager's parts to it if it is a new one."""
        loop = asyncio.get_running_loop()
        if loop is not self.loop:
            self.loop = loop
            _bound.add(self)
            for part in self._parts:
                part(loop)
        return loop

    def current(self) -> asyncio.AbstractEventLoop:
        """The bound loop while it runs, without asking asyncio (its ``get_running_loop()``
        makes a system call, getpid, on every call); else :meth:`bind`. The bound loop runs
        only while it is the one running here (nested loops are refused)."""
        loop = self.loop
        if loop is None or not loop.is_running():
            loop = self.bind()
        return loop

    def here(self) -> bool:
        """Whether the manager is bound to the loop running now."""
        return self.loop is asyncio.get_running_loop()

    def forget(self) -> None:
        """The manager closed: the next call binds afresh."""
        self.loop = None
