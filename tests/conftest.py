"""Fixtures shared by the whole suite."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from sessionkit import MemoryStore, SessionManager, SessionStore

#: Store kinds the store-contract suite runs on; each must make a fresh, empty store.
STORE_KINDS = ["memory"]


@pytest.fixture(params=STORE_KINDS)
async def make_store(request: pytest.FixtureRequest) -> AsyncIterator[Callable[[], SessionStore]]:
    """A factory of fresh, empty stores of one kind (the test runs once per kind)."""
    if request.param == "memory":
        yield MemoryStore
    else:  # pragma: no cover - every kind in STORE_KINDS is handled above
        raise AssertionError(request.param)


@pytest.fixture
async def sm(make_store: Callable[[], SessionStore]) -> AsyncIterator[SessionManager]:
    """A manager on a fresh store of each kind, entered for the test and closed after it."""
    async with SessionManager(store=make_store()) as manager:
        yield manager


#: Values that are not keys of any session: each must be treated as an unknown key.
BAD_KEYS: list[object] = [
    None,
    42,
    4.2,
    b"bytes-key",
    "",
    "x" * 10_000,
    "nul\x00inside",
    "../../etc/passwd",
    "unknown-but-well-formed-key-0123456789abcdefghijklmno",
]
