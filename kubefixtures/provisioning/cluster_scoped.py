"""An environment's cluster-scoped objects (CRDs, ClusterRoles, webhook configurations...),
shared between the sessions that install the same definition.

Before anything is created, ``check`` reads every cluster-scoped object the environment
holds: one not made by kubefixtures, or one a live session installed with another
definition, is an error naming it (and that session). After the namespace and its Lease
exist, ``claim`` creates each object, or adds this environment to the owners of an identical
one; ``release`` removes it again and deletes the object when no owner is left. Every write
to a shared object carries the resourceVersion it was read at, and a 409 Conflict means
"read again": two sessions joining and leaving at once never lose each other.

The order of an environment's objects: CRDs (waited for until Established), other
cluster-scoped objects, namespaced objects, and custom resources last.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any

from kubefixtures.errors import ApplyError
from kubefixtures.kube.client import (
    CRD,
    MUTATING_WEBHOOKS,
    VALIDATING_WEBHOOKS,
    Resource,
    run_concurrently,
)
from kubefixtures.kube.errors import ApiError, Conflict
from kubefixtures.leases.ownership import (
    MalformedOwners,
    Owner,
    definition_hash,
    describe_owner,
    hash_of,
    is_owned,
    owned_manifest,
    owner_alive,
    owners_of,
    owners_patch,
)
from kubefixtures.leases.policy import DEFAULT_GRACE_SECONDS

# The reapers' side (leases.cluster_scoped, leases.reaping) is imported by the methods that
# need it: most environments have no cluster-scoped object, and a claimed spare never has one.
if TYPE_CHECKING:
    from kubefixtures.kube import Cluster
    from kubefixtures.rendering import RenderedObject

__all__ = ["ClusterScoped", "Placed", "defined_resources", "in_apply_order"]

_POLL_SECONDS = 0.2
JSON = dict[str, Any]


@dataclass(frozen=True)
class Placed:
    """A rendered object and the resource that serves it."""

    obj: RenderedObject
    resource: Resource

    def __str__(self) -> str:
        return str(self.obj)


def _is_crd(obj: RenderedObject) -> bool:
    return obj.kind == CRD.kind and obj.api_version.startswith("apiextensions.k8s.io/")


def defined_resources(objects: Iterable[RenderedObject]) -> dict[tuple[str, str], Resource]:
    """The kinds the environment's own CRDs define, per served version, as discovery will
    report them once the CRDs are Established: ``(api_version, kind) -> Resource``."""
    found: dict[tuple[str, str], Resource] = {}
    for obj in objects:
        if not _is_crd(obj):
            continue
        spec = obj.manifest.get("spec") or {}
        names = spec.get("names") or {}
        group, kind, plural = spec.get("group"), names.get("kind"), names.get("plural")
        if not (isinstance(group, str) and isinstance(kind, str) and isinstance(plural, str)):
            raise ApplyError(f"{obj.location}: {obj} needs spec.group, names.kind and names.plural")
        for version in spec.get("versions") or []:
            if isinstance(version, Mapping) and version.get("served", True) and version.get("name"):
                api_version = f"{group}/{version['name']}"
                namespaced = spec.get("scope", "Namespaced") == "Namespaced"
                found[(api_version, kind)] = Resource(api_version, kind, plural, namespaced)
    return found


def in_apply_order(
    placed: Sequence[Placed], defined: Mapping[tuple[str, str], Resource]
) -> tuple[list[Placed], list[Placed], list[Placed], list[Placed]]:
    """``(crds, other cluster-scoped, namespaced, custom resources)``: custom resources are
    the objects of kinds the environment's CRDs define (served only once those exist)."""
    crds = [item for item in placed if _is_crd(item.obj)]
    custom = [
        item
        for item in placed
        if (item.obj.api_version, item.obj.kind) in defined and not _is_crd(item.obj)
    ]
    custom_ids = {id(item) for item in custom}
    crd_ids = {id(item) for item in crds}
    rest = [item for item in placed if id(item) not in custom_ids | crd_ids]
    cluster_scoped = [item for item in rest if not item.resource.namespaced]
    namespaced = [item for item in rest if item.resource.namespaced]
    return crds, cluster_scoped, namespaced, custom


class ClusterScoped:
    """One environment's cluster-scoped objects: check, claim, release."""

    def __init__(
        self,
        cluster: Cluster,
        objects: Sequence[Placed],
        *,
        labels: Mapping[str, str],
        session_id: str,
        namespace: str,
        grace: float = DEFAULT_GRACE_SECONDS,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.cluster = cluster
        # Webhook configurations first: released (and deleted) before anything they call.
        self.objects = sorted(objects, key=lambda item: not _is_webhook(item.resource))
        self.labels = dict(labels)
        self.owner = Owner(namespace, session_id)
        self.grace = grace
        self._now = now
        if self.objects:
            # What check, claim and release import, loaded now (before anything exists): a
            # release from the cancel handler must not import.
            import kubefixtures.leases.cluster_scoped  # noqa: F401

    def __bool__(self) -> bool:
        return bool(self.objects)

    # --- before anything is applied -------------------------------------------------------

    def check(self) -> None:
        """ApplyError for the first object that exists but is not ours to share."""

        def check_one(item: Placed) -> None:
            live = self._get(item)
            if live is not None and not live.get("metadata", {}).get("deletionTimestamp"):
                self._refuse_if_foreign(item, live)

        run_concurrently([partial(check_one, item) for item in self.objects])

    def _refuse_if_foreign(self, item: Placed, live: Mapping[str, Any]) -> bool:
        """Raise when ``live`` is not ours or a live session installed another definition;
        True when it holds another definition whose owners are all gone (stale)."""
        from kubefixtures.leases.reaping import read_session

        where = f"{item.obj.location}: {item.obj}"
        if not is_owned(live):  # a session namespace is managed, but owned by no annotation
            raise ApplyError(
                f"{where} already exists on the cluster and is not managed by kubefixtures "
                "(no label app.kubernetes.io/managed-by=kubefixtures); kubefixtures never "
                "adopts or deletes what others made: rename it in the environment "
                "(${session_id} makes a name unique) or remove the existing one"
            )
        if hash_of(live) == definition_hash(item.obj.manifest):
            return False
        try:
            owners = owners_of(live)
        except MalformedOwners as error:
            raise ApplyError(f"{where} exists with another definition and {error}") from None
        for owner in owners:
            if owner.namespace == self.owner.namespace:  # this environment (or its reuse)
                continue
            session = read_session(self.cluster, owner.namespace)
            if owner_alive(session, self._now(), self.grace):
                raise ApplyError(
                    f"{where} exists with a different definition, installed by "
                    f"{describe_owner(owner, session)}, whose lease is live; use the "
                    "same definition, or make the name unique with ${session_id}"
                )
        return True

    # --- after the namespace and its Lease exist ------------------------------------------

    def claim(self, items: Sequence[Placed], deadline: float) -> None:
        """Create each object or join its owners (all at once); CRDs are then waited for
        until Established."""
        run_concurrently([partial(self._claim_one, item, deadline) for item in items])
        run_concurrently(
            [partial(self._wait_established, item, deadline) for item in items if _is_crd(item.obj)]
        )

    def _claim_one(self, item: Placed, deadline: float) -> None:
        body = owned_manifest(item.obj.manifest, [self.owner], self.labels)
        while True:
            live = self._get(item)
            if live is None:
                try:
                    self.cluster.create(item.resource, None, body)
                    return
                except Conflict:  # created meanwhile by another session: read it
                    continue
                except ApiError as error:
                    raise ApplyError(
                        f"{item.obj.location}: {item.obj} was rejected: {error.message}"
                    ) from None
            metadata = live.get("metadata") or {}
            if metadata.get("deletionTimestamp"):  # its last owner is deleting it: wait
                self._sleep_until(deadline, item, "is still being deleted")
                continue
            if self._refuse_if_foreign(item, live):  # stale: every owner of it is gone
                from kubefixtures.leases.cluster_scoped import unchanged

                self.cluster.delete_unchanged(item.resource, None, item.obj.name, unchanged(live))
                continue
            owners = owners_of(live)
            if any(owner.namespace == self.owner.namespace for owner in owners):
                return  # owned already: a reused namespace's environment
            if self._patched(item, live, [*owners, self.owner]):
                return

    def _patched(self, item: Placed, live: Mapping[str, Any], owners: Sequence[Owner]) -> bool:
        """Write the owners if ``live`` is unchanged; False on a conflict (read again)."""
        try:
            self.cluster.merge_patch(item.resource, None, item.obj.name, owners_patch(live, owners))
        except Conflict:
            return False
        return True

    def _wait_established(self, item: Placed, deadline: float) -> None:
        while True:
            crd = self._get(item) or {}
            conditions = {
                condition.get("type"): condition
                for condition in (crd.get("status") or {}).get("conditions") or []
            }
            names = conditions.get("NamesAccepted") or {}
            if names.get("status") == "False":
                raise ApplyError(
                    f"{item.obj.location}: {item.obj} names were not accepted: "
                    f"{names.get('message') or names.get('reason')}"
                )
            if all(
                (conditions.get(kind) or {}).get("status") == "True"
                for kind in ("Established", "NamesAccepted")
            ):
                return
            self._sleep_until(deadline, item, "is not Established")

    # --- teardown -------------------------------------------------------------------------

    def release(self) -> list[str]:
        """Leave every object's owners; delete those left without one. Returns the objects
        deleted (``kind/name``), for the record."""
        from kubefixtures.leases.cluster_scoped import leave

        deleted = []
        for item in self.objects:
            if leave(self.cluster, item.resource, item.obj.name, {self.owner.namespace}):
                deleted.append(str(item.obj))
        return deleted

    # --- helpers --------------------------------------------------------------------------

    def _get(self, item: Placed) -> JSON | None:
        return self.cluster.get_or_none(item.resource, None, item.obj.name)

    def _sleep_until(self, deadline: float, item: Placed, what: str) -> None:
        if time.monotonic() + _POLL_SECONDS > deadline:
            raise ApplyError(f"{item.obj.location}: {item.obj} {what} at the deadline")
        time.sleep(_POLL_SECONDS)


def _is_webhook(resource: Resource) -> bool:
    return resource in (VALIDATING_WEBHOOKS, MUTATING_WEBHOOKS)
