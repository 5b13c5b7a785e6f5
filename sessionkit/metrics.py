"""Prometheus metrics for a :class:`~sessionkit.SessionManager` (the seed's PM2 example, done
the Python way)::

    from prometheus_client import start_http_server
    from sessionkit.metrics import instrument

    instrument(sm)          # on prometheus_client's default registry
    start_http_server(9100, addr="127.0.0.1")

Each process counts what it sees: with a shared store (Redis), a session created by one process
may end in another, so one process's ``sessionkit_sessions_live`` can go below zero while the
sum over processes stays right. Use ``sum(sessionkit_sessions_live)`` in queries.

Install with ``pip install 'sessionkit[prometheus]'``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

try:
    from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "sessionkit.metrics needs prometheus-client: pip install 'sessionkit[prometheus]'"
    ) from exc

from sessionkit.exceptions import SessionError

if TYPE_CHECKING:
    from sessionkit.events import SessionEvent
    from sessionkit.manager import SessionManager

__all__ = ("LIFETIME_BUCKETS", "Instruments", "instrument")

_SAME_BIRTH = 0.01  # seconds: creation times this close are one session's, read twice

#: Histogram buckets for session lifetimes, in seconds: from a demo's seconds to a workday.
LIFETIME_BUCKETS = (
    5.0,
    15.0,
    30.0,
    60.0,
    5 * 60.0,
    15 * 60.0,
    30 * 60.0,
    60 * 60.0,
    2 * 60 * 60.0,
    4 * 60 * 60.0,
    8 * 60 * 60.0,
    24 * 60 * 60.0,
)


class Instruments:
    """The metrics that :func:`instrument` keeps for one manager.

    :ivar live: gauge ``<prefix>_sessions_live``, sessions started minus sessions ended here.
    :ivar created: counter ``<prefix>_sessions_created_total``.
    :ivar expired: counter ``<prefix>_sessions_expired_total`` (idle or absolute timeout).
    :ivar ended: counter ``<prefix>_sessions_ended_total``, labelled by ``reason``.
    :ivar lifetime: histogram ``<prefix>_session_lifetime_seconds``, from creation to end, of
        the sessions created while instrumented (in this process).
    """

    def __init__(
        self, sm: SessionManager, registry: CollectorRegistry, prefix: str, max_tracked: int
    ) -> None:
        self._sm = sm
        self._registry = registry
        self._max_tracked = max_tracked
        self.live = Gauge(
            f"{prefix}_sessions_live", "Live sessions (created minus ended).", registry=registry
        )
        self.created = Counter(f"{prefix}_sessions_created", "Sessions created.", registry=registry)
        self.expired = Counter(
            f"{prefix}_sessions_expired", "Sessions ended by a timeout.", registry=registry
        )
        self.ended = Counter(
            f"{prefix}_sessions_ended", "Sessions ended, by reason.", ["reason"], registry=registry
        )
        self.lifetime = Histogram(
            f"{prefix}_session_lifetime_seconds",
            "Seconds from a session's creation to its end.",
            buckets=LIFETIME_BUCKETS,
            registry=registry,
        )
        # Creation times by key hash: SessionEvent carries no times, and a deleted session
        # cannot be read back. A rotation keeps the creation time, so its entry moves.
        self._born: dict[str, tuple[str, float]] = {}  # key hash -> (username, created at)
        self._by_user: dict[str, dict[str, float]] = {}  # username -> {key hash: created at}
        self._handlers = (
            ("session_created", self._on_created),
            ("session_deleted", self._on_deleted),
            ("session_expired", self._on_expired),
            ("session_rotated", self._on_rotated),
        )
        for event, handler in self._handlers:
            sm.on(event, handler)

    def close(self) -> None:
        """Stop counting and take the metrics out of their registry."""
        for event, handler in self._handlers:
            self._sm.off(event, handler)
        for metric in (self.live, self.created, self.expired, self.ended, self.lifetime):
            self._registry.unregister(metric)
        self._born.clear()
        self._by_user.clear()

    async def _created_at(self, key: str | None) -> float:
        if key is not None:
            try:
                return (await self._sm.get_session_details(key)).created_at.timestamp()
            except SessionError:
                pass  # ended already, or the store is down: the clock is close enough
        return time.time()

    def _track(self, key_hash: str, username: str, born: float) -> None:
        if len(self._born) >= self._max_tracked:
            # Sessions that ended in another process never come back here: forget the oldest.
            self._forget(next(iter(self._born)))
        self._born[key_hash] = (username, born)
        self._by_user.setdefault(username, {})[key_hash] = born

    def _forget(self, key_hash: str) -> float | None:
        entry = self._born.pop(key_hash, None)
        if entry is None:
            return None
        username, born = entry
        mine = self._by_user.get(username)
        if mine is not None:
            mine.pop(key_hash, None)
            if not mine:
                del self._by_user[username]
        return born

    async def _on_created(self, event: SessionEvent) -> None:
        self.created.inc()
        self.live.inc()
        self._track(event.key_hash, event.username or "", await self._created_at(event.key))

    def _on_deleted(self, event: SessionEvent) -> None:
        self.live.dec()
        self.ended.labels(reason=event.reason or "unknown").inc()
        born = self._forget(event.key_hash)
        if born is not None:
            self.lifetime.observe(max(time.time() - born, 0.0))

    def _on_expired(self, event: SessionEvent) -> None:
        self.expired.inc()

    async def _on_rotated(self, event: SessionEvent) -> None:
        # The event names the new key only: the old one is the user's session born at the
        # same time (a store may round its clock, hence the closest within a tolerance).
        username = event.username or ""
        born = await self._created_at(event.key)
        mine = self._by_user.get(username, {})
        old = min(mine, key=lambda h: abs(mine[h] - born), default=None)
        if old is not None and abs(mine[old] - born) < _SAME_BIRTH:
            born = self._forget(old) or born
        self._track(event.key_hash, username, born)


def instrument(
    sm: SessionManager,
    registry: CollectorRegistry | None = None,
    *,
    prefix: str = "sessionkit",
    max_tracked: int = 1_000_000,  # sessions whose creation time is kept for the histogram
) -> Instruments:
    """Keep Prometheus metrics of ``sm``'s sessions, updated by its events.

    :param sm: the session manager to watch.
    :param registry: where to register the metrics; ``prometheus_client.REGISTRY`` if omitted.
    :param prefix: the metrics' name prefix.
    :param max_tracked: how many creation times to keep for the lifetime histogram.
    :return: the :class:`Instruments`; call its ``close()`` to stop.
    :raises ValueError: if metrics of these names are already in ``registry``.

    Example::

        registry = CollectorRegistry()
        instrument(sm, registry)
        body = prometheus_client.generate_latest(registry)  # serve it at /metrics
    """
    return Instruments(sm, REGISTRY if registry is None else registry, prefix, max_tracked)
