"""Deadline timers that cost nothing on the hot path.

Deadlines are grouped into buckets ``RESOLUTION`` seconds wide (``FINE`` once a Socket.IO
server is bound: a logout is pushed closer to its deadline), with one ``loop.call_at`` handle per
bucket, so a million sessions need at most ``timeout / RESOLUTION`` handles. A
restart does not touch its timer: the store moves the deadline, and when the old bucket fires
the manager asks the store, which reports the session still live, and re-arms it.

A bucket is a plain list of keys, and by default nothing else is kept per key: a key whose
session ended early (a logout, a rotation) stays in its bucket until the bucket fires, and the
store then reports it gone. A map from each key to its bucket would cost every login time and
memory (benchmarks/README.md has the figures), so it is kept only in *exact* mode, which a manager turns on when a
restart may bring a timer earlier (``warn_before``, or a shortened idle timeout): there each
key is armed in one bucket, and its older places are skipped when they fire.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

RESOLUTION = 0.05  # seconds: a deadline fires at most this late, before the loop's own lateness
FINE = 0.01  # seconds: the resolution a manager with a Socket.IO bridge switches to
# Buckets are numbered in milliseconds whatever their width, so that a resolution changed while
# keys are armed leaves each bucket where it was: bucket n fires at loop time n / 1000.
_PER_SECOND = 1000


class DeadlineTimers:
    """Arms keys at loop-clock times and hands the due ones to ``on_due`` in one list per bucket.

    A key may come out of more than one bucket (it was armed again before its bucket fired):
    the store's answer, not the timer, decides whether its session ended.

    The bucket :meth:`arm` filled last stays open for the keys that follow: a key due at a
    loop time in ``[open_from, open_until)`` is appended to ``open_keys`` without its bucket
    being worked out (logins come in runs with one timeout, so nearly every one lands in the
    open bucket). The range is empty in exact mode, and once that bucket fired.
    """

    def __init__(
        self,
        on_due: Callable[[list[str]], None],
        *,
        exact: bool = False,
        resolution: float = RESOLUTION,  # seconds
    ) -> None:
        self._on_due = on_due
        self._step = 1  # milliseconds per bucket: see resolution
        self.resolution = resolution
        self._loop: asyncio.AbstractEventLoop | None = None
        self._buckets: dict[int, list[str]] = {}  # bucket -> keys, some stale
        self._handles: dict[int, asyncio.TimerHandle] = {}
        # One int object per bucket, shared by every key armed in it (exact mode): a fresh
        # int per key would cost tens of bytes per session.
        self._ids: dict[int, int] = {}
        self._armed: dict[str, int] | None = {} if exact else None  # key -> its bucket
        self._stale = 0  # places in buckets the map no longer points at (exact mode)
        self.open_keys: list[str] = []  # the open bucket's keys (see the class's docstring)
        self.open_from = self.open_until = 0.0  # loop times: empty until a bucket opens

    @property
    def resolution(self) -> float:
        """Seconds a key fires after its time, at most (before the loop's own lateness)."""
        return self._step / _PER_SECOND

    @resolution.setter
    def resolution(self, seconds: float) -> None:
        # Keys armed before keep their buckets; those armed from now on use the new width.
        self._step = max(1, round(seconds * _PER_SECOND))
        self._close()

    def _close(self) -> None:
        self.open_from = self.open_until = 0.0

    def _bucket(self, when: float) -> int:
        step = self._step
        return (int(when * _PER_SECOND) // step + 1) * step

    def make_exact(self) -> None:
        """Track each key's bucket from now on, starting from where the keys are now."""
        if self._armed is not None:
            return
        self._close()  # every key must now go through arm, which keeps the map
        armed: dict[str, int] = {}
        places = 0
        for bucket in sorted(self._buckets):  # a key in two buckets is armed in the earlier
            keys = self._buckets[bucket]
            shared = self._ids.setdefault(bucket, bucket)
            for key in keys:
                armed.setdefault(key, shared)
            places += len(keys)
        self._armed = armed
        self._stale = places - len(armed)

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Run on ``loop`` from now on: arm every bucket there (the old loop's handles are gone)."""
        self.cancel_handles()
        self._loop = loop
        for bucket in self._buckets:
            self._handles[bucket] = loop.call_at(bucket / _PER_SECOND, self._fire, bucket)

    def cancel_handles(self) -> None:
        """Cancel every handle but remember what was armed, so that :meth:`bind` can re-arm it."""
        for handle in self._handles.values():
            handle.cancel()
        self._handles.clear()
        self._loop = None

    def arm(self, key: str, when: float) -> None:
        """Fire ``key`` at loop time ``when`` (or up to one bucket later)."""
        if self.open_from <= when < self.open_until:  # the bucket filled last: its list
            self.open_keys.append(key)
            return
        step = self._step  # (_bucket, inline: once per login)
        bucket = (int(when * _PER_SECOND) // step + 1) * step
        armed = self._armed
        if armed is not None:
            old = armed.get(key)
            if old == bucket:
                return
            if old is not None:
                self._stale += 1
            bucket = self._ids.setdefault(bucket, bucket)
            armed[key] = bucket
        keys = self._buckets.get(bucket)
        if keys is not None:
            keys.append(key)
        else:
            keys = self._buckets[bucket] = [key]
            if self._loop is not None:
                self._handles[bucket] = self._loop.call_at(bucket / _PER_SECOND, self._fire, bucket)
        if armed is None:  # the open bucket: where the keys due next to this one go
            self.open_keys = keys
            self.open_from = (bucket - step) / _PER_SECOND
            self.open_until = bucket / _PER_SECOND

    def arm_by(self, key: str, when: float) -> None:
        """Make sure ``key`` fires by ``when``: re-arm only if it is unarmed or armed later.

        Only in exact mode: elsewhere a key's bucket is not known.
        """
        assert self._armed is not None, "arm_by needs exact mode"
        old = self._armed.get(key)
        if old is None or self._bucket(when) < old:
            self.arm(key, when)

    def disarm(self, key: str) -> bool:
        """Forget ``key`` (exact mode); its places in buckets are dropped lazily.

        :return: whether ``key`` was armed and will now not fire (only in exact mode: elsewhere
            a key fires from its bucket all the same).
        """
        armed = self._armed
        if armed is not None and armed.pop(key, None) is not None:
            self._stale += 1
            if self._stale > 1024 and self._stale > len(armed):
                self._compact(armed)
            return True
        return False

    def _compact(self, armed: dict[str, int]) -> None:
        # Drop stale places once they outnumber live ones, so churn cannot grow memory.
        for bucket, keys in list(self._buckets.items()):
            live = [k for k in keys if armed.get(k) == bucket]
            if live:
                self._buckets[bucket] = live
            else:
                del self._buckets[bucket]
                self._ids.pop(bucket, None)
                handle = self._handles.pop(bucket, None)
                if handle is not None:
                    handle.cancel()
        self._stale = 0

    def _fire(self, bucket: int) -> None:
        self._handles.pop(bucket, None)
        keys = self._buckets.pop(bucket, [])
        if keys is self.open_keys:
            self._close()
        self._ids.pop(bucket, None)
        armed = self._armed
        if armed is None:
            due = list(dict.fromkeys(keys))  # a key armed twice in one bucket comes once
        else:
            due = []
            for key in keys:
                if armed.get(key) == bucket:  # a key can stand twice in a bucket it rejoined
                    del armed[key]
                    due.append(key)
            self._stale = max(0, self._stale - (len(keys) - len(due)))
        if due:
            self._on_due(due)
