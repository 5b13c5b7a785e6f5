"""Session keys: how they are made, and how they are named where the key itself must not be."""

from __future__ import annotations

import hashlib
import secrets
from typing import TypeGuard

__all__ = ("KEY_BYTES", "MAX_KEY_LENGTH", "hash_key", "is_key_like", "new_key", "short_hash")

KEY_BYTES = 32  # 256 bits of entropy: OWASP asks for at least 64
MAX_KEY_LENGTH = 256  # characters; anything longer is not a key we could have made


def new_key() -> str:
    """Make a fresh session key.

    :return: 43 URL-safe characters carrying 256 random bits from :mod:`secrets`.
    """
    return secrets.token_urlsafe(KEY_BYTES)


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
