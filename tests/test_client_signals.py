"""Hijack signals (docs/security.md, Cheat Sheet "Binding the Session ID to Other User
Properties"): the browser family and network comparisons, and the guards firing
``session_suspicious`` (and, with ``on_suspicious="end"``, ending the session) over real HTTP
from two loopback networks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sessionkit import ClientInfo, SessionManager, SessionStore
from sessionkit.clients import browser_family, client_changed, network_of
from sessionkit.starlette import RequireSession, SessionCookie, get_session, log_in
from tests.recorder import Recorder
from tests.servers import serve

COOKIE = SessionCookie()

CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36"
)
CHROME_NEXT = CHROME.replace("Chrome/120.0.0.0", "Chrome/121.0.6167.85")
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0"

AGENTS = [
    (CHROME, "chrome"),
    (
        "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/120.0.6099.144 Mobile Safari/537.36",
        "chrome",
    ),
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, "
        "like Gecko) CriOS/120.0.6099.119 Mobile/15E148 Safari/604.1",
        "chrome",
    ),
    (
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chromium/119.0.6045.199 Chrome/119.0.6045.199 Safari/537.36",
        "chrome",
    ),
    (CHROME + " Edg/120.0.2210.91", "edge"),
    (
        "Mozilla/5.0 (Linux; Android 10; HD1913) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/120.0.6099.144 Mobile Safari/537.36 EdgA/120.0.2210.115",
        "edge",
    ),
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, "
        "like Gecko) Version/17.0 EdgiOS/120.2210.126 Mobile/15E148 Safari/605.1.15",
        "edge",
    ),
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/70.0.3538.102 Safari/537.36 Edge/18.19042",
        "edge",
    ),
    (FIREFOX, "firefox"),
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, "
        "like Gecko) FxiOS/121.0 Mobile/15E148 Safari/605.1.15",
        "firefox",
    ),
    (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like "
        "Gecko) Version/17.2 Safari/605.1.15",
        "safari",
    ),
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, "
        "like Gecko) Version/17.2 Mobile/15E148 Safari/604.1",
        "safari",
    ),
    (CHROME + " OPR/106.0.0.0", "opera"),
    ("Opera/9.80 (Windows NT 6.1; WOW64) Presto/2.12.388 Version/12.18", "opera"),
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, "
        "like Gecko) Version/17.2 Mobile/15E148 OPiOS/16.0.15.124050 Safari/9537.53",
        "opera",
    ),
    ("curl/8.5.0", "other"),
    ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", "other"),
    ("python-httpx/0.27.0", "other"),
    ("", "other"),
    (None, "other"),
]


@pytest.mark.parametrize(("agent", "family"), AGENTS)
def test_browser_family(agent: str | None, family: str) -> None:
    assert browser_family(agent) == family


@pytest.mark.parametrize(
    ("ip", "network"),
    [
        ("192.0.2.17", "192.0.2.0/24"),
        ("192.0.2.255", "192.0.2.0/24"),
        ("2001:db8:1:2:3::1", "2001:db8:1::/48"),
        ("::ffff:192.0.2.5", "192.0.2.0/24"),  # IPv4-mapped: the IPv4 rule
        ("fe80::1%eth0", "fe80::/48"),
        ("testclient", None),
        ("", None),
        (None, None),
        ("300.1.1.1", None),
    ],
)
def test_network_of(ip: str | None, network: str | None) -> None:
    assert network_of(ip) == network


@pytest.mark.parametrize(
    ("before", "after", "changed"),
    [
        (ClientInfo("192.0.2.1", CHROME), ClientInfo("192.0.2.200", CHROME_NEXT), False),
        (ClientInfo("192.0.2.1", CHROME), ClientInfo("192.0.3.1", CHROME), True),
        (ClientInfo("192.0.2.1", CHROME), ClientInfo("192.0.2.1", FIREFOX), True),
        (ClientInfo("2001:db8:1::1", CHROME), ClientInfo("2001:db8:1:ffff::9", CHROME), False),
        (ClientInfo("2001:db8:1::1", CHROME), ClientInfo("2001:db8:2::1", CHROME), True),
        (ClientInfo("192.0.2.1", CHROME), ClientInfo("2001:db8::1", CHROME), True),
        (ClientInfo(None, CHROME), ClientInfo("192.0.2.1", CHROME), False),  # unknown: no verdict
        (ClientInfo("192.0.2.1", None), ClientInfo("192.0.2.1", FIREFOX), False),
        (ClientInfo("192.0.2.1", CHROME), ClientInfo("192.0.2.1", None), False),
    ],
)
def test_client_changed(before: ClientInfo, after: ClientInfo, changed: bool) -> None:
    assert client_changed(before, after) is changed


def app_of(sm: SessionManager) -> Starlette:
    async def login(request: Request) -> Response:
        response = JSONResponse({})
        await log_in(sm, request, response, "Luca", cookie=COOKIE)
        return response

    async def me(request: Request) -> Response:
        return JSONResponse({"user": get_session(request).username})

    return Starlette(
        routes=[
            Route("/login", login, methods=["POST"]),
            Route("/me", RequireSession(me, sm, cookie=COOKIE)),
        ]
    )


def client_from(url: str, address: str, agent: str) -> httpx.AsyncClient:
    """An HTTP client connecting from ``address`` (any of 127.0.0.0/8 is this machine)."""
    transport = httpx.AsyncHTTPTransport(local_address=address)
    headers = {"user-agent": agent, "sec-fetch-site": "same-origin"}
    return httpx.AsyncClient(base_url=url, transport=transport, headers=headers)


async def logged_in(url: str) -> tuple[str, dict[str, str]]:
    async with client_from(url, "127.0.0.1", CHROME) as home:
        response = await home.post("/login")
    assert response.status_code == 200
    key = response.headers["set-cookie"].partition("=")[2].partition(";")[0]
    return key, {"cookie": f"{COOKIE.name}={key}"}


async def test_a_changed_client_fires_session_suspicious(
    make_store: Callable[[], SessionStore],
) -> None:
    async with SessionManager(store=make_store()) as sm:
        recorder = Recorder(sm, names=("session_suspicious", "session_deleted"))
        async with serve(app_of(sm)) as url:
            key, cookie = await logged_in(url)
            statuses: list[int] = []
            for address, agent in [
                ("127.0.0.9", CHROME_NEXT),  # same /24, Chrome updated: nothing
                ("127.0.2.1", CHROME),  # another /24
                ("127.0.0.1", FIREFOX),  # another browser family
            ]:
                async with client_from(url, address, agent) as http:
                    statuses.append((await http.get("/me", headers=cookie)).status_code)
                    if len(statuses) == 1:
                        assert recorder.events == []
        assert statuses == [200, 200, 200]  # "event" (the default) lets them through
        assert recorder.timeline("session_suspicious") == [
            (recorder.times[0], "Luca", "client_changed"),
            (recorder.times[1], "Luca", "client_changed"),
        ]
        assert {e.key for e in recorder.events} == {key}
        assert await sm.check_session_status(key) is True


async def test_on_suspicious_end_ends_the_session_and_clears_the_cookie(
    make_store: Callable[[], SessionStore],
) -> None:
    async with SessionManager(store=make_store(), on_suspicious="end") as sm:
        recorder = Recorder(sm, names=("session_suspicious", "session_deleted"))
        async with serve(app_of(sm)) as url:
            key, cookie = await logged_in(url)
            async with client_from(url, "127.0.0.1", CHROME) as home:
                assert (await home.get("/me", headers=cookie)).status_code == 200
            async with client_from(url, "127.0.2.1", CHROME) as elsewhere:
                stolen = await elsewhere.get("/me", headers=cookie)
            async with client_from(url, "127.0.0.1", CHROME) as home:
                after = await home.get("/me", headers=cookie)
        assert stolen.status_code == 401
        assert stolen.json()["logout"] is True
        assert stolen.headers.get_list("set-cookie") == [COOKIE.clear_header()]
        assert after.status_code == 401  # ended for everyone: the user logs in again
        assert [(e.name, e.reason) for e in recorder.events] == [
            ("session_suspicious", "client_changed"),
            ("session_deleted", "suspicious"),
        ]
        assert await sm.check_session_status(key) is False


@pytest.mark.parametrize(("value", "error"), [("kill", ValueError), (1, TypeError)])
def test_a_bad_on_suspicious_is_refused(value: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        SessionManager(on_suspicious=value)
