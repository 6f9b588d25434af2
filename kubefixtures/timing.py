"""How long each phase of an environment's setup took: the one recorder every provisioning
uses, on the monotonic clock of kubefixtures.clock.

Phases overlap (connecting runs beside rendering, port-forwards start while the pods become
ready), so a phase is a span, start and end, not only a duration: the terminal summary
shows durations, the HTML report draws the spans. A phase entered twice (Helm hooks before
and after the apply) adds up its durations and spans from its first start to its last end.

Standard library only: the provisionings import it, and so may a suite's own code.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import ParamSpec, TypeVar

from kubefixtures.clock import SYSTEM_CLOCK, Clock

__all__ = ["PHASES", "Phases", "Span"]

P = ParamSpec("P")
T = TypeVar("T")

# Every phase a provisioning records, in the order a fresh environment goes through them,
# with what it measures (docs/report.md shows the same table).
PHASES: dict[str, str] = {
    "render": "the sources rendered to objects (placeholders, helm template)",
    "connect": "the session's connection to the cluster (credentials, version check); "
    "usually made while pytest collects, so nearly 0",
    "reuse": "looking for a namespace an earlier run left (--kubefixtures-reuse), or claiming "
    "a pool's spare (--kubefixtures-pool)",
    "resolve": "finding every object's API resource (discovery), checking cluster-scoped ones",
    "namespace": "creating the namespace and its Lease, taking a reused one over, or checking "
    "that an attached one exists",
    "apply": "server-side apply of every object (CRDs first, Helm pre-install hooks)",
    "ready": "waiting until every object is ready",
    "forward": "port-forwards, from their start (beside ready) until the last one serves",
    "hooks": "Helm post-install hooks",
    "app-ready": "the environment's ready= probes, until every application answers",
    "wait": "an xdist worker waiting for the worker that brings a shared environment up",
}


@dataclass(frozen=True)
class Span:
    """One phase: monotonic start and end, and the seconds spent in it."""

    start: float
    end: float
    seconds: float


class Phases:
    """The phases of one environment's setup. Thread-safe: phases are recorded from the
    setup's helper threads too. ``mode`` says how the environment came: ``fresh``,
    ``reused``, ``pooled`` (a spare claimed from the pool), ``attached`` (a details file) or
    ``shared`` (another xdist worker's)."""

    def __init__(self, mode: str = "fresh", clock: Clock = SYSTEM_CLOCK) -> None:
        self.mode = mode
        self.clock = clock
        self._spans: dict[str, Span] = {}
        self._lock = threading.Lock()
        self.started: float | None = None
        self.finished: float | None = None

    def begin(self) -> None:
        """The setup starts (phases start from here)."""
        self.started = self.clock.monotonic()

    def end(self) -> None:
        """The setup is over: the environment is ready."""
        self.finished = self.clock.monotonic()

    @property
    def total(self) -> float:
        """Seconds from ``begin`` to ``end`` (or over the recorded spans, if not marked)."""
        with self._lock:
            spans = list(self._spans.values())
        start = min((span.start for span in spans), default=0.0)
        end = max((span.end for span in spans), default=start)
        start = self.started if self.started is not None else start
        end = self.finished if self.finished is not None else end
        return max(end - start, 0.0)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Record the time spent in the ``with`` block as phase ``name`` (also on errors)."""
        start = self.clock.monotonic()
        try:
            yield
        finally:
            self.record(name, start, self.clock.monotonic())

    def timed(self, name: str, function: Callable[P, T]) -> Callable[P, T]:
        """``function``, recording each call as phase ``name`` (for work run in a thread)."""

        def call(*args: P.args, **kwargs: P.kwargs) -> T:
            with self.phase(name):
                return function(*args, **kwargs)

        return call

    def record(self, name: str, start: float, end: float) -> None:
        with self._lock:
            known = self._spans.get(name)
            if known is None:
                self._spans[name] = Span(start, end, end - start)
            else:
                self._spans[name] = Span(
                    min(known.start, start), max(known.end, end), known.seconds + end - start
                )

    def spans(self) -> dict[str, Span]:
        """The recorded phases, in the order they started (as recorded, when at once)."""
        with self._lock:
            return dict(sorted(self._spans.items(), key=lambda item: item[1].start))

    def seconds(self) -> dict[str, float]:
        """``{phase: seconds}``, in the order the phases started (the details' ``phases``)."""
        return {name: round(span.seconds, 3) for name, span in self.spans().items()}
