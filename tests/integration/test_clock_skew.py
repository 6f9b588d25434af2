"""Clock skew against the real API server: a session whose machine is 10 minutes ahead or
behind keeps its namespace, and gc run from such a machine deletes nothing live. The skew is
injected (a Cluster built on a skewed clock), never by sleeping or moving the real clock."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest

from kubefixtures import naming
from kubefixtures.clock import SYSTEM_CLOCK
from kubefixtures.kube import ApiError, Cluster
from kubefixtures.kube.client import NAMESPACE
from kubefixtures.kube.config import load_config
from kubefixtures.leases.policy import decide, holder_identity
from kubefixtures.leases.reaping import list_sessions, recheck_and_delete
from kubefixtures.leases.renewal import SessionLease

pytestmark = pytest.mark.cluster

TEN_MINUTES = 600.0


class SkewedClock:
    def __init__(self, skew: float) -> None:
        self.skew = timedelta(seconds=skew)

    def wall(self) -> datetime:
        return SYSTEM_CLOCK.wall() + self.skew

    def monotonic(self) -> float:
        return SYSTEM_CLOCK.monotonic()


def skewed_cluster(cluster: Cluster, skew: float) -> Cluster:
    """The same cluster, seen from a machine whose clock is ``skew`` seconds off."""
    skewed = Cluster(load_config(None, cluster.context), clock=SkewedClock(skew))
    skewed.check_reachable()  # one answer: the server's time is measured
    return skewed


@pytest.fixture
def environment(kubefixtures_cluster: Cluster) -> Iterator[str]:
    name = f"kfskew_{naming.new_session_id()[:6]}"
    yield name
    selector = f"{naming.ENVIRONMENT_LABEL}={name}"
    for item in kubefixtures_cluster.list_objects(NAMESPACE, None, selector)["items"]:
        with contextlib.suppress(ApiError):
            kubefixtures_cluster.delete_namespace(item["metadata"]["name"])


def start_session(cluster: Cluster, environment: str) -> SessionLease:
    session_id = naming.new_session_id()
    namespace = naming.namespace_name("kf", environment)
    labels = naming.namespace_labels(session_id, environment)
    cluster.create_namespace(namespace, labels)
    lease = SessionLease(cluster, namespace, holder_identity(session_id), 5, labels=labels)
    lease.create()
    return lease


@pytest.mark.parametrize("skew", [-TEN_MINUTES, TEN_MINUTES])
def test_a_skewed_session_keeps_its_namespace(
    kubefixtures_cluster: Cluster, environment: str, skew: float
) -> None:
    session_cluster = skewed_cluster(kubefixtures_cluster, skew)
    try:
        lease = start_session(session_cluster, environment)
        lease.renew()
        # gc with no grace at all, on the server's time: live.
        outcome = recheck_and_delete(kubefixtures_cluster, lease.namespace, 0, component="test")
        assert outcome.decision is not None
        assert not outcome.deleted, outcome.decision.reason
        assert outcome.decision.state == "live"
    finally:
        session_cluster.close()


@pytest.mark.parametrize("skew", [-TEN_MINUTES, TEN_MINUTES])
def test_gc_from_a_skewed_machine_deletes_nothing_live(
    kubefixtures_cluster: Cluster, environment: str, skew: float
) -> None:
    lease = start_session(kubefixtures_cluster, environment)
    gc_cluster = skewed_cluster(kubefixtures_cluster, skew)
    selector = f"{naming.ENVIRONMENT_LABEL}={environment}"
    try:
        (session,) = list_sessions(gc_cluster, selector)
        # What gc did before: this machine's clock. Ten minutes ahead condemns a live session.
        naive = decide(session, gc_cluster.server_clock.local.wall(), 60)
        assert naive.delete is (skew > 0)
        # What it does now: the server's time.
        assert not decide(session, gc_cluster.server_clock.wall(), 60).delete
        outcome = recheck_and_delete(gc_cluster, lease.namespace, 60, component="test")
        assert not outcome.deleted
    finally:
        gc_cluster.close()
