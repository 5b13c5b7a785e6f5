"""``python -m sessionkit``: list, count and end sessions in a Redis store, for an operator who
must act now (a stolen laptop, an account to lock out)::

    python -m sessionkit --redis redis://127.0.0.1:6379/0 sessions Luca
    python -m sessionkit --redis redis://127.0.0.1:6379/0 end Luca 3f9a1c2e
    python -m sessionkit --redis redis://127.0.0.1:6379/0 end Luca
    python -m sessionkit --redis redis://127.0.0.1:6379/0 count

It works on the store alone, through a :class:`~sessionkit.SessionManager` of its own on the
same ``RedisStore`` as the application's workers: an ``end`` is the application's own
``delete_user_session`` (reason ``"logout"``) or ``delete_user_sessions`` (``"logout_all"``),
one atomic step in Redis, so a worker never reports the session live afterwards. This process's
manager reports that ending (its ``session_deleted``), not the workers' handlers; it runs no
sweep, so the expiries it comes across stay the workers' to claim and report. With ``--socketio-channel`` (the channel
of the workers' ``socketio.AsyncRedisManager``, ``"socketio"`` by default there) the ended
sessions' sockets are told ``logout`` and their rooms closed through Redis, as when a worker
ends a session: the pages return to their login form whichever worker holds their socket.

Needs ``sessionkit[redis]`` (and ``sessionkit[socketio]`` for ``--socketio-channel``).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from typing import Any

from sessionkit.events import Reason
from sessionkit.exceptions import SessionError, StoreUnavailable
from sessionkit.manager import SessionManager

__all__ = ("main",)

_ID_PREFIX = 8  # hex digits: the shortest id prefix `end` accepts, so that a typo matches nothing


class _RelayBridge:
    # The logout push of a process that holds no sockets: python-socketio's write-only
    # AsyncRedisManager publishes the emit and the room's closing to every worker, whose
    # bind_socketio disconnects the room's sockets (watch_closing).
    def __init__(self, redis_url: str, channel: str) -> None:
        import socketio

        from sessionkit.socketio import ROOM_PREFIX

        self._prefix = ROOM_PREFIX
        self.relay = socketio.AsyncRedisManager(redis_url, channel=channel, write_only=True)

    async def logout(self, key_hash: str, reason: Reason) -> None:
        room = self._prefix + key_hash
        await self.relay.emit("logout", {"reason": reason}, room=room, namespace="/")
        await self.relay.close_room(room, namespace="/")

    async def expiring(self, key_hash: str, remaining: float) -> None:
        return None  # this process warns nobody: the workers' own timers do

    async def rotated(self, old_hash: str, new_hash: str, new_key: str) -> None:
        return None  # this process rotates nothing

    async def aclose(self) -> None:
        return None  # nothing queued behind the pushes: each is published as it is made


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sessionkit",
        description="List, count and end the sessions of a sessionkit RedisStore.",
    )
    parser.add_argument("--redis", required=True, metavar="URL", help="the store's Redis URL")
    parser.add_argument(
        "--prefix", default="sessionkit:", help="the store's key prefix (default: %(default)s)"
    )
    parser.add_argument(
        "--cluster", action="store_true", help="the URL names a node of a Redis Cluster"
    )
    parser.add_argument(
        "--socketio-channel",
        metavar="CHANNEL",
        help="push logout to the ended sessions' sockets through the workers' "
        "socketio.AsyncRedisManager on this channel",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    sessions = commands.add_parser("sessions", help="list a user's live sessions, oldest first")
    sessions.add_argument("user")
    end = commands.add_parser(
        "end", help="end one of a user's sessions (by its id, or a prefix of it), or all of them"
    )
    end.add_argument("user")
    end.add_argument("id", nargs="?", help=f"a session id, or its first {_ID_PREFIX}+ digits")
    commands.add_parser("count", help="count the live sessions")
    return parser


def _client(url: str, cluster: bool) -> Any:
    try:
        from redis.asyncio import Redis, RedisCluster
    except ImportError:
        sys.exit("python -m sessionkit needs redis-py: pip install 'sessionkit[redis]'")
    return RedisCluster.from_url(url) if cluster else Redis.from_url(url)


async def _run(args: argparse.Namespace) -> int:
    from sessionkit.stores.redis import RedisStore

    client = _client(args.redis, args.cluster)
    bridge = (
        None if args.socketio_channel is None else _RelayBridge(args.redis, args.socketio_channel)
    )
    try:
        store = RedisStore(client, prefix=args.prefix)
        # No sweep here: a session that expires meanwhile is the workers' to claim and report
        # to their handlers, which this process does not have.
        store.sweep_interval = None
        async with SessionManager(store=store) as sm:
            if bridge is not None:
                sm.attach_socket_bridge(bridge.relay, bridge)
            return await _command(sm, args)
    finally:
        await client.aclose()


async def _command(sm: SessionManager, args: argparse.Namespace) -> int:
    if args.command == "count":
        print(await sm.count_sessions())
        return 0
    listed = await sm.get_user_sessions(args.user)
    if args.command == "sessions":
        print("id\tcreated\tlast active\texpires\tip\tuser agent")
        for s in listed:
            ip, agent = (s.client.ip, s.client.user_agent) if s.client else (None, None)
            times = (s.created_at, s.last_active_at, s.expires_at)
            when = [t.isoformat(timespec="seconds") for t in times]
            print("\t".join([s.id, *when, ip or "-", agent or "-"]))
        return 0
    if args.id is None:
        ended = await sm.delete_user_sessions(args.user)
        print(f"ended {ended} session(s) of {args.user}")
        return 0
    if len(args.id) < _ID_PREFIX:
        print(f"give at least {_ID_PREFIX} digits of the session's id", file=sys.stderr)
        return 2
    matches = [s.id for s in listed if s.id.startswith(args.id.lower())]
    if len(matches) != 1:
        what = "no session" if not matches else f"{len(matches)} sessions"
        print(f"{what} of {args.user} with an id starting {args.id}", file=sys.stderr)
        return 1
    if not await sm.delete_user_session(args.user, matches[0]):
        print(f"session {matches[0]} of {args.user} had already ended", file=sys.stderr)
        return 1
    print(f"ended session {matches[0]} of {args.user}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return its exit status (0 done, 1 no such session, 2 a usage
    error or an unreachable store).

    :param argv: the arguments, ``sys.argv[1:]`` if omitted.
    """
    args = _parser().parse_args(argv)
    try:
        return asyncio.run(_run(args))
    except StoreUnavailable as exc:
        print(f"the store cannot be reached: {exc}", file=sys.stderr)
        return 2
    except SessionError as exc:
        print(str(exc), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
