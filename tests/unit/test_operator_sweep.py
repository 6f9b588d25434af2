"""The operator's sweep over cluster-scoped objects (kubefixtures.operator.cluster_scoped): at
rest it lists only the kinds holding managed objects; every kind at the first sweep, every
``FULL_SWEEP_SECONDS`` (with discovery) and at the sweep after a session ended; the Leases
of existing-namespace sessions only while the Lease watch knows of one."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from kubefixtures.kube.client import LEASE, Resource
from kubefixtures.leases.policy import EXISTING_NAMESPACE_LABEL
from kubefixtures.naming import MANAGED_BY_LABEL, MANAGED_BY_VALUE
from kubefixtures.operator.cluster_scoped import (
    FULL_SWEEP_SECONDS,
    SWEEP_SECONDS,
    ClusterScopedSweeper,
)
from kubefixtures.operator.config import OperatorConfig

CRDS = Resource(
    "apiextensions.k8s.io/v1", "CustomResourceDefinition", "customresourcedefinitions", False
)
ROLES = Resource("rbac.authorization.k8s.io/v1", "ClusterRole", "clusterroles", False)
CLASSES = Resource("scheduling.k8s.io/v1", "PriorityClass", "priorityclasses", False)
# Labelled as ours, owned by nobody: listed (so its kind is occupied), never touched.
MANAGED = {"metadata": {"name": "widgets", "labels": {MANAGED_BY_LABEL: MANAGED_BY_VALUE}}}


class ServerClock:
    def wall(self) -> datetime:
        return datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


class FakeCluster:
    """Discovery and lists only: what each sweep asked for."""

    server_clock = ServerClock()

    def __init__(self) -> None:
        self.objects: dict[Resource, list[dict[str, Any]]] = {CRDS: [MANAGED]}
        self.listed: list[str] = []
        self.discoveries = 0

    def listable_resources(self, *, namespaced: bool, verbs: tuple[str, ...]) -> list[Resource]:
        self.discoveries += 1
        return [CRDS, ROLES, CLASSES]

    def items(
        self, resource: Resource, namespace: str | None, label_selector: str | None = None
    ) -> list[dict[str, Any]]:
        self.listed.append(resource.plural)
        return list(self.objects.get(resource, []))

    def sweep(self, sweeper: ClusterScopedSweeper) -> list[str]:
        self.listed.clear()
        sweeper.sweep()
        return sorted(self.listed)


EVERY_KIND_AND_LEASES = ["clusterroles", "customresourcedefinitions", "leases", "priorityclasses"]


def sweeper_at(cluster: FakeCluster, now: list[float]) -> ClusterScopedSweeper:
    config = OperatorConfig(grace_seconds=3)
    return ClusterScopedSweeper(cluster, config, clock=lambda: now[0])  # type: ignore[arg-type]


def test_at_rest_only_kinds_holding_managed_objects_are_listed() -> None:
    cluster, now = FakeCluster(), [1000.0]
    sweeper = sweeper_at(cluster, now)
    assert cluster.sweep(sweeper) == EVERY_KIND_AND_LEASES
    assert cluster.discoveries == 1
    for _ in range(5):
        now[0] += SWEEP_SECONDS
        assert cluster.sweep(sweeper) == ["customresourcedefinitions"]
    # The last object of the kind went: from the sweep after, nothing is listed at rest.
    cluster.objects.clear()
    now[0] += SWEEP_SECONDS
    assert cluster.sweep(sweeper) == ["customresourcedefinitions"]
    now[0] += SWEEP_SECONDS
    assert cluster.sweep(sweeper) == []
    # Every FULL_SWEEP_SECONDS: discovery again, and every kind.
    now[0] = 1000.0 + FULL_SWEEP_SECONDS
    assert cluster.sweep(sweeper) == EVERY_KIND_AND_LEASES
    assert cluster.discoveries == 2


def test_a_session_ending_makes_the_next_sweep_list_every_kind() -> None:
    cluster, now = FakeCluster(), [1000.0]
    sweeper = sweeper_at(cluster, now)
    cluster.sweep(sweeper)
    # A ClusterRole appeared after the full sweep, in a kind that held nothing.
    cluster.objects[ROLES] = [MANAGED]
    now[0] += SWEEP_SECONDS
    assert cluster.sweep(sweeper) == ["customresourcedefinitions"]
    # Its session's namespace is being deleted: its owners are dead, wherever they are.
    sweeper.namespace_event("MODIFIED", {"metadata": {"name": "kf-a", "deletionTimestamp": "x"}})
    now[0] += SWEEP_SECONDS
    assert cluster.sweep(sweeper) == EVERY_KIND_AND_LEASES
    now[0] += SWEEP_SECONDS
    assert cluster.sweep(sweeper) == ["clusterroles", "customresourcedefinitions"]
    assert cluster.discoveries == 1  # discovery stays on its own clock
    # A namespace renewing its Lease ends nothing; one gone, or a deleted Lease, does.
    sweeper.namespace_event("MODIFIED", {"metadata": {"name": "kf-b"}})
    now[0] += SWEEP_SECONDS
    assert cluster.sweep(sweeper) == ["clusterroles", "customresourcedefinitions"]
    for event in (sweeper.namespace_event, sweeper.lease_event):
        event("DELETED", {"metadata": {"name": "kf-b", "namespace": "kf-b"}})
        now[0] += SWEEP_SECONDS
        assert "priorityclasses" in cluster.sweep(sweeper)


def test_existing_namespace_leases_are_listed_while_the_watch_knows_of_one() -> None:
    cluster, now = FakeCluster(), [1000.0]
    sweeper = sweeper_at(cluster, now)
    cluster.sweep(sweeper)
    labels = {MANAGED_BY_LABEL: MANAGED_BY_VALUE, EXISTING_NAMESPACE_LABEL: "true"}
    lease = {"metadata": {"name": "kubefixtures-session", "namespace": "team-ci", "labels": labels}}
    sweeper.lease_event(None, lease)
    for _ in range(3):
        now[0] += SWEEP_SECONDS
        assert LEASE.plural in cluster.sweep(sweeper)
    sweeper.lease_event("DELETED", lease)
    now[0] += SWEEP_SECONDS
    cluster.sweep(sweeper)  # the one after a session ended: everything
    now[0] += SWEEP_SECONDS
    assert cluster.sweep(sweeper) == ["customresourcedefinitions"]
