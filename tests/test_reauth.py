"""Re-authentication (docs/security.md, ASVS 3.7.1 / 7.5.x):
the guards' ``max_auth_age`` answering ``401 {"reauthenticate": true}`` with the cookie kept,
over real HTTP (uvicorn). ``authenticated_at`` and ``mark_authenticated`` on a store are rules of
the contract suite, :mod:`sessionkit.testing`."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.authentication import requires
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from sessionkit import SessionDetails, SessionManager, SessionStore
from sessionkit.starlette import (
    RequireSession,
    SessionAuthBackend,
    SessionAuthMiddleware,
    SessionCookie,
    SessionDependency,
    SessionRequired,
    get_session,
    session_required_handler,
)
from tests.servers import serve

COOKIE = SessionCookie()
MAX_AGE = 2.0  # seconds: the guards' max_auth_age in these tests


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (0, ValueError),
        (-1, ValueError),
        (float("nan"), ValueError),
        (float("inf"), ValueError),
        ("60", TypeError),
        (True, TypeError),
    ],
)
def test_a_bad_max_auth_age_is_refused_when_the_guard_is_built(
    value: Any, error: type[Exception]
) -> None:
    sm = SessionManager()
    for build in (
        lambda: RequireSession(JSONResponse({}), sm, max_auth_age=value),
        lambda: SessionDependency(sm, max_auth_age=value),
        lambda: SessionAuthBackend(sm, max_auth_age=value),
    ):
        with pytest.raises(error):
            build()


def sensitive_app(sm: SessionManager) -> Any:
    """One route behind each guard, each with ``max_auth_age``."""
    pytest.importorskip("fastapi")
    from fastapi import Depends, FastAPI

    async def guarded(request: Request) -> Response:
        return JSONResponse({"user": get_session(request).username})

    live = SessionDependency(sm, cookie=COOKIE, max_auth_age=MAX_AGE)
    api = FastAPI(exception_handlers={SessionRequired: session_required_handler})

    @api.get("/")
    async def by_dependency(
        session: SessionDetails = Depends(live),  # noqa: B008
    ) -> dict[str, str]:
        return {"user": session.username}

    @requires("authenticated")
    async def by_middleware(request: Request) -> Response:
        return JSONResponse({"user": request.user.username})

    backend = SessionAuthBackend(sm, cookie=COOKIE, max_auth_age=MAX_AGE)
    middleware_app = Starlette(
        routes=[Route("/", by_middleware)],
        middleware=[Middleware(SessionAuthMiddleware, backend=backend)],
    )
    return Starlette(
        routes=[
            Route("/guard", RequireSession(guarded, sm, cookie=COOKIE, max_auth_age=MAX_AGE)),
            Mount("/fastapi", api),
            Mount("/middleware", middleware_app),
        ]
    )


PATHS = ("/guard", "/fastapi/", "/middleware/")


async def test_a_stale_credential_is_a_401_that_keeps_the_cookie(
    make_store: Callable[[], SessionStore],
) -> None:
    async with (
        SessionManager(store=make_store()) as sm,
        serve(sensitive_app(sm)) as url,
        httpx.AsyncClient(base_url=url) as http,
    ):
        key = await sm.load_new_session("Luca")
        cookie = {"cookie": f"{COOKIE.name}={key}"}
        fresh = [await http.get(path, headers=cookie) for path in PATHS]
        await asyncio.sleep(MAX_AGE + 0.5)
        stale = [await http.get(path, headers=cookie) for path in PATHS]
        assert await sm.check_session_status(key) is True  # only the credential is stale
        assert await sm.mark_authenticated(key) is True  # the user entered it again
        again = [await http.get(path, headers=cookie) for path in PATHS]
    for response in (*fresh, *again):
        assert response.status_code == 200, (
            response.url,
            [r.status_code for r in (*fresh, *stale, *again)],
        )
        assert response.json() == {"user": "Luca"}
    for response in stale:
        assert response.status_code == 401, response.text
        body = response.json()
        assert (body["reauthenticate"], body["logout"]) == (True, False)
        assert "set-cookie" not in response.headers  # the session lives: keep the cookie
