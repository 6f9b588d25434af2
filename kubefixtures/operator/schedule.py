"""What the operator knows about every managed namespace, and when to look at each again.

Fed by the watch streams (namespaces and their Leases, in whatever order they arrive) and
read by the reaper. No I/O and no clock of its own, so it is tested without a cluster.
A min-heap holds the due times; entries superseded by a later plan are skipped when popped.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from kubefixtures.leases.policy import (
    LeaseInfo,
    SessionNamespace,
    lease_from_object,
    namespace_from_object,
)

__all__ = ["Schedule"]


class Schedule:
    def __init__(self) -> None:
        self._namespaces: dict[str, SessionNamespace] = {}
        # By namespace name: a Lease may be seen before its namespace (two watch streams).
        self._leases: dict[str, LeaseInfo] = {}
        self._due: dict[str, datetime] = {}
        self._heap: list[tuple[datetime, str]] = []

    def __len__(self) -> int:
        return len(self._namespaces)

    def __contains__(self, name: object) -> bool:
        return name in self._namespaces

    # --- what the watches say ---------------------------------------------------------------

    def namespace_seen(self, body: Mapping[str, Any]) -> str:
        session = namespace_from_object(body)
        self._namespaces[session.name] = session
        return session.name

    def namespace_gone(self, name: str) -> None:
        self._namespaces.pop(name, None)
        self._leases.pop(name, None)
        self._due.pop(name, None)  # its heap entries are skipped when they come up

    def lease_seen(self, body: Mapping[str, Any]) -> str:
        namespace = str((body.get("metadata") or {}).get("namespace") or "")
        self._leases[namespace] = lease_from_object(body)
        return namespace

    def lease_gone(self, namespace: str) -> None:
        self._leases.pop(namespace, None)

    def remember(self, session: SessionNamespace) -> None:
        """A fresher view (read from the API by the reaper) than the watches gave so far."""
        self._namespaces[session.name] = session.with_lease(None)
        if session.lease is None:
            self._leases.pop(session.name, None)
        else:
            self._leases[session.name] = session.lease

    def session(self, name: str) -> SessionNamespace | None:
        """The namespace with its Lease, or None when no managed namespace of that name is known."""
        namespace = self._namespaces.get(name)
        return None if namespace is None else namespace.with_lease(self._leases.get(name))

    # --- when to look -----------------------------------------------------------------------

    def plan(self, name: str, at: datetime | None) -> bool:
        """Look at ``name`` at ``at`` (None: only when it changes). True if that is sooner
        than anything planned before, i.e. a sleeping reaper must wake up."""
        if at is None or name not in self._namespaces:
            self._due.pop(name, None)
            return False
        earliest = self._heap[0][0] if self._heap else None
        if self._due.get(name) == at:
            return False
        self._due[name] = at
        heapq.heappush(self._heap, (at, name))
        return earliest is None or at < earliest

    def due_at(self, name: str) -> datetime | None:
        return self._due.get(name)

    def next_due(self) -> datetime | None:
        self._drop_stale()
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: datetime) -> list[str]:
        """The namespaces whose time has come, soonest first; they are no longer planned."""
        names = []
        while self._heap:
            self._drop_stale()
            if not self._heap or self._heap[0][0] > now:
                break
            _, name = heapq.heappop(self._heap)
            del self._due[name]
            names.append(name)
        return names

    def _drop_stale(self) -> None:
        while self._heap and self._due.get(self._heap[0][1]) != self._heap[0][0]:
            heapq.heappop(self._heap)
