"""Cookie mode of the Socket.IO adapter: the handshake's session cookie, and what keeps a page
on another site from opening a socket with it. Used by :func:`sessionkit.socketio.bind_socketio`."""

from __future__ import annotations

import inspect
import logging
from typing import Any
from urllib.parse import parse_qs

from sessionkit.cookies import SessionCookie

__all__ = ("check_cookie_mode", "cookie_key", "guard_handshakes")

logger = logging.getLogger("sessionkit")


def cookie_key(environ: dict[str, Any], cookie: SessionCookie) -> str | None:
    # The handshake's Cookie header, read as browsers write it (a tolerant parser).
    header = environ.get("HTTP_COOKIE")
    return cookie.read(header) if isinstance(header, str) else None


def check_cookie_mode(sio: Any, cookie: SessionCookie | str) -> SessionCookie:
    # A page on any origin could open a socket that carries the user's cookie, unless
    # engine.io's origin check (on by default: same origin only) stays on and names origins:
    # "null" is what sandboxed frames and file: pages send, whoever wrote them, and a callable
    # is a rule nobody can read here (the usual one answers True).
    origins = sio.eio.cors_allowed_origins
    listed = [origins] if isinstance(origins, str) else origins
    if (
        callable(origins)
        or (isinstance(listed, list | tuple | set) and ("*" in listed or not listed))
        or (isinstance(listed, list | tuple | set) and "null" in listed)
    ):
        raise ValueError(
            "cookie mode needs an origin check: give the AsyncServer cors_allowed_origins=None "
            "(same origin only, the default) or a list of the origins allowed (not a callable, "
            f'"*", [] or "null"), not {origins!r}'
        )
    return SessionCookie.of(cookie)


def guard_handshakes(sio: Any) -> None:
    # engine.io checks the Origin header when there is one; a script tag sends none. So in
    # cookie mode, refuse what only a tag on another page would send: a JSONP polling
    # handshake (its reply is a script that hands the page the engine.io session id), and any
    # handshake whose browser says it comes from another site without an Origin to check.
    eio = sio.eio
    dispatch = eio.handlers["connect"]

    async def on_connect(eio_sid: str, environ: dict[str, Any]) -> Any:
        query = parse_qs(str(environ.get("QUERY_STRING", "")), keep_blank_values=True)
        fetch_site = str(environ.get("HTTP_SEC_FETCH_SITE", "")).lower()
        if "j" in query:
            # INFO, not WARNING: any page on the web can send these, as often as it likes.
            logger.info("refused a JSONP engine.io handshake: cookie mode allows none")
            return False
        if not environ.get("HTTP_ORIGIN") and fetch_site not in ("", "same-origin", "none"):
            logger.info("refused a %r engine.io handshake without an Origin", fetch_site)
            return False
        result = dispatch(eio_sid, environ)
        if inspect.isawaitable(result):
            result = await result
        return result

    eio.on("connect", on_connect)
