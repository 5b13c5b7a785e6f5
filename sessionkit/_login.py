"""Logging a browser in and out: :func:`log_in`, :func:`log_out` and the same-origin rule
they share with the guards. Import them from :mod:`sessionkit.starlette`."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Final

from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection
from starlette.responses import Response

from sessionkit._guard import check_origins, request_client
from sessionkit._guard import same_origin as _same_origin
from sessionkit.cookies import SessionCookie
from sessionkit.models import ClientInfo, encode_data

if TYPE_CHECKING:
    from sessionkit.manager import SessionManager

__all__ = ("log_in", "log_out", "same_origin")

_CROSS_SITE_LOGIN: Final = "cross-site login refused: log in from this site's own pages"
_CROSS_SITE_LOGOUT: Final = "cross-site logout refused: log out from this site's own pages"
#: What a logout asks the browser to forget: its HTTP cache of the session's pages, and what
#: page scripts stored (localStorage, IndexedDB, service workers). Cookies are not listed:
#: the session cookie is cleared by name, and other sites' state on this origin is the app's.
CLEAR_SITE_DATA: Final = '"cache", "storage"'


def same_origin(request: HTTPConnection, trusted_origins: Iterable[str] = ()) -> bool:
    """Tell whether a browser sent ``request`` from this site's own pages (or a trusted one's).

    The rule the guards apply to a cookie-borne key on an unsafe method, for an app's own
    routes: ``Sec-Fetch-Site: same-origin`` or ``none`` (typed in the address bar), else an
    ``Origin`` equal to the request's own origin or one of ``trusted_origins``. A request
    with neither header is not same-origin: no current browser omits both on a POST or a
    WebSocket handshake.

    :param request: a Starlette ``Request`` or ``WebSocket``.
    :param trusted_origins: other origins (``"https://app.example.com"``) whose pages count as
        this site's; a default port is folded (``https://a.example:443`` is
        ``https://a.example``).
    :return: ``True`` if the request comes from this site's pages or a trusted origin's.
    :raises ValueError: for a trusted origin that is not ``scheme://host[:port]``.

    Example::

        async def transfer(request):
            if not same_origin(request):
                return JSONResponse({"message": "cross-site"}, status_code=403)
    """
    return _same_origin(request, check_origins(trusted_origins))


async def log_in(
    sm: SessionManager,
    request: HTTPConnection,
    response: Response,
    username: str,
    data: Any = None,
    *,
    cookie: SessionCookie | str | None = None,
    trusted_origins: Iterable[str] = (),
    remember: bool = False,
    timeout: float | None = None,  # seconds: this session's idle timeout
) -> str:
    """Log a browser in, once its credentials have been checked: what OWASP asks of a login.

    In order: the request must come from this site's pages (:func:`same_origin`, whatever the
    body's content type: a cross-site form cannot log the victim in as the attacker); the
    session the request's cookie already holds ends (reason ``"logout"``: one browser never
    holds two sessions, and a login is never refused for the sessions it replaces); a new
    session is created with the request's :func:`client_info`; its key is set in ``cookie``;
    and ``response`` is marked ``Cache-Control: no-store``. The key is never put in a body.

    :param sm: the session manager.
    :param request: the login request.
    :param response: the response the route returns (with FastAPI, the injected
        ``Response`` when the route returns data).
    :param username: who logged in.
    :param data: JSON-serialisable data to keep with the session.
    :param cookie: the session cookie (a :class:`SessionCookie` or a name; ``None`` is
        ``SessionCookie()``): pass the same one to the guards.
    :param trusted_origins: other origins whose pages may log in here.
    :param remember: set a persistent cookie that outlives a browser restart, with
        ``Max-Age`` the manager's ``absolute_timeout`` (which must then be set).
    :param timeout: this session's own idle timeout in seconds, instead of the manager's.
    :return: the new session key.
    :raises starlette.exceptions.HTTPException: 403 for a cross-site request, or one with
        neither ``Origin`` nor ``Sec-Fetch-Site`` (API clients call
        :meth:`~sessionkit.SessionManager.load_new_session` and send the key in a header).
    :raises ValueError: with ``remember=True`` on a manager without ``absolute_timeout``, for
        a malformed trusted origin, or a username that cannot be encoded (a lone surrogate).
    :raises TypeError: for a username that is no str or data that is not JSON-serialisable.
    :raises SessionLimitReached: with ``on_session_limit="refuse"``, if the user has no
        session left to open (the one this browser held is ended first, and does not count).

    Example::

        async def login(request):
            form = await request.form()
            if not await passwords.verify(form["username"], form["password"]):
                return JSONResponse({"accepted": False}, status_code=401)
            response = JSONResponse({"accepted": True})
            await log_in(sm, request, response, form["username"], cookie=cookie)
            return response
    """
    session_cookie = SessionCookie() if cookie is None else SessionCookie.of(cookie)
    max_age = None
    if remember:
        absolute = sm.absolute_timeout
        if absolute is None:
            raise ValueError(
                "remember=True needs SessionManager(absolute_timeout=...): a persistent cookie "
                "lives as long as the session may"
            )
        max_age = max(int(absolute), 1)
    if not _same_origin(request, check_origins(trusted_origins)):
        raise HTTPException(403, _CROSS_SITE_LOGIN)
    # A username or data no store can keep (a lone surrogate, say) fails here, before the
    # session the browser carries is ended for a login that cannot happen.
    if isinstance(username, str):
        username.encode()  # UnicodeEncodeError is a ValueError
    encode_data(data)
    carried = session_cookie.read(request.headers.get("cookie", ""))
    if carried is not None:
        await sm.delete_session(carried)  # an unknown or dead key is simply no session
    key = await sm.load_new_session(username, data, timeout=timeout, client=_client(request))
    session_cookie.set(response, key, max_age=max_age)
    response.headers["cache-control"] = "no-store"
    return key


async def log_out(
    sm: SessionManager,
    request: HTTPConnection,
    response: Response,
    *,
    cookie: SessionCookie | str | None = None,
    everywhere: bool = False,
) -> bool:
    """Log a browser out: end the session its cookie holds (or all its user's), clear the
    cookie and ask the browser to forget the session's pages.

    A request that carries the cookie must come from this site's pages (the guards' rule,
    whatever the method): a foreign page cannot log the user out. ``response`` gets the
    ``Set-Cookie`` that clears the cookie, ``Cache-Control: no-store`` and
    ``Clear-Site-Data: "cache", "storage"``, whether or not a session ended. The session's
    sockets are told ``logout`` and disconnected when a Socket.IO server is bound.

    :param sm: the session manager.
    :param request: the logout request.
    :param response: the response the route returns.
    :param cookie: the session cookie (a :class:`SessionCookie` or a name; ``None`` is
        ``SessionCookie()``).
    :param everywhere: end every session of the cookie's user (reason ``"logout_all"``)
        instead of this one (reason ``"logout"``).
    :return: ``True`` if a session ended, ``False`` if the cookie held no live one.
    :raises starlette.exceptions.HTTPException: 403 for a cross-site request carrying the
        cookie.

    Example::

        async def logout(request):
            response = JSONResponse({"accepted": True})
            await log_out(sm, request, response, cookie=cookie)
            return response
    """
    session_cookie = SessionCookie() if cookie is None else SessionCookie.of(cookie)
    key = session_cookie.read(request.headers.get("cookie", ""))
    if key is not None and not _same_origin(request, frozenset()):
        raise HTTPException(403, _CROSS_SITE_LOGOUT)
    ended = False
    if key is not None:
        if everywhere:
            username = await sm.get_username_from_session_key(key)
            ended = username is not None and await sm.delete_user_sessions(username) > 0
        else:
            ended = await sm.delete_session(key)
    session_cookie.clear(response)
    response.headers["cache-control"] = "no-store"
    response.headers["clear-site-data"] = CLEAR_SITE_DATA
    return ended


def _client(request: HTTPConnection) -> ClientInfo:
    return request_client(request)  # what sessionkit.starlette.client_info returns
