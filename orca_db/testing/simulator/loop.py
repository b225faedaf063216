"""An event loop in a background thread, driven from other threads."""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import os
import threading
from collections.abc import Awaitable, Callable
from typing import Any


def new_event_loop() -> asyncio.AbstractEventLoop:
    # uvloop, when installed, makes each forwarded message cheaper
    # (benchmarks/simulator_latency.py); the standard loop works the same.
    # ORCA_DB_SIMULATOR_LOOP=asyncio insists on the standard one.
    if os.environ.get("ORCA_DB_SIMULATOR_LOOP", "uvloop") != "asyncio":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


class LoopThread:
    """Runs an event loop in a daemon thread. :meth:`call` runs a function
    (or coroutine function) there from any other thread and returns its
    result, so a caller knows the change it asked for is in place."""

    def __init__(self, name: str):
        self.name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None

    @property
    def kind(self) -> str:
        """``"uvloop"`` or ``"asyncio"``: which loop runs (None before start)."""
        return type(self._loop).__module__.split(".")[0] if self._loop else "none"

    def start(self, setup: Callable[[], Awaitable[Any]]) -> None:
        """Start the thread and run ``setup()`` on the loop; re-raise what it
        raised (the thread then ends)."""
        if self._thread is not None:
            raise RuntimeError(f"{self.name} is already started.")
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(
            target=self._run, args=(setup, ready), name=self.name, daemon=True
        )
        self._thread.start()
        try:
            ready.result(timeout=30)
        except BaseException:
            self._thread.join(timeout=5)
            self._thread = None
            raise

    def _run(self, setup: Callable[[], Awaitable[Any]], ready: concurrent.futures.Future) -> None:
        loop = new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(setup())
        except BaseException as exc:
            loop.close()
            ready.set_exception(exc)
            return
        self._loop = loop
        ready.set_result(None)
        try:
            loop.run_forever()
        finally:
            tasks = asyncio.all_tasks(loop)
            for task in tasks:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            loop.close()

    def call(self, function: Callable[..., Any], *args: Any) -> Any:
        """Run ``function(*args)`` on the loop (awaited if it returns an
        awaitable) and return its result."""
        loop = self._loop
        if loop is None:
            raise RuntimeError(f"{self.name} is not started.")
        if threading.current_thread() is self._thread:
            raise RuntimeError(f"{self.name}'s control methods cannot be called from its loop.")

        async def invoke() -> Any:
            result = function(*args)
            return await result if inspect.isawaitable(result) else result

        return asyncio.run_coroutine_threadsafe(invoke(), loop).result()

    def stop(self, last: Callable[[], Any]) -> None:
        """Run ``last()`` on the loop, stop it and join the thread. Calling
        it when not started does nothing."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        try:
            self.call(last)
            loop.call_soon_threadsafe(loop.stop)
        except RuntimeError:  # the loop already ended
            pass
        thread.join(timeout=30)
        self._loop = self._thread = None
