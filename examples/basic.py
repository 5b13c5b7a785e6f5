"""The seed package's own usage example, on sessionkit: two users log in, sessions time out
after 6 idle seconds, handlers print as they end, logged users are printed every 2 seconds.

Run it with ``make demo`` or ``python examples/basic.py``.
"""

from __future__ import annotations

import asyncio

from sessionkit import SessionEvent, SessionManager


async def main() -> None:
    sm = SessionManager()
    sm.set_session_timeout(6)  # seconds
    all_ended = asyncio.Event()

    @sm.on("session_created")
    def created(event: SessionEvent) -> None:
        print(f"{event.username} logged in (session {event.key_hash[:8]})")

    @sm.on("session_deleted")
    async def deleted(event: SessionEvent) -> None:
        print(f"{event.username}'s session {event.key_hash[:8]} has ended: {event.reason}")
        if not await sm.count_sessions():
            all_ended.set()

    async with sm:
        luca = await sm.load_new_session("Luca")
        await sm.load_new_session("Fabio")
        for tick in range(100):
            users = await sm.get_logged_users()
            print("logged users:", users)
            if not users:
                break
            if tick == 1:
                await sm.restart_session_timer(luca)  # Luca made a request: 6 more seconds
                print("Luca made a request: his timer restarted")
            await asyncio.sleep(2)
        await all_ended.wait()


if __name__ == "__main__":
    asyncio.run(main())
