"""Per-user calls, as :class:`~sessionkit.SessionManager` calls: a user's sessions listed
("your devices"), one of them ended by its public id, or all of them ("log out everywhere").
Each costs O(that user's sessions).

:class:`UserCalls` is a part of ``SessionManager``'s class, kept here whole (each call with its
docstring and code); the parts it uses are the manager's (``_parts.py``).
"""

from __future__ import annotations

from sessionkit._options import is_session_id
from sessionkit._options import username as _username
from sessionkit._parts import ManagerParts
from sessionkit.events import LOGOUT, LOGOUT_ALL
from sessionkit.models import SessionDetails


class UserCalls(ManagerParts):
    """``SessionManager``'s calls on one user's sessions."""

    async def get_user_sessions(self, username: str) -> list[SessionDetails]:
        """List a user's live sessions, oldest first: what a "your devices" page shows.

        Each has ``key=None`` (a listing never hands out a key, on any store), its public
        ``id`` and the ``client`` recorded at login.

        :raises TypeError: for a non-str username.
        :raises ValueError: for an empty username (or one with a lone surrogate).
        """
        self._binding.current()
        records = await self._store.user_sessions(_username(username))
        return [r.details(None) for r in records]

    async def delete_user_session(self, username: str, session_id: str) -> bool:
        """End one of a user's sessions by its public ``id`` (the "End" button of a "your
        devices" page): reason ``"logout"``, and its clients are told to log out.

        :param username: whose session it must be (the caller's own user, typically).
        :param session_id: the session's ``id``, as :meth:`get_user_sessions` lists it.
        :return: ``True``, or ``False`` if ``username`` has no such live session.
        :raises TypeError: for a non-str username or session id.
        :raises ValueError: for an empty username (or one with a lone surrogate).
        """
        username = _username(username)
        if not isinstance(session_id, str):
            raise TypeError(f"session_id must be a str, not {type(session_id).__name__}")
        self._binding.current()
        if not is_session_id(session_id):
            return False
        expiry = self._expiry
        record = await expiry.changed(self._store.delete_user_session(username, session_id))
        if record is None:
            return False
        await expiry.end([record], LOGOUT, True)
        return True

    async def delete_user_sessions(self, username: str) -> int:
        """Log a user out everywhere (reason ``"logout_all"``), telling each client.

        :return: how many sessions ended.
        """
        self._binding.current()
        expiry = self._expiry
        records = await expiry.changed(self._store.delete_user(_username(username)))
        await expiry.end(records, LOGOUT_ALL, True)
        return len(records)
