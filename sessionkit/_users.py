"""Per-user calls: a user's sessions listed ("your devices"), one of them ended by its public
id, or all of them ("log out everywhere"). Each costs O(that user's sessions)."""

from __future__ import annotations

from sessionkit._expiry import Expiry
from sessionkit._options import is_session_id, username
from sessionkit.models import SessionDetails
from sessionkit.stores.base import SessionStore


class Users:
    """Lists and ends one user's sessions, for one manager (bound to its loop already)."""

    def __init__(self, store: SessionStore, expiry: Expiry) -> None:
        self._store = store
        self._expiry = expiry

    async def sessions(self, name: str) -> list[SessionDetails]:
        """The user's live sessions, oldest first, each without its key."""
        records = await self._store.user_sessions(username(name))
        return [r.details(None) for r in records]

    async def end_one(self, name: str, session_id: str) -> bool:
        """End the user's session with public id ``session_id`` (reason ``"logout"``)."""
        if not is_session_id(session_id):
            return False
        expiry = self._expiry
        record = await expiry.changed(self._store.delete_user_session(name, session_id))
        if record is None:
            return False
        await expiry.end([record], "logout", True)
        return True

    async def end_all(self, name: str) -> int:
        """End every session of the user (reason ``"logout_all"``); return how many."""
        expiry = self._expiry
        records = await expiry.changed(self._store.delete_user(username(name)))
        await expiry.end(records, "logout_all", True)
        return len(records)
