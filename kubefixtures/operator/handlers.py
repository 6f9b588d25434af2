"""The kopf side of the operator: settings, two label-filtered watches, start and stop.

Only ``@kopf.on.event`` handlers are used: they are the one kind kopf runs without storing
state on the objects (no annotations, no finalizers); daemons, timers and on-delete handlers
would add a finalizer, and deleting a namespace must never wait for this operator.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import kopf

from kubefixtures.kube.client import Cluster
from kubefixtures.leases.policy import LEASE_NAME
from kubefixtures.leases.reaping import managed_selector
from kubefixtures.naming import MANAGED_BY_LABEL, MANAGED_BY_VALUE
from kubefixtures.operator.cluster_scoped import ClusterScopedSweeper
from kubefixtures.operator.config import COMPONENT, OperatorConfig
from kubefixtures.operator.reaper import Reaper

if TYPE_CHECKING:
    from kubefixtures.operator.pools import PoolKeeper

__all__ = ["configure", "lease_event", "namespace_event", "reaper_alive", "start", "stop"]

MANAGED = {MANAGED_BY_LABEL: MANAGED_BY_VALUE}
# kopf's finalizer name, set to one nobody uses: kopf removes "its" finalizer from objects that
# carry it and need none, and this operator must never edit anyone's namespaces.
UNUSED_FINALIZER = "kubefixtures.io/operator-never-adds-finalizers"

logger = logging.getLogger("kubefixtures.operator")


def configure(settings: kopf.OperatorSettings, config: OperatorConfig) -> None:
    """Settings for an operator that only watches and deletes (least privilege)."""
    selector = managed_selector(config.selector)
    settings.peering.standalone = True  # one replica; no peering objects to read or write
    settings.peering.mandatory = False
    settings.scanning.disabled = True  # no watching of CRDs: it would need more RBAC
    settings.posting.enabled = False  # our own Events, one per deletion (see leases.reaping)
    settings.persistence.finalizer = UNUSED_FINALIZER
    settings.posting.reporting_component = COMPONENT
    # Server-side filtering: only our namespaces and our Leases ever reach this process,
    # however many other Leases (node heartbeats, leader elections) the cluster renews.
    # Sessions give their Lease their namespace's labels, so one selector fits both.
    settings.watching.label_selectors["namespaces"] = selector
    settings.watching.label_selectors["coordination.k8s.io", "leases"] = selector
    settings.watching.field_selectors["coordination.k8s.io", "leases"] = (
        f"metadata.name={LEASE_NAME}"
    )


@kopf.on.startup()
async def start(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    config = memo.get("config") or OperatorConfig.from_env()
    configure(settings, config)
    # kopf logs every handled watch event at INFO: with hundreds of sessions renewing their
    # Leases that would be a line every few milliseconds. Deletions are logged by the reaper.
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    cluster = await asyncio.to_thread(Cluster.connect_to_read)
    reaper = Reaper(cluster, config)
    memo["reaper"] = reaper
    reaper.start()
    sweeper = ClusterScopedSweeper(cluster, config)
    memo["sweeper"] = sweeper
    sweeper.start()
    if config.pool_namespace and config.pool_max_namespaces > 0:
        from kubefixtures.operator.pools import PoolKeeper

        # A connection of its own: copies coming up watch and apply, the reaper must not wait.
        keeper = PoolKeeper(await asyncio.to_thread(Cluster.connect_to_read), config)
        memo["pools"] = keeper
        keeper.start()


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_: Any) -> None:
    keeper: PoolKeeper | None = memo.get("pools")
    if keeper is not None:
        await keeper.stop()
        keeper.cluster.close()
    sweeper: ClusterScopedSweeper | None = memo.get("sweeper")
    if sweeper is not None:
        await sweeper.stop()
    reaper: Reaper | None = memo.get("reaper")
    if reaper is not None:
        await reaper.stop()
        reaper.cluster.close()
        logger.info("stopped after %d deletions", reaper.deleted)


@kopf.on.probe(id="reaper")
async def reaper_alive(memo: kopf.Memo, **_: Any) -> str:
    """The liveness probe (``--liveness``) fails once the reaping task has ended: kopf and
    its watches would stay healthy without it, and leaks would no longer be reaped."""
    reaper: Reaper | None = memo.get("reaper")
    if reaper is None:
        return "starting"
    if reaper.stopped_because is not None:
        raise kopf.PermanentError(f"the reaper stopped ({reaper.stopped_because})")
    return f"running: {len(reaper.schedule)} namespaces watched, {reaper.deleted} deleted"


@kopf.on.event("v1", "namespaces", labels=MANAGED)
async def namespace_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    memo["reaper"].namespace_event(event["type"], event["object"])
    memo["sweeper"].namespace_event(event["type"], event["object"])
    _poke_pools(memo, event["object"], "name")


@kopf.on.event(
    "coordination.k8s.io", "v1", "leases", labels=MANAGED, field="metadata.name", value=LEASE_NAME
)
async def lease_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    memo["reaper"].lease_event(event["type"], event["object"])
    memo["sweeper"].lease_event(event["type"], event["object"])
    _poke_pools(memo, event["object"], "namespace")


def _poke_pools(memo: kopf.Memo, body: Any, field: str) -> None:
    """A pool's copy changed (claimed, most likely): the keeper refills at once."""
    keeper: PoolKeeper | None = memo.get("pools")
    metadata = body.get("metadata") if isinstance(body, dict) else None
    if keeper is not None and isinstance(metadata, dict):
        keeper.poke(str(metadata.get(field) or ""))
