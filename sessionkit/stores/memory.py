"""MemoryStore: sessions in this process's memory, the embedded default."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from operator import itemgetter
from typing import Final

from sessionkit.events import LOGOUT, Reason
from sessionkit.exceptions import SessionLimitReached
from sessionkit.keys import hash_key
from sessionkit.models import SessionRecord
from sessionkit.stores.base import NewSession, Pending, SessionStore

__all__ = ("MemoryStore",)


# A session is a plain tuple of strs, floats and None, not an object with attributes: the
# cyclic GC stops tracking such a tuple at its first collection, so a million sessions add
# nothing to every later one (a slotted class, always tracked, made each login measurably
# slower at that size). A change builds a new tuple. Times are on the store's clock (monotonic by
# default), so a wall-clock jump never expires or revives sessions; they become wall-clock
# datetimes only when read. ``timeout`` is set only for a session created with its own timeout;
# ``client`` (the ClientInfo of the login, as JSON text) only for a login that gave one;
# ``authenticated`` only once mark_authenticated was called, ``rotated`` only once the key was
# rotated (before that, each is the creation time).
_Entry = tuple[
    str,
    float,
    float | None,
    float | None,
    str | None,
    float,
    float,
    str | None,
    float | None,
    float | None,
]
USERNAME: Final = 0
CREATED: Final = 1
ABSOLUTE: Final = 2
DATA: Final = 4
DEADLINE: Final = 6
AUTHENTICATED: Final = 8
ROTATED: Final = 9  # (TIMEOUT 3, LAST_ACTIVE 5 and CLIENT 7 are only ever unpacked)


_new_record = tuple.__new__

# A user's keys: the bare key for the usual one session, else a dict used as an ordered set
# (creation order), so that ending one of a user's n sessions costs O(1), not O(n).
_UserKeys = str | dict[str, None]


def _index_add(index: dict[str, _UserKeys], username: str, key: str) -> None:
    others = index.get(username)
    if others is None:
        index[username] = key
    elif isinstance(others, str):
        index[username] = {others: None, key: None}
    else:
        others[key] = None


class MemoryStore(SessionStore):
    """Keeps sessions in a dict in this process: fast, and gone when the process ends.

    It serves one manager (or several in one process). Keys are held as they are, as the
    process holds them anyway while serving requests; use a
    :class:`~sessionkit.stores.redis.RedisStore` to share sessions between processes.

    The index of sessions by user is built by the first call that needs it (listing or
    ending a user's sessions, or a login under ``max_sessions_per_user``) and kept from then
    on: that first call makes one pass over every session, about 50 ms per 100,000.

    :param clock: seconds on a monotonic clock; by default :func:`time.monotonic`, the clock
        asyncio's ``loop.time()`` reads (the manager hands the store only durations, so
        another loop's clock, uvloop's, needs no match).
    """

    def __init__(self, *, clock: Callable[[], float] | None = None) -> None:
        # time.monotonic itself, not a function asking the running loop for its time(): the
        # clock is read on every call, and three Python-level calls fewer count on the hot
        # path.
        self._clock = clock or time.monotonic
        self._sessions: dict[str, _Entry] = {}
        # A user's keys in creation order, built at the first call that asks by user (see
        # _users) and kept from then on. Most users have one session, kept as the bare key (a
        # one-item container would cost about a hundred bytes more per session, and be one
        # more object the cyclic GC has to track).
        self._by_user: dict[str, _UserKeys] | None = None
        self._to_wall: float | None = None
        # Dict order is creation order until a rotation moves a session to the end.
        self._in_creation_order = True
        # A renewal's grace: the replaced key names the session under its new key until a
        # deadline (old key -> (new key, until)), and the way back (new key -> old key), so
        # that an alias goes with its session, or with the session's next rotation.
        self._aliases: dict[str, tuple[str, float]] = {}
        self._alias_of: dict[str, str] = {}

    def _resolve(self, key: str, now: float) -> str:
        # The key a session is stored under: ``key``, or its new key during a renewal's grace.
        alias = self._aliases.get(key)
        if alias is None:
            return key
        if alias[1] <= now:
            self._drop_alias(key)
            return key
        return alias[0]

    def _aliased(self, key: str, now: float) -> tuple[str, _Entry] | None:
        # A key a renewal replaced, in its grace: the session under its new key.
        new = self._resolve(key, now)
        entry = None if new is key else self._sessions.get(new)
        return None if entry is None else (new, entry)

    def _drop_alias(self, old: str) -> None:
        new, _ = self._aliases.pop(old)
        del self._alias_of[new]

    def _users(self) -> dict[str, _UserKeys]:
        # Built on first use, not kept from the start: most applications never ask by user,
        # and keeping the index would cost every login. The first call that asks pays one
        # pass over the sessions (about a second at a million).
        if self._by_user is None:
            index: dict[str, _UserKeys] = {}
            for key, entry in self._sessions.items():
                _index_add(index, entry[USERNAME], key)
            if not self._in_creation_order:
                sessions = self._sessions
                for username, keys in index.items():
                    if not isinstance(keys, str):
                        ordered = sorted(keys, key=lambda k: sessions[k][CREATED])
                        index[username] = dict.fromkeys(ordered)
            self._by_user = index
        return self._by_user

    def _user_keys(self, username: str) -> Iterable[str]:
        keys = self._users().get(username, ())
        return (keys,) if isinstance(keys, str) else keys

    def _record(self, key: str, entry: _Entry, now: float, digest: bool = True) -> SessionRecord:
        # One offset from the clock to wall time, taken once, so that a session's times read
        # the same on every call. ``digest=False``: key_hash left "" (see touch_get_sync).
        if self._to_wall is None:
            self._to_wall = time.time() - now
        to_wall = self._to_wall
        username, created, absolute, _, data, last_active, deadline, client, auth, rotated = entry
        # The tuple built by position, not through the NamedTuple's __new__: every read builds
        # one (keywords cost ~0.6 us more, the __new__ frame ~0.2). All of SessionRecord's
        # fields, in its order.
        return _new_record(
            SessionRecord,
            (
                key,
                hash_key(key) if digest else "",
                username,
                created + to_wall,
                last_active + to_wall,
                deadline + to_wall,
                None if absolute is None else absolute + to_wall,
                deadline - now,
                data,
                client,
                None if auth is None else auth + to_wall,
                None if rotated is None else rotated + to_wall,
                None,  # event_id: a MemoryStore keeps no outbox
            ),
        )

    def _live(self, key: str, now: float) -> _Entry | None:
        entry = self._sessions.get(key)
        if entry is None or entry[DEADLINE] <= now:
            return None
        return entry

    def _remove(self, key: str, entry: _Entry) -> None:
        del self._sessions[key]
        if self._alias_of:
            old = self._alias_of.pop(key, None)
            if old is not None:  # the alias dies with its session
                del self._aliases[old]
        index = self._by_user
        if index is None:
            return
        username = entry[USERNAME]
        keys = index[username]
        if isinstance(keys, str):
            del index[username]
            return
        del keys[key]
        if len(keys) == 1:
            index[username] = next(iter(keys))

    async def create(self, key: str, spec: NewSession) -> list[SessionRecord]:
        return self.create_sync(key, spec)

    def create_sync(self, key: str, spec: NewSession) -> list[SessionRecord]:
        """:meth:`create`, answered without an await (the manager's login path)."""
        now = self._clock()
        # Unpacked in one step, not read field by field: this is every login's path.
        username, timeout, data, fixed, absolute, cap, refuse, client = spec
        evicted: list[SessionRecord] = []
        if cap is not None:
            keys = self._user_keys(username)
            live = [k for k in keys if self._sessions[k][DEADLINE] > now]
            if refuse and len(live) >= cap:
                raise SessionLimitReached(
                    f"{username!r} already has {len(live)} live session(s), the most allowed"
                )
            for old in live[: max(0, len(live) - cap + 1)]:
                entry = self._sessions[old]
                evicted.append(self._record(old, entry, now))
                self._remove(old, entry)
        if absolute is None:
            deadline = now + timeout
        else:
            absolute += now
            deadline = min(now + timeout, absolute)
        own = timeout if fixed else None
        self._sessions[key] = (
            username,
            now,
            absolute,
            own,
            data,
            now,
            deadline,
            client,
            None,
            None,
        )
        if self._by_user is not None:
            _index_add(self._by_user, username, key)
        return evicted

    # Sessions are in this process: create (above), check, touch and touch_get answer at once.
    # Their _sync forms are MemoryStore's own, not the store contract's: the manager calls them,
    # without an await, on every login and on the hot path of every request.

    def check_sync(self, key: str) -> float | None:
        """:meth:`check`, answered without an await (the manager's hot path)."""
        entry = self._sessions.get(key)
        if entry is None:
            found = self._aliased(key, self._clock()) if self._aliases else None
            if found is None:
                return None
            entry = found[1]
        remaining = entry[DEADLINE] - self._clock()
        return remaining if remaining > 0 else None

    def touch_sync(self, key: str, timeout: float) -> float | None:
        """:meth:`touch`, answered without an await (the manager's hot path)."""
        entry = self._sessions.get(key)
        now = self._clock()
        if entry is None:
            found = self._aliased(key, now) if self._aliases else None
            if found is None:
                return None
            key, entry = found
        username, created, absolute, own, data, _, deadline, client, auth, rotated = entry
        if deadline <= now:
            return None
        deadline = now + (own or timeout)
        if absolute is not None and absolute < deadline:
            deadline = absolute
        self._sessions[key] = (
            username,
            created,
            absolute,
            own,
            data,
            now,
            deadline,
            client,
            auth,
            rotated,
        )
        return deadline - now

    def touch_get_sync(self, key: str, timeout: float, digest: bool = True) -> SessionRecord | None:
        """:meth:`touch_get`, answered without an await (the manager's hot path: every
        guarded request). One lookup restarts the session and reads it back.

        :param digest: ``False`` leaves the record's ``key_hash`` empty (``""``) for a caller
            that turns it into :class:`~sessionkit.SessionDetails` at once (their ``id`` is
            then the digest of ``record.key``, computed if it is read): most guarded requests
            never read it, and SHA-256 is a fifth of this call.
        """
        entry = self._sessions.get(key)
        now = self._clock()
        if entry is None:
            found = self._aliased(key, now) if self._aliases else None
            if found is None:
                return None
            key, entry = found
        username, created, absolute, own, data, _, deadline, client, auth, rotated = entry
        if deadline <= now:
            return None
        deadline = now + (own or timeout)
        if absolute is not None and absolute < deadline:
            deadline = absolute
        entry = (username, created, absolute, own, data, now, deadline, client, auth, rotated)
        self._sessions[key] = entry
        return self._record(key, entry, now, digest)

    async def check(self, key: str) -> float | None:
        return self.check_sync(key)

    async def touch(self, key: str, timeout: float) -> float | None:
        return self.touch_sync(key, timeout)

    async def touch_get(self, key: str, timeout: float) -> SessionRecord | None:
        kind = type(self)
        if kind.touch is MemoryStore.touch and kind.get is MemoryStore.get:
            return self.touch_get_sync(key, timeout)
        return await super().touch_get(key, timeout)  # a subclass's own touch or get: theirs

    async def get(self, key: str) -> SessionRecord | None:
        now = self._clock()
        key = self._resolve(key, now)
        entry = self._live(key, now)
        return None if entry is None else self._record(key, entry, now)

    async def set_data(self, key: str, data: str | None) -> bool:
        now = self._clock()
        key = self._resolve(key, now)
        entry = self._live(key, now)
        if entry is None:
            return False
        self._sessions[key] = (*entry[:DATA], data, *entry[DATA + 1 :])  # type: ignore[assignment]
        return True

    async def update_data(self, key: str, changes: str) -> str | None:
        now = self._clock()
        key = self._resolve(key, now)
        entry = self._live(key, now)
        if entry is None:
            return None
        # No await from the read to the write: one step, whoever else is updating.
        text = entry[DATA]
        merged = {} if text is None else json.loads(text)
        if not isinstance(merged, dict):
            raise TypeError(
                f"the session's data is a {type(merged).__name__}, not a dict: only a dict "
                "can be updated (set_session_data replaces data of any kind)"
            )
        merged.update(json.loads(changes))
        data = json.dumps(merged, separators=(",", ":"))
        self._sessions[key] = (*entry[:DATA], data, *entry[DATA + 1 :])  # type: ignore[assignment]
        return data

    async def mark_authenticated(self, key: str) -> bool:
        now = self._clock()
        key = self._resolve(key, now)
        entry = self._live(key, now)
        if entry is None:
            return False
        self._sessions[key] = (*entry[:AUTHENTICATED], now, entry[ROTATED])
        return True

    async def delete(self, key: str, *, reason: Reason = LOGOUT) -> SessionRecord | None:
        now = self._clock()
        key = self._resolve(key, now)  # a logout with either key ends the session
        entry = self._live(key, now)
        if entry is None:
            return None
        self._remove(key, entry)
        return self._record(key, entry, now)

    async def delete_user_session(self, username: str, key_hash: str) -> SessionRecord | None:
        now = self._clock()
        for key in self._user_keys(username):
            if hash_key(key) == key_hash:
                entry = self._live(key, now)
                if entry is None:
                    return None  # past its deadline: its end is reported as an expiry
                self._remove(key, entry)
                return self._record(key, entry, now)
        return None

    async def rotate(self, key: str, new_key: str, *, grace: float = 0.0) -> SessionRecord | None:
        now = self._clock()
        entry = self._live(key, now)  # never through an alias: a key replaced stays replaced
        if entry is None:
            return None
        del self._sessions[key]
        entry = (*entry[:ROTATED], now)
        self._sessions[new_key] = entry
        aliases = self._aliases
        if aliases:
            older = self._alias_of.get(key)
            if older is not None:  # only the key just replaced keeps working
                self._drop_alias(older)
            for old in [old for old, (_, until) in aliases.items() if until <= now]:
                self._drop_alias(old)
        if grace > 0:
            aliases[key] = (new_key, now + grace)
            self._alias_of[new_key] = key
        self._in_creation_order = False
        index = self._by_user
        if index is not None:
            keys = index[entry[USERNAME]]
            if isinstance(keys, str):
                index[entry[USERNAME]] = new_key
            else:  # in creation order: the new key takes the old one's place
                index[entry[USERNAME]] = {(new_key if k == key else k): None for k in keys}
        return self._record(new_key, entry, now)

    async def claim_expired(self, keys: Sequence[str]) -> tuple[list[SessionRecord], list[Pending]]:
        now = self._clock()
        claimed: list[SessionRecord] = []
        pending: list[Pending] = []
        for key in keys:
            entry = self._sessions.get(key)
            if entry is None:
                continue
            absolute, deadline = entry[ABSOLUTE], entry[DEADLINE]
            if deadline <= now:
                self._remove(key, entry)
                claimed.append(self._record(key, entry, now))
            else:
                capped = absolute is not None and deadline >= absolute
                pending.append(Pending(key, deadline - now, capped))
        return claimed, pending

    async def usernames(self) -> list[str]:
        now = self._clock()
        live = [e for e in self._sessions.values() if e[DEADLINE] > now]
        if not self._in_creation_order:
            live.sort(key=itemgetter(CREATED))
        return [e[USERNAME] for e in live]

    async def user_sessions(self, username: str) -> list[SessionRecord]:
        now = self._clock()
        return [
            self._record(k, e, now)
            for k in self._user_keys(username)
            if (e := self._sessions[k])[DEADLINE] > now
        ]

    async def count(self) -> int:
        now = self._clock()
        return sum(1 for e in self._sessions.values() if e[DEADLINE] > now)

    async def delete_all(self) -> list[SessionRecord]:
        now = self._clock()
        ended = [(k, e) for k, e in self._sessions.items() if e[DEADLINE] > now]
        for key, entry in ended:
            self._remove(key, entry)
        return [self._record(k, e, now) for k, e in ended]

    async def delete_user(self, username: str) -> list[SessionRecord]:
        now = self._clock()
        ended = [
            (k, e) for k in self._user_keys(username) if (e := self._sessions[k])[DEADLINE] > now
        ]
        for key, entry in ended:
            self._remove(key, entry)
        return [self._record(k, e, now) for k, e in ended]
