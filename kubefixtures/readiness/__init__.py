"""When is an object ready, and why not: the rules (``rules``, pure functions over JSON)
and the wait that applies them to what the watches see (``wait``)."""

from __future__ import annotations

from kubefixtures.readiness.rules import (
    WATCHED_KINDS,
    Readiness,
    State,
    assess,
    describe_events,
    describe_pod,
    pod_is_hopeless,
)

__all__ = [
    "WATCHED_KINDS",
    "Readiness",
    "State",
    "assess",
    "describe_events",
    "describe_pod",
    "pod_is_hopeless",
]
