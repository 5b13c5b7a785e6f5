"""The manager's own tasks: one anyio task group on the loop the manager runs on, closed by
``aclose()``, so that no task outlives the manager; and whether any of them is at work
(:meth:`LoopTasks.idle`), which ``SessionManager.idle()`` tells its callers.

Every task the manager or a part bound to it starts is a job here: expiry batches, timer-driven
handlers, the sweep, the settling of lost replies, the outbox's acknowledgements, the rest of a
report whose caller was cancelled, and the Socket.IO bridge's disconnects, releases and
``freeze_gc`` tending (handed this owner through :class:`UsesTasks` when it is attached). The
Redis store's tasks are the one exception, each started by a :class:`TaskSet` of the store's
(below; ``stores/redis/_pipeline.py`` says why): they serve a store used with no manager, and
the manager's last acknowledgements after its jobs have ended."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from contextvars import ContextVar
from typing import Any, Protocol, runtime_checkable

import anyio
from anyio.abc import TaskGroup

logger = logging.getLogger("sessionkit")

Job = Callable[..., Coroutine[Any, Any, None]]

# Set inside every task a LoopTasks runs: a handler that closes its own manager must not wait
# for the task it runs in.
_OWNER: ContextVar[LoopTasks | None] = ContextVar("sessionkit_owner", default=None)


class LoopTasks:
    """Runs background jobs in a task group owned by one task of its own (the runner), so that
    the group can be opened and closed from different tasks (a pytest fixture, a framework's
    startup and shutdown hooks). A job that fails is logged; it never ends the group.

    :param bind: binds the manager to the running loop (its ``LoopBinding.current``): what
        :meth:`start_soon` calls first, for parts that may start work before the manager's
        first call or after it closed.
    """

    def __init__(self, bind: Callable[[], object] | None = None) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self._bind = bind
        self._task_group: TaskGroup | None = None
        self._runner: asyncio.Task[None] | None = None
        self._backlog: list[tuple[Job, tuple[Any, ...], float | None]] = []
        # The cancel scopes of jobs that aclose() waits for at most a few seconds (their grace).
        self._graced: dict[anyio.CancelScope, float] = {}
        self.stop = asyncio.Event()  # set when the manager closes; long jobs wait on it
        # Jobs queued or running, less those resting between turns, plus work held for later
        # (a retry on a timer); ``_quiet`` is set whenever that count is zero.
        self._busy = 0
        self._quiet = asyncio.Event()
        self._quiet.set()
        self.jobs = 0  # jobs running now (begun, not yet ended)
        self._once: dict[Job, asyncio.AbstractEventLoop | None] = {}  # see spawn_once

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start a runner on ``loop`` (the previous loop's runner, if any, is left behind)."""
        self.loop = loop
        self._task_group = None
        self._backlog.clear()
        self._graced.clear()
        self.stop = asyncio.Event()
        self._busy = 0
        self._quiet = asyncio.Event()
        self._quiet.set()
        self.jobs = 0
        self._once.clear()
        self._runner = loop.create_task(self._run(), name="sessionkit")

    @property
    def running(self) -> bool:
        """Whether jobs spawned now will run."""
        return self._runner is not None

    def inside(self) -> bool:
        """Whether the current task is one of these jobs (or a task a job started)."""
        return _OWNER.get() is self

    def spawn(self, job: Job, *args: Any, grace: float | None = None) -> bool:
        """Run ``job(*args)`` in the group (queued until the runner begins).

        :param grace: seconds :meth:`aclose` waits for this job once the manager closes, before
            it cancels it (``None``: until it ends, as every handler is waited for).
        :return: whether it will run: not once the group has closed, nor before it opens.
        """
        if self._task_group is not None:
            self.hold()
            self._task_group.start_soon(self._guard, job, args, grace)
        elif self._runner is not None:
            self.hold()
            self._backlog.append((job, args, grace))
        else:
            return False
        return True

    def spawn_once(self, job: Job, *, grace: float | None = None) -> None:
        """:meth:`spawn` ``job()`` unless it is queued or running on this loop already: a part's
        worker that drains a queue of its own (the outbox's acknowledgements, the Socket.IO
        bridge's disconnects) runs one at a time, and again once it has ended."""
        if job not in self._once and self.spawn(self._once_run, job, grace=grace):
            self._once[job] = self.loop

    async def _once_run(self, job: Job) -> None:
        loop = asyncio.get_running_loop()
        try:
            await job()
        finally:
            if self._once.get(job) is loop:  # (a new loop's may be queued by now)
                del self._once[job]

    def start_soon(self, job: Job, *args: Any, grace: float | None = None) -> bool:
        """:meth:`spawn`, for a part bound to the manager that may have work before the
        manager's first call or after it closed (a room closed on another process): the
        manager is bound to the running loop first, so the job always has an owner."""
        if self._bind is not None:
            self._bind()
        return self.spawn(job, *args, grace=grace)

    def hold(self) -> None:
        """Count one piece of work that is not a running job yet will become one (a retry
        armed on a timer): :meth:`idle` waits until :meth:`release` is called for it."""
        self._busy += 1
        self._quiet.clear()

    def release(self) -> None:
        """The work counted by one :meth:`hold` is done (or now runs as a job)."""
        self._busy -= 1
        if self._busy <= 0:
            self._busy = 0
            self._quiet.set()

    def detach(self, step: Awaitable[None]) -> asyncio.Future[None]:
        """Run ``step`` (one step of a caller's report) where its caller's cancellation cannot
        reach it: the caller awaits it through ``asyncio.shield``, and if the caller is
        cancelled, hands it to a job (:meth:`spawn`) that awaits it, so it always has an owner.
        A task per step, not a job: a report's steps run in the caller's context, and the
        caller waits for them."""
        return asyncio.ensure_future(step)

    async def rest(self, seconds: float) -> None:
        """Wait ``seconds``, or until the manager closes, as a job between two turns (a sweep
        waiting for the next): :meth:`idle` does not wait for a job that rests."""
        self.release()
        try:
            with anyio.move_on_after(seconds):
                await self.stop.wait()
        finally:
            self.hold()

    async def idle(self) -> None:
        """Return once no job is queued or running (resting ones aside) and no held work is
        left, or once these tasks stop.

        :raises RuntimeError: if called from one of these jobs, which would wait for itself.
        """
        if self.inside():
            raise RuntimeError("idle() from the manager's own task would wait for itself")
        while self._busy and self._runner is not None:
            await self._quiet.wait()

    async def aclose(self) -> None:
        """Signal the jobs to stop and wait for them, unless called from one of them."""
        runner, self._runner = self._runner, None
        self._quiet.set()  # idle() returns: nothing more runs
        if runner is not None and self.loop is asyncio.get_running_loop():
            self.stop.set()
            now = anyio.current_time()
            for scope, grace in self._graced.items():
                scope.deadline = min(scope.deadline, now + grace)
            if not self.inside():
                await runner
        self.loop = None

    async def _run(self) -> None:
        try:
            async with anyio.create_task_group() as task_group:
                self._task_group = task_group
                for job, args, grace in self._backlog:
                    task_group.start_soon(self._guard, job, args, grace)
                self._backlog.clear()
                await self.stop.wait()
        finally:
            self._task_group = None

    async def _guard(self, job: Job, args: tuple[Any, ...], grace: float | None) -> None:
        _OWNER.set(self)
        self.jobs += 1
        try:
            if grace is None:
                await job(*args)
            else:
                with anyio.CancelScope() as scope:
                    self._graced[scope] = grace
                    if self.stop.is_set():  # began while the manager closes
                        scope.deadline = anyio.current_time() + grace
                    try:
                        await job(*args)
                    finally:
                        self._graced.pop(scope, None)  # (gone if a new loop began)
        except Exception:  # jobs report their own failures; this is the last line
            logger.exception("sessionkit background job %s failed", getattr(job, "__name__", job))
        finally:
            self.jobs -= 1
            self.release()


@runtime_checkable
class UsesTasks(Protocol):
    """A part the manager hands its task owner to when it is bound to the manager (the
    Socket.IO adapter's bridge): every task it starts is then a job of the manager's."""

    def bind_tasks(self, tasks: LoopTasks) -> None:
        """Start tasks through ``tasks`` from now on (its :meth:`LoopTasks.start_soon`)."""


class TaskSet:
    """Tasks a part owns outright, apart from any manager's task group: the opening and the
    closing of the Redis store's connections (``_pipeline.py``, ``_cluster.py``). They serve a
    store used with no manager at all (``sessionkit.testing`` runs the contract on the store
    alone), and they carry a manager's last acknowledgements after its jobs have ended; the
    store's ``aclose()`` ends them, and the manager calls it last. Each is started by
    :meth:`start` and awaited by :meth:`join`."""

    __slots__ = ("_tasks",)

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self, job: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        """Run ``job`` in a task of this set, on the running loop; the task, to cancel it."""
        task = asyncio.get_running_loop().create_task(job, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def join(self) -> None:
        """Wait until every task of this set on the running loop has ended (those started
        meanwhile included); their failures are theirs to report. Tasks left on a past loop
        went with it."""
        loop = asyncio.get_running_loop()
        while pending := [t for t in self._tasks if t.get_loop() is loop and not t.done()]:
            await asyncio.gather(*pending, return_exceptions=True)
