"""Keys: strong, unique, URL-safe, and never written where they could leak."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import traceback

import pytest

from sessionkit import SessionError, SessionEvent
from sessionkit.keys import KEY_LENGTH, hash_key, is_key_like, new_key, short_hash
from tests.clock import manager


def test_ten_thousand_keys_are_unique_url_safe_and_long() -> None:
    keys = [new_key() for _ in range(10_000)]
    assert len(set(keys)) == len(keys)
    assert KEY_LENGTH >= 43  # 256 bits or more
    assert all(re.fullmatch(rf"[A-Za-z0-9_-]{{{KEY_LENGTH}}}", k) for k in keys)
    # Every character position varies: no key is cut across the pool's base64 padding.
    assert all(len({k[i] for k in keys}) > 32 for i in range(KEY_LENGTH))


def test_a_forked_child_never_makes_its_parents_next_key() -> None:
    new_key()  # the pool now holds keys made ahead
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.write(write, "".join(new_key() for _ in range(5)).encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    with os.fdopen(read) as pipe:
        child = pipe.read()
    parent = [new_key() for _ in range(300)]
    assert len(child) == 5 * KEY_LENGTH
    assert not any(key in child for key in parent)


def test_hashes() -> None:
    key = new_key()
    assert re.fullmatch(r"[0-9a-f]{64}", hash_key(key))
    assert short_hash(key) == hash_key(key)[:12]
    assert hash_key("\udcff") != hash_key("")  # lone surrogates hash too, without raising
    assert not is_key_like("x" * 257)
    assert is_key_like("x" * 256)


@pytest.mark.looptime
async def test_no_raw_key_in_any_log_record_or_exception_message() -> None:
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep(level=logging.DEBUG)
    logger = logging.getLogger("sessionkit")
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.DEBUG)
    messages: list[str] = []
    keys: list[str] = []
    try:
        async with manager(timeout=10, max_sessions_per_user=1, warn_before=2) as sm:

            def broken(event: SessionEvent) -> None:
                raise RuntimeError("handler failed")

            sm.on("session_rotated", broken)
            sm.on("error", lambda e: messages.append(str(e.error)))
            key = await sm.load_new_session("Luca")
            keys.append(key)
            keys.append(await sm.load_new_session("Luca"))  # evicts the first
            await sm.check_session_status(key)
            rotated = await sm.rotate_session_key(keys[-1])
            keys.append(rotated)
            await sm.restart_session_timer(rotated)
            for gone in keys[:2]:
                for call in (sm.get_session_details(gone), sm.restart_session_timer(gone)):
                    with pytest.raises(SessionError) as raised:
                        await call
                    messages.append(str(raised.value))
                    messages.append(repr(raised.value))
                    messages.extend(traceback.format_exception(raised.value))
            keys.append(await sm.load_new_session("Fabio"))
            await sm.delete_session(keys[-1])
            await asyncio.sleep(20)  # the rotated session warns, then expires
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    logged = [r.getMessage() for r in records]
    logged += ["".join(traceback.format_exception(*r.exc_info)) for r in records if r.exc_info]
    assert any("created" in m for m in logged)
    assert any("ended" in m for m in logged)
    assert any("rejected" in m for m in logged)
    assert messages
    for text in logged + messages:
        for key in keys:
            assert key not in text
