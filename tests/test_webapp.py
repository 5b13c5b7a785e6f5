"""The demo app (examples/webapp) under uvicorn, driven by real HTTP and Socket.IO clients."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import socketio

from examples.webapp.app import PasswordBook, create_app
from tests.servers import serve


async def test_password_book_checks_scrypt_hashes() -> None:
    book = PasswordBook({"Luca": "right"})
    assert await book.verify("Luca", "right")
    assert not await book.verify("Luca", "wrong")
    assert not await book.verify("Nobody", "right")
    assert "right" not in repr(vars(book))


async def test_login_table_logout_everywhere_and_metrics() -> None:
    demo = create_app(timeout=30, warn_before=None)
    async with serve(demo.app) as url, httpx.AsyncClient(base_url=url) as http:
        page = await http.get("/")
        assert page.status_code == 200
        assert "<script data-socketio" in page.text
        assert "Log in" in page.text

        refused = await http.post("/api/try_login", json={"username": "Luca", "password": "x"})
        assert refused.json()["accepted"] is False
        keys = []
        for _ in range(2):  # two tabs
            login = await http.post(
                "/api/try_login", json={"username": "Luca", "password": "sessionkit"}
            )
            body = login.json()
            assert body["accepted"] is True
            assert 29 < body["user_data"]["expires_in"] <= 30
            keys.append(body["user_data"]["session_key"])

        table = await http.post("/api/get_table_data", headers={"session_key": keys[0]}, json={})
        assert table.json()["accepted"] is True
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
            everywhere = await http.post("/api/logout_everywhere", headers={"session_key": keys[1]})
            assert everywhere.json()["message"] == "2 session(s) ended."
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
