"""Deadline timers that cost nothing on the hot path.

Deadlines are grouped into buckets ``RESOLUTION`` seconds wide, with one ``loop.call_at``
handle per bucket, so a million sessions need at most ``timeout / RESOLUTION`` handles. A
restart does not touch its timer: the store moves the deadline, and when the old bucket fires
the manager asks the store, which reports the session still live, and re-arms it. Only a
deadline that moves *earlier* than its bucket (a shorter timeout) is re-armed at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

RESOLUTION = 0.05  # seconds: a deadline fires at most this late, before the loop's own lateness
_PER_SECOND = 1 / RESOLUTION


class DeadlineTimers:
    """Arms keys at loop-clock times and hands the due ones to ``on_due`` in one list per bucket."""

    def __init__(self, on_due: Callable[[list[str]], None]) -> None:
        self._on_due = on_due
        self._loop: asyncio.AbstractEventLoop | None = None
        self._armed: dict[str, int] = {}  # key -> the bucket it fires in
        self._buckets: dict[int, list[str]] = {}  # bucket -> keys, some stale (re-armed, dropped)
        self._handles: dict[int, asyncio.TimerHandle] = {}
        # One int object per bucket, shared by every key armed in it: a fresh int per key
        # would cost 32 bytes per session.
        self._ids: dict[int, int] = {}
        self._stale = 0

    def __len__(self) -> int:
        return len(self._armed)

    def __contains__(self, key: str) -> bool:
        return key in self._armed

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Run on ``loop`` from now on: arm every bucket there (the old loop's handles are gone)."""
        self.cancel_handles()
        self._loop = loop
        for bucket in self._buckets:
            self._handles[bucket] = loop.call_at(bucket * RESOLUTION, self._fire, bucket)

    def cancel_handles(self) -> None:
        """Cancel every handle but remember what was armed, so that :meth:`bind` can re-arm it."""
        for handle in self._handles.values():
            handle.cancel()
        self._handles.clear()
        self._loop = None

    def pending_handles(self) -> int:
        """How many loop handles are armed now."""
        return len(self._handles)

    def arm(self, key: str, when: float) -> None:
        """Fire ``key`` at loop time ``when`` (or up to one bucket later), wherever it was armed."""
        bucket = int(when * _PER_SECOND) + 1
        old = self._armed.get(key)
        if old == bucket:
            return
        if old is not None:
            self._stale += 1
        bucket = self._ids.setdefault(bucket, bucket)
        self._armed[key] = bucket
        keys = self._buckets.get(bucket)
        if keys is not None:
            keys.append(key)
            return
        self._buckets[bucket] = [key]
        if self._loop is not None:
            self._handles[bucket] = self._loop.call_at(bucket * RESOLUTION, self._fire, bucket)

    def arm_by(self, key: str, when: float) -> None:
        """Make sure ``key`` fires by ``when``: re-arm only if it is unarmed or armed later."""
        old = self._armed.get(key)
        if old is None or int(when * _PER_SECOND) + 1 < old:
            self.arm(key, when)

    def disarm(self, key: str) -> None:
        """Forget ``key``; its place in a bucket is dropped lazily."""
        if self._armed.pop(key, None) is not None:
            self._stale += 1
            if self._stale > 1024 and self._stale > len(self._armed):
                self._compact()

    def rename(self, key: str, new_key: str) -> None:
        """Carry ``key``'s timer over to ``new_key`` (a rotated session)."""
        bucket = self._armed.pop(key, None)
        if bucket is not None:
            self._stale += 1
            self._armed[new_key] = bucket
            self._buckets[bucket].append(new_key)

    def clear(self) -> None:
        """Forget every key and cancel every handle."""
        self.cancel_handles()
        self._armed.clear()
        self._buckets.clear()
        self._ids.clear()
        self._stale = 0

    def _compact(self) -> None:
        # Drop stale places once they outnumber live ones, so churn cannot grow memory.
        armed = self._armed
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
        self._ids.pop(bucket, None)
        armed = self._armed
        due = []
        for key in keys:
            if armed.get(key) == bucket:  # a key can stand twice in a bucket it left and rejoined
                del armed[key]
                due.append(key)
        self._stale = max(0, self._stale - (len(keys) - len(due)))
        if due:
            self._on_due(due)
