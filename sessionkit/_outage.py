"""Quiet outages: how a manager logs and paces background work that fails while its store is
down (docs/guides/operations.md, "Logs").

Each kind of work (claiming expired sessions, sweeping, settling lost replies) logs its first
failure as one WARNING line, then one line a minute with how many failed since; every
traceback goes to DEBUG. Its retries wait longer after each failure in a row, up to a cap.
When every kind that failed works again, one INFO line says the store is back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from sessionkit.keys import redact, redact_exception

logger = logging.getLogger("sessionkit")

LOG_EVERY = 60.0  # seconds between two WARNING lines about one kind of failure
RETRY_FIRST = 1.0  # seconds before the first retry
# Seconds at most between two retries: once the store is back, what fell due meanwhile is
# claimed within this long (the default sweep_interval is 5 s, too).
RETRY_MAX = 5.0


@dataclass
class _Kind:
    failing: int = 0  # failures in a row, for the backoff
    unlogged: int = 0  # failures since the last WARNING line
    total: int = 0  # failures in this outage
    logged_at: float | None = None


class Outage:
    """The failures of one manager's background work against its store."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._kinds: dict[str, _Kind] = {}
        self._began: float | None = None  # when this outage's first failure happened

    def failed(
        self, what: str, exc: BaseException, *, first: float = RETRY_FIRST, cap: float = RETRY_MAX
    ) -> float:
        """Count a failure of the work ``what`` (``"claiming expired sessions"``), log it if a
        line is due, and return how many seconds to wait before trying again: ``first`` after
        one failure, doubling after each failure in a row, ``cap`` at most."""
        now = self._clock()
        if self._began is None:
            self._began = now
        kind = self._kinds.setdefault(what, _Kind())
        kind.failing += 1
        kind.unlogged += 1
        kind.total += 1
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("%s failed: %s", what, redact_exception(exc))
        if kind.logged_at is None or now - kind.logged_at >= LOG_EVERY:
            since = "" if kind.logged_at is None else f" in the last {now - kind.logged_at:.0f} s"
            logger.warning(
                "%s failed %d time%s%s, retrying (tracebacks at DEBUG): %s",
                what,
                kind.unlogged,
                "" if kind.unlogged == 1 else "s",
                since,
                _one_line(exc),
            )
            kind.logged_at = now
            kind.unlogged = 0
        return float(min(first * 2.0 ** (kind.failing - 1), max(cap, first)))

    def worked(self, what: str) -> None:
        """The work ``what`` succeeded: its retries start from the shortest wait again, and
        once no kind is failing, one INFO line says the store is back."""
        kind = self._kinds.get(what)
        if kind is None or not kind.failing:
            return
        kind.failing = 0
        if any(k.failing for k in self._kinds.values()) or self._began is None:
            return
        failures = ", ".join(f"{name} {k.total}" for name, k in self._kinds.items() if k.total)
        logger.info(
            "the store answers again after %.0f s of failures (%s)",
            self._clock() - self._began,
            failures,
        )
        self._began = None
        for k in self._kinds.values():
            k.total = k.unlogged = 0  # all told in this line


def _one_line(exc: BaseException) -> str:
    # The exception and its cause, without a traceback, and without any key it might quote.
    text = f"{type(exc).__name__}: {exc}"
    cause = exc.__cause__
    if cause is not None:
        text += f" (from {type(cause).__name__}: {cause})"
    return redact(" ".join(text.split()))
