"""The operator's sweep over cluster-scoped objects: every few seconds, dead owners are
removed and objects left without owners deleted (kubefixtures.leases.cluster_scoped). The
same sweep reaps dead sessions in existing namespaces (kubefixtures.leases.existing_namespaces):
their objects and their Lease, never the namespace.

A sweep rather than watches: the kinds are whatever environments hold (CRDs, RBAC, webhook
configurations, PriorityClasses...), and a watch per kind would need the right to watch each.
The operator lists the kinds its RBAC allows (the chart's ``reaper.clusterScopedKinds``) and
skips the others; the list of kinds is refreshed now and then, for CRDs installed later.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from kubefixtures.kube import Cluster, Resource
from kubefixtures.leases.cluster_scoped import reap_cluster_scoped
from kubefixtures.leases.existing_namespaces import reap_existing
from kubefixtures.operator.config import OperatorConfig

__all__ = ["ClusterScopedSweeper"]

logger = logging.getLogger("kubefixtures.operator")

SWEEP_SECONDS = 5.0
_KINDS_REFRESH_SECONDS = 60.0


class ClusterScopedSweeper:
    def __init__(self, cluster: Cluster, config: OperatorConfig) -> None:
        self.cluster = cluster
        self.config = config
        self.deleted = 0
        self._kinds: list[Resource] = []
        self._forbidden: set[Resource] = set()  # kinds RBAC does not let us list, till refresh
        self._kinds_read = float("-inf")
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

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
        for gone in reap_existing(
            self.cluster, self.config.grace_seconds, selector=self.config.selector
        ):
            logger.info(
                "reaped session %s in namespace %s (the namespace stays): %s; deleted %s",
                gone.session,
                gone.namespace,
                gone.reason,
                ", ".join(gone.deleted) or "no objects",
            )
        if time.monotonic() - self._kinds_read > _KINDS_REFRESH_SECONDS:
            self._kinds = self.cluster.listable_resources(
                namespaced=False, verbs=("list", "delete")
            )
            self._kinds_read = time.monotonic()
            self._forbidden.clear()
        for done in reap_cluster_scoped(
            self.cluster,
            self.config.grace_seconds,
            selector=self.config.selector,
            resources=[kind for kind in self._kinds if kind not in self._forbidden],
            forbidden=self._forbidden,
        ):
            if done.action == "deleted":
                self.deleted += 1
                logger.info("deleted %s: %s", done.object, done.reason)
            elif done.action == "released":
                logger.info("removed dead owners of %s: %s", done.object, done.reason)
            else:
                logger.warning("kept %s: %s", done.object, done.reason)
