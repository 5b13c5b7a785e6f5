"""python-socketio's disconnect cost, with and without sessionkit's room index.

    python -m benchmarks.rooms [N ...]

For each N: a python-socketio ``AsyncManager`` holding N sockets in namespace "/", each in its
own sid room and in one session room (as ``bind_socketio`` makes them: ~2N rooms), then all N
disconnected one after another through ``AsyncManager.disconnect``, as a burst of logouts or
N clients leaving do. Once on python-socketio's manager as it ships, once after
``sessionkit.socketio.index_rooms``; CPU time of the disconnects only, in this process.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

import socketio
from socketio.async_manager import AsyncManager

from sessionkit.socketio import index_rooms

__all__ = ("disconnect_all",)


async def disconnect_all(n: int, *, indexed: bool) -> float:
    """CPU seconds to disconnect ``n`` sockets from a manager holding them (and their rooms)."""
    manager: Any = AsyncManager()
    socketio.AsyncServer(async_mode="asgi", client_manager=manager)
    if indexed:
        index_rooms(manager)
    sids = [f"s{i}" for i in range(n)]
    for i, sid in enumerate(sids):
        manager.basic_enter_room(sid, "/", None, eio_sid=f"e{i}")
        manager.basic_enter_room(sid, "/", sid, eio_sid=f"e{i}")
        manager.basic_enter_room(sid, "/", f"session:{i}")
    started = time.process_time()
    for sid in sids:
        await manager.disconnect(sid, "/")
    return time.process_time() - started


def measure(sizes: list[int]) -> list[dict[str, float]]:
    """Both managers at each size: ``{"sockets", "shipped_s", "indexed_s"}`` per size."""
    rows = []
    for n in sizes:
        shipped = asyncio.run(disconnect_all(n, indexed=False))
        indexed = asyncio.run(disconnect_all(n, indexed=True))
        rows.append({"sockets": n, "shipped_s": shipped, "indexed_s": indexed})
    return rows


def main() -> None:
    sizes = [int(arg) for arg in sys.argv[1:]] or [1_000, 5_000, 20_000]
    print(f"{'sockets':>8} {'python-socketio':>16} {'with index_rooms':>17}")
    for row in measure(sizes):
        print(f"{row['sockets']:>8,} {row['shipped_s']:>14.3f} s {row['indexed_s']:>15.4f} s")


if __name__ == "__main__":
    main()
