"""What the operator knows about every managed namespace, and when to look at each again.

Fed by the watch streams (namespaces and their Leases, in whatever order they arrive) and
read by the reaper. No I/O, and the clock is given (tests give theirs), so it is tested
without a cluster. A min-heap holds the due times; entries superseded by a later plan are
skipped when popped.

Expiry is judged the way client-go's leader election does it, never by comparing the
session's clock with ours: the schedule remembers, on the operator's monotonic clock, when it
*saw* each Lease's renewal fields change (and when it first saw each namespace). A Lease
expires ``leaseDurationSeconds`` after the last change seen. A Lease seen for the first time
counts as renewed at that moment, so a freshly started operator waits a full duration plus
grace before deleting anything it has not seen renewed.
"""

from __future__ import annotations

import dataclasses
import heapq
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from kubefixtures.clock import SYSTEM_CLOCK, Clock
from kubefixtures.leases.policy import (
    LeaseInfo,
    SessionNamespace,
    lease_from_object,
    namespace_from_object,
)

__all__ = ["Observation", "Schedule", "as_observed"]


@dataclasses.dataclass(frozen=True)
class Observation:
    """When (monotonic seconds) the operator first saw a namespace, and its Lease's renewal
    fields as last seen changing."""

    namespace_seen: float
    signature: str | None = None
    renewal_seen: float = 0.0

    def renewed(self, lease: LeaseInfo, at: float) -> Observation:
        if lease.signature == self.signature:
            return self
        return dataclasses.replace(self, signature=lease.signature, renewal_seen=at)


def as_observed(
    session: SessionNamespace, observation: Observation, clock: Clock
) -> SessionNamespace:
    """``session`` with its creation and its Lease's last renewal replaced by when the
    operator saw them, expressed in the frame of ``clock.wall()`` (which decisions compare
    with): only the monotonic clock's elapsed time matters. A renewal not seen yet (a fresh
    read from the API) counts as seen now."""
    wall, monotonic = clock.wall(), clock.monotonic()

    def seen(at: float) -> datetime:
        return wall - timedelta(seconds=max(monotonic - at, 0.0))

    lease = session.lease
    if lease is not None:
        renewal = observation.renewed(lease, monotonic).renewal_seen
        lease = dataclasses.replace(lease, observed=seen(renewal))
    return dataclasses.replace(session, created=seen(observation.namespace_seen), lease=lease)


class Schedule:
    def __init__(self, clock: Clock = SYSTEM_CLOCK) -> None:
        self.clock = clock
        self._namespaces: dict[str, SessionNamespace] = {}
        # By namespace name: a Lease may be seen before its namespace (two watch streams).
        self._leases: dict[str, LeaseInfo] = {}
        self._observations: dict[str, Observation] = {}
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
        self._observation(session.name)
        return session.name

    def namespace_gone(self, name: str) -> None:
        self._namespaces.pop(name, None)
        self._leases.pop(name, None)
        self._observations.pop(name, None)
        self._due.pop(name, None)  # its heap entries are skipped when they come up

    def lease_seen(self, body: Mapping[str, Any]) -> str:
        metadata = body.get("metadata")
        namespace = str((metadata if isinstance(metadata, Mapping) else {}).get("namespace") or "")
        self._store_lease(namespace, lease_from_object(body))
        return namespace

    def lease_gone(self, namespace: str) -> None:
        self._leases.pop(namespace, None)

    def remember(self, session: SessionNamespace) -> None:
        """A fresher view (read from the API by the reaper) than the watches gave so far."""
        self._namespaces[session.name] = session.with_lease(None)
        if session.lease is None:
            self._leases.pop(session.name, None)
        else:
            self._store_lease(session.name, dataclasses.replace(session.lease, observed=None))

    def _observation(self, name: str) -> Observation:
        observation = self._observations.get(name)
        if observation is None:
            observation = self._observations[name] = Observation(self.clock.monotonic())
        return observation

    def _store_lease(self, namespace: str, lease: LeaseInfo) -> None:
        self._leases[namespace] = lease
        observation = self._observation(namespace)
        self._observations[namespace] = observation.renewed(lease, self.clock.monotonic())

    def observation(self, name: str) -> Observation:
        """What the operator saw of ``name`` so far (first sight now, if never seen)."""
        return self._observations.get(name) or Observation(self.clock.monotonic())

    def session(self, name: str) -> SessionNamespace | None:
        """The namespace with its Lease, as observed (see ``as_observed``), or None when no
        managed namespace of that name is known."""
        namespace = self._namespaces.get(name)
        if namespace is None:
            return None
        session = namespace.with_lease(self._leases.get(name))
        return as_observed(session, self.observation(name), self.clock)

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
