"""Reaping cluster-scoped objects whose sessions are gone (the operator and ``kubefixtures gc``).

A cluster-scoped object labelled ``app.kubernetes.io/managed-by=kubefixtures`` lists its
owners (kubefixtures.leases.ownership). An owner whose namespace is gone, being deleted, or
whose Lease expired more than the grace ago is dead; dead owners are removed, and an object
left without owners is deleted, with the resourceVersion it was judged at as a precondition,
so that a session joining at the same moment is never lost. Objects without the label, or
whose owners annotation cannot be read, are never touched.

Webhook configurations calling a Service of a namespace about to be deleted go first
(``remove_webhooks_into``): a webhook whose Service is gone fails every API call it matches,
other sessions' included.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from kubefixtures.errors import KubefixturesError
from kubefixtures.kube.client import (
    MUTATING_WEBHOOKS,
    NAMESPACE,
    VALIDATING_WEBHOOKS,
    Cluster,
    Resource,
)
from kubefixtures.kube.errors import Conflict, Forbidden
from kubefixtures.leases.ownership import (
    MalformedOwners,
    Owner,
    is_owned,
    owner_alive,
    owners_of,
    owners_patch,
)
from kubefixtures.leases.policy import SessionNamespace, parse_time
from kubefixtures.leases.reaping import managed_selector, read_session

__all__ = [
    "Reaped",
    "leave",
    "reap_cluster_scoped",
    "release_all",
    "remove_webhooks_into",
    "unchanged",
    "webhooks_into",
]

logger = logging.getLogger("kubefixtures.lease")

JSON = dict[str, Any]


def _now() -> datetime:
    return datetime.now(UTC)


def unchanged(live: Mapping[str, Any]) -> dict[str, str]:
    """Delete preconditions: the object exactly as it was read (uid, resourceVersion)."""
    metadata = live.get("metadata") or {}
    return {
        "uid": str(metadata.get("uid") or ""),
        "resourceVersion": str(metadata.get("resourceVersion") or ""),
    }


def leave(cluster: Cluster, resource: Resource, name: str, namespaces: set[str]) -> bool:
    """Remove the owners living in ``namespaces`` from the object; delete it when none is
    left (only if nobody joined meanwhile: resourceVersion precondition). True if deleted.

    Objects not labelled as managed by kubefixtures, and objects whose owners cannot be read,
    are never touched.
    """
    while True:
        live = cluster.get_or_none(resource, None, name)
        if live is None or not is_owned(live):
            return False
        try:
            owners = owners_of(live)
        except MalformedOwners:
            return False
        remaining = [owner for owner in owners if owner.namespace not in namespaces]
        if owners and len(remaining) == len(owners):
            return False  # none of them owns it (any longer)
        if not remaining:
            if cluster.delete_unchanged(resource, None, name, unchanged(live)):
                return True
            continue  # changed (someone joined) or gone: read again
        try:
            cluster.merge_patch(resource, None, name, owners_patch(live, remaining))
        except Conflict:
            continue
        return False


def release_all(
    cluster: Cluster, objects: Sequence[tuple[str, str, str]], namespace: str
) -> list[str]:
    """Remove the environment in ``namespace`` from the owners of ``objects`` (``(apiVersion,
    kind, name)``), webhook configurations first; delete those left without owners.
    Returns the deleted ones as ``kind/name``. Kinds the cluster no longer serves are skipped.
    """
    webhook_kinds = (VALIDATING_WEBHOOKS.kind, MUTATING_WEBHOOKS.kind)
    deleted = []
    for api_version, kind, name in sorted(objects, key=lambda ref: ref[1] not in webhook_kinds):
        resource = cluster.resource_for(api_version, kind)
        if resource is not None and leave(cluster, resource, name, {namespace}):
            deleted.append(f"{kind.lower()}/{name}")
    return deleted


# --- webhooks ------------------------------------------------------------------------------


def webhooks_into(configuration: Mapping[str, Any], namespace: str) -> bool:
    """Whether a webhook configuration calls a Service in ``namespace``."""
    return any(
        ((webhook.get("clientConfig") or {}).get("service") or {}).get("namespace") == namespace
        for webhook in configuration.get("webhooks") or []
        if isinstance(webhook, Mapping)
    )


def remove_webhooks_into(cluster: Cluster, namespace: str) -> list[str]:
    """Delete the managed webhook configurations calling a Service in ``namespace`` (the
    namespace is about to go). Returns them as ``kind/name``; best effort, never raises."""
    removed = []
    for resource in (VALIDATING_WEBHOOKS, MUTATING_WEBHOOKS):
        try:
            configurations = cluster.items(resource, None, label_selector=managed_selector())
        except KubefixturesError as error:
            logger.warning("listing %s failed: %s", resource.plural, error)
            continue
        for configuration in configurations:
            if not (is_owned(configuration) and webhooks_into(configuration, namespace)):
                continue
            name = str(configuration["metadata"]["name"])
            try:
                if cluster.delete_unchanged(resource, None, name, unchanged(configuration)):
                    removed.append(f"{resource.kind.lower()}/{name}")
            except KubefixturesError as error:
                logger.warning("deleting %s %s failed: %s", resource.kind, name, error)
    return removed


# --- the sweep -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reaped:
    """What a sweep did (or, dry, would do) with one object: ``deleted``, ``released``
    (dead owners removed, live ones remain) or ``kept`` (unreadable owners)."""

    object: str  # kind/name
    action: str
    reason: str


def reap_cluster_scoped(
    cluster: Cluster,
    grace: timedelta | float,
    *,
    selector: str | None = None,
    dry_run: bool = False,
    resources: Sequence[Resource] | None = None,
    forbidden: set[Resource] | None = None,
    occupied: set[Resource] | None = None,
    now: Callable[[], datetime] = _now,
) -> list[Reaped]:
    """One sweep over every managed cluster-scoped object (of ``resources``, or of every
    cluster-scoped kind that can be listed and deleted); kinds we may not list are skipped,
    and added to ``forbidden`` when given (so that a caller sweeping again can leave them
    out). The kinds found holding managed objects (or that could not be listed for another
    reason: they may) are added to ``occupied`` when given. Objects whose owners all live
    are not reported."""
    grace = grace if isinstance(grace, timedelta) else timedelta(seconds=grace)
    kinds = [
        kind
        for kind in (
            resources
            if resources is not None
            else cluster.listable_resources(namespaced=False, verbs=("list", "delete"))
        )
        if kind != NAMESPACE  # session namespaces: their Lease decides (leases.reaping)
    ]
    sessions: dict[str, SessionNamespace | None] = {}

    def alive(owner: Owner) -> bool:
        if owner.namespace not in sessions:
            sessions[owner.namespace] = read_session(cluster, owner.namespace)
        return owner_alive(sessions[owner.namespace], now(), grace)

    done: list[Reaped] = []
    for resource in kinds:
        try:
            objects = cluster.items(resource, None, label_selector=managed_selector(selector))
        except Forbidden:  # not ours to list (RBAC)
            if forbidden is not None:
                forbidden.add(resource)
            continue
        except KubefixturesError:  # an API that is down: the next sweep tries again
            if occupied is not None:
                occupied.add(resource)
            continue
        if objects and occupied is not None:
            occupied.add(resource)
        for obj in objects:
            outcome = _judge(
                cluster, resource, obj, alive=alive, grace=grace, now=now(), dry_run=dry_run
            )
            if outcome is not None:
                done.append(outcome)
    return done


def _judge(
    cluster: Cluster,
    resource: Resource,
    obj: Mapping[str, Any],
    *,
    alive: Callable[[Owner], bool],
    grace: timedelta,
    now: datetime,
    dry_run: bool,
) -> Reaped | None:
    metadata = obj.get("metadata") or {}
    name = str(metadata.get("name") or "")
    label = f"{resource.kind.lower()}/{name}"
    if not is_owned(obj) or metadata.get("deletionTimestamp"):
        return None
    try:
        owners = owners_of(obj)
    except MalformedOwners as error:
        return Reaped(label, "kept", f"{error}: kept until someone fixes it")
    dead = [owner for owner in owners if not alive(owner)]
    if owners and not dead:
        return None
    if not owners:
        created = parse_time(metadata.get("creationTimestamp"))
        if created is not None and now < created + grace:
            return None  # no owner yet, and younger than the grace
    left = [owner for owner in owners if owner not in dead]
    reason = (f"owners gone: {', '.join(_names(dead))}" if dead else "no owner recorded") + (
        f"; still used by {', '.join(_names(left))}" if left else ""
    )
    if dry_run:
        return Reaped(label, "would release" if left else "would delete", reason)
    deleted = leave(cluster, resource, name, {owner.namespace for owner in dead})
    return Reaped(label, "deleted" if deleted else "released", reason)


def _names(owners: Iterable[Owner]) -> list[str]:
    return [f"session {owner.session} (namespace {owner.namespace})" for owner in owners]
