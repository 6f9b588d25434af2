"""The reapers' side of session Leases: the operator and ``kubefixtures gc`` read the
managed namespaces and their Leases, and delete what :func:`kubefixtures.leases.policy.decide`
condemns, only after reading them afresh from the API.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from kubefixtures.errors import ClusterError
from kubefixtures.kube.client import EVENT, LEASE, NAMESPACE, ApiError, Cluster
from kubefixtures.leases.policy import (
    LEASE_NAME,
    Decision,
    SessionNamespace,
    decide,
    format_time,
    lease_from_object,
    namespace_from_object,
)
from kubefixtures.naming import MANAGED_BY_LABEL, MANAGED_BY_VALUE

__all__ = [
    "EVENT_NAMESPACE",
    "EVENT_REASON",
    "LEASE_SELECTOR",
    "MANAGED_SELECTOR",
    "Outcome",
    "delete_session",
    "list_sessions",
    "managed_selector",
    "post_deletion_event",
    "read_session",
    "recheck_and_delete",
]

logger = logging.getLogger("kubefixtures.lease")

MANAGED_SELECTOR = f"{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}"
LEASE_SELECTOR = f"metadata.name={LEASE_NAME}"
EVENT_REASON = "LeakedSessionDeleted"
EVENT_NAMESPACE = "default"


def read_session(cluster: Cluster, name: str) -> SessionNamespace | None:
    """The namespace ``name`` and its Lease as they are now, or None when it is gone."""
    namespace = cluster.namespace(name)
    if namespace is None:
        return None
    lease = cluster.get_or_none(LEASE, name, LEASE_NAME)
    return namespace_from_object(namespace, lease_from_object(lease) if lease else None)


def managed_selector(extra: str | None = None) -> str:
    """The managed label, narrowed by ``extra`` (a label selector) when given."""
    return f"{MANAGED_SELECTOR},{extra}" if extra and extra.strip() else MANAGED_SELECTOR


def list_sessions(cluster: Cluster, selector: str | None = None) -> list[SessionNamespace]:
    """Every namespace labelled as managed by kubefixtures (and matching ``selector``, a label
    selector), with its Lease: two lists."""
    labels = managed_selector(selector)
    try:
        namespaces = cluster.items(NAMESPACE, None, label_selector=labels)
    except ApiError as error:
        raise ClusterError(f"listing namespaces with labels {labels} failed: {error}") from None
    # The Leases by name only: a Lease is found even if its labels were lost.
    leases = cluster.list_objects(LEASE, None, field_selector=LEASE_SELECTOR)
    by_namespace = {
        str((item.get("metadata") or {}).get("namespace")): lease_from_object(item)
        for item in leases.get("items", [])
    }
    sessions = [namespace_from_object(item) for item in namespaces]
    sessions = [session.with_lease(by_namespace.get(session.name)) for session in sessions]
    return sorted(sessions, key=lambda session: session.name)


def delete_session(cluster: Cluster, session: SessionNamespace) -> bool:
    """Delete the namespace only if it is still exactly what was judged (same uid and
    resourceVersion: nobody relabelled or recreated it since). False if it changed or went."""
    if not session.managed:  # the last line of defence: never anything not labelled as ours
        raise ValueError(f"namespace {session.name} is not managed by kubefixtures")
    preconditions = {"uid": session.uid} if session.uid else {}
    if session.resource_version:
        preconditions["resourceVersion"] = session.resource_version
    try:
        return cluster.delete_unchanged(NAMESPACE, None, session.name, preconditions)
    except ApiError as error:
        raise ClusterError(f"deleting namespace {session.name} failed: {error}") from None


def post_deletion_event(
    cluster: Cluster,
    session: SessionNamespace,
    reason: str,
    *,
    component: str,
) -> None:
    """An Event about the deleted namespace. Best effort: a failure is logged, never raised.

    It goes to ``default``: the deleted namespace takes its own events with it, and the API
    keeps events about cluster-scoped objects (Namespaces, like Nodes) in ``default``, where
    ``kubectl describe namespace`` and ``kubectl get events -n default`` find them.
    """
    now = format_time(cluster.server_clock.wall())
    body = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{session.name}.", "namespace": EVENT_NAMESPACE},
        "involvedObject": {
            "apiVersion": "v1",
            "kind": "Namespace",
            "name": session.name,
            "uid": session.uid,
        },
        "type": "Normal",
        "reason": EVENT_REASON,
        "action": "Delete",
        "message": f"deleted namespace {session.name}: {reason}"[:1024],
        "source": {"component": component, "host": socket.gethostname()},
        "reportingComponent": component,
        "reportingInstance": socket.gethostname()[:128],
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }
    try:
        cluster.create(EVENT, EVENT_NAMESPACE, body)
    except ClusterError as error:
        logger.warning("posting the event for namespace %s failed: %s", session.name, error)


@dataclass(frozen=True, kw_only=True)
class Outcome:
    """What a reaper did with one namespace after looking at it afresh."""

    namespace: str
    deleted: bool
    decision: Decision | None  # None: the namespace was already gone
    session: SessionNamespace | None = None


def recheck_and_delete(
    cluster: Cluster,
    name: str,
    grace: timedelta | float,
    *,
    component: str,
    now: Callable[[], datetime] | None = None,
    observe: Callable[[SessionNamespace], SessionNamespace] | None = None,
) -> Outcome:
    """Read the namespace and its Lease from the API, decide again, and delete if condemned.

    This is the only path to a deletion: what a reaper remembers may be stale (a renewal
    it has not seen yet), what the API says now is not. ``now`` defaults to the API
    server's time; ``observe`` lets the operator judge the Lease by when it saw it renewed.
    """
    now = now or cluster.server_clock.wall
    decision: Decision | None = None
    session: SessionNamespace | None = None
    # A second round only when the namespace changed between reading and deleting.
    for _ in range(2):
        session = read_session(cluster, name)
        if session is None:
            return Outcome(namespace=name, deleted=False, decision=None)
        if observe is not None:
            session = observe(session)
        decision = decide(session, now(), grace)
        if not decision.delete:
            return Outcome(namespace=name, deleted=False, decision=decision, session=session)
        _remove_webhooks_into(cluster, name)
        if delete_session(cluster, session):
            post_deletion_event(
                cluster,
                session,
                decision.reason,
                component=component,
            )
            return Outcome(namespace=name, deleted=True, decision=decision, session=session)
    return Outcome(namespace=name, deleted=False, decision=decision, session=session)


def _remove_webhooks_into(cluster: Cluster, namespace: str) -> None:
    """Before a namespace goes: the webhook configurations calling its Services, which would
    otherwise fail every API call they match (other sessions' too)."""
    from kubefixtures.leases.cluster_scoped import remove_webhooks_into  # it imports us

    for removed in remove_webhooks_into(cluster, namespace):
        logger.info("deleted %s: it calls a Service of namespace %s", removed, namespace)
