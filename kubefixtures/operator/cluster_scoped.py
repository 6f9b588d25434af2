"""The operator's sweep over cluster-scoped objects: every few seconds, dead owners are
removed and objects left without owners deleted (kubefixtures.leases.cluster_scoped). The
same sweep reaps dead sessions in existing namespaces (kubefixtures.leases.existing_namespaces):
their objects and their Lease, never the namespace.

A sweep rather than watches: the kinds are whatever environments hold (CRDs, RBAC, webhook
configurations, PriorityClasses...), and a watch per kind would need the right to watch each.
The operator lists the kinds its RBAC allows (the chart's ``reaper.clusterScopedKinds``) and
skips the others; the list of kinds is refreshed now and then, for CRDs installed later.

Cheap at rest: every ``SWEEP_SECONDS`` only the kinds that held managed objects at their last
listing are listed, and the Leases of existing-namespace sessions only while the Lease watch
knows of one. Everything is listed every ``FULL_SWEEP_SECONDS``, and at the next sweep after
a session ended (its namespace going or gone, a session Lease deleted, a dead session reaped
in an existing namespace): an owner can only die with its session, so objects created since
the last full sweep in a kind that held none are found then, as fast as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from kubefixtures.kube import Cluster, Resource
from kubefixtures.leases.cluster_scoped import reap_cluster_scoped
from kubefixtures.leases.existing_namespaces import reap_existing
from kubefixtures.leases.policy import EXISTING_NAMESPACE_LABEL
from kubefixtures.operator.config import OperatorConfig

__all__ = ["ClusterScopedSweeper"]

logger = logging.getLogger("kubefixtures.operator")

SWEEP_SECONDS = 5.0
# Every kind listed, and discovery read again (for CRDs installed since), this often.
FULL_SWEEP_SECONDS = 60.0


class ClusterScopedSweeper:
    def __init__(
        self,
        cluster: Cluster,
        config: OperatorConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cluster = cluster
        self.config = config
        self.deleted = 0
        self._clock = clock
        self._kinds: list[Resource] = []
        self._forbidden: set[Resource] = set()  # kinds RBAC does not let us list, till refresh
        self._occupied: set[Resource] = set()  # kinds holding managed objects when last listed
        self._kinds_read = float("-inf")
        # Set from the watches (the event loop's thread), read by the sweep (a worker thread).
        self._session_ended = True  # the first sweep lists everything
        self._existing_sessions: set[str] = set()  # namespaces with an existing-namespace Lease
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    # --- fed by the kopf handlers -----------------------------------------------------------

    def namespace_event(self, kind: str | None, body: Mapping[str, Any]) -> None:
        """A session namespace going or gone: its owners may be dead in any kind."""
        metadata = body.get("metadata")
        going = isinstance(metadata, Mapping) and bool(metadata.get("deletionTimestamp"))
        if kind == "DELETED" or going:
            self._session_ended = True

    def lease_event(self, kind: str | None, body: Mapping[str, Any]) -> None:
        """Session Leases: which existing namespaces hold one (only those need the sweep's
        list of such Leases), and a deleted one ends its session's ownerships."""
        metadata = body.get("metadata")
        metadata = metadata if isinstance(metadata, Mapping) else {}
        namespace = str(metadata.get("namespace") or "")
        labels = metadata.get("labels")
        existing = isinstance(labels, Mapping) and labels.get(EXISTING_NAMESPACE_LABEL) == "true"
        if kind == "DELETED":
            self._session_ended = True
            self._existing_sessions.discard(namespace)
        elif existing:
            self._existing_sessions.add(namespace)
        else:
            self._existing_sessions.discard(namespace)

    # --- the task ---------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="kubefixtures cluster-scoped sweep")

    async def stop(self) -> None:
        """Return once no sweep runs any more: a sweep is a thread, which cancelling the
        task would leave running on a connection about to be closed."""
        self._stopping.set()
        if self._task is not None:
            await self._task
            self._task = None

    async def run(self) -> None:
        while not self._stopping.is_set():
            try:
                await asyncio.to_thread(self.sweep)
            except Exception as error:  # the API may be briefly away: the next sweep retries
                logger.warning("sweeping cluster-scoped objects failed: %s", error)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), SWEEP_SECONDS)

    def sweep(self) -> None:
        """One sweep (in a thread): dead sessions in existing namespaces first (their
        objects and Lease, never the namespace), then the cluster-scoped objects; log what
        was deleted or released."""
        periodic = self._clock() - self._kinds_read >= FULL_SWEEP_SECONDS
        # Cleared before listing: a session ending during this sweep makes the next one full.
        everything, self._session_ended = periodic or self._session_ended, False
        if everything or self._existing_sessions:
            reaped = reap_existing(
                self.cluster, self.config.grace_seconds, selector=self.config.selector
            )
            for gone in reaped:
                logger.info(
                    "reaped session %s in namespace %s (the namespace stays): %s; deleted %s",
                    gone.session,
                    gone.namespace,
                    gone.reason,
                    ", ".join(gone.deleted) or "no objects",
                )
            everything = everything or bool(reaped)  # their ownerships ended with them
        if periodic:
            self._kinds = self.cluster.listable_resources(
                namespaced=False, verbs=("list", "delete")
            )
            self._kinds_read = self._clock()
            self._forbidden.clear()
        occupied: set[Resource] = set()
        for done in reap_cluster_scoped(
            self.cluster,
            self.config.grace_seconds,
            selector=self.config.selector,
            resources=[
                kind
                for kind in self._kinds
                if kind not in self._forbidden and (everything or kind in self._occupied)
            ],
            forbidden=self._forbidden,
            occupied=occupied,
        ):
            if done.action == "deleted":
                self.deleted += 1
                logger.info("deleted %s: %s", done.object, done.reason)
            elif done.action == "released":
                logger.info("removed dead owners of %s: %s", done.object, done.reason)
            else:
                logger.warning("kept %s: %s", done.object, done.reason)
        # Kinds not listed this time held nothing when they last were.
        self._occupied = occupied
