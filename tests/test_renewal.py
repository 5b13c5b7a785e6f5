"""Renewal timeout (docs/security.md, Cheat Sheet "Renewal Timeout"): a renewal is a rotation
after which the old key keeps working for a grace, on every store kind; and the guards renew a
cookie-borne key older than ``renew_every``, over real HTTP (uvicorn)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.authentication import requires
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from sessionkit import SessionDetails, SessionManager, SessionNotFound, SessionStore
from sessionkit.keys import hash_key
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


async def renewed(sm: SessionManager, key: str, grace: float) -> str:
    """Renew ``key`` at the store, as ``renew_if_due`` does, with ``grace``."""
    fresh = sm.store.rotated_key(key)
    record = await sm.store.rotate(key, fresh, grace=grace)
    assert record is not None
    assert record.key_hash == hash_key(fresh)
    assert record.rotated_at is not None and record.rotated_at >= record.created_at
    return fresh


async def test_the_old_key_works_during_the_grace_and_acts_on_the_session(
    sm: SessionManager,
) -> None:
    key = await sm.load_new_session("Luca", {"a": 1})
    before = await sm.get_session_details(key)
    assert before.key_created_at == before.created_at
    fresh = await renewed(sm, key, grace=1.5)
    # The old key names the session as it is now: every call on it acts on it.
    assert await sm.check_session_status(key) is True
    assert await sm.restart_session_timer(key) is True
    touched = await sm.touch_session(key)
    assert touched.id == hash_key(fresh)
    assert touched.key_created_at is not None and touched.key_created_at > before.created_at
    assert await sm.update_session_data(key, {"b": 2}) == {"a": 1, "b": 2}
    assert await sm.get_session_data(fresh) == {"a": 1, "b": 2}
    assert await sm.mark_authenticated(key) is True
    assert await sm.count_sessions() == 1
    # A key replaced is never rotated again through its alias.
    with pytest.raises(SessionNotFound):
        await sm.rotate_session_key(key)
    await asyncio.sleep(1.7)
    assert await sm.check_session_status(key) is False  # the grace is over
    with pytest.raises(SessionNotFound):
        await sm.touch_session(key)
    assert await sm.check_session_status(fresh) is True


@pytest.mark.parametrize("by", ["old", "new"])
async def test_a_logout_with_either_key_ends_the_session_and_its_alias(
    sm: SessionManager, by: str
) -> None:
    recorder = Recorder(sm, "session_deleted")
    key = await sm.load_new_session("Luca")
    fresh = await renewed(sm, key, grace=30)
    assert await sm.delete_session(key if by == "old" else fresh) is True
    assert [(e.key_hash, e.reason) for e in recorder.events] == [(hash_key(fresh), "logout")]
    for either in (key, fresh):
        assert await sm.check_session_status(either) is False
        assert await sm.delete_session(either) is False
        for call in (
            sm.touch_session(either),
            sm.update_session_data(either, {"back": True}),
            sm.set_session_data(either, {"back": True}),
            sm.mark_authenticated(either),
        ):
            with pytest.raises(SessionNotFound):
                await call
    assert await sm.count_sessions() == 0
    assert len(recorder.events) == 1


async def test_a_rotation_ends_the_grace_of_the_key_before(sm: SessionManager) -> None:
    key = await sm.load_new_session("Luca")
    fresh = await renewed(sm, key, grace=30)
    newest = await sm.rotate_session_key(fresh)  # a privilege change: no grace
    assert await sm.check_session_status(key) is False
    assert await sm.check_session_status(fresh) is False
    assert await sm.check_session_status(newest) is True
    again = await renewed(sm, newest, grace=30)
    assert await sm.check_session_status(newest) is True  # only the key just replaced
    assert await sm.check_session_status(key) is False
    assert await sm.check_session_status(again) is True


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


EVERY, GRACE = 3.0, 1.0  # seconds


def renewing_app(sm: SessionManager) -> Any:
    """One route behind each guard."""
    pytest.importorskip("fastapi")
    from fastapi import Depends, FastAPI

    async def guarded(request: Request) -> Response:
        return JSONResponse({"user": get_session(request).username})

    live = SessionDependency(sm, cookie=COOKIE)
    api = FastAPI()

    @api.get("/")
    async def by_dependency(
        session: SessionDetails = Depends(live),  # noqa: B008
    ) -> dict[str, str]:
        return {"user": session.username}

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


@pytest.mark.parametrize("path", ["/guard", "/fastapi/", "/middleware/"])
async def test_a_guard_renews_a_key_older_than_renew_every(
    make_store: Callable[[], SessionStore], path: str
) -> None:
    async with (
        SessionManager(store=make_store(), renew_every=EVERY, renew_grace=GRACE) as sm,
        serve(renewing_app(sm)) as url,
        httpx.AsyncClient(base_url=url) as http,
    ):
        recorder = Recorder(sm, "session_rotated", "session_deleted")

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
    assert young.status_code == 200 and cookie_key(young) is None
    assert renewal.status_code == 200 and renewal.json() == {"user": "Luca"}
    assert fresh is not None and fresh != key
    for response in (in_flight, with_new, still):
        assert response.status_code == 200, response.text
        assert cookie_key(response) is None  # renewed once, not again
    # A key sent in a header is never renewed: its client would not learn the new one.
    assert api.status_code == api_still.status_code == 200
    assert "set-cookie" not in api.headers
    assert late.status_code in (401, 403)  # the grace is over (403: @requires)
    assert [(e.name, e.key) for e in recorder.events] == [("session_rotated", fresh)]


async def test_of_two_requests_that_find_the_key_due_one_renews(
    make_store: Callable[[], SessionStore],
) -> None:
    async with SessionManager(store=make_store(), renew_every=60, renew_grace=30) as sm:
        recorder = Recorder(sm, "session_rotated", "session_deleted")
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
