"""Session stores. :class:`MemoryStore` is the default; ``sessionkit.stores.redis`` needs the
``redis`` extra and is not imported here."""

from __future__ import annotations

from sessionkit.stores.base import LostCall, NewSession, Outcome, Pending, SessionStore
from sessionkit.stores.memory import MemoryStore

__all__ = ("LostCall", "MemoryStore", "NewSession", "Outcome", "Pending", "SessionStore")
