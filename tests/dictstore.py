"""DictStore: the core store contract on a plain dict, written from docs/guides/custom-store.md
alone, as the author of a PostgreSQL or DynamoDB store would start (each method is one step: no
await between its read and its write)."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

from sessionkit import SessionLimitReached, SessionRecord
from sessionkit.events import LOGOUT, Reason
from sessionkit.keys import hash_key
from sessionkit.stores import NewSession, Pending, SessionStore


@dataclass(frozen=True)
class Row:
    """One session; times on the monotonic clock."""

    username: str
    data: str | None
    client: str | None
    created: float
    last_active: float
    deadline: float
    absolute: float | None
    own_timeout: float | None  # set for a session created with fixed_timeout
    authenticated: float | None = None
    rotated: float | None = None


class DictStore(SessionStore):
    """Sessions in a dict of this process, by key."""

    def __init__(self) -> None:
        self.rows: dict[str, Row] = {}
        self.aliases: dict[str, tuple[str, float]] = {}  # old key -> (new key, grace's end)
        self.to_wall = time.time() - time.monotonic()

    def _live(self, key: str, now: float, *, follow: bool = True) -> tuple[str, Row] | None:
        alias = self.aliases.get(key) if follow else None
        if alias is not None and alias[1] > now:
            key = alias[0]
        row = self.rows.get(key)
        return (key, row) if row is not None and now < row.deadline else None

    def _record(self, key: str, row: Row, now: float) -> SessionRecord:
        wall = self.to_wall
        return SessionRecord(
            key=key,
            key_hash=hash_key(key),
            username=row.username,
            created_at=row.created + wall,
            last_active_at=row.last_active + wall,
            expires_at=row.deadline + wall,
            absolute_expires_at=None if row.absolute is None else row.absolute + wall,
            remaining=row.deadline - now,
            data=row.data,
            client=row.client,
            authenticated_at=None if row.authenticated is None else row.authenticated + wall,
            rotated_at=None if row.rotated is None else row.rotated + wall,
        )

    def _end(self, key: str, now: float) -> SessionRecord:
        row = self.rows.pop(key)
        self.aliases = {old: to for old, to in self.aliases.items() if to[0] != key}
        return self._record(key, row, now)

    def _oldest_first(self, now: float, username: str | None = None) -> list[tuple[str, Row]]:
        live = [
            (k, r)
            for k, r in self.rows.items()
            if now < r.deadline and username in (None, r.username)
        ]
        return sorted(live, key=lambda item: item[1].created)

    async def create(self, key: str, spec: NewSession) -> list[SessionRecord]:
        now = time.monotonic()
        evicted = []
        cap = spec.max_per_user
        if cap is not None:
            mine = self._oldest_first(now, spec.username)
            if spec.refuse and len(mine) >= cap:
                raise SessionLimitReached(f"{spec.username!r} is at the cap of {cap}")
            for old, _ in mine[: max(0, len(mine) - cap + 1)]:
                evicted.append(self._end(old, now))
        timeout = spec.timeout
        absolute = None if spec.absolute_timeout is None else now + spec.absolute_timeout
        deadline = now + timeout if absolute is None else min(now + timeout, absolute)
        own = timeout if spec.fixed_timeout else None
        self.rows[key] = Row(
            spec.username, spec.data, spec.client, now, now, deadline, absolute, own
        )
        return evicted

    async def check(self, key: str) -> float | None:
        now = time.monotonic()
        found = self._live(key, now)
        return None if found is None else found[1].deadline - now

    async def touch(self, key: str, timeout: float) -> float | None:
        now = time.monotonic()
        found = self._live(key, now)
        if found is None:
            return None
        key, row = found
        deadline = now + (row.own_timeout or timeout)
        if row.absolute is not None:
            deadline = min(deadline, row.absolute)
        self.rows[key] = replace(row, last_active=now, deadline=deadline)
        return deadline - now

    async def get(self, key: str) -> SessionRecord | None:
        now = time.monotonic()
        found = self._live(key, now)
        return None if found is None else self._record(found[0], found[1], now)

    async def set_data(self, key: str, data: str | None) -> bool:
        found = self._live(key, time.monotonic())
        if found is not None:
            self.rows[found[0]] = replace(found[1], data=data)
        return found is not None

    async def update_data(self, key: str, changes: str) -> str | None:
        found = self._live(key, time.monotonic())
        if found is None:
            return None
        merged = {} if found[1].data is None else json.loads(found[1].data)
        if not isinstance(merged, dict):
            raise TypeError(f"the session's data is a {type(merged).__name__}, not a dict")
        merged.update(json.loads(changes))
        data = json.dumps(merged, separators=(",", ":"))
        self.rows[found[0]] = replace(found[1], data=data)
        return data

    async def mark_authenticated(self, key: str) -> bool:
        now = time.monotonic()
        found = self._live(key, now)
        if found is not None:
            self.rows[found[0]] = replace(found[1], authenticated=now)
        return found is not None

    async def delete(self, key: str, *, reason: Reason = LOGOUT) -> SessionRecord | None:
        now = time.monotonic()
        found = self._live(key, now)
        return None if found is None else self._end(found[0], now)

    async def delete_user_session(self, username: str, key_hash: str) -> SessionRecord | None:
        now = time.monotonic()
        for key, _ in self._oldest_first(now, username):
            if hash_key(key) == key_hash:
                return self._end(key, now)
        return None

    async def rotate(self, key: str, new_key: str, *, grace: float = 0.0) -> SessionRecord | None:
        now = time.monotonic()
        if self._live(key, now, follow=False) is None:
            return None
        row = replace(self.rows.pop(key), rotated=now)
        self.rows[new_key] = row
        self.aliases = {old: to for old, to in self.aliases.items() if to[0] != key}
        if grace > 0:
            self.aliases[key] = (new_key, now + grace)
        return self._record(new_key, row, now)

    async def claim_expired(self, keys: Sequence[str]) -> tuple[list[SessionRecord], list[Pending]]:
        now = time.monotonic()
        claimed, pending = [], []
        for key in keys:
            row = self.rows.get(key)
            if row is None:
                continue
            if now < row.deadline:
                capped = row.absolute is not None and row.deadline >= row.absolute
                pending.append(Pending(key, row.deadline - now, capped))
            else:
                claimed.append(self._end(key, now))
        return claimed, pending

    async def usernames(self) -> list[str]:
        return [row.username for _, row in self._oldest_first(time.monotonic())]

    async def user_sessions(self, username: str) -> list[SessionRecord]:
        now = time.monotonic()
        return [self._record(k, r, now) for k, r in self._oldest_first(now, username)]

    async def count(self) -> int:
        return len(self._oldest_first(time.monotonic()))

    async def delete_all(self) -> list[SessionRecord]:
        now = time.monotonic()
        return [self._end(key, now) for key, _ in self._oldest_first(now)]

    async def delete_user(self, username: str) -> list[SessionRecord]:
        now = time.monotonic()
        return [self._end(key, now) for key, _ in self._oldest_first(now, username)]
