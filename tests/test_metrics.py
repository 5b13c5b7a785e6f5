"""Prometheus metrics after a scripted run of logins, logouts, a rotation and an expiry."""

from __future__ import annotations

import asyncio
import time

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from sessionkit import SessionEvent, SessionManager
from sessionkit.metrics import instrument


async def test_metrics_follow_a_scripted_sequence() -> None:
    registry = CollectorRegistry()
    sm = SessionManager(timeout=30)
    instruments = instrument(sm, registry)

    def value(name: str, **labels: str) -> float:
        found = registry.get_sample_value(name, labels)
        return 0.0 if found is None else found

    expired = asyncio.Event()

    def on_expired(event: SessionEvent) -> None:
        expired.set()

    sm.on("session_expired", on_expired)
    try:
        started = time.time()
        laptop = await sm.load_new_session("Luca")
        phone = await sm.load_new_session("Luca")
        await sm.load_new_session("Fabio")
        await sm.load_new_session("Fabio")
        await sm.load_new_session("Gino", timeout=2)
        assert value("sessionkit_sessions_created_total") == 5
        assert value("sessionkit_sessions_live") == 5

        assert await sm.delete_session(laptop)
        rotated = await sm.rotate_session_key(phone)
        assert value("sessionkit_sessions_live") == 4  # a rotation ends nothing
        assert await sm.delete_user_sessions("Fabio") == 2
        async with asyncio.timeout(5):
            await expired.wait()
        assert value("sessionkit_sessions_live") == 1
        assert value("sessionkit_sessions_expired_total") == 1
        assert value("sessionkit_sessions_ended_total", reason="logout") == 1
        assert value("sessionkit_sessions_ended_total", reason="logout_all") == 2
        assert value("sessionkit_sessions_ended_total", reason="expired") == 1
        assert value("sessionkit_session_lifetime_seconds_count") == 4
        assert value("sessionkit_session_lifetime_seconds_bucket", le="5.0") == 4

        await asyncio.sleep(0.3)
        assert await sm.delete_session(rotated)  # its lifetime counts from the first key's birth
        elapsed = time.time() - started
        assert value("sessionkit_sessions_live") == 0
        assert value("sessionkit_sessions_created_total") == 5
        assert value("sessionkit_session_lifetime_seconds_count") == 5
        total = value("sessionkit_session_lifetime_seconds_sum")
        # Gino lived ~2 s, the rotated session ~2.3 s, the other three a few ms each.
        assert 4.0 < total < 3 * elapsed
        text = generate_latest(registry).decode()
        assert 'sessionkit_sessions_ended_total{reason="logout_all"} 2.0' in text
    finally:
        instruments.close()
        await sm.aclose()
    assert registry.get_sample_value("sessionkit_sessions_live") is None


async def test_a_second_instrument_on_one_registry_is_refused() -> None:
    registry = CollectorRegistry()
    sm = SessionManager()
    instrument(sm, registry, prefix="app")
    with pytest.raises(ValueError):
        instrument(sm, registry, prefix="app")
    await sm.aclose()
