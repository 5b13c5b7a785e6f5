"""Expiry: how a :class:`~sessionkit.SessionManager` finds the sessions that timed out.

The invariant: every key this process armed stays armed (in ``DeadlineTimers``) until one claim
has told it the session's fate. When a key fires, the store decides: a session past its
deadline is removed by that claim and reported ended, once; a live one is armed again at its
deadline (or, with ``warn_before``, at its warning time, and warned once per deadline); a key
the store no longer knows ended elsewhere and is forgotten. A restart never touches a timer
unless it may bring the deadline earlier than where the key is armed ("exact" mode, see
``DeadlineTimers``).

Alongside: the sweep, which claims what no live process claimed (a store shared by processes),
and the settling of calls whose outcome the caller never heard (a timeout, a cancellation, a
dropped connection): the store says what they did, and what ended is reported here, late.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

import anyio

from sessionkit._deliveries import Deliveries
from sessionkit._fanout import TIMED_OUT, Fanout, Steps, session_event
from sessionkit._outage import Outage
from sessionkit._tasks import LoopTasks
from sessionkit._timers import FINE, DeadlineTimers
from sessionkit.keys import hash_key
from sessionkit.models import SessionRecord
from sessionkit.stores.base import LostCall, Outcome, SessionStore

T = TypeVar("T")

_BATCH = 256  # expired sessions claimed per store call
# What each kind of background work is called in the log (one WARNING line a minute each).
_CLAIM = "claiming expired sessions"
_SWEEP = "sweeping expired sessions"
_SETTLE = "settling calls that lost their reply"

# What a late outcome means, by the store call that had it: the reason its sessions ended
# and whether their clients are told to log out (as the call itself would have done).
LATE: dict[LostCall, tuple[str | None, bool]] = {
    "create": ("evicted", True),
    "delete": ("logout", False),
    "delete_user_session": ("logout", True),
    "delete_all": ("delete_all", True),
    "delete_user": ("logout_all", True),
    "claim_expired": (TIMED_OUT, True),
    "sweep": (TIMED_OUT, True),
    "rotate": ("logout", True),  # a rotation ends nothing; a store that says so is believed
}


class Expiry:
    """Timers, warnings, claims, the sweep and the settling of lost outcomes for one manager;
    every ending, wherever found, is reported through :meth:`end`."""

    def __init__(
        self,
        store: SessionStore,
        tasks: LoopTasks,
        fanout: Fanout,
        *,
        timeout: float,  # seconds: the manager's idle timeout
        warn_before: float | None,
    ) -> None:
        self._store = store
        self._tasks = tasks
        self._fanout = fanout
        self._events = fanout.events
        self.warn_before = warn_before
        #: Whether a restart may bring a deadline earlier than where its key is armed, so that
        #: the restart must re-arm it (:meth:`restarted`): with ``warn_before``, or once the
        #: timeout was shortened (:meth:`timeout_set`).
        self.exact = warn_before is not None
        self._longest = timeout  # the longest idle timeout the manager ever applied
        self.timers = DeadlineTimers(self._on_due, exact=self.exact)
        self._warned: set[str] = set()  # keys told of their coming idle deadline
        self._due: list[str] = []  # fired, not yet claimed
        self._retrying: set[str] = set()  # armed again after a claim that failed
        self._draining = False
        self._settling = False
        self._asking = anyio.Lock()  # one store.settle() at a time: the background one, aclose's
        self._outage = Outage()  # logs and paces the retries while the store is down
        self.deliveries = Deliveries(store, tasks, self._events, self._outage)

    # -- lifecycle (the manager's) -------------------------------------------------------

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Run on ``loop`` from now on; keys that fired but were never claimed fire again."""
        self.timers.bind(loop)
        for key in self._due:
            self.timers.arm(key, loop.time())
        self._due.clear()
        if self._retrying:  # still armed: idle() waits for their claim on this loop too
            self._tasks.hold()
        self._draining = self._settling = False
        self._asking = anyio.Lock()
        self.deliveries.bind()
        interval = self._store.sweep_interval
        if interval:
            self._tasks.spawn(self._sweep_forever, interval)
        if self._store.unsettled:
            self.settle_soon()

    def timeout_set(self, seconds: float) -> None:
        """The manager's idle timeout is now ``seconds``: once shorter than one it applied
        before, a restart may bring a deadline earlier, and restarts re-arm (:attr:`exact`)."""
        self._longest = max(self._longest, seconds)
        if seconds < self._longest and not self.exact:
            self.exact = True
            self.timers.make_exact()

    def sockets_attached(self) -> None:
        """A Socket.IO bridge now pushes logouts: fire deadlines at the finer resolution, so
        that a logout reaches the page within 10 ms of its deadline, not 50."""
        self.timers.resolution = FINE

    def close(self) -> None:
        """Cancel every timer handle (what is armed is kept for the next :meth:`bind`)."""
        self.timers.cancel_handles()

    # -- what the manager's calls tell us ------------------------------------------------

    def arm(self, key: str, now: float, remaining: float, capped: bool) -> None:
        """Arm a session's key: at its deadline, or at its warning time (``warn_before``, an
        idle deadline not yet warned about)."""
        warn = self.warn_before
        if warn is None or capped or key in self._warned:
            self.timers.arm(key, now + remaining)
        else:
            self.timers.arm(key, now + remaining - warn)

    def restarted(self, key: str, when: float) -> None:
        """A restart moved the session's deadline to loop time ``when`` (exact mode only)."""
        warn = self.warn_before
        if warn is None:
            self.timers.arm_by(key, when)
        else:
            self._warned.discard(key)  # a new deadline: warn again before it
            self.timers.arm_by(key, when - warn)

    def rotated(self, old: str, new: str, now: float, remaining: float, capped: bool) -> None:
        """A session moved from key ``old`` to ``new`` with the same deadline."""
        if self.timers.disarm(old) and self._retrying:
            self._claimed([old])
        if old in self._warned:  # the same deadline: no second warning
            self._warned.discard(old)
            self._warned.add(new)
        self.arm(new, now, remaining, capped)

    async def end(self, records: list[SessionRecord], reason: str | None, notify: bool) -> None:
        """Report sessions that ended for ``reason`` (or :data:`TIMED_OUT`), telling
        their clients to log out if ``notify``.

        One ending per session: only the caller whose store call removed it gets here.
        """
        await self._fanout.run(self.endings(records, reason, notify=notify))

    def endings(self, records: list[SessionRecord], reason: str | None, *, notify: bool) -> Steps:
        """Disarm the keys of sessions that ended, at once; return the steps that report them.

        One direction: the timers forget the keys and the outbox's endings are held here,
        then the fan-out builds the report, whose last step marks those endings reported.
        """
        warned = self._warned
        held = []
        for record in records:
            if record.key is not None:
                if self.timers.disarm(record.key) and self._retrying:
                    self._claimed([record.key])  # it will not fire: no retry of its claim comes
                if warned:
                    warned.discard(record.key)
            if record.event_id is not None:
                held.append(record.event_id)
        if not held:
            return self._fanout.endings(records, reason, notify=notify)
        self.deliveries.hold(held)
        return self._fanout.endings(
            records, reason, notify=notify, then=lambda: self.deliveries.reported(held)
        )

    async def changed(self, call: Awaitable[T]) -> T:
        """Await a store call that may end sessions: if it fails with its outcome unknown, find
        out what it did and report that, from the manager's own task."""
        try:
            return await call
        except BaseException:
            if self._store.unsettled:
                self.settle_soon()
            raise

    def settle_soon(self) -> None:
        """Find out, from the manager's own task, what calls that lost their reply did."""
        if not self._settling and self._tasks.running:
            self._settling = True
            self._tasks.spawn(self._settle)

    # -- timers fired ----------------------------------------------------------------------

    def _on_due(self, keys: list[str]) -> None:
        self._due.extend(keys)
        if not self._draining and self._tasks.running:
            self._draining = True
            self._tasks.spawn(self._drain)

    async def _drain(self) -> None:
        try:
            while self._due:
                batch = self._due[:_BATCH]
                del self._due[:_BATCH]
                await self._claim(batch)
                await anyio.lowlevel.checkpoint()
        finally:
            self._draining = False

    async def _claim(self, keys: list[str]) -> None:
        loop = asyncio.get_running_loop()
        try:
            claimed, pending = await self._store.claim_expired(keys)
        except Exception as exc:
            retry = loop.time() + self._outage.failed(_CLAIM, exc)
            for key in keys:
                self.timers.arm(key, retry)
            if not self._retrying:
                self._tasks.hold()  # idle() waits for the retry
            self._retrying.update(keys)
            if self._store.unsettled:
                self.settle_soon()
            await self._events.report(exc, _CLAIM, log=False)
            return
        self._outage.worked(_CLAIM)
        if self._retrying:
            self._claimed(keys)
        now = loop.time()
        warn = self.warn_before
        warnings = []
        if self._warned:
            # Keys the store no longer knows ended elsewhere: forget them here too.
            gone = set(keys).difference(r.key for r in claimed).difference(p.key for p in pending)
            self._warned.difference_update(gone)
        for key, remaining, capped in pending:
            if warn is not None and not capped:
                if remaining > warn:
                    self._warned.discard(key)
                elif key not in self._warned:
                    self._warned.add(key)
                    warnings.append((key, remaining))
            self.arm(key, now, remaining, capped)
        # In tasks of their own: a handler that blocks holds up its own batch, not the drain.
        if warnings:
            self._tasks.spawn(self._warn_all, warnings)
        if claimed:
            self._tasks.spawn(self.end, claimed, TIMED_OUT, True)

    def _claimed(self, keys: list[str]) -> None:
        # These keys need no retry of their claim (any more): once none does, idle() may return.
        self._retrying.difference_update(keys)
        if not self._retrying:
            self._tasks.release()

    async def _warn_all(self, warnings: list[tuple[str, float]]) -> None:
        fanout = self._fanout
        for key, remaining in warnings:
            if fanout.bridge is not None:
                await fanout.run(fanout.pushes(fanout.bridge.expiring, hash_key(key), remaining))
            if self._events.wants("session_expiring"):
                record = await self._store.get(key)
                if record is not None:
                    event = session_event("session_expiring", key, record)
                    await fanout.run(self._events.calls(event))

    # -- background jobs -----------------------------------------------------------------

    async def _sweep_forever(self, interval: float) -> None:
        # Stops when the manager closes, however early: it waits on the stop signal, not on a
        # cancel scope that aclose() could miss if it ran before this task began.
        stop = self._tasks.stop
        while not stop.is_set():
            wait = interval
            try:
                outcomes = await self._store.sweep()
            except Exception as exc:
                wait = self._outage.failed(_SWEEP, exc, first=interval)
                if self._store.unsettled:
                    self.settle_soon()
                await self._events.report(exc, _SWEEP, log=False)
            else:
                self._outage.worked(_SWEEP)
                self._report_late(outcomes)
            await self._tasks.rest(wait)  # idle() does not wait for the next sweep

    async def settle_before_close(self, within: float) -> None:
        """Ask the store, for at most ``within`` seconds, what the calls that lost their reply
        did, and report it (in tasks the manager's ``aclose()`` then waits for)."""
        with anyio.move_on_after(within):
            while self._store.unsettled and self._tasks.running:
                try:
                    await self._settle_once()
                except Exception:  # the store is not answering yet: ask again, while there is time
                    await anyio.sleep(0.05)

    async def _settle(self) -> None:
        stop = self._tasks.stop
        try:
            while self._store.unsettled and not stop.is_set():
                try:
                    await self._settle_once()
                except Exception as exc:
                    wait = self._outage.failed(_SETTLE, exc)
                    await self._events.report(exc, _SETTLE, log=False)
                    with anyio.move_on_after(wait):
                        await stop.wait()
                    continue
                self._outage.worked(_SETTLE)
        finally:
            self._settling = False

    async def _settle_once(self) -> None:
        async with self._asking:
            outcomes = await self._store.settle()
        self._report_late(outcomes)

    def _report_late(self, outcomes: list[Outcome]) -> None:
        for call, records in outcomes:
            # A name the manager does not know (a store of someone else's) still ends its
            # sessions: as a logout, with the push. In a task of its own: a handler that blocks
            # holds up its own sessions, never the settling of the others.
            reason, notify = LATE.get(call, ("logout", True))
            self._tasks.spawn(self.end, records, reason, notify)
