"""The demo app (examples/webapp) under uvicorn, driven by real HTTP and Socket.IO clients."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import socketio

from examples.webapp.app import PasswordBook, create_app, device_name
from sessionkit.keys import hash_key
from tests.servers import serve

COOKIE_ATTRIBUTES = "; Path=/; Secure; HttpOnly; SameSite=Lax"


async def log_in(http: httpx.AsyncClient, username: str, agent: str = "test") -> str:
    """Log in as a browser would; return the key from the cookie (the body never has it)."""
    login = await http.post(
        "/api/try_login",
        json={"username": username, "password": "sessionkit"},
        headers={"user-agent": agent, "sec-fetch-site": "same-origin"},
    )
    body = login.json()
    assert body["accepted"] is True
    assert 29 < body["user_data"]["expires_in"] <= 30
    assert set(body["user_data"]) == {"username", "expires_in"}
    [set_cookie] = login.headers.get_list("set-cookie")
    name, _, rest = set_cookie.partition("=")
    key, _, attributes = rest.partition(";")
    assert name == "__Host-session"
    assert "; " + attributes.strip() == COOKIE_ATTRIBUTES
    assert key not in login.text
    assert login.headers["cache-control"] == "no-store"
    return key


async def test_password_book_checks_scrypt_hashes() -> None:
    book = PasswordBook({"Luca": "right"})
    assert await book.verify("Luca", "right")
    assert not await book.verify("Luca", "wrong")
    assert not await book.verify("Nobody", "right")
    assert not await book.verify("Luca", "\ud800")  # a lone surrogate, as JSON can carry
    assert "right" not in repr(vars(book))


def test_device_names_come_from_the_user_agent() -> None:
    chrome_android = (
        "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/131.0.0.0 Mobile Safari/537.36"
    )
    iphone = (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
    )
    firefox = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0"
    assert device_name(chrome_android) == "Chrome on Android"
    assert device_name(iphone) == "Mobile Safari on iOS"
    assert device_name(firefox) == "Firefox on Windows"
    assert device_name("curl/8.4.0") == "curl"
    assert device_name("Phone/1.0") == "Phone/1.0"  # nothing to name: shown as sent
    assert device_name(None) == "Unknown device"


async def test_login_table_logout_everywhere_and_metrics() -> None:
    demo = create_app(timeout=30, warn_before=None)
    async with serve(demo.app) as url, httpx.AsyncClient(base_url=url) as http:
        page = await http.get("/")
        assert page.status_code == 200
        assert "<script data-socketio" in page.text
        assert "Log in" in page.text

        refused = await http.post(
            "/api/try_login",
            json={"username": "Luca", "password": "x"},
            headers={"sec-fetch-site": "same-origin"},
        )
        assert refused.json()["accepted"] is False
        keys = []
        for _ in range(2):  # two browsers
            key = await log_in(http, "Luca")
            keys.append(key)

        page_call = {"cookie": f"__Host-session={keys[0]}", "origin": url}
        table = await http.post("/api/get_table_data", headers=page_call, json={})
        assert table.json()["accepted"] is True
        # API clients send the key in the seed's header instead.
        by_header = await http.post("/api/get_table_data", headers={"session_key": keys[0]})
        assert by_header.json()["user"] == "Luca"
        assert table.json()["table_data"][0]["sector"] == "Energy"
        missing = await http.post("/api/get_table_data", json={})
        assert missing.status_code == 401 and missing.json()["logout"] is True

        tabs: list[Any] = []
        pushed: list[Any] = []
        both = asyncio.Event()

        def on_logout(data: Any) -> None:
            pushed.append(data)
            if len(pushed) == 2:
                both.set()

        for key in keys:
            tab = socketio.AsyncClient(reconnection=False)
            tab.on("logout", on_logout)
            await tab.connect(url, auth={"session_key": key}, wait_timeout=5)
            tabs.append(tab)
        try:
            everywhere = await http.post(
                "/api/logout_everywhere",
                headers={"cookie": f"__Host-session={keys[1]}", "origin": url},
            )
            assert everywhere.json() == {"accepted": True, "message": "Logged out everywhere."}
            assert everywhere.headers["clear-site-data"] == '"cache", "storage"'
            async with asyncio.timeout(5):
                await both.wait()
            assert pushed == [{"reason": "logout_all"}] * 2
        finally:
            for tab in tabs:
                await tab.disconnect()
                await tab.shutdown()

        metrics = (await http.get("/metrics")).text
        assert "sessionkit_sessions_created_total 2.0" in metrics
        assert 'sessionkit_sessions_ended_total{reason="logout_all"} 2.0' in metrics
        assert "sessionkit_sessions_live 0.0" in metrics


async def test_the_sessions_panel_lists_devices_and_ends_one_by_push() -> None:
    demo = create_app(timeout=30, warn_before=None)
    async with serve(demo.app) as url, httpx.AsyncClient(base_url=url) as http:
        phone = await log_in(http, "Luca", agent="Phone/1.0")
        laptop = await log_in(http, "Luca", agent="Laptop/2.0")
        fabio = await log_in(http, "Fabio")
        from_laptop = {"cookie": f"__Host-session={laptop}", "origin": url}

        listed = await http.get("/api/sessions", headers=from_laptop)
        rows = listed.json()["sessions"]
        assert [r["device"] for r in rows] == ["Phone/1.0", "Laptop/2.0"]
        assert [(r["user_agent"], r["ip"], r["current"]) for r in rows] == [
            ("Phone/1.0", "127.0.0.1", False),
            ("Laptop/2.0", "127.0.0.1", True),
        ]
        assert [r["id"] for r in rows] == [hash_key(phone), hash_key(laptop)]
        assert all(r["created_at"] and r["last_active_at"] for r in rows)
        for key in (phone, laptop, fabio):
            assert key not in listed.text

        pushed = asyncio.Event()
        got: list[Any] = []
        tab = socketio.AsyncClient(reconnection=False)

        def on_logout(data: Any) -> None:
            got.append(data)
            pushed.set()

        tab.on("logout", on_logout)
        # The phone's page connects with its cookie only: no auth payload.
        await tab.connect(url, headers={"Cookie": f"__Host-session={phone}"}, wait_timeout=5)
        try:
            # Another user's session is not this user's to end.
            other = await http.post(
                "/api/end_session", headers=from_laptop, json={"id": hash_key(fabio)}
            )
            assert other.json()["accepted"] is False
            forged = await http.post(
                "/api/end_session",
                headers={**from_laptop, "origin": "https://evil.example"},
                json={"id": rows[0]["id"]},
            )
            assert forged.status_code == 403
            ended = await http.post(
                "/api/end_session", headers=from_laptop, json={"id": rows[0]["id"]}
            )
            assert ended.json() == {"accepted": True, "message": "Session ended."}
            assert "set-cookie" not in ended.headers  # the laptop's own cookie stays
            async with asyncio.timeout(5):
                await pushed.wait()
            assert got == [{"reason": "logout"}]
        finally:
            await tab.disconnect()
            await tab.shutdown()
        assert not await demo.sm.check_session_status(phone)
        assert await demo.sm.check_session_status(laptop)
        # Ending its own session clears the cookie too.
        own = await http.post(
            "/api/end_session", headers=from_laptop, json={"id": hash_key(laptop)}
        )
        assert own.headers["set-cookie"].startswith('__Host-session=""; Max-Age=0')
        gone = await http.get("/api/me", headers=from_laptop)
        assert gone.status_code == 401
        assert gone.headers["set-cookie"].startswith('__Host-session=""; Max-Age=0')


async def test_login_csrf_is_refused_and_a_login_replaces_the_browsers_session() -> None:
    demo = create_app(timeout=30, warn_before=None)
    async with serve(demo.app) as url, httpx.AsyncClient(base_url=url) as http:
        # What a cross-site page's auto-submitted text/plain form sends (the body still parses
        # as JSON), and what a client with neither header sends.
        forged_body = '{"username": "Fabio", "password": "sessionkit", "pad": "="}'
        for headers in (
            {"origin": "http://127.0.0.1:1", "sec-fetch-site": "same-site"},
            {"origin": "https://evil.example"},
            {"origin": "null"},
            {},
        ):
            forged = await http.post(
                "/api/try_login",
                content=forged_body,
                headers={"content-type": "text/plain", **headers},
            )
            assert forged.status_code == 403, headers
            assert forged.json()["accepted"] is False
            assert "set-cookie" not in forged.headers
        assert await demo.sm.count_sessions() == 0

        first = await log_in(http, "Luca")
        # The same browser logs in again, carrying its cookie: its first session ends.
        again = await http.post(
            "/api/try_login",
            json={"username": "Luca", "password": "sessionkit"},
            headers={"cookie": f"__Host-session={first}", "origin": url},
        )
        assert again.json()["accepted"] is True
        assert not await demo.sm.check_session_status(first)
        assert await demo.sm.count_sessions() == 1


async def test_end_all_other_sessions_and_a_logout_that_reaches_the_other_tab() -> None:
    demo = create_app(timeout=30, warn_before=None)
    async with serve(demo.app) as url, httpx.AsyncClient(base_url=url) as http:
        keys = [await log_in(http, "Luca", agent=f"Device/{n}") for n in range(3)]
        fabio = await log_in(http, "Fabio")
        here = {"cookie": f"__Host-session={keys[0]}", "origin": url}
        others = await http.post("/api/end_other_sessions", headers=here, json={})
        assert others.json() == {"accepted": True, "message": "2 other session(s) ended."}
        assert [await demo.sm.check_session_status(k) for k in keys] == [True, False, False]
        assert await demo.sm.check_session_status(fabio)

        # Two tabs of one browser share its cookie, so its session: a logout in one reaches
        # the other, which is told first and then disconnected.
        seen: list[tuple[str, Any]] = []
        gone = asyncio.Event()
        tab = socketio.AsyncClient(reconnection=False)
        tab.on("logout", lambda data: seen.append(("logout", data)))

        def on_disconnect(*_: Any) -> None:
            seen.append(("disconnect", None))
            gone.set()

        tab.on("disconnect", on_disconnect)
        await tab.connect(url, headers={"Cookie": here["cookie"]}, wait_timeout=5)
        try:
            bye = await http.post("/api/logout", headers=here, json={})
            assert bye.json() == {"accepted": True, "message": "Bye."}
            assert bye.headers["cache-control"] == "no-store"
            assert bye.headers["clear-site-data"] == '"cache", "storage"'
            assert bye.headers["set-cookie"].startswith('__Host-session=""; Max-Age=0')
            async with asyncio.timeout(5):
                await gone.wait()
        finally:
            await tab.shutdown()
        assert seen[:2] == [("logout", {"reason": "logout"}), ("disconnect", None)]
        assert not await demo.sm.check_session_status(keys[0])
