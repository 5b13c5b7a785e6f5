"""Session keys: how they are made, and how they are named where the key itself must not be."""

from __future__ import annotations

import base64
import hashlib
import os
import re
import secrets
import traceback
from typing import TypeGuard

__all__ = (
    "KEY_BYTES",
    "KEY_LENGTH",
    "MAX_KEY_LENGTH",
    "hash_key",
    "is_key_like",
    "new_key",
    "redact",
    "redact_exception",
    "short_hash",
)

KEY_BYTES = 33  # 264 bits of entropy (OWASP asks for at least 64); a multiple of 3, see new_key
KEY_LENGTH = KEY_BYTES // 3 * 4  # 44 URL-safe characters, no padding
MAX_KEY_LENGTH = 256  # characters; anything longer is not a key we could have made

# Keys made ahead, from one read of the OS's random source per _BATCH keys: a read per key
# (secrets.token_urlsafe) was a fifth of the cost of a login. The pool holds keys no session
# has yet, in this process's memory, where the live keys are anyway; a forked child starts
# with an empty pool, so parent and child never hand out the same key.
_BATCH = 256
_pool: list[str] = []
os.register_at_fork(after_in_child=_pool.clear)


def _refill() -> None:
    # KEY_BYTES is a multiple of 3, so each key's bytes encode to whole base64 characters
    # and the batch's encoding cuts into keys exactly.
    text = base64.urlsafe_b64encode(secrets.token_bytes(KEY_BYTES * _BATCH)).decode("ascii")
    _pool.extend(text[i : i + KEY_LENGTH] for i in range(0, len(text), KEY_LENGTH))


def new_key() -> str:
    """Make a fresh session key.

    :return: :data:`KEY_LENGTH` (44) URL-safe characters carrying 264 random bits from
        :mod:`secrets`.
    """
    try:
        return _pool.pop()
    except IndexError:
        _refill()
        return _pool.pop()


def hash_key(key: str) -> str:
    """Name a key without revealing it.

    :param key: a session key.
    :return: the SHA-256 hex digest of the key's UTF-8 bytes.
    """
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def short_hash(key: str) -> str:
    """Name a key in logs and messages: the first 12 hex digits of :func:`hash_key`.

    :param key: a session key.
    :return: a 12-character prefix of the key's hash.
    """
    return hash_key(key)[:12]


def is_key_like(key: object) -> TypeGuard[str]:
    """Tell whether a value could be a session key at all (a non-empty str of sane length).

    :param key: any value a caller passed as a key.
    :return: ``True`` for a non-empty ``str`` of at most :data:`MAX_KEY_LENGTH` characters.
    """
    return isinstance(key, str) and 0 < len(key) <= MAX_KEY_LENGTH


# Two shapes a key can take in a log line: the value of a ``session_key`` field in a raw
# packet or a repr (whatever its length), and a bare token shaped like the keys new_key makes.
_FIELD = re.compile(r"""(["']?session_key["']?\s*[:=]\s*["']?)([^"'\s,}&]+)""")
_TOKEN = re.compile(rf"(?<![A-Za-z0-9_-])[A-Za-z0-9_-]{{{KEY_LENGTH}}}(?![A-Za-z0-9_-])")
_REDACTED = "[redacted]"


def redact(text: str, *keys: str | None) -> str:
    """Blank out everything in ``text`` that looks like a session key.

    :param text: a log message, a raw packet, a formatted traceback...
    :param keys: keys known to be about, blanked out whatever their shape.
    :return: ``text`` with ``keys``, ``session_key`` values and key-shaped tokens replaced.
    """
    for key in keys:
        if key:
            text = text.replace(key, _REDACTED)
    text = _FIELD.sub(lambda m: m.group(1) + _REDACTED, text)
    return _TOKEN.sub(_REDACTED, text)


def redact_exception(exc: BaseException, *keys: str | None) -> str:
    """Format ``exc`` with its traceback, as logging would, with every key blanked out.

    :param exc: the exception to describe (a handler's may quote a key: ``KeyError(key)``).
    :param keys: keys known to be about (see :func:`redact`).
    :return: the redacted text.
    """
    return redact("".join(traceback.format_exception(exc)).rstrip(), *keys)
