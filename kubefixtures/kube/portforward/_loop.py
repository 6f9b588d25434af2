"""One background event-loop thread shared by every port-forward of the process.

Sync callers (pytest fixtures) hand coroutines to it. It is reference-counted: the first
user starts it, the last one stops it and joins the thread, so a test session that stopped
its forwards leaves no thread behind.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

THREAD_NAME = "kubefixtures-portforward"


class SharedLoop:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def acquire(self) -> asyncio.AbstractEventLoop:
        """The loop, started if needed; pair every call with one `release()`."""
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                started = threading.Event()

                def run() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(started.set)
                    loop.run_forever()

                # A daemon thread: a forward the caller forgot to stop must not keep the
                # interpreter from exiting.
                thread = threading.Thread(target=run, name=THREAD_NAME, daemon=True)
                thread.start()
                started.wait()
                self._loop, self._thread = loop, thread
            self._users += 1
            return self._loop

    def release(self) -> None:
        with self._lock:
            self._users -= 1
            if self._users > 0 or self._loop is None or self._thread is None:
                return
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
            # Still under the lock: a concurrent acquire() waits and then starts a new loop.
            asyncio.run_coroutine_threadsafe(_drain(), loop).result(timeout=10)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)
            loop.close()


async def _drain() -> None:
    # Whatever is still scheduled belongs to forwards that were stopped; cancel it so that
    # closing the loop does not warn about pending tasks, and stop the executor threads.
    current = asyncio.current_task()
    tasks = [task for task in asyncio.all_tasks() if task is not current]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.get_running_loop().shutdown_default_executor()


SHARED = SharedLoop()


def run(
    coroutine: Coroutine[Any, Any, T], loop: asyncio.AbstractEventLoop, timeout: float | None
) -> T:
    """Runs `coroutine` on `loop` from another thread and returns its result."""
    future = asyncio.run_coroutine_threadsafe(coroutine, loop)
    try:
        return future.result(timeout)
    except TimeoutError:
        future.cancel()
        raise
