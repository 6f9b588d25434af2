"""A line on stderr whenever the build has been quiet for a while: what it is doing, how far
along, for how long, and what a cold build takes (the promise: a line at least every 30 s,
so a first build that downloads PyPI and npm packages is never silent)."""

from __future__ import annotations

import sys
import threading
import time
from types import TracebackType
from typing import TextIO

QUIET_SECONDS = 20.0
COLD_ESTIMATE = "about 2 min when nothing is cached"  # measured on 2 cores (README)


def format_duration(seconds: float) -> str:
    whole = max(0, round(seconds))
    return f"{whole} s" if whole < 60 else f"{whole // 60} min {whole % 60:02d} s"


class Heartbeat:
    """``say`` prints a line; when nothing was said for ``quiet`` seconds, the thread
    says what the current ``step`` is."""

    def __init__(self, stream: TextIO | None = None, quiet: float = QUIET_SECONDS) -> None:
        self._stream = stream if stream is not None else sys.stderr
        self._quiet = quiet
        self._began = self._last = time.monotonic()
        self._step = "checking what changed"
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()

    def step(self, what: str) -> None:
        self._step = what

    def say(self, line: str, stream: TextIO | None = None) -> None:
        with self._lock:
            target = stream if stream is not None else self._stream
            target.write(line + "\n")
            target.flush()  # through make and pipes, as it happens
            self._last = time.monotonic()

    def _beat(self) -> None:
        while not self._stop.wait(1.0):
            now = time.monotonic()
            if now - self._last >= self._quiet:
                elapsed = format_duration(now - self._began)
                self.say(f"build.py: {self._step}; {elapsed} so far ({COLD_ESTIMATE})")
