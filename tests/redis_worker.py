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
- ``exit`` (or end of input): close the manager and leave.

Every ``session_expired`` event is pushed to the Redis list EVENTS_LIST as
``"<key_hash> <wall time> <pid> <known or ->"`` (``-``: a sweep claimed it, key unknown), so
the test counts events across processes; every ``session_deleted`` goes to
``EVENTS_LIST + ":deleted"`` as ``"<key_hash> <reason> <pid>"``.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
import time

import anyio
import anyio.to_thread
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

    async def expired(event: SessionEvent) -> None:
        known = "known" if event.key else "-"  # never the raw key: the hygiene check scans
        line = f"{event.key_hash} {time.time():.6f} {os.getpid()} {known}"
        async with recorder.pipeline(transaction=True) as pipe:
            pipe.rpush(events_list, line)
            pipe.expire(events_list, 600)
            await pipe.execute()

    async def deleted(event: SessionEvent) -> None:
        line = f"{event.key_hash} {event.reason} {os.getpid()}"
        async with recorder.pipeline(transaction=True) as pipe:
            pipe.rpush(events_list + ":deleted", line)
            pipe.expire(events_list + ":deleted", 600)
            await pipe.execute()

    sm.on("session_expired", expired)
    sm.on("session_deleted", deleted)
    async with sm:
        _say("ready")
        while True:
            line = await anyio.to_thread.run_sync(sys.stdin.readline)
            words = line.split()
            if not words or words[0] == "exit":
                break
            if words[0] == "create":
                count, timeout = int(words[1]), float(words[2])
                keys, deadlines = [], []
                for i in range(count):
                    keys.append(await sm.load_new_session(f"u{i}", timeout=timeout))
                    deadlines.append(time.time() + timeout)
                _say({"keys": keys, "deadlines": deadlines})
            elif words[0] == "touch":
                oks, deadlines = [], []
                for key in words[1:]:
                    try:
                        oks.append(await sm.restart_session_timer(key))
                    except SessionNotFound:
                        oks.append(False)
                    deadlines.append(time.time() + 2)
                _say({"ok": oks, "deadlines": deadlines})
            elif words[0] == "chaos":
                _say(await chaos(sm, int(words[1]), float(words[2]), int(words[3])))
    await client.aclose()
    await recorder.aclose()


if __name__ == "__main__":
    port, prefix, events_list, sweep = sys.argv[1:5]
    events_port = sys.argv[5] if len(sys.argv) > 5 else port
    cluster = sys.argv[6:] == ["cluster"]
    asyncio.run(main(int(port), prefix, events_list, float(sweep), int(events_port), cluster))
