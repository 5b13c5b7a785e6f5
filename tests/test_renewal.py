"""Renewal timeout (docs/security.md, Cheat Sheet "Renewal Timeout"): the guards renew a
cookie-borne key older than ``renew_every``, over real HTTP (uvicorn). That the old key keeps
working for the grace, on every store, is a rule of the contract suite,
:mod:`sessionkit.testing`."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from typing import Any, NamedTuple

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
    get_session,
)
from tests.recorder import Recorder
from tests.servers import serve

COOKIE = SessionCookie()


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"renew_every": 1}, ValueError),
        ({"renew_every": 60, "renew_grace": 60}, ValueError),
        ({"renew_every": 60, "renew_grace": -1}, ValueError),
        ({"renew_every": "60"}, TypeError),
        ({"renew_every": 60, "renew_grace": None}, TypeError),
    ],
)
def test_bad_renewal_options_are_refused(options: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        SessionManager(**options)


EVERY, GRACE = 2.0, 1.0  # seconds (renew_every's least)
PATHS = ("/guard", "/fastapi/", "/middleware/")  # one route behind each guard


async def guarded(request: Request) -> Response:
    return JSONResponse({"user": get_session(request).username})


def fastapi_app(sm: SessionManager) -> Any:
    """A FastAPI route behind a ``SessionDependency``."""
    pytest.importorskip("fastapi")
    from fastapi import Depends, FastAPI

    live = SessionDependency(sm, cookie=COOKIE)
    api = FastAPI()

    @api.get("/")
    async def by_dependency(
        session: SessionDetails = Depends(live),  # noqa: B008
    ) -> dict[str, str]:
        return {"user": session.username}

    return api


def renewing_app(sm: SessionManager) -> Any:
    """One route behind each guard."""
    api = fastapi_app(sm)

    @requires("authenticated")
    async def by_middleware(request: Request) -> Response:
        return JSONResponse({"user": request.user.username})

    middleware_app = Starlette(
        routes=[Route("/", by_middleware)],
        middleware=[
            Middleware(SessionAuthMiddleware, backend=SessionAuthBackend(sm, cookie=COOKIE))
        ],
    )
    return Starlette(
        routes=[
            Route("/guard", RequireSession(guarded, sm, cookie=COOKIE)),
            Mount("/fastapi", api),
            Mount("/middleware", middleware_app),
        ]
    )


def cookie_key(response: httpx.Response) -> str | None:
    headers = [h for h in response.headers.get_list("set-cookie") if h.startswith(COOKIE.name)]
    if not headers:
        return None
    [header] = headers
    assert header == COOKIE.header(header.partition("=")[2].partition(";")[0])
    return header.partition("=")[2].partition(";")[0]


class Seen(NamedTuple):
    """What one guard answered along a renewal (see :func:`renewal_through`)."""

    key: str
    young: httpx.Response
    renewal: httpx.Response
    fresh: str | None
    in_flight: httpx.Response
    with_new: httpx.Response
    api: httpx.Response
    late: httpx.Response
    still: httpx.Response
    api_still: httpx.Response


async def renewal_through(sm: SessionManager, http: httpx.AsyncClient, path: str) -> Seen:
    """Two sessions of their own through the guard at ``path``: one by cookie, renewed once
    it is older than ``EVERY``, one by header, never renewed."""

    async def get(key: str, **headers: str) -> httpx.Response:
        sent = {"cookie": f"{COOKIE.name}={key}", **headers}
        return await http.get(path, headers=sent)

    key = await sm.load_new_session("Luca")
    by_header = await sm.load_new_session("Fabio")
    young = await get(key)
    await asyncio.sleep(EVERY + 0.2)
    renewal = await get(key)
    fresh = cookie_key(renewal)
    in_flight = await get(key)  # still carrying the old cookie, within the grace
    with_new = await get(fresh or "")
    api = await http.get(path, headers={"session_key": by_header})
    await asyncio.sleep(GRACE + 0.3)
    late = await get(key)
    still = await get(fresh or "")
    api_still = await http.get(path, headers={"session_key": by_header})
    return Seen(key, young, renewal, fresh, in_flight, with_new, api, late, still, api_still)


async def test_a_guard_renews_a_key_older_than_renew_every(
    make_store: Callable[[], SessionStore],
) -> None:
    """The three guards (``/guard``, ``/fastapi/``, ``/middleware/``) at once, each on
    sessions of its own, so that they share one wait for the key to age."""
    async with (
        SessionManager(store=make_store(), renew_every=EVERY, renew_grace=GRACE) as sm,
        serve(renewing_app(sm)) as url,
        httpx.AsyncClient(base_url=url) as http,
    ):
        recorder = Recorder(sm, names=("session_rotated", "session_deleted"))
        seen = await asyncio.gather(*(renewal_through(sm, http, path) for path in PATHS))
    for path, got in zip(PATHS, seen, strict=True):
        assert got.young.status_code == 200 and cookie_key(got.young) is None, path
        assert got.renewal.status_code == 200 and got.renewal.json() == {"user": "Luca"}, path
        assert got.fresh is not None and got.fresh != got.key, path
        for response in (got.in_flight, got.with_new, got.still):
            assert response.status_code == 200, (path, response.text)
            assert cookie_key(response) is None, path  # renewed once, not again
        # A key sent in a header is never renewed: its client would not learn the new one.
        assert got.api.status_code == got.api_still.status_code == 200, path
        assert "set-cookie" not in got.api.headers, path
        assert got.late.status_code in (401, 403), path  # the grace is over (403: @requires)
    # One rotation per guard, of its own session, and no session ended.
    rotated = sorted((e.name, e.key or "") for e in recorder.events)
    assert rotated == sorted(("session_rotated", got.fresh or "") for got in seen)


def nested_app(sm: SessionManager) -> Any:
    """A guarded route inside another guard: a guarded Mount, the middleware, and a guarded
    Mount around a FastAPI route's dependency."""

    def inner() -> Starlette:
        return Starlette(routes=[Route("/", RequireSession(guarded, sm, cookie=COOKIE))])

    api = fastapi_app(sm)
    backend = SessionAuthBackend(sm, cookie=COOKIE)
    in_middleware = inner()
    in_middleware.add_middleware(SessionAuthMiddleware, backend=backend)
    return Starlette(
        routes=[
            Mount("/guard", RequireSession(inner(), sm, cookie=COOKIE)),
            Mount("/middleware", in_middleware),
            Mount("/fastapi", RequireSession(api, sm, cookie=COOKIE)),
        ]
    )


async def test_guards_nested_in_one_another_set_the_renewed_cookie_once() -> None:
    # Each guard renews a due key once (the inner one finds the key just renewed), and the
    # response carries the new cookie once, not once per guard it went through.
    async with (
        SessionManager(renew_every=EVERY, renew_grace=GRACE) as sm,
        serve(nested_app(sm)) as url,
        httpx.AsyncClient(base_url=url) as http,
    ):
        paths = ("/guard/", "/middleware/", "/fastapi/")
        keys = {path: await sm.load_new_session("Luca") for path in paths}
        await asyncio.sleep(EVERY + 0.2)
        for path, key in keys.items():
            response = await http.get(path, headers={"cookie": f"{COOKIE.name}={key}"})
            assert response.json() == {"user": "Luca"}, path
            assert len(response.headers.get_list("set-cookie")) == 1, (path, response.headers)
            fresh = cookie_key(response)
            assert fresh is not None and await sm.check_session_status(fresh), path


async def test_of_two_requests_that_find_the_key_due_one_renews(
    make_store: Callable[[], SessionStore],
) -> None:
    async with SessionManager(store=make_store(), renew_every=60, renew_grace=30) as sm:
        recorder = Recorder(sm, names=("session_rotated", "session_deleted"))
        key = await sm.load_new_session("Luca")
        details = await sm.get_session_details(key)
        due = replace(details, key_created_at=details.created_at - timedelta(seconds=61))
        results = await asyncio.gather(sm.renew_if_due(due), sm.renew_if_due(due))
        [fresh] = [r for r in results if r is not None]
        assert results.count(None) == 1
        assert [(e.name, e.key) for e in recorder.events] == [("session_rotated", fresh)]
        assert await sm.check_session_status(fresh) is True
        assert await sm.check_session_status(key) is True  # in its grace
        # Not due: a fresh key, or a request still carrying the old one.
        assert await sm.renew_if_due(await sm.get_session_details(fresh)) is None
        assert await sm.renew_if_due(await sm.get_session_details(key)) is None
        assert await sm.count_sessions() == 1
