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

from datetime import UTC, datetime
from typing import TYPE_CHECKING

try:
    from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "sessionkit.metrics needs prometheus-client: pip install 'sessionkit[prometheus]'"
    ) from exc

if TYPE_CHECKING:
    from sessionkit.events import EventHandler, EventName, SessionEvent
    from sessionkit.manager import SessionManager

__all__ = ("LIFETIME_BUCKETS", "Instruments", "instrument")

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
        the sessions that ended in this process.
    """

    def __init__(self, sm: SessionManager, registry: CollectorRegistry, prefix: str) -> None:
        self._sm = sm
        self._registry = registry
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
        self._handlers: tuple[tuple[EventName, EventHandler], ...] = (
            ("session_created", self._on_created),
            ("session_deleted", self._on_deleted),
            ("session_expired", self._on_expired),
        )
        for event, handler in self._handlers:
            sm.on(event, handler)

    def close(self) -> None:
        """Stop counting and take the metrics out of their registry."""
        for event, handler in self._handlers:
            self._sm.off(event, handler)
        for metric in (self.live, self.created, self.expired, self.ended, self.lifetime):
            self._registry.unregister(metric)

    def _on_created(self, event: SessionEvent) -> None:
        self.created.inc()
        self.live.inc()

    def _on_deleted(self, event: SessionEvent) -> None:
        self.live.dec()
        self.ended.labels(reason=event.reason or "unknown").inc()
        if event.created_at is not None:
            lived = (datetime.now(UTC) - event.created_at).total_seconds()
            self.lifetime.observe(max(lived, 0.0))

    def _on_expired(self, event: SessionEvent) -> None:
        self.expired.inc()


def instrument(
    sm: SessionManager,
    registry: CollectorRegistry | None = None,
    *,
    prefix: str = "sessionkit",
) -> Instruments:
    """Keep Prometheus metrics of ``sm``'s sessions, updated by its events.

    :param sm: the session manager to watch.
    :param registry: where to register the metrics; ``prometheus_client.REGISTRY`` if omitted.
    :param prefix: the metrics' name prefix.
    :return: the :class:`Instruments`; call its ``close()`` to stop.
    :raises ValueError: if metrics of these names are already in ``registry``.

    Example::

        registry = CollectorRegistry()
        instrument(sm, registry)
        body = prometheus_client.generate_latest(registry)  # serve it at /metrics
    """
    return Instruments(sm, REGISTRY if registry is None else registry, prefix)
