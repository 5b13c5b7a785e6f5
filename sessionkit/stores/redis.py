"""RedisStore: sessions shared by many processes and hosts through one Redis (or Valkey)."""

from __future__ import annotations

import asyncio
import hashlib
import math
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from operator import attrgetter, itemgetter
from typing import Any

from sessionkit.exceptions import SessionLimitReached, StoreUnavailable
from sessionkit.keys import hash_key
from sessionkit.models import SessionRecord
from sessionkit.stores import _redis_lua as lua
from sessionkit.stores.base import Outcome, Pending, SessionStore

try:
    from redis.asyncio import Redis
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import NoScriptError, RedisError
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "sessionkit.stores.redis needs redis-py: pip install 'sessionkit[redis]'"
    ) from exc

from sessionkit.stores._pipeline import Pipeline  # needs redis-py: checked above

__all__ = ("RedisStore",)

_US = 1_000_000  # microseconds per second: the scripts count time in them
_RETAIN = 60 * 60  # seconds a session's record outlives its deadline, waiting for a claim
_SWEEP_BATCH = 1000  # sessions one sweep claims at most
_LIST_BATCH = 1000  # sessions one listing round trip reads at most
_RETRIES = 3  # sends of one call after a broken connection or a missing script, at most


def _text(value: Any) -> str | None:
    # The client may or may not decode responses: accept both.
    if value is None or isinstance(value, str):
        return value
    return bytes(value).decode("utf-8")


def _us(seconds: float) -> int:
    return round(seconds * _US)


def _consume(future: asyncio.Future[Any]) -> None:
    # A reply nobody awaits: retrieve its exception, if any, so asyncio does not log it.
    if not future.cancelled():
        future.exception()


def _op_id() -> str:
    return secrets.token_hex(12)


@dataclass(slots=True)
class _Lost:
    # A call that raised before its outcome was known (see SessionStore.settle).
    call: str  # the store method
    op: str  # the operation id it was sent with
    context: tuple[str, ...]  # what SETTLE needs to undo it
    keys: dict[str, str]  # raw keys it was given, by hash, to name what it ended
    # The settle's own operation id, fixed: a settle that loses its reply is sent again as is.
    settle_op: str


class _Script:
    """One Lua script: its text and the SHA-1 the server knows it by."""

    __slots__ = ("sha", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.sha = hashlib.sha1(text.encode("utf-8")).hexdigest()


class RedisStore(SessionStore):
    """Keeps sessions in Redis, so that every process and host using it shares them.

    Each operation is one Lua script, run atomically by the server: one command, and one
    winner when callers race (two processes claiming one expired session, a rotation against
    a rotation, new data against a logout). Deadlines are judged by the server's clock, so the
    workers' clocks may drift. Calls go down a connection of the store's own (borrowed from
    the client's pool), pipelined: the calls issued in one loop turn leave in one write. Every
    script that ends or makes sessions runs once per operation id, and a call whose reply was
    lost is settled later (see :meth:`settle`). Session keys are stored as their SHA-256
    digest, and every key written carries a TTL::

        from redis.asyncio import Redis
        from sessionkit import SessionManager
        from sessionkit.stores.redis import RedisStore

        client = Redis(host="127.0.0.1", port=6379)
        async with SessionManager(timeout=15 * 60, store=RedisStore(client)) as sm:
            key = await sm.load_new_session("Luca")

    A session past its deadline is kept (not live) for an hour so that a manager can claim it
    and report its end; each manager sweeps every ``sweep_interval`` seconds for sessions that
    no live process claimed (their process died). The store runs on one Redis server (with
    replicas or Sentinel), not on Redis Cluster: its scripts reach keys they compute.

    Redis holds only hashes, so a session ended by hash (an eviction, ``delete_all``,
    ``delete_user``, a sweep) is reported with its raw key only where this process knows it:
    it created the session or rotated to it. Elsewhere ``key`` is ``None`` and
    events carry ``key_hash`` alone. Listings (:meth:`user_sessions`) never carry keys.

    :param client: a ``redis.asyncio.Redis`` client; the store does not close it (closing it
        closes the connection the store borrowed from it).
    :param prefix: put before every key the store writes; give each application its own.
    :param sweep_interval: seconds between sweeps for sessions of dead processes.
    :param op_timeout: seconds each call may take, whatever the client's own timeouts, before
        it raises :class:`~sessionkit.StoreUnavailable`.
    :raises TypeError: if ``client`` is not a ``redis.asyncio.Redis``.
    :raises ValueError: for an empty prefix, or an interval or timeout that is not a positive
        finite number.
    """

    def __init__(
        self,
        client: Redis,
        *,
        prefix: str = "sessionkit:",
        sweep_interval: float = 5.0,  # seconds
        op_timeout: float = 2.0,  # seconds
    ) -> None:
        if not isinstance(client, Redis):
            raise TypeError(f"client must be a redis.asyncio.Redis, not {type(client).__name__}")
        if not isinstance(prefix, str) or not prefix:
            raise ValueError("prefix must be a non-empty str")
        for name, value in (("sweep_interval", sweep_interval), ("op_timeout", op_timeout)):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise TypeError(f"{name} must be a number of seconds")
            if not (0 < value < math.inf):
                raise ValueError(f"{name} must be a positive finite number of seconds")
        self.sweep_interval = float(sweep_interval)
        self._prefix = prefix
        self._op_timeout = float(op_timeout)
        self._retain_ms = str(_RETAIN * 1000)
        # An owner's timer fires within a few tens of ms of the deadline; the sweep leaves it
        # that much room (more, up to a second) so that the owner, who knows the raw key, wins.
        self._sweep_lag_us = str(_us(min(1.0, self.sweep_interval)))
        # Raw keys of the sessions this process created or rotated to (those its
        # manager arms timers for), by hash: so that an ending found by hash (eviction,
        # delete_all, a sweep) still names the key where this process knows it. An entry goes
        # when its session ends here or when a claim finds the session gone.
        self._known: dict[str, str] = {}
        self._lost: list[_Lost] = []
        self._late: list[Outcome] = []  # ended by a bulk call cut off before it returned
        # Every call goes down the store's own pipelined connection: concurrent calls share
        # round trips, and none waits on (or fails for) the client's pool.
        self._pipe = Pipeline(client, self._op_timeout)
        self._scripts = {name: _Script(getattr(lua, name)) for name in lua.__all__}

    async def aclose(self) -> None:
        """Close the store's own connection (the client stays open: it is the caller's)."""
        await self._pipe.aclose()

    @property
    def prefix(self) -> str:
        """The prefix of every key this store writes."""
        return self._prefix

    async def _change(
        self,
        name: str,
        call: str,
        args: Sequence[str | int],
        *,
        context: tuple[str, ...] = (),
        keys: dict[str, str] | None = None,
    ) -> Any:
        # A script that ends or makes sessions, sent with an operation id: if the caller never
        # hears its outcome (a timeout, a cancellation, a dropped connection), settle() asks.
        op = _op_id()
        try:
            return await self._run(name, *args, op=op)
        except BaseException:
            self._lost.append(_Lost(call, op, context, keys or {}, _op_id()))
            raise

    async def _run(self, name: str, *args: str | int, op: str = "") -> Any:
        # EVALSHA, not redis-py's register_script (its Script object re-builds the arguments
        # on every call), down the pipeline, whose watchdog bounds each call by its deadline.
        script = self._scripts[name]
        head = (script.sha, 0, self._prefix, self._retain_ms, op)
        pipe = self._pipe
        deadline = asyncio.get_running_loop().time() + self._op_timeout
        retries = 0  # a broken connection or a missing script, a few times, within the deadline
        try:
            while True:
                try:
                    return await pipe.call(deadline, "EVALSHA", *head, *args)
                except NoScriptError:
                    # The server does not hold the script (first use, a restart, SCRIPT FLUSH,
                    # a failover): load it and run it again. Both go down the one connection,
                    # in order, so the run needs no wait for the load's reply.
                    if retries >= _RETRIES:
                        raise
                    retries += 1
                    pipe.call(deadline, "SCRIPT", "LOAD", script.text).add_done_callback(_consume)
                except RedisConnectionError:
                    # The connection broke before the reply (a CLIENT KILL, a restart): send it
                    # again on a new one, as redis-py's own retry would (and load the script
                    # again if that new connection's server lost it). Operation ids make that
                    # safe for the scripts that change sessions.
                    if retries >= _RETRIES:
                        raise
                    retries += 1
        except TimeoutError as exc:
            raise StoreUnavailable(
                f"Redis did not answer within {self._op_timeout:g} s ({name.lower()})"
            ) from exc
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(f"Redis failed ({name.lower()}): {type(exc).__name__}") from exc

    @staticmethod
    def _record(raw: Sequence[Any], key: str | None) -> SessionRecord:
        key_hash, username, created, last, deadline, absolute, data, remaining, client = map(
            _text, raw
        )
        assert key_hash is not None and username is not None
        assert created is not None and last is not None and deadline is not None
        assert remaining is not None
        return SessionRecord(
            key=key,
            key_hash=key_hash,
            username=username,
            created_at=int(created) / _US,
            last_active_at=int(last) / _US,
            expires_at=int(deadline) / _US,
            absolute_expires_at=None if absolute is None else int(absolute) / _US,
            remaining=int(remaining) / _US,
            data=data,
            client=client,
        )

    def _ended(self, raws: Sequence[Sequence[Any]]) -> list[SessionRecord]:
        # Sessions removed by hash: name each by its key where this process knows it.
        known = self._known
        return [self._record(raw, known.pop(_text(raw[0]) or "", None)) for raw in raws]

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
        refuse: bool = False,
        client: str | None = None,
    ) -> list[SessionRecord]:
        """Store a new session, evicting the user's oldest ones over the cap in the same step
        (or, with ``refuse``, refusing it in that step).

        See :meth:`SessionStore.create`. Evicted records carry their key where this process
        knows it (see the class docs), else ``key=None``.

        :raises SessionLimitReached: with ``refuse``, if the user is at the cap.
        :raises StoreUnavailable: if Redis cannot be reached within ``op_timeout``.
        """
        key_hash = hash_key(key)
        args = (
            key_hash,
            username,
            _us(timeout),
            "1" if fixed_timeout else "0",
            "" if absolute_timeout is None else _us(absolute_timeout),
            "" if max_per_user is None else max_per_user,
            "0" if data is None else "1",
            "" if data is None else data,
            client or "",
            "1" if refuse else "0",
        )
        evicted = await self._change("CREATE", "create", args, context=(key_hash,))
        if evicted == -1:
            raise SessionLimitReached(
                f"{username!r} already has {max_per_user} live session(s), the most allowed"
            )
        self._known[key_hash] = key
        return self._ended(evicted)

    async def check(self, key: str) -> float | None:
        """Tell whether a session is live, in one round trip.

        :return: seconds until its deadline, or ``None``.
        :raises StoreUnavailable: if Redis cannot be reached within ``op_timeout``.
        """
        left = _text(await self._run("CHECK", hash_key(key)))
        return None if left is None else int(left) / _US

    async def touch(self, key: str, timeout: float) -> float | None:
        """Check a session and restart its idle deadline, in one round trip.

        :return: seconds until the new deadline, or ``None`` if the session is not live.
        :raises StoreUnavailable: if Redis cannot be reached within ``op_timeout``.
        """
        left = _text(await self._run("TOUCH", hash_key(key), _us(timeout)))
        return None if left is None else int(left) / _US

    async def touch_get(self, key: str, timeout: float) -> SessionRecord | None:
        """Restart a session's idle deadline and read it back, in one round trip.

        :return: the session's record after the restart, or ``None`` if it is not live.
        :raises StoreUnavailable: if Redis cannot be reached within ``op_timeout``.
        """
        raw = await self._run("TOUCH", hash_key(key), _us(timeout), "1")
        return None if raw is None else self._record(raw, key)

    async def get(self, key: str) -> SessionRecord | None:
        """Read a live session.

        :return: its record, or ``None``.
        :raises StoreUnavailable: if Redis cannot be reached within ``op_timeout``.
        """
        raw = await self._run("GET", hash_key(key))
        return None if raw is None else self._record(raw, key)

    async def set_data(self, key: str, data: str | None) -> bool:
        """Replace a live session's data; an ended session stays ended.

        :return: ``True`` if the session was live and now holds ``data``.
        :raises StoreUnavailable: if Redis cannot be reached within ``op_timeout``.
        """
        has = "0" if data is None else "1"
        return bool(await self._run("SET_DATA", hash_key(key), has, data or ""))

    async def delete(self, key: str) -> SessionRecord | None:
        """End a live session.

        :return: the session as it was, or ``None`` if it was not live.
        :raises StoreUnavailable: if Redis cannot be reached within ``op_timeout``.
        """
        key_hash = hash_key(key)
        raw = await self._change("DELETE", "delete", (key_hash,), keys={key_hash: key})
        self._known.pop(key_hash, None)
        return None if raw is None else self._record(raw, key)

    async def delete_user_session(self, username: str, key_hash: str) -> SessionRecord | None:
        """End one live session of one user, named by its id (its key's hash).

        :return: the session as it was (with its key where this process knows it), or
            ``None`` if the user has no such live session.
        :raises StoreUnavailable: if Redis cannot be reached within ``op_timeout``.
        """
        args = (username, key_hash)
        raw = await self._change("DELETE_USER_SESSION", "delete_user_session", args)
        return None if raw is None else self._ended([raw])[0]

    async def rotate(self, key: str, new_key: str) -> SessionRecord | None:
        """Move a live session to ``new_key``; of two rotations of one key, one wins.

        :return: the session under ``new_key``, or ``None`` if ``key`` was not live.
        :raises StoreUnavailable: if Redis cannot be reached within ``op_timeout``.
        """
        old_hash, new_hash = hash_key(key), hash_key(new_key)
        context = (old_hash, new_hash)
        raw = await self._change("ROTATE", "rotate", context, context=context)
        self._known.pop(old_hash, None)
        if raw is None:
            return None
        self._known[new_hash] = new_key
        return self._record(raw, new_key)

    async def claim_expired(self, keys: Sequence[str]) -> tuple[list[SessionRecord], list[Pending]]:
        """Remove, of the given sessions, those past their deadline: of all the processes
        claiming one session, only one gets it.

        :return: the sessions this call removed, and those still live with their deadlines.
        :raises StoreUnavailable: if Redis cannot be reached within ``op_timeout``.
        """
        by_hash = {hash_key(key): key for key in keys}
        claimed, pending = await self._change("CLAIM", "claim_expired", list(by_hash), keys=by_hash)
        records = [self._record(raw, by_hash[_text(raw[0]) or ""]) for raw in claimed]
        live = [(_text(h) or "", left, capped) for h, left, capped in pending]
        waiting = [
            Pending(by_hash[h], int(_text(left) or 0) / _US, bool(capped))
            for h, left, capped in live
        ]
        for key_hash in by_hash.keys() - {
            h for h, _, _ in live
        }:  # claimed here, or ended elsewhere
            self._known.pop(key_hash, None)
        return records, waiting

    async def sweep(self) -> list[SessionRecord]:
        """Claim sessions past their deadline that no process claimed (their process died).

        A session is left to its owner's timer for up to a second past its deadline; one
        call claims at most 1,000 sessions.

        :return: the sessions this call removed, with ``key=None`` where this process does not
            know the key.
        :raises StoreUnavailable: if Redis cannot be reached within ``op_timeout``.
        """
        return self._ended(await self._change("SWEEP", "sweep", (self._sweep_lag_us, _SWEEP_BATCH)))

    async def usernames(self) -> list[str]:
        """List the username of every live session, oldest session first.

        Reads 1,000 sessions per round trip, each bounded by ``op_timeout``.

        :raises StoreUnavailable: if Redis cannot be reached within ``op_timeout``.
        """
        found: list[tuple[int, str]] = []
        score, member = "-inf", ""
        while True:
            batch, seen, score, member = await self._run("USERNAMES", score, member, _LIST_BATCH)
            pairs = iter(batch)  # created, username, created, username...
            found.extend(
                (int(_text(c) or 0), _text(u) or "") for c, u in zip(pairs, pairs, strict=True)
            )
            if seen < _LIST_BATCH:
                found.sort(key=itemgetter(0))  # the index is by deadline: oldest first here
                return [name for _, name in found]

    async def user_sessions(self, username: str) -> list[SessionRecord]:
        """List a user's live sessions, oldest first, with ``key=None``.

        :raises StoreUnavailable: if Redis cannot be reached within ``op_timeout``.
        """
        raws = await self._run("USER_SESSIONS", username)
        return [self._record(raw, None) for raw in raws]

    async def count(self) -> int:
        """Count the live sessions.

        :raises StoreUnavailable: if Redis cannot be reached within ``op_timeout``.
        """
        return int(await self._run("COUNT"))

    async def delete_all(self) -> list[SessionRecord]:
        """End every live session, 1,000 per round trip.

        :return: the sessions this call removed, oldest first, with ``key=None`` where this
            process does not know the key.
        :raises StoreUnavailable: if Redis cannot be reached within ``op_timeout``.
        """
        ended: list[SessionRecord] = []
        score, member, upto = "-inf", "", ""
        try:
            while True:
                args = (score, member, _LIST_BATCH, upto)
                raws, seen, score, member, upto = await self._change(
                    "DELETE_ALL", "delete_all", args
                )
                ended.extend(self._ended(raws))
                if seen < _LIST_BATCH:
                    ended.sort(key=attrgetter("created_at"))
                    return ended
        except BaseException:
            if ended:  # cut off half-way: what it ended so far is reported by settle()
                self._late.append(Outcome("delete_all", ended))
            raise

    async def delete_user(self, username: str) -> list[SessionRecord]:
        """End every live session of one user.

        :return: the sessions this call removed, oldest first, with ``key=None`` where this
            process does not know the key.
        :raises StoreUnavailable: if Redis cannot be reached within ``op_timeout``.
        """
        return self._ended(await self._change("DELETE_USER", "delete_user", (username,)))

    @property
    def unsettled(self) -> bool:
        """Whether a call raised before its outcome was known (see :meth:`settle`)."""
        return bool(self._lost or self._late)

    async def settle(self) -> list[Outcome]:
        """Find out what the calls that lost their reply did (see
        :meth:`SessionStore.settle`), one round trip per call.

        :return: each such call that ended sessions, with those sessions.
        :raises StoreUnavailable: if Redis cannot be reached and nothing was settled.
        """
        outcomes, self._late = self._late, []
        while self._lost:
            lost = self._lost[0]
            try:
                _, raws = await self._run(
                    "SETTLE", lost.op, lost.call, *lost.context, op=lost.settle_op
                )
            except Exception:
                if outcomes:  # what is known now is reported now; the rest waits
                    return outcomes
                raise
            except BaseException:
                self._late[:0] = outcomes
                raise
            del self._lost[0]
            records = [
                self._record(raw, lost.keys.get(h) or self._known.pop(h, None))
                for raw in raws
                if (h := _text(raw[0]) or "")
            ]
            if records:
                outcomes.append(Outcome(lost.call, records))
        return outcomes
