"""The manager's hot path on a MemoryStore: its calls answered without an await."""

from __future__ import annotations

from collections.abc import Callable

from sessionkit.models import SessionRecord
from sessionkit.stores.base import SessionStore
from sessionkit.stores.memory import MemoryStore


def answers_now(
    store: SessionStore,
) -> tuple[
    Callable[[str], float | None] | None,
    Callable[[str, float], float | None] | None,
    Callable[[str, float, bool], SessionRecord | None] | None,
]:
    """``check``, ``touch`` and ``touch_get`` without an await, for the manager's hot path:
    MemoryStore's synchronous ones, each where ``store`` answers that call MemoryStore's own
    way (a subclass that overrides ``check``, ``touch`` or ``get`` is asked through them);
    ``None`` for any other store."""
    if not isinstance(store, MemoryStore):
        return None, None, None
    kind = type(store)
    own_touch = kind.touch is MemoryStore.touch
    own_read = own_touch and kind.get is MemoryStore.get and kind.touch_get is MemoryStore.touch_get
    # (called with digest=False: a subclass's own touch_get_sync may not take it)
    own_read = own_read and kind.touch_get_sync is MemoryStore.touch_get_sync
    return (
        store.check_sync if kind.check is MemoryStore.check else None,
        store.touch_sync if own_touch else None,
        store.touch_get_sync if own_read else None,
    )
