"""MemoryStore: sessions in this process's memory, the embedded default."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from sessionkit.keys import hash_key
from sessionkit.models import SessionRecord
from sessionkit.stores.base import Pending, SessionStore

__all__ = ("MemoryStore",)


class _Entry:
    # Times are on the store's clock (monotonic by default), so a wall-clock jump never
    # expires or revives sessions; they become wall-clock datetimes only when read.
    __slots__ = ("absolute", "created", "data", "deadline", "last_active", "timeout", "username")

    def __init__(
        self,
        username: str,
        now: float,
        deadline: float,
        absolute: float | None,
        timeout: float | None,
        data: str | None,
    ) -> None:
        self.username = username
        self.created = now
        self.last_active = now
        self.deadline = deadline
        self.absolute = absolute
        self.timeout = timeout  # set only for a session created with its own timeout
        self.data = data


class MemoryStore(SessionStore):
    """Keeps sessions in a dict in this process: fast, and gone when the process ends.

    It serves one manager (or several in one process). Keys are held as they are, as the
    process holds them anyway while serving requests; use a
    :class:`~sessionkit.stores.redis.RedisStore` to share sessions between processes.

    :param clock: seconds on a monotonic clock; by default :func:`time.monotonic`, the clock
        asyncio's ``loop.time()`` reads (the manager hands the store only durations, so
        another loop's clock, uvloop's, needs no match).
    """

    def __init__(self, *, clock: Callable[[], float] | None = None) -> None:
        # time.monotonic itself, not a function asking the running loop for its time(): the
        # clock is read on every call, and three Python-level calls fewer make check and
        # restart ~30% faster at a million sessions.
        self._clock = clock or time.monotonic
        self._sessions: dict[str, _Entry] = {}
        # A user's keys in creation order; most users have one session, kept as the bare key
        # (a one-item list would cost ~100 bytes more per session, and be one more object the
        # cyclic GC has to track).
        self._by_user: dict[str, str | list[str]] = {}
        self._to_wall: float | None = None

    def _user_keys(self, username: str) -> Sequence[str]:
        keys = self._by_user.get(username, ())
        return (keys,) if isinstance(keys, str) else keys

    def _record(self, key: str, entry: _Entry, now: float) -> SessionRecord:
        # One offset from the clock to wall time, taken once, so that a session's times read
        # the same on every call.
        if self._to_wall is None:
            self._to_wall = time.time() - now
        to_wall = self._to_wall
        absolute = entry.absolute
        return SessionRecord(
            key=key,
            key_hash=hash_key(key),
            username=entry.username,
            created_at=entry.created + to_wall,
            last_active_at=entry.last_active + to_wall,
            expires_at=entry.deadline + to_wall,
            absolute_expires_at=None if absolute is None else absolute + to_wall,
            remaining=entry.deadline - now,
            data=entry.data,
        )

    def _live(self, key: str, now: float) -> _Entry | None:
        entry = self._sessions.get(key)
        if entry is None or entry.deadline <= now:
            return None
        return entry

    def _remove(self, key: str, entry: _Entry) -> None:
        del self._sessions[key]
        keys = self._by_user[entry.username]
        if isinstance(keys, str):
            del self._by_user[entry.username]
            return
        keys.remove(key)
        if len(keys) == 1:
            self._by_user[entry.username] = keys[0]

    async def create(
        self,
        key: str,
        username: str,
        data: str | None,
        *,
        timeout: float,
        fixed_timeout: bool,
        absolute_timeout: float | None,
        max_per_user: int | None,
    ) -> list[SessionRecord]:
        now = self._clock()
        evicted: list[SessionRecord] = []
        if max_per_user is not None:
            keys = self._user_keys(username)
            live = [k for k in keys if self._sessions[k].deadline > now]
            for old in live[: max(0, len(live) - max_per_user + 1)]:
                entry = self._sessions[old]
                evicted.append(self._record(old, entry, now))
                self._remove(old, entry)
        absolute = None if absolute_timeout is None else now + absolute_timeout
        deadline = now + timeout if absolute is None else min(now + timeout, absolute)
        own = timeout if fixed_timeout else None
        self._sessions[key] = _Entry(username, now, deadline, absolute, own, data)
        others = self._by_user.get(username)
        if others is None:
            self._by_user[username] = key
        elif isinstance(others, str):
            self._by_user[username] = [others, key]
        else:
            others.append(key)
        return evicted

    async def check(self, key: str) -> float | None:
        entry = self._sessions.get(key)
        if entry is None:
            return None
        remaining = entry.deadline - self._clock()
        return remaining if remaining > 0 else None

    async def touch(self, key: str, timeout: float) -> float | None:
        entry = self._sessions.get(key)
        if entry is None:
            return None
        now = self._clock()
        if entry.deadline <= now:
            return None
        deadline = now + (entry.timeout or timeout)
        if entry.absolute is not None and entry.absolute < deadline:
            deadline = entry.absolute
        entry.last_active = now
        entry.deadline = deadline
        return deadline - now

    async def get(self, key: str) -> SessionRecord | None:
        now = self._clock()
        entry = self._live(key, now)
        return None if entry is None else self._record(key, entry, now)

    async def set_data(self, key: str, data: str | None) -> bool:
        entry = self._live(key, self._clock())
        if entry is None:
            return False
        entry.data = data
        return True

    async def delete(self, key: str) -> SessionRecord | None:
        now = self._clock()
        entry = self._live(key, now)
        if entry is None:
            return None
        self._remove(key, entry)
        return self._record(key, entry, now)

    async def rotate(self, key: str, new_key: str) -> SessionRecord | None:
        now = self._clock()
        entry = self._live(key, now)
        if entry is None:
            return None
        del self._sessions[key]
        self._sessions[new_key] = entry
        keys = self._by_user[entry.username]
        if isinstance(keys, str):
            self._by_user[entry.username] = new_key
        else:
            keys[keys.index(key)] = new_key  # keeps the user's sessions in creation order
        return self._record(new_key, entry, now)

    async def claim_expired(self, keys: Sequence[str]) -> tuple[list[SessionRecord], list[Pending]]:
        now = self._clock()
        claimed: list[SessionRecord] = []
        pending: list[Pending] = []
        for key in keys:
            entry = self._sessions.get(key)
            if entry is None:
                continue
            if entry.deadline <= now:
                self._remove(key, entry)
                claimed.append(self._record(key, entry, now))
            else:
                capped = entry.absolute is not None and entry.deadline >= entry.absolute
                pending.append(Pending(key, entry.deadline - now, capped))
        return claimed, pending

    async def usernames(self) -> list[str]:
        now = self._clock()
        live = [e for e in self._sessions.values() if e.deadline > now]
        # Dict order is creation order except after a rotation; sorting a sorted run is cheap.
        live.sort(key=lambda e: e.created)
        return [e.username for e in live]

    async def user_sessions(self, username: str) -> list[SessionRecord]:
        now = self._clock()
        return [
            self._record(k, e, now)
            for k in self._user_keys(username)
            if (e := self._sessions[k]).deadline > now
        ]

    async def count(self) -> int:
        now = self._clock()
        return sum(1 for e in self._sessions.values() if e.deadline > now)

    async def delete_all(self) -> list[SessionRecord]:
        now = self._clock()
        ended = [(k, e) for k, e in self._sessions.items() if e.deadline > now]
        for key, entry in ended:
            self._remove(key, entry)
        return [self._record(k, e, now) for k, e in ended]

    async def delete_user(self, username: str) -> list[SessionRecord]:
        now = self._clock()
        ended = [
            (k, e) for k in self._user_keys(username) if (e := self._sessions[k]).deadline > now
        ]
        for key, entry in ended:
            self._remove(key, entry)
        return [self._record(k, e, now) for k, e in ended]
