"""Clocks: the one source of "now" for everything that decides by time (Leases, reapers).

Session machines, laptops and the operator's node do not agree on the time of day; only the
API server's clock is shared by all of them. So: wall times that other machines read (a
Lease's ``renewTime``, a keep-until) are written and compared in the API server's time
(:class:`ServerClock`, estimated from the ``Date`` header of its answers), and durations are
measured on a monotonic clock, which no clock correction moves.

Pure and tiny: ``kubefixtures.kube`` (which sees the answers) and ``kubefixtures.leases``
(which decides) both import it. Tests inject a :class:`Clock` of their own instead of
sleeping or moving the machine's clock.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Protocol

__all__ = ["SYSTEM_CLOCK", "Clock", "ServerClock", "SystemClock"]


class Clock(Protocol):
    def wall(self) -> datetime:
        """Now, as a timezone-aware UTC datetime."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that only moves forward (for measuring durations)."""
        ...


class SystemClock:
    """This machine's clocks."""

    def wall(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()


SYSTEM_CLOCK: Clock = SystemClock()

# HTTP dates have whole seconds: the server's time lies somewhere in the second it names.
_HALF_SECOND = timedelta(seconds=0.5)


class ServerClock:
    """The API server's time of day: this machine's clock plus the offset measured on the
    last answer that carried a ``Date`` header (accurate to about half a second plus half a
    round trip; a skew of minutes is what it is for). Until an answer has been seen, it is
    this machine's clock. Thread-safe."""

    def __init__(self, local: Clock = SYSTEM_CLOCK) -> None:
        self.local = local
        self._offset: timedelta | None = None
        self._lock = threading.Lock()

    @property
    def offset(self) -> timedelta | None:
        """Server time minus local time, once measured."""
        return self._offset

    def observe(self, date_header: str | None, sent: datetime, received: datetime) -> None:
        """An answer sent at local wall time ``sent`` came back at ``received`` carrying
        ``date_header``; a missing or unreadable header changes nothing."""
        if not date_header:
            return
        try:
            server = parsedate_to_datetime(date_header)
        except (TypeError, ValueError, IndexError, OverflowError):
            return
        if server.tzinfo is None:
            return
        local_midpoint = sent + (received - sent) / 2
        with self._lock:
            self._offset = server.astimezone(UTC) + _HALF_SECOND - local_midpoint

    def wall(self) -> datetime:
        offset = self._offset
        now = self.local.wall()
        return now if offset is None else now + offset

    def monotonic(self) -> float:
        return self.local.monotonic()
