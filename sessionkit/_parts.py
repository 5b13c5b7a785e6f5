"""What the parts of :class:`~sessionkit.SessionManager` (its calls in ``_new_sessions.py``,
``_data.py``, ``_hardening.py`` and ``_users.py``) read of the manager: its attributes, declared
once for the type checker. ``SessionManager.__init__`` sets them."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sessionkit._binding import LoopBinding
    from sessionkit._expiry import Expiry
    from sessionkit._fanout import Fanout
    from sessionkit._options import Options
    from sessionkit.events import Dispatcher
    from sessionkit.stores.base import SessionStore


class ManagerParts:
    """The manager's attributes its parts use (each part inherits this)."""

    _timeout: float  # seconds: the manager's idle timeout
    _binding: LoopBinding
    _store: SessionStore
    _options: Options
    _expiry: Expiry
    _fanout: Fanout
    _events: Dispatcher
