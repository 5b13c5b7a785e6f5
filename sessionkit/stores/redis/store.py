"""RedisStore: sessions shared by many processes and hosts through one Redis (or Valkey)."""

from __future__ import annotations

import asyncio
import math
import secrets
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from operator import attrgetter, itemgetter
from typing import Any, NamedTuple, cast

from redis.asyncio import Redis, RedisCluster
from redis.crc import key_slot
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError

import sessionkit.keys as keys
from sessionkit.events import LOGOUT, Reason
from sessionkit.exceptions import SessionLimitReached, StoreUnavailable
from sessionkit.keys import hash_key
from sessionkit.models import SessionRecord
from sessionkit.stores.base import LostCall, NewSession, Outcome, Pending, SessionStore
from sessionkit.stores.redis import _schema as schema
from sessionkit.stores.redis._cluster import ClusterCalls
from sessionkit.stores.redis._pipeline import Pipeline, dial, pack
from sessionkit.stores.redis._schema import (
    deadlines,
    hex_hash,
    outcome,
    session,
    stored_hash,
    stored_key_hash,
    text,
    us,
    user,
    user_field,
)
from sessionkit.stores.redis._scripts import SCRIPTS, Script

__all__ = ("RedisStore",)

_RETAIN = 60 * 60  # seconds a session's record outlives its deadline, waiting for a claim
_SWEEP_BATCH = 250  # sessions one sweep script claims at most (a few ms of the server)
_SWEEP_PAGES = 400  # scripts one sweep call runs at most, while their pages come back full
_LIST_BATCH = 1000  # sessions one listing round trip reads at most (a few ms of the server)
_END_ALL_BATCH = 250  # sessions delete_all ends per round trip (each unindexed, recorded: ~7 ms)
_USER_BATCH = 250  # sessions of one user listed per round trip (each read whole: ~1.5 ms)
_END_BATCH = 100  # sessions of one user ended per round trip (each also unindexed: ~2.5 ms)
_RETRIES = 3  # sends of one call after a broken connection or a missing script, at most
_ACK_BATCH = 500  # endings acknowledged (or held) per round trip


def _by_call(
    raws: Sequence[Sequence[Any]],
    records: list[SessionRecord],
    call: LostCall,
    reason: Reason | None = None,
) -> list[Outcome]:
    # Endings, each under the call that ended it and the reason that call was given (``call``
    # and ``reason``, for those that do not say).
    by_call: dict[tuple[LostCall, Reason | None], list[SessionRecord]] = {}
    for raw, record in zip(raws, records, strict=True):
        ended_by = cast(LostCall, schema.ended_by(raw) or call)
        given = cast("Reason | None", schema.ended_for(raw) or reason)
        by_call.setdefault((ended_by, given), []).append(record)
    return [Outcome(c, ended, why) for (c, why), ended in by_call.items()]


@dataclass(slots=True)
class _Lost:
    # A call that raised before its outcome was known (see SessionStore.settle).
    call: LostCall  # the store method
    bucket: str  # the prefix of the bucket it ran in
    op: str  # the operation id it was sent with
    context: tuple[str, ...]  # what SETTLE needs to undo it
    keys: dict[str, str]  # raw keys it was given, by hash, to name what it ended
    reason: Reason | None  # the reason it was given (delete's), reported with what it ended
    # The settle's own operation id, fixed: a settle that loses its reply is sent again as is.
    settle_op: str


class _Command(NamedTuple):
    # One script call, encoded before it is queued. A tuple: every call builds one.
    name: str  # the script's
    script: Script
    args: tuple[str | int, ...]  # EVALSHA, sha, numkeys, keys..., argv...
    packed: bytes  # args, encoded
    slot: int  # the slot of every key it declares (on a cluster)


_TOUCH = SCRIPTS["TOUCH"]
_new_command = tuple.__new__  # a _Command from a built tuple: its own __new__ costs ~0.2 us more


def _pieces(args: Sequence[str | int], encoding: tuple[str, str]) -> bytes:
    # Arguments as pack() encodes them, without the count that heads a command.
    return pack(args, *encoding)[len(b"*%d\r\n" % len(args)) :]


class RedisStore(SessionStore):
    """Keeps sessions in Redis, so that every process and host using it shares them.

    Each operation is one Lua script, run atomically by the server: one command, and one
    winner when callers race (two processes claiming one expired session, a rotation against
    a rotation, new data against a logout). Deadlines are judged by the server's clock, so the
    workers' clocks may drift. Calls go down a connection of the store's own (made from the
    client's settings, outside its pool), pipelined: the calls issued in one loop turn leave
    in one write; close the store (or the manager that uses it) to close it. Every
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
    no live process claimed (their process died). Every ending is recorded in an outbox (a
    stream per bucket) by the script that ends the session, and delivered again by a sweep if
    the manager that had it does not acknowledge it within :attr:`redelivery_after`
    (``op_timeout`` + 1 s): a worker killed between ending sessions and reporting them loses
    nothing (see :attr:`SessionStore.redelivery_after`).

    Given a ``redis.asyncio.RedisCluster``, the store spreads sessions over every primary: 64
    buckets, each under a hash tag of its own (``prefix{tag}``), hold the sessions of the
    users whose names fall in them, and a key's first character names its bucket (keys come
    from :meth:`new_key` and :meth:`rotated_key`). Each script runs in one bucket, so in one
    slot; sweeps, counts and listings ask every bucket. Calls are pipelined per primary. The
    two layouts do not see each other's sessions.

    Redis holds only hashes, so a session ended by hash (an eviction, ``delete_all``,
    ``delete_user``, a sweep) is reported with its raw key only where this process knows it:
    it created the session or rotated to it. Elsewhere ``key`` is ``None`` and
    events carry ``key_hash`` alone. Listings (:meth:`user_sessions`) never carry keys.

    :param client: a ``redis.asyncio.Redis`` or ``redis.asyncio.RedisCluster`` client: the
        store makes its connections with its settings, and does not close it (nor does closing
        it close the store's connections: :meth:`aclose` does).
    :param prefix: put before every key the store writes; give each application its own (on a
        cluster, without ``{`` or ``}``: the buckets' hash tags follow it).
    :param sweep_interval: seconds between sweeps for sessions of dead processes.
    :param op_timeout: seconds each call may take, whatever the client's own timeouts, before
        it raises :class:`~sessionkit.StoreUnavailable`.
    :param wait_replicas: with ``n`` > 0, every script that makes or ends sessions (and every
        settling) is followed, on the same connection, by ``WAIT n``: the call succeeds only
        once ``n`` replicas have acknowledged its writes (and every write before them). Fewer
        within ``wait_timeout`` and it raises :class:`~sessionkit.StoreUnavailable`, its
        outcome unknown, as after a lost reply: it is settled later (see :meth:`settle`). Reads
        and restarts (checks, touches, data) do not wait. The server holds the connection
        while a WAIT blocks, so every call queued behind it on the store's connection (to
        that primary, on a cluster), reads included, waits too: about a round trip to the
        replicas while they keep up, up to ``wait_timeout`` per waiting call while they do not.
        ``WAIT`` is not consensus: see the operations guide for what it does and does not hold.
    :param wait_timeout: seconds a ``WAIT`` may block, shorter than ``op_timeout``.
    :raises TypeError: if ``client`` is neither, or ``wait_replicas`` is not an int.
    :raises ValueError: for an empty prefix (or one with braces, on a cluster), an interval
        or timeout that is not a positive finite number, a negative ``wait_replicas``, or
        (with ``wait_replicas``) a ``wait_timeout`` not shorter than ``op_timeout``.
    """

    redelivery_after: float  # seconds: op_timeout + 1

    def __init__(
        self,
        client: Redis | RedisCluster,
        *,
        prefix: str = "sessionkit:",
        sweep_interval: float = 5.0,  # seconds
        op_timeout: float = 2.0,  # seconds
        wait_replicas: int = 0,
        wait_timeout: float = 0.5,  # seconds
    ) -> None:
        if not isinstance(client, Redis | RedisCluster):
            raise TypeError(
                f"client must be a redis.asyncio.Redis or RedisCluster, not {type(client).__name__}"
            )
        if not isinstance(prefix, str) or not prefix:
            raise ValueError("prefix must be a non-empty str")
        if isinstance(client, RedisCluster) and ("{" in prefix or "}" in prefix):
            raise ValueError("on a cluster, the prefix must not hold { or }: hash tags follow it")
        for name, value in (
            ("sweep_interval", sweep_interval),
            ("op_timeout", op_timeout),
            ("wait_timeout", wait_timeout),
        ):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise TypeError(f"{name} must be a number of seconds")
            if not (0 < value < math.inf):
                raise ValueError(f"{name} must be a positive finite number of seconds")
        if isinstance(wait_replicas, bool) or not isinstance(wait_replicas, int):
            raise TypeError("wait_replicas must be an int (a number of replicas)")
        if wait_replicas < 0:
            raise ValueError("wait_replicas must be 0 (no WAIT) or more")
        if wait_replicas and wait_timeout >= op_timeout:
            raise ValueError("wait_timeout must be shorter than op_timeout, which bounds each call")
        self.sweep_interval = float(sweep_interval)
        self._prefix = prefix
        self.op_timeout = float(op_timeout)
        self.wait_replicas = wait_replicas
        self.wait_timeout = float(wait_timeout)
        self._retain_ms = str(_RETAIN * 1000)
        self._touch_fixed: dict[tuple[str, tuple[str, ...]], Any] = {}  # see _touch
        # This store's consumer in the outbox's group (lua/outbox.lua): the first part of every
        # operation id it sends, so that the endings its scripts record are delivered to it.
        self._me = secrets.token_hex(6)
        # Past the longest a reply may take to reach its caller: an ending unacknowledged for
        # this long was never received, or its receiver stopped holding it.
        self.redelivery_after = self.op_timeout + 1.0
        self._redeliver_ms = str(round(self.redelivery_after * 1000))
        # An owner's timer fires within a few tens of ms of the deadline; the sweep leaves it
        # that much room (more, up to a second) so that the owner, who knows the raw key, wins.
        self._sweep_lag_us = str(us(min(1.0, self.sweep_interval)))
        # Raw keys of the sessions this process created or rotated to (those its
        # manager arms timers for), by hash: so that an ending found by hash (eviction,
        # delete_all, a sweep) still names the key where this process knows it. An entry goes
        # when its session ends here or when a claim finds the session gone.
        self._known: dict[str, str] = {}
        self._lost: list[_Lost] = []
        self._late: list[Outcome] = []  # ended by a bulk call cut off before it returned
        # The prefix of each bucket's keys: one bucket on a single server, 64 on a cluster,
        # and the slot of each bucket's keys (on a cluster, where calls are routed by it).
        self._buckets: list[str]
        self._slots: dict[str, int] = {}
        self._where: dict[str, int] = {}  # each bucket's index: the first part of an event id
        self._cluster: ClusterCalls | None = None
        self._pipe: Pipeline | None = None
        if isinstance(client, RedisCluster):
            tags = schema.tags()
            self._buckets = [f"{prefix}{{{tag}}}" for tag in tags]
            self._slots = {
                b: key_slot(t.encode()) for b, t in zip(self._buckets, tags, strict=True)
            }
            self._cluster = ClusterCalls(client, self.op_timeout)
        else:
            self._buckets = [prefix]
            # Every call goes down the store's own pipelined connection: concurrent calls
            # share round trips, and none waits on (or fails for) the client's pool.
            pool = client.connection_pool
            self._pipe = Pipeline(
                dial(pool.connection_class, pool.connection_kwargs), self.op_timeout
            )
        self._where = {bucket: i for i, bucket in enumerate(self._buckets)}
        # Arguments are encoded as the client would encode them, before a call is queued.
        encoder = client.get_encoder()
        self._encoding: tuple[str, str] = (encoder.encoding, encoder.encoding_errors)
        # Sent after each script that makes or ends sessions, on its connection: WAIT counts
        # the replicas that have the writes made on the connection it is sent on, and no other.
        wait = ("WAIT", wait_replicas, math.ceil(self.wait_timeout * 1000))  # 0 ms: for good
        self._wait = pack(wait, *self._encoding) if wait_replicas else b""

    async def aclose(self) -> None:
        """Close the store's own connections (the client stays open: it is the caller's)."""
        if self._cluster is not None:
            await self._cluster.aclose()
        if self._pipe is not None:
            await self._pipe.aclose()

    @property
    def prefix(self) -> str:
        """The prefix of every key this store writes."""
        return self._prefix

    def _user_bucket(self, username: str) -> int:
        if len(self._buckets) == 1:
            return 0
        return schema.bucket_of_user(username)

    def _of_key(self, key: str) -> str:
        # The prefix of the bucket a key's session lives in.
        if len(self._buckets) == 1:
            return self._buckets[0]
        return self._buckets[schema.BUCKET_OF.get(key[:1], 0)]

    def new_key(self, username: str) -> str:
        """A fresh key; on a cluster its first character names the bucket of ``username``."""
        key = keys.new_key()
        if len(self._buckets) == 1:
            return key
        return schema.ALPHABET[self._user_bucket(username)] + key[1:]

    def rotated_key(self, key: str) -> str:
        """A fresh key; on a cluster it starts with the character ``key`` starts with."""
        fresh = keys.new_key()
        return fresh if len(self._buckets) == 1 else key[:1] + fresh[1:]

    def _command(
        self, name: str, bucket: str, names: tuple[str, ...], args: Sequence[str | int], op: str
    ) -> _Command:
        # Script ``name`` in ``bucket`` (its key prefix), declaring the keys ``names`` (with the
        # operation's outcome key, if it has an id): those the script is known to touch before
        # it runs. Those it finds as it runs (the sessions in an index) share the bucket's hash
        # tag, so its slot. Encoded here, in the caller: an argument that cannot be encoded
        # fails this call alone, before anything is sent.
        if op:
            names = (*names, outcome(bucket, op))
        tail = (len(names), *names, bucket, self._retain_ms, op, *args)
        script = SCRIPTS[name]
        command = ("EVALSHA", script.sha, *tail)
        return _Command(
            name, script, command, pack(command, *self._encoding), self._slots.get(bucket, 0)
        )

    async def _change(
        self,
        name: str,
        call: LostCall,
        bucket: str,
        names: tuple[str, ...],
        args: Sequence[str | int],
        *,
        context: tuple[str, ...] = (),
        known: dict[str, str] | None = None,
        reason: Reason | None = None,
    ) -> Any:
        # A script that ends or makes sessions, sent with an operation id: if the caller never
        # hears its outcome (a timeout, a cancellation, a dropped connection), settle() asks.
        op = self._op()
        command = self._command(name, bucket, names, args, op)
        try:
            return await self._send(command, wait=True)
        except BaseException:
            lost = _Lost(call, bucket, op, context, known or {}, reason, self._op())
            self._lost.append(lost)
            raise

    def _op(self) -> str:
        return f"{self._me}.{secrets.token_hex(12)}"

    async def _run(self, name: str, bucket: str, names: tuple[str, ...], *args: str | int) -> Any:
        return await self._send(self._command(name, bucket, names, args, ""))

    async def _send(self, command: _Command, *, wait: bool = False) -> Any:
        # EVALSHA, not redis-py's register_script (its Script object re-builds the arguments
        # on every call), down a pipeline (one per primary on a cluster), whose watchdog bounds
        # each call by its deadline. Whatever fails on the way reaches the caller as
        # StoreUnavailable, the cause chained. With ``wait`` (and wait_replicas), the script
        # and its WAIT go as one call, back to back on one connection, answered by both replies.
        deadline = asyncio.get_running_loop().time() + self.op_timeout
        packed, args = command.packed, command.args
        wait = wait and bool(self._wait)
        retries = 0  # a broken connection or a missing script, a few times, within the deadline
        try:
            while True:
                try:
                    if wait:
                        return await self._waited(deadline, command, packed)
                    if self._cluster is not None:
                        return await self._cluster.call(deadline, command.slot, packed, args)
                    assert self._pipe is not None
                    return await self._pipe.call(deadline, packed)
                except NoScriptError:
                    # The server does not hold the script (first use, a restart, SCRIPT FLUSH,
                    # a failover): send its text, which runs it and loads it for next time.
                    if retries >= _RETRIES:
                        raise
                    retries += 1
                    args = ("EVAL", command.script.text, *args[2:])
                    packed = pack(args, *self._encoding)
                except RedisConnectionError:
                    # The connection broke before the reply (a CLIENT KILL, a restart): send it
                    # again on a new one, as redis-py's own retry would (and load the script
                    # again if that new connection's server lost it). Operation ids make that
                    # safe for the scripts that change sessions. Not one that waits: sent again
                    # after it ran, it answers its kept outcome and writes nothing, so a WAIT on
                    # the new connection would vouch for writes made on the old one; settle()
                    # asks instead (SETTLE writes, and waits).
                    if wait or retries >= _RETRIES:
                        raise
                    retries += 1
        except TimeoutError as exc:
            raise StoreUnavailable(
                f"Redis did not answer within {self.op_timeout:g} s ({command.name.lower()})"
            ) from exc
        except StoreUnavailable:
            raise  # too few replicas acknowledged it
        except Exception as exc:
            # Anything the client library raised, expected or not: never a raw error of its own.
            raise StoreUnavailable(
                f"Redis failed ({command.name.lower()}): {type(exc).__name__}"
            ) from exc

    async def _waited(self, deadline: float, command: _Command, packed: bytes) -> Any:
        # The script and its WAIT, as one call of two commands back to back on one connection:
        # the script's reply, once enough replicas have its writes.
        together = packed + self._wait
        if self._cluster is not None:
            reply, acks = await self._cluster.call_together(deadline, command.slot, together, 2)
        else:
            assert self._pipe is not None
            reply, acks = await self._pipe.call(deadline, together, 2)
        if acks < self.wait_replicas:
            raise StoreUnavailable(
                f"{acks} of {self.wait_replicas} replica(s) acknowledged"
                f" {command.name.lower()} within {self.wait_timeout:g} s: its outcome is unknown"
            )
        return reply

    async def _each(self, buckets: Iterable[str], one: Callable[[str], Awaitable[None]]) -> None:
        # one(bucket) for each bucket, all at once; once every one is done, its first error.
        todo = list(buckets)
        if len(todo) == 1:
            return await one(todo[0])
        for result in await asyncio.gather(*map(one, todo), return_exceptions=True):
            if isinstance(result, BaseException):
                raise result
        return None

    async def _ending(
        self, call: LostCall, ended: list[SessionRecord], work: Awaitable[None]
    ) -> list[SessionRecord]:
        # Awaits work, which puts in ``ended`` the sessions it ends, bucket by bucket. Cut off
        # (a bucket failed, the caller was cancelled), what it ended is reported by settle().
        try:
            await work
        except BaseException:
            if ended:
                self._late.append(Outcome(call, list(ended)))
            raise
        return ended

    def _ended(self, raws: Sequence[Sequence[Any]], bucket: str) -> list[SessionRecord]:
        # Sessions removed by hash: name each by its key where this process knows it.
        known, where = self._known, self._where[bucket]
        return [schema.record(raw, known.pop(hex_hash(raw[0]), None), where) for raw in raws]

    async def create(self, key: str, spec: NewSession) -> list[SessionRecord]:
        """Store a new session, evicting the user's oldest ones over the cap in the same step
        (or, with ``spec.refuse``, refusing it in that step).

        See :meth:`SessionStore.create`. Evicted records carry their key where this process
        knows it (see the class docs), else ``key=None``.

        :raises SessionLimitReached: with ``spec.refuse``, if the user is at the cap.
        :raises ValueError: on a cluster, for a key not made by :meth:`new_key` for the user.
        :raises StoreUnavailable: if Redis cannot be reached within ``op_timeout``.
        """
        username, data, cap = spec.username, spec.data, spec.max_per_user
        bucket = self._buckets[self._user_bucket(username)]
        if self._of_key(key) != bucket:
            raise ValueError("on a cluster, a session's key must come from store.new_key(username)")
        key_hash = hash_key(key)
        h = stored_hash(key_hash)
        names = (
            session(bucket, h),
            user(bucket, username),
            user_field(bucket, username),
            deadlines(bucket),
        )
        args = (
            h,
            username,
            us(spec.timeout),
            "1" if spec.fixed_timeout else "0",
            "" if spec.absolute_timeout is None else us(spec.absolute_timeout),
            "" if cap is None else cap,
            "0" if data is None else "1",
            "" if data is None else data,
            spec.client or "",
            "1" if spec.refuse else "0",
        )
        evicted = await self._change("CREATE", "create", bucket, names, args, context=(h,))
        if evicted == -1:
            raise SessionLimitReached(
                f"{username!r} already has {cap} live session(s), the most allowed"
            )
        self._known[key_hash] = key
        return self._ended(evicted, bucket)

    async def check(self, key: str) -> float | None:
        """Tell whether a session is live, in one round trip.

        :return: seconds until its deadline, or ``None``.
        :raises StoreUnavailable: if Redis cannot be reached within ``op_timeout``.
        """
        bucket, h = self._of_key(key), stored_key_hash(key)
        left = text(await self._run("CHECK", bucket, (session(bucket, h),), h))
        return None if left is None else int(left) / schema.US

    async def touch(self, key: str, timeout: float) -> float | None:
        """Check a session and restart its idle deadline, in one round trip.

        :return: seconds until the new deadline, or ``None`` if the session is not live.
        :raises StoreUnavailable: if Redis cannot be reached within ``op_timeout``.
        """
        left = text(await self._send(self._touch(key, timeout, ())))
        return None if left is None else int(left) / schema.US

    async def touch_get(self, key: str, timeout: float) -> SessionRecord | None:
        """Restart a session's idle deadline and read it back, in one round trip.

        :return: the session's record after the restart, or ``None`` if it is not live.
        :raises StoreUnavailable: if Redis cannot be reached within ``op_timeout``.
        """
        raw = await self._send(self._touch(key, timeout, ("1",)))
        return None if raw is None else schema.touched(raw, key)

    def _touch(self, key: str, timeout: float, read: tuple[str, ...]) -> _Command:
        # What _command() makes for TOUCH, the call of every guarded request, encoded by one
        # %-format of a template kept per bucket (all but the digest and the timeout): pack()
        # of every argument was ~4 us a call. What else never changes in a bucket (the
        # arguments around the session's, its slot) is kept beside the template.
        bucket, h = self._of_key(key), stored_key_hash(key)
        fixed = self._touch_fixed.get((bucket, read))
        if fixed is None:
            fixed = self._touch_fixed[bucket, read] = self._touch_parts(bucket, read)
        template, head, middle, slot = fixed
        timeout_us = us(timeout)
        digest, left = h.encode(), b"%d" % timeout_us  # URL-safe base64: ASCII
        args = (*head, f"{bucket}s:{h}", *middle, h, timeout_us, *read)  # schema.session()
        command = ("TOUCH", _TOUCH, args, template % (digest, digest, len(left), left), slot)
        return _new_command(_Command, command)

    def _touch_parts(
        self, bucket: str, read: tuple[str, ...]
    ) -> tuple[bytes, tuple[str | int, ...], tuple[str | int, ...], int]:
        # TOUCH's command in ``bucket`` as pack() encodes it, with %b for the session's digest
        # (in its hash's name, then alone) and $%d / %b for the timeout's digits; the arguments
        # before the session's name and between it and the digest; the bucket's slot.
        assert session(bucket, "x") == f"{bucket}s:x"  # as _touch names it, inline

        def fixed(args: Sequence[str | int]) -> bytes:
            return _pieces(args, self._encoding).replace(b"%", b"%%")

        head = ("EVALSHA", _TOUCH.sha, 2)
        middle = (deadlines(bucket), bucket, self._retain_ms, "")
        name = session(bucket, "").encode(*self._encoding)
        template = b"".join(
            (
                b"*%d\r\n" % (len(head) + 1 + len(middle) + 2 + len(read)),
                fixed(head),
                b"$%d\r\n" % (len(name) + 43),  # stored_hash: 43 characters
                name.replace(b"%", b"%%") + b"%b\r\n",
                fixed(middle),
                b"$43\r\n%b\r\n$%d\r\n%b\r\n",
                fixed(read),
            )
        )
        return template, head, middle, self._slots.get(bucket, 0)

    async def get(self, key: str) -> SessionRecord | None:
        """Read a live session.

        :return: its record, or ``None``.
        :raises StoreUnavailable: if Redis cannot be reached within ``op_timeout``.
        """
        bucket, h = self._of_key(key), stored_key_hash(key)
        raw = await self._run("GET", bucket, (session(bucket, h),), h)
        return None if raw is None else schema.record(raw, key)

    async def set_data(self, key: str, data: str | None) -> bool:
        """Replace a live session's data; an ended session stays ended.

        :return: ``True`` if the session was live and now holds ``data``.
        :raises StoreUnavailable: if Redis cannot be reached within ``op_timeout``.
        """
        bucket, h = self._of_key(key), stored_key_hash(key)
        has = "0" if data is None else "1"
        names = (session(bucket, h),)
        return bool(await self._run("SET_DATA", bucket, names, h, has, data or ""))

    async def update_data(self, key: str, changes: str) -> str | None:
        """Merge ``changes`` (a JSON object) into a live session's data, in one script: the
        merge is done on the JSON text, never decoded in Lua, so every value comes back as it
        was written (cjson would turn integers over 2**53 into floats and ``[]`` into ``{}``).

        Sent again after a dropped connection, it merges the same members again: the same
        result, unless another update of the same member landed in between (then the later
        of the two wins, as if they had come in that order). It ends nothing, so a caller that
        never hears leaves nothing to settle.

        :return: the merged data (JSON text), or ``None`` if the session is not live.
        :raises TypeError: if the session's data is not a JSON object (nothing changes).
        :raises StoreUnavailable: if Redis cannot be reached within ``op_timeout``.
        """
        bucket, h = self._of_key(key), stored_key_hash(key)
        names = (session(bucket, h),)
        merged = await self._run("UPDATE_DATA", bucket, names, h, changes)
        if merged == -1:
            raise TypeError(
                "the session's data is not a dict: only a dict can be updated "
                "(set_session_data replaces data of any kind)"
            )
        return text(merged)

    async def mark_authenticated(self, key: str) -> bool:
        """Set a live session's ``authenticated_at`` to now, by the server's clock.

        Idempotent (sent twice, the later time wins), and it ends nothing: a caller that never
        hears leaves nothing to settle.

        :return: ``True`` if the session was live.
        :raises StoreUnavailable: if Redis cannot be reached within ``op_timeout``.
        """
        bucket, h = self._of_key(key), stored_key_hash(key)
        names = (session(bucket, h),)
        return bool(await self._run("MARK_AUTHENTICATED", bucket, names, h))

    async def delete(self, key: str, *, reason: Reason = LOGOUT) -> SessionRecord | None:
        """End a live session; its ending, in the outbox, keeps ``reason`` (see
        :meth:`SessionStore.delete`).

        :return: the session as it was, or ``None`` if it was not live.
        :raises StoreUnavailable: if Redis cannot be reached within ``op_timeout``.
        """
        bucket, key_hash = self._of_key(key), hash_key(key)
        h = stored_hash(key_hash)
        names = (session(bucket, h), deadlines(bucket))
        known = {key_hash: key}
        args = (h, reason)
        raw = await self._change(
            "DELETE", "delete", bucket, names, args, known=known, reason=reason
        )
        self._known.pop(key_hash, None)
        if raw is None:
            return None
        found = hex_hash(raw[0])
        if found != key_hash:  # a renewed key, in its grace: the session under its new key
            key = self._known.pop(found, key)
        return schema.record(raw, key, self._where[bucket])

    async def delete_user_session(self, username: str, key_hash: str) -> SessionRecord | None:
        """End one live session of one user, named by its id (its key's hash).

        :return: the session as it was (with its key where this process knows it), or
            ``None`` if the user has no such live session.
        :raises StoreUnavailable: if Redis cannot be reached within ``op_timeout``.
        """
        bucket = self._buckets[self._user_bucket(username)]
        try:
            h = stored_hash(key_hash)
        except ValueError:
            return None  # not a session id: no session has it
        names = (
            user(bucket, username),
            user_field(bucket, username),
            session(bucket, h),
            deadlines(bucket),
        )
        args = (username, h)
        raw = await self._change("DELETE_USER_SESSION", "delete_user_session", bucket, names, args)
        return None if raw is None else self._ended([raw], bucket)[0]

    async def rotate(self, key: str, new_key: str, *, grace: float = 0.0) -> SessionRecord | None:
        """Move a live session to ``new_key``; of two rotations of one key, one wins.

        With a ``grace`` (a renewal), the old key's hash stays an alias of the new one for that
        long: a string key with that TTL, deleted with the session (see
        :meth:`SessionStore.rotate`). A rotation whose reply is lost is settled as any other:
        moved back to the old key, its alias deleted.

        :param grace: seconds the old key keeps naming the session; 0 for none.
        :return: the session under ``new_key``, or ``None`` if ``key`` was not live.
        :raises ValueError: on a cluster, for a ``new_key`` not made by :meth:`rotated_key`.
        :raises StoreUnavailable: if Redis cannot be reached within ``op_timeout``.
        """
        bucket = self._of_key(key)
        if self._of_key(new_key) != bucket:
            raise ValueError("on a cluster, a rotated key must come from store.rotated_key(key)")
        old_hash, new_hash = hash_key(key), hash_key(new_key)
        context = (stored_hash(old_hash), stored_hash(new_hash))
        names = (session(bucket, context[0]), session(bucket, context[1]), deadlines(bucket))
        args = (*context, max(0, math.ceil(grace * 1000)))
        raw = await self._change("ROTATE", "rotate", bucket, names, args, context=context)
        self._known.pop(old_hash, None)
        if raw is None:
            return None
        self._known[new_hash] = new_key
        return schema.record(raw, new_key)

    async def claim_expired(self, keys: Sequence[str]) -> tuple[list[SessionRecord], list[Pending]]:
        """Remove, of the given sessions, those past their deadline: of all the processes
        claiming one session, only one gets it.

        :return: the sessions this call removed, and those still live with their deadlines.
        :raises StoreUnavailable: if Redis cannot be reached within ``op_timeout``.
        """
        groups: dict[str, dict[str, str]] = {}  # bucket -> hash -> key
        for key in keys:
            groups.setdefault(self._of_key(key), {})[hash_key(key)] = key
        claimed: list[SessionRecord] = []
        waiting: list[Pending] = []

        async def claim(bucket: str) -> None:
            by_hash = groups[bucket]
            stored = [stored_hash(h) for h in by_hash]
            names = (deadlines(bucket), *(session(bucket, h) for h in stored))
            raws, pending = await self._change(
                "CLAIM", "claim_expired", bucket, names, stored, known=by_hash
            )
            where = self._where[bucket]
            claimed.extend(schema.record(raw, by_hash[hex_hash(raw[0])], where) for raw in raws)
            live = {hex_hash(h): (left, capped) for h, left, capped in pending}
            waiting.extend(
                Pending(by_hash[h], int(text(left) or 0) / schema.US, bool(capped))
                for h, (left, capped) in live.items()
            )
            for key_hash in by_hash.keys() - live.keys():  # claimed here, or ended elsewhere
                self._known.pop(key_hash, None)

        await self._ending("claim_expired", claimed, self._each(groups, claim))
        return claimed, waiting

    async def sweep(self) -> list[Outcome]:
        """Claim sessions past their deadline that no process claimed (their process died),
        and take the endings left unacknowledged for :attr:`redelivery_after` seconds (their
        process died, or their call lost its reply), 250 per bucket, to deliver them again.

        A session is left to its owner's timer for up to a second past its deadline. One call
        claims 250 sessions per round trip (a short script), and goes on while pages come back
        full, up to 100,000 sessions (per bucket, on a cluster): a dead worker's sessions are
        reported together, not a page per sweep interval.

        :return: the sessions this call removed (``"sweep"``), with ``key=None`` where this
            process does not know the key, and the endings taken again, by the call that
            ended them.
        :raises StoreUnavailable: if Redis cannot be reached within ``op_timeout``.
        """
        ended: list[SessionRecord] = []
        again: list[Outcome] = []

        async def sweep(bucket: str) -> None:
            idle = self._redeliver_ms
            for _ in range(_SWEEP_PAGES):
                args = (self._sweep_lag_us, _SWEEP_BATCH, idle)
                raws, seen, taken = await self._change(
                    "SWEEP", "sweep", bucket, (deadlines(bucket),), args
                )
                ended.extend(self._ended(raws, bucket))
                again.extend(_by_call(taken, self._ended(taken, bucket), "sweep"))
                idle = ""  # the first page takes them all (as many as one page claims)
                if seen < _SWEEP_BATCH:
                    return

        await self._ending("sweep", ended, self._each(self._buckets, sweep))
        return [Outcome("sweep", ended), *again] if ended else again

    async def acknowledge(self, event_ids: Sequence[str]) -> None:
        """Delete the endings named from the outbox: they were reported.

        :raises StoreUnavailable: if Redis cannot be reached within ``op_timeout``.
        """
        await self._outbox("ACK", event_ids)

    async def hold(self, event_ids: Sequence[str]) -> None:
        """Restart the idle time of the endings named, still being reported here, so that no
        sweep takes them meanwhile.

        :raises StoreUnavailable: if Redis cannot be reached within ``op_timeout``.
        """
        await self._outbox("HOLD", event_ids, self._me, "0")

    async def _outbox(self, name: str, event_ids: Iterable[str], *head: str) -> set[str]:
        # Script ``name`` on the endings named, bucket by bucket, 500 per round trip; the event
        # ids it returns.
        by_bucket: dict[str, list[str]] = {}
        for event_id in event_ids:
            where, _, entry = event_id.partition("/")
            by_bucket.setdefault(self._buckets[int(where)], []).append(entry)
        done: set[str] = set()

        async def run(bucket: str) -> None:
            entries, where = by_bucket[bucket], self._where[bucket]
            for i in range(0, len(entries), _ACK_BATCH):
                chunk = entries[i : i + _ACK_BATCH]
                got = await self._run(name, bucket, (schema.outbox(bucket),), *head, *chunk)
                if isinstance(got, list):
                    done.update(f"{where}/{text(e)}" for e in got)

        await self._each(by_bucket, run)
        return done

    async def usernames(self) -> list[str]:
        """List the username of every live session, oldest session first.

        Reads 1,000 sessions per round trip, each bounded by ``op_timeout``. A session met
        twice (restarted, or brought up to date by a sweep, while the listing pages: its place
        in the index moves ahead) is listed once.

        :raises StoreUnavailable: if Redis cannot be reached within ``op_timeout``.
        """
        found: dict[str, tuple[int, str]] = {}  # by hash

        async def read(bucket: str) -> None:
            score, member = "-inf", ""
            while True:
                batch, seen, score, member = await self._run(
                    "USERNAMES", bucket, (deadlines(bucket),), score, member, _LIST_BATCH
                )
                rows = iter(batch)  # hash, created, username, hash...
                for h, c, u in zip(rows, rows, rows, strict=True):
                    found[text(h) or ""] = (int(text(c) or 0), text(u) or "")
                if seen < _LIST_BATCH:
                    return

        await self._each(self._buckets, read)
        return [name for _, name in sorted(found.values(), key=itemgetter(0))]  # oldest first

    async def user_sessions(self, username: str) -> list[SessionRecord]:
        """List a user's live sessions, oldest first, with ``key=None``, 250 per round trip.

        A session rotated while the listing pages, at the page's end, is met twice (under its
        old digest, then its new one, both scored by its creation): it is listed once, under
        the later.

        :raises StoreUnavailable: if Redis cannot be reached within ``op_timeout``.
        """
        bucket = self._buckets[self._user_bucket(username)]
        names = (user(bucket, username), user_field(bucket, username), deadlines(bucket))
        found: dict[float, SessionRecord] = {}  # by creation: one user's never share a microsecond
        score, member = "-inf", ""
        while True:  # a page a round trip: no call holds the server for long
            args = (username, score, member, _USER_BATCH)
            raws, seen, score, member = await self._run("USER_SESSIONS", bucket, names, *args)
            for raw in raws:
                record = schema.record(raw, None)
                found[record.created_at] = record
            if seen < _USER_BATCH:
                # Sorted: the first page brings the session of the user's field (layout v2) last.
                return sorted(found.values(), key=attrgetter("created_at"))

    async def count(self) -> int:
        """Count the live sessions.

        :raises StoreUnavailable: if Redis cannot be reached within ``op_timeout``.
        """
        counts: list[int] = []

        async def count(bucket: str) -> None:
            counts.append(int(await self._run("COUNT", bucket, (deadlines(bucket),))))

        await self._each(self._buckets, count)
        return sum(counts)

    async def delete_all(self) -> list[SessionRecord]:
        """End every live session, 250 per round trip (a script of a few ms).

        :return: the sessions this call removed, oldest first, with ``key=None`` where this
            process does not know the key.
        :raises StoreUnavailable: if Redis cannot be reached within ``op_timeout``.
        """
        ended: list[SessionRecord] = []

        async def delete(bucket: str) -> None:
            score, member, upto = "-inf", "", ""
            while True:
                args = (score, member, _END_ALL_BATCH, upto)
                raws, seen, score, member, upto = await self._change(
                    "DELETE_ALL", "delete_all", bucket, (deadlines(bucket),), args
                )
                ended.extend(self._ended(raws, bucket))
                if seen < _END_ALL_BATCH:
                    return

        await self._ending("delete_all", ended, self._each(self._buckets, delete))
        ended.sort(key=attrgetter("created_at"))
        return ended

    async def delete_user(self, username: str) -> list[SessionRecord]:
        """End every live session of one user (those live when the call began), 100 per round
        trip.

        :return: the sessions this call removed, oldest first, with ``key=None`` where this
            process does not know the key.
        :raises StoreUnavailable: if Redis cannot be reached within ``op_timeout``.
        """
        bucket = self._buckets[self._user_bucket(username)]
        names = (user(bucket, username), user_field(bucket, username), deadlines(bucket))
        ended: list[SessionRecord] = []

        async def pages() -> None:
            score, member, upto = "-inf", "", ""
            while True:
                args = (username, score, member, _END_BATCH, upto)
                raws, seen, score, member, upto = await self._change(
                    "DELETE_USER", "delete_user", bucket, names, args
                )
                ended.extend(self._ended(raws, bucket))
                if seen < _END_BATCH:
                    return

        await self._ending("delete_user", ended, pages())
        ended.sort(key=attrgetter("created_at"))  # the first page ends the field's session last
        return ended

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
        while self._lost:
            lost = self._lost[0]
            bucket = lost.bucket
            names = (
                outcome(bucket, lost.op),
                deadlines(bucket),
                *(session(bucket, h) for h in lost.context),
            )
            try:
                args = (lost.op, lost.call, *lost.context)
                _, raws = await self._send(
                    self._command("SETTLE", bucket, names, args, lost.settle_op), wait=True
                )
            except Exception:
                if not self._late:
                    raise
                break  # what is known now is reported now; the rest waits
            del self._lost[0]
            known, where = lost.keys, self._where[bucket]
            # One record per raw, in order: _by_call pairs them up again.
            records = [
                schema.record(raw, known.get(h) or self._known.pop(h, None), where)
                for raw in raws
                for h in (hex_hash(raw[0]),)
            ]
            self._late.extend(_by_call(raws, records, lost.call, lost.reason))
        late, self._late = self._late, []
        try:
            return await self._taken(late)
        except BaseException:
            self._late[:0] = late
            raise

    async def _taken(self, outcomes: list[Outcome]) -> list[Outcome]:
        # Of the endings in ``outcomes`` (calls whose reply this process never used), those it
        # still holds in the outbox, held afresh: any other was delivered again by a sweep, and
        # is reported there.
        ids = [r.event_id for o in outcomes for r in o.ended if r.event_id is not None]
        if not ids:
            return outcomes
        held = await self._outbox("HOLD", ids, self._me, "1")
        kept = [
            o._replace(ended=[r for r in o.ended if r.event_id is None or r.event_id in held])
            for o in outcomes
        ]
        return [o for o in kept if o.ended]
