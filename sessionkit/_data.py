"""A session's data, as :class:`~sessionkit.SessionManager` calls: read it (alone or with the
session's details), replace it, or merge changes into it in one atomic store step. Data is
JSON text in every store (checked on the way in), so every read returns a copy.

:class:`DataCalls` is a part of ``SessionManager``'s class, kept here whole (each call with its
docstring and code); the parts it uses are the manager's (``_parts.py``).
"""

from __future__ import annotations

from typing import Any

from sessionkit._options import not_found
from sessionkit._parts import ManagerParts
from sessionkit.keys import is_key_like
from sessionkit.models import SessionDetails, SessionRecord, decode_data, encode_data


class DataCalls(ManagerParts):
    """``SessionManager``'s calls on a session's data."""

    async def set_session_data(self, key: str, data: Any) -> bool:
        """Replace a session's data with a copy of ``data``.

        :return: ``True``.
        :raises SessionNotFound: if ``key`` names no live session.
        :raises TypeError: if ``data`` is not JSON-serialisable.
        """
        text = encode_data(data)
        self._binding.bind()
        if not is_key_like(key) or not await self._store.set_data(key, text):
            raise not_found(key)
        return True

    async def update_session_data(self, key: str, changes: dict[str, Any]) -> dict[str, Any]:
        """Merge ``changes`` into a session's data at the top level, in one atomic store step,
        and return the result: two requests that set different fields at once both land
        (:meth:`set_session_data` replaces the whole value, so one of them would be lost)::

            await sm.update_session_data(key, {"theme": "dark"})

        A field in ``changes`` replaces the field of that name (nested values are replaced
        whole, not merged); data never set counts as ``{}``. If the call raises
        :class:`~sessionkit.StoreUnavailable` (or times out, or is cancelled) the merge may
        or may not have landed; it ends nothing, so there is nothing to report, and sending
        it again gives the same result.

        :param changes: a dict with str keys and JSON-serialisable values.
        :return: a copy of the session's data after the merge.
        :raises SessionNotFound: if ``key`` names no live session.
        :raises TypeError: if ``changes`` is not such a dict, or the session's data is not a
            dict (a list, a str...): nothing changes.
        :raises StoreUnavailable: if the store cannot be reached.
        """
        if not isinstance(changes, dict):
            raise TypeError(f"changes must be a dict, not {type(changes).__name__}")
        for field in changes:
            if not isinstance(field, str):
                raise TypeError(f"the keys of changes must be str, not {type(field).__name__}")
        text = encode_data(changes)
        assert text is not None
        self._binding.bind()
        merged = await self._store.update_data(key, text) if is_key_like(key) else None
        if merged is None:
            raise not_found(key)
        result: dict[str, Any] = decode_data(merged)
        return result

    async def get_session_data(self, key: str) -> Any:
        """Return a copy of a session's data (``None`` if never set).

        :raises SessionNotFound: if ``key`` names no live session.
        """
        return decode_data((await self._record(key)).data)

    async def get_session_details(self, key: str) -> SessionDetails:
        """Return a session's username, times and data.

        :raises SessionNotFound: if ``key`` names no live session.
        """
        return (await self._record(key)).details(key)

    async def _record(self, key: object) -> SessionRecord:
        self._binding.bind()
        record = await self._store.get(key) if is_key_like(key) else None
        if record is None:
            raise not_found(key)
        return record
