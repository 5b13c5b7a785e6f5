"""A worker process for the multi-process RedisStore tests.

Run as ``python tests/redis_worker.py PORT PREFIX EVENTS_LIST SWEEP_INTERVAL [EVENTS_PORT
[cluster]]`` (EVENTS_PORT: the server that keeps the events lists, when not PORT's; ``cluster``:
PORT is a node of a Redis Cluster, reached with a ``RedisCluster`` client). It opens a
SessionManager on a RedisStore, prints ``ready``, then reads commands from stdin, one a line,
and answers each with one JSON line:

- ``create N TIMEOUT``: create N sessions (users ``u0``...), answer
  ``{"keys": [...], "deadlines": [...]}`` (deadlines as wall-clock seconds, by this process).
- ``touch KEY...``: restart sessions' timers (this process then arms them too), answer
  ``{"ok": [bool...], "deadlines": [...]}``.
- ``chaos N SECONDS SEED``: create N sessions of 2 s, then for SECONDS restart, rotate and
  delete them at random, racing their deadlines, whatever fails; answer
  ``{"lineages": [[key_hash...]...], "uncertain": [i...]}``: each session's hashes, oldest
  first, and the sessions a call on which raised (its outcome unknown to this process).
- ``churn TIMEOUT LOGOUT_SHARE HANDLER_DELAY SEED``: from now on, in the background, create
  sessions of TIMEOUT s one after another (a few dozen a second), push each one's
  ``"<key_hash> <pid>"`` to ``EVENTS_LIST + ":created"`` as soon as its ``load_new_session``
  returns, and log out (``delete_session``) a LOGOUT_SHARE of them at a random moment before
  their deadline. From now on, every ``session_deleted`` handler sleeps HANDLER_DELAY s
  between its two pushes (below), as a handler doing real work would, which a crash can cut
  off. Answer ``"churning"`` at once.
- ``calm``: stop churning; the step under way (a create and its push, a logout) finishes and
  pending logouts are dropped. Answer ``{"created": N, "unknown": M}`` (M: creates that raised,
  their outcome unknown). The handlers go on reporting.
- ``exit`` (or end of input, or SIGTERM, which also cancels a command under way): stop
  churning as ``calm`` does, close the manager (``aclose()``: running handlers finish) and
  leave with status 0.

Every ``session_expired`` event is pushed to the Redis list EVENTS_LIST as
``"<key_hash> <wall time> <pid> <known or ->"`` (``-``: a sweep claimed it, key unknown), so
the test counts events across processes; every ``session_deleted`` handler pushes
``"<key_hash> <reason> <pid> <id>"`` to ``EVENTS_LIST + ":deleting"`` as it begins and to
``EVENTS_LIST + ":deleted"`` as it ends (``id``: the event's ``id``, ``-`` where events have
none; it is the rest of the line, spaces and all). Each push happens inside the handler: a
worker killed before a handler ran, or before it ended, has not recorded that.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import sys
import time

import anyio
import anyio.abc
from redis.asyncio import Redis, RedisCluster

from sessionkit import SessionEvent, SessionManager, SessionNotFound, StoreUnavailable
from sessionkit.keys import hash_key
from sessionkit.stores.redis import RedisStore


def _say(payload: object) -> None:
    sys.stdout.write(json.dumps(payload) + "\n")
    sys.stdout.flush()


async def chaos(sm: SessionManager, count: int, seconds: float, seed: int) -> object:
    rng = random.Random(seed)
    keys = [await sm.load_new_session(f"c{i}", timeout=2) for i in range(count)]
    lineages = [[hash_key(key)] for key in keys]
    uncertain: set[int] = set()
    stop = time.monotonic() + seconds

    async def one(i: int) -> None:
        while time.monotonic() < stop:
            await asyncio.sleep(rng.uniform(0.2, 1.9))  # some sessions reach their deadline
            action = rng.random()
            try:
                if action < 0.6:
                    await sm.restart_session_timer(keys[i])
                elif action < 0.9:
                    keys[i] = await sm.rotate_session_key(keys[i])
                    lineages[i].append(hash_key(keys[i]))
                else:
                    await sm.delete_session(keys[i])
                    return
            except SessionNotFound:
                return  # it ended: by its deadline, or elsewhere
            except StoreUnavailable:
                uncertain.add(i)

    await asyncio.gather(*(one(i) for i in range(count)))
    return {"lineages": lineages, "uncertain": sorted(uncertain)}


async def record(recorder: Redis, events: str, line: str) -> None:
    async with recorder.pipeline(transaction=True) as pipe:
        pipe.rpush(events, line)
        pipe.expire(events, 600)
        await pipe.execute()


class Churn:
    """The ``churn`` command's workload: sessions created, recorded and ended continuously."""

    def __init__(self, words: list[str]) -> None:
        self.timeout = float(words[0])
        self.logout_share = float(words[1])
        self.handler_delay = float(words[2])
        self.rng = random.Random(int(words[3]))
        self.stop = anyio.Event()
        self.created = 0
        self.unknown = 0
        self.done = anyio.Event()

    async def run(self, sm: SessionManager, recorder: Redis, created: str) -> None:
        try:
            async with anyio.create_task_group() as logouts:
                while not self.stop.is_set():
                    await self._one(sm, recorder, created, logouts)
                    with anyio.move_on_after(self.rng.uniform(0.01, 0.03)):
                        await self.stop.wait()
        finally:
            self.done.set()

    async def _one(
        self, sm: SessionManager, recorder: Redis, created: str, logouts: anyio.abc.TaskGroup
    ) -> None:
        try:
            key = await sm.load_new_session(f"w{self.created % 20}", timeout=self.timeout)
        except StoreUnavailable:
            self.unknown += 1
            return
        await record(recorder, created, f"{hash_key(key)} {os.getpid()}")
        self.created += 1
        if self.rng.random() < self.logout_share:
            logouts.start_soon(self._logout, sm, key, self.rng.uniform(0, self.timeout))

    async def _logout(self, sm: SessionManager, key: str, delay: float) -> None:
        with anyio.move_on_after(delay):
            await self.stop.wait()
        if self.stop.is_set():
            return
        # SessionNotFound: it expired first. StoreUnavailable: the manager settles the outcome.
        with contextlib.suppress(SessionNotFound, StoreUnavailable):
            await sm.delete_session(key)

    async def calm(self) -> object:
        self.stop.set()
        await self.done.wait()
        return {"created": self.created, "unknown": self.unknown}


async def stdin_lines() -> tuple[asyncio.StreamReader, asyncio.BaseTransport]:
    # Read on the loop, not in a thread: a SIGTERM must be able to stop the wait for a line.
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), sys.stdin
    )
    return reader, transport


async def answer(sm: SessionManager, words: list[str]) -> object:
    # The reply to one of the commands that run in the foreground.
    if words[0] == "create":
        count, timeout = int(words[1]), float(words[2])
        keys, deadlines = [], []
        for i in range(count):
            keys.append(await sm.load_new_session(f"u{i}", timeout=timeout))
            deadlines.append(time.time() + timeout)
        return {"keys": keys, "deadlines": deadlines}
    if words[0] == "touch":
        oks, deadlines = [], []
        for key in words[1:]:
            try:
                oks.append(await sm.restart_session_timer(key))
            except SessionNotFound:
                oks.append(False)
            deadlines.append(time.time() + 2)
        return {"ok": oks, "deadlines": deadlines}
    if words[0] == "chaos":
        return await chaos(sm, int(words[1]), float(words[2]), int(words[3]))
    raise ValueError(f"unknown command {words[0]!r}")


async def main(
    port: int,
    prefix: str,
    events_list: str,
    sweep_interval: float,
    events_port: int,
    cluster: bool,
) -> None:
    client = (RedisCluster if cluster else Redis)(host="127.0.0.1", port=port)
    recorder = Redis(host="127.0.0.1", port=events_port)
    store = RedisStore(client, prefix=prefix, sweep_interval=sweep_interval)
    sm = SessionManager(timeout=2, store=store)
    churn: Churn | None = None

    async def expired(event: SessionEvent) -> None:
        known = "known" if event.key else "-"  # never the raw key: the hygiene check scans
        line = f"{event.key_hash} {time.time():.6f} {os.getpid()} {known}"
        await record(recorder, events_list, line)

    async def deleted(event: SessionEvent) -> None:
        event_id = getattr(event, "id", None)  # SessionEvent.id, where this version has it
        line = f"{event.key_hash} {event.reason} {os.getpid()} {event_id or '-'}"
        await record(recorder, events_list + ":deleting", line)
        if churn is not None:
            await anyio.sleep(churn.handler_delay)
        await record(recorder, events_list + ":deleted", line)

    sm.on("session_expired", expired)
    sm.on("session_deleted", deleted)
    reader, stdin = await stdin_lines()
    async with sm, anyio.create_task_group() as background:
        with anyio.CancelScope() as commands:
            # SIGTERM ends the wait for commands (or the command under way); what follows is
            # the graceful exit: the churn's step finishes, then aclose().
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, commands.cancel)
            _say("ready")
            while True:
                words = (await reader.readline()).decode().split()
                if not words or words[0] == "exit":
                    break
                if words[0] == "churn":
                    churn = Churn(words[1:])
                    background.start_soon(churn.run, sm, recorder, events_list + ":created")
                    _say("churning")
                elif words[0] == "calm":
                    _say(await churn.calm() if churn is not None else {})
                else:
                    _say(await answer(sm, words))
        if churn is not None:
            churn.stop.set()  # the task group waits for the step under way
    stdin.close()
    await client.aclose()
    await recorder.aclose()


if __name__ == "__main__":
    port, prefix, events_list, sweep = sys.argv[1:5]
    events_port = sys.argv[5] if len(sys.argv) > 5 else port
    cluster = sys.argv[6:] == ["cluster"]
    asyncio.run(main(int(port), prefix, events_list, float(sweep), int(events_port), cluster))
