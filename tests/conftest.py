"""Fixtures shared by the whole suite."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from sessionkit import MemoryStore, SessionStore

#: Store kinds the store-contract suite runs on; each must make a fresh, empty store.
STORE_KINDS = ["memory"]


@pytest.fixture(params=STORE_KINDS)
async def make_store(request: pytest.FixtureRequest) -> AsyncIterator[Callable[[], SessionStore]]:
    """A factory of fresh, empty stores of one kind (the test runs once per kind)."""
    if request.param == "memory":
        yield MemoryStore
    else:  # pragma: no cover - every kind in STORE_KINDS is handled above
        raise AssertionError(request.param)
