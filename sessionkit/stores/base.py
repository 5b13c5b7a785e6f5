"""The contract between :class:`~sessionkit.SessionManager` and the place sessions live.

The manager owns timers and events; a store owns state and judges liveness by its own clock.
Every method that changes a session is one atomic step in the store, so that when several
callers (or several processes sharing one store) race, exactly one of them wins: the one that
removes a session is the one that reports its end.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Literal, NamedTuple

from sessionkit.events import LOGOUT, Reason
from sessionkit.keys import new_key as fresh_key
from sessionkit.models import SessionRecord

__all__ = ("NewSession", "Outcome", "Pending", "SessionStore")


class NewSession(NamedTuple):
    """What a login asks of :meth:`SessionStore.create`: the new session and the per-user cap
    it is stored under, built once per login by the manager. The key travels beside it, never
    in it: a raw key is never part of a value that may be printed.

    ``NewSession("Luca", 900)`` is a session of ``"Luca"`` with a 15-minute idle timeout and
    nothing else: no data, no client, no absolute timeout, no cap. Read it by field name.
    """

    username: str  # who the session belongs to
    timeout: float  # seconds: the idle timeout
    data: str | None = None  # the session's data as JSON text
    # Whether restarts keep using ``timeout`` (a per-session timeout) rather than the one
    # touch() is given.
    fixed_timeout: bool = False
    absolute_timeout: float | None = None  # seconds from creation: the hard cap, or none
    # At most this many live sessions of ``username`` once this one is stored, or no limit.
    max_per_user: int | None = None
    # At the cap, refuse the new session (SessionLimitReached) instead of evicting the oldest.
    refuse: bool = False
    # The ClientInfo of the login as JSON text, kept with the session and returned in its
    # records' ``client``.
    client: str | None = None


class Pending(NamedTuple):
    """A session that :meth:`SessionStore.claim_expired` found still live."""

    key: str
    remaining: float  # seconds until its deadline, by the store's clock
    capped: bool  # whether that deadline is the absolute cap (no idle warning then)


#: The store calls whose reply may be lost and whose outcome :meth:`SessionStore.settle`
#: reports: the store method's name.
LostCall = Literal[
    "create",
    "delete",
    "delete_user_session",
    "delete_all",
    "delete_user",
    "claim_expired",
    "sweep",
    "rotate",
]


class Outcome(NamedTuple):
    """What a call that lost its reply did, found out later by :meth:`SessionStore.settle`
    (or an ending :meth:`SessionStore.sweep` took again)."""

    call: LostCall  # the store method
    ended: list[SessionRecord]  # the sessions it removed, to be reported now
    # The reason the call was given, for a call that takes one (delete's), where the store
    # kept it; None: the call's own reason.
    reason: Reason | None = None


class SessionStore(ABC):
    """Where sessions live. Subclass it to keep sessions elsewhere.

    Keys reach the store raw; a store that writes outside the process stores them hashed.
    Sessions past their deadline are never returned as live by any method, even before
    :meth:`claim_expired` has removed them, and no method but :meth:`claim_expired` and
    :meth:`sweep` ends such a session: its end is reported once, as an expiry.

    The abstract methods are the core contract, enough for a store that one process uses.
    The others have defaults, and two optional capabilities override them:

    - a store shared by processes sets :attr:`sweep_interval` and implements :meth:`sweep`
      (and, where a call can fail half-way, :attr:`unsettled` and :meth:`settle`);
    - a store that places sessions (by user, say) makes their keys: :meth:`new_key` and
      :meth:`rotated_key`.

    :mod:`sessionkit.testing` holds the contract's own tests: run them against your store.
    """

    #: Seconds between calls of :meth:`sweep`, or ``None`` where nothing needs sweeping
    #: (a store only this process uses: its manager arms a timer for every session).
    sweep_interval: float | None = None

    #: Seconds one call may take at most (a store that talks to a server bounds its calls):
    #: a manager's ``aclose()`` gives settling (see :meth:`settle`) twice that, at most.
    op_timeout: float = 1.0

    @abstractmethod
    async def create(self, key: str, spec: NewSession) -> list[SessionRecord]:
        """Store a new session under ``key`` as ``spec`` describes it and, in the same step,
        evict the user's oldest ones over ``spec.max_per_user`` (or, with ``spec.refuse``,
        store nothing if the user is at the cap).

        :param key: the new session's key (fresh, never used before).
        :param spec: the session: its user, timeouts, data and client, and the cap.
        :return: the sessions evicted to make room, oldest first; they are gone from the store.
        :raises SessionLimitReached: with ``spec.refuse``, if the user already has
            ``spec.max_per_user`` live sessions; the store is unchanged (the check and the
            write are one atomic step).
        :raises StoreUnavailable: if the store cannot be reached.
        """

    def new_key(self, username: str) -> str:
        """Make the key of a new session of ``username`` (the manager asks at each login).

        A store that places sessions by user (:class:`~sessionkit.stores.redis.RedisStore` on
        a Redis Cluster) marks the place in the key, so that a call with the key alone finds
        it. The default: :func:`sessionkit.keys.new_key`.
        """
        return fresh_key()

    def rotated_key(self, key: str) -> str:
        """Make the key a session moves to from ``key`` (the manager asks at each rotation);
        the default: :func:`sessionkit.keys.new_key`."""
        return fresh_key()

    @abstractmethod
    async def check(self, key: str) -> float | None:
        """Tell whether a session is live, without touching it.

        :return: seconds until its deadline, or ``None`` if it is unknown or past its deadline.
        """

    @abstractmethod
    async def touch(self, key: str, timeout: float) -> float | None:
        """Check a session and restart its idle deadline in one step.

        :param timeout: the idle timeout to apply, unless the session has a fixed one; the new
            deadline is capped by the session's absolute deadline.
        :return: seconds until the new deadline, or ``None`` if the session is not live.
        """

    async def touch_get(self, key: str, timeout: float) -> SessionRecord | None:
        """Restart a session's idle deadline, as :meth:`touch`, and read it back.

        A request guarded by a live session needs both; a store that can do them in one step
        (one round trip) should override this, which calls :meth:`touch`, then :meth:`get`.

        :return: the session's record after the restart, or ``None`` if it is not live.
        """
        if await self.touch(key, timeout) is None:
            return None
        return await self.get(key)

    @abstractmethod
    async def get(self, key: str) -> SessionRecord | None:
        """Read a live session, or ``None``."""

    @abstractmethod
    async def set_data(self, key: str, data: str | None) -> bool:
        """Replace a live session's data (JSON text); never brings back an ended session.

        :return: ``True`` if the session was live and now holds ``data``.
        """

    @abstractmethod
    async def update_data(self, key: str, changes: str) -> str | None:
        """Merge ``changes`` into a live session's data at the top level, in one atomic step:
        two updates of different fields at once both land. Never brings back an ended session.

        :param changes: a JSON object as ``json.dumps`` writes one with compact separators; its
            members replace the data's members of the same name, the others are added after
            the data's own, in their order.
        :return: the session's data after the merge (JSON text, as ``json.dumps`` of the merged
            dict would write it), or ``None`` if the session is not live.
        :raises TypeError: if the session's data is neither a JSON object nor ``None`` (then
            nothing changes).
        """

    @abstractmethod
    async def mark_authenticated(self, key: str) -> bool:
        """Record that the user of a live session has just entered a credential again: its
        records' ``authenticated_at`` becomes now, by the store's clock.

        :return: ``True`` if the session was live, else ``False`` (nothing changes).
        """

    @abstractmethod
    async def delete(self, key: str, *, reason: Reason = LOGOUT) -> SessionRecord | None:
        """End a live session.

        :param reason: why, as the ending's events will say: ``"logout"``, or
            ``"suspicious"`` (``on_suspicious="end"``). A store with an outbox (see
            :attr:`redelivery_after`) records it with the ending, and gives it back as
            :attr:`Outcome.reason` when a :meth:`sweep` or :meth:`settle` reports the ending
            again; a store without one may ignore it.
        :return: the session as it was, or ``None`` if it was not live.
        """

    @abstractmethod
    async def delete_user_session(self, username: str, key_hash: str) -> SessionRecord | None:
        """End one live session of one user, named by its key's SHA-256 hex digest (the public
        id a "your devices" page shows).

        :param username: the user the session must belong to.
        :param key_hash: the session's id.
        :return: the session as it was, or ``None`` if ``username`` has no such live session.
        """

    @abstractmethod
    async def rotate(self, key: str, new_key: str, *, grace: float = 0.0) -> SessionRecord | None:
        """Move a live session to a new key: the old key stops working in the same step, or,
        with a ``grace`` (a renewal), names the session for ``grace`` more seconds.

        During the grace :meth:`check`, :meth:`touch`, :meth:`touch_get`, :meth:`get`,
        :meth:`set_data`, :meth:`update_data`, :meth:`mark_authenticated` and :meth:`delete`
        given the old key act on the session under its new key (a record they return is the
        session's: its ``key_hash`` is the new key's). Nothing else follows the old key:
        :meth:`rotate` itself (a key replaced cannot be rotated again), the claims, the
        listings. Only the key just replaced keeps working (a rotation ends the grace of the
        one before), the grace never outlives the session, and ending the session by either
        key ends it.

        :param grace: seconds the old key keeps naming the session; 0 for none.
        :return: the session under its new key (``rotated_at`` now), or ``None`` if ``key``
            was not live.
        """

    @abstractmethod
    async def claim_expired(self, keys: Sequence[str]) -> tuple[list[SessionRecord], list[Pending]]:
        """Remove, of the given sessions, those past their deadline.

        Unknown keys are left out of both lists: someone else ended them.

        :return: the sessions this call removed, and those still live with their deadlines.
        """

    async def aclose(self) -> None:  # noqa: B027 - optional: most stores hold nothing
        """Release what the store holds for its calls (a connection of its own); the manager
        calls it from its own ``aclose()``. A store used again opens what it needs again."""

    @property
    def unsettled(self) -> bool:
        """Whether some call that may end sessions raised (timed out, was cancelled, lost its
        connection) before its outcome was known, or was cut off after ending some.

        A store whose calls cannot fail half-way (``MemoryStore``) never has any.
        """
        return False

    async def settle(self) -> list[Outcome]:
        """Find out what the unsettled calls did, and make sure they do nothing more.

        A call whose change reached the store is reported here once; one that never did is
        stopped from ever applying. A login that stored a session is undone (nobody holds its
        key), and a rotation is undone (its caller still holds the old key). The manager calls
        this from its own task until :attr:`unsettled` is false.

        :return: each settled call that ended sessions, with those sessions.
        :raises StoreUnavailable: if the store still cannot be reached (try again later).
        """
        return []

    async def sweep(self) -> list[Outcome]:
        """Remove sessions past their deadline that no live process has claimed, and take
        the endings whose delivery is overdue (see :attr:`redelivery_after`).

        Called every :attr:`sweep_interval` seconds by each manager using the store.

        :return: the sessions this call removed (as the call ``"sweep"``), and the endings it
            took again, each under the call that ended it.
        """
        return []

    # -- the outbox: endings delivered at least once, across crashes -----------------------

    #: Seconds an ending may stay unacknowledged before a :meth:`sweep` (of any process) takes
    #: it and delivers it again, or ``None`` for a store that keeps no outbox (one process
    #: only: nothing it ended can outlive the process that must report it).
    #:
    #: A store with an outbox records every ending, in the same atomic step that ended the
    #: session, under an id it returns as the record's ``event_id``. The manager reports the
    #: ending, then calls :meth:`acknowledge`; while reporting takes long it calls
    #: :meth:`hold` every 0.3 s (every third of this time if that is sooner, and again
    #: within 0.15 s when a hold fails). An ending never acknowledged (its
    #: process died, or its call lost the reply) is delivered again, under the same
    #: ``event_id``.
    redelivery_after: float | None = None

    async def acknowledge(self, event_ids: Sequence[str]) -> None:  # noqa: B027 - optional
        """The endings named were reported: forget them (a store with an outbox).

        :raises StoreUnavailable: if the store cannot be reached (the manager tries again).
        """

    async def hold(self, event_ids: Sequence[str]) -> None:  # noqa: B027 - optional
        """The endings named are still being reported: deliver none of them again yet.

        :raises StoreUnavailable: if the store cannot be reached.
        """

    @abstractmethod
    async def usernames(self) -> list[str]:
        """List the username of every live session, oldest session first."""

    @abstractmethod
    async def user_sessions(self, username: str) -> list[SessionRecord]:
        """List a user's live sessions, oldest first."""

    @abstractmethod
    async def count(self) -> int:
        """Count the live sessions."""

    @abstractmethod
    async def delete_all(self) -> list[SessionRecord]:
        """End every live session.

        :return: the sessions this call removed.
        """

    @abstractmethod
    async def delete_user(self, username: str) -> list[SessionRecord]:
        """End every live session of one user.

        :return: the sessions this call removed, oldest first.
        """
