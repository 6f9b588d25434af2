"""Sessions in namespaces they did not create (``--kubefixtures-namespace``): what their
Lease records, and how the operator and ``kubefixtures gc`` reap a dead one.

Such a session holds the Lease ``kubefixtures-session`` in the user's namespace, labelled
``kubefixtures.io/existing-namespace=true`` besides the usual session labels (managed-by,
session, environment, user, host). Its annotation ``kubefixtures.io/applied-kinds`` lists
the kinds (``[apiVersion, kind]`` pairs, at most ``MAX_KINDS``) whose objects the session
applied there, each object labelled with the session's id. Once
:func:`kubefixtures.leases.policy.decide` condemns the Lease (expired more than the grace
ago, released, keep-until passed), a reaper deletes the session's objects of those kinds
(found by the session label), then the Lease. Never the namespace: the Lease's label tells
every reaper it is not ours (policy.decide refuses it to the namespace reaper), and nothing
here has a path to a namespace deletion.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from kubefixtures.errors import KubefixturesError
from kubefixtures.kube.client import LEASE, Cluster
from kubefixtures.kube.errors import Forbidden
from kubefixtures.leases.policy import (
    EXISTING_NAMESPACE_LABEL,
    LEASE_NAME,
    SessionNamespace,
    decide,
    lease_from_object,
    parse_time,
)
from kubefixtures.leases.reaping import managed_selector
from kubefixtures.naming import SESSION_LABEL

__all__ = [
    "APPLIED_KINDS_ANNOTATION",
    "MAX_KINDS",
    "ReapedSession",
    "existing_session",
    "kinds_of",
    "kinds_text",
    "list_existing",
    "reap_existing",
    "reap_session",
    "session_selector",
]

logger = logging.getLogger("kubefixtures.lease")

APPLIED_KINDS_ANNOTATION = "kubefixtures.io/applied-kinds"
# Kinds, not objects: a reaper finds the objects by label, and the annotation stays small
# (a few KiB at most) however many objects an environment holds.
MAX_KINDS = 200


def kinds_text(kinds: Iterable[tuple[str, str]]) -> str:
    """The annotation's value: sorted, unique ``[apiVersion, kind]`` pairs."""
    unique = sorted({(str(api_version), str(kind)) for api_version, kind in kinds})
    if len(unique) > MAX_KINDS:
        raise ValueError(f"{len(unique)} kinds of objects; at most {MAX_KINDS} can be recorded")
    return json.dumps([list(pair) for pair in unique], separators=(",", ":"))


def _metadata(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    metadata = obj.get("metadata")
    return metadata if isinstance(metadata, Mapping) else {}


def kinds_of(lease: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The kinds a Lease records (none when the annotation is absent or unreadable)."""
    raw = (_metadata(lease).get("annotations") or {}).get(APPLIED_KINDS_ANNOTATION)
    try:
        pairs = json.loads(raw) if isinstance(raw, str) else []
    except ValueError:
        return []
    if not isinstance(pairs, list):
        return []
    return [
        (pair[0], pair[1])
        for pair in pairs
        if isinstance(pair, list)
        and len(pair) == 2
        and all(isinstance(part, str) and part for part in pair)
    ]


def existing_session(lease: Mapping[str, Any]) -> SessionNamespace:
    """The Lease as a reaper judges it: its labels, its age, and nothing of the namespace
    (``objects_only``: what a deletion means here is the session's objects)."""
    metadata = _metadata(lease)
    return SessionNamespace(
        name=str(metadata.get("namespace") or ""),
        uid=str(metadata.get("uid") or ""),
        resource_version=str(metadata.get("resourceVersion") or ""),
        labels={str(k): str(v) for k, v in (metadata.get("labels") or {}).items()},
        created=parse_time(metadata.get("creationTimestamp")) or datetime.now(UTC),
        lease=lease_from_object(lease),
        objects_only=True,
    )


def session_selector(session_id: str) -> str:
    """The label selector of one session's objects."""
    return managed_selector(f"{SESSION_LABEL}={session_id}")


def list_existing(
    cluster: Cluster, selector: str | None = None, namespace: str | None = None
) -> list[dict[str, Any]]:
    """The Leases of sessions in existing namespaces (narrowed by ``selector``; in one
    ``namespace`` only, for credentials limited to it)."""
    extra = f"{EXISTING_NAMESPACE_LABEL}=true" + (f",{selector}" if selector else "")
    return [
        lease
        for lease in cluster.items(LEASE, namespace, label_selector=managed_selector(extra))
        if _metadata(lease).get("name") == LEASE_NAME
    ]


def reap_session(cluster: Cluster, lease: Mapping[str, Any]) -> list[str]:
    """Delete a dead session's objects in its existing namespace, then its Lease (only as it
    was read, and only if every recorded kind could be listed: the Lease is the record of
    what is left). Returns what was deleted, as ``kind/name``."""
    from kubefixtures.leases.cluster_scoped import remove_webhooks_into, unchanged

    metadata = _metadata(lease)
    namespace = str(metadata.get("namespace") or "")
    session_id = str((metadata.get("labels") or {}).get(SESSION_LABEL) or "")
    if not namespace or not session_id:
        return []
    deleted = remove_webhooks_into(cluster, namespace)
    complete = True  # every recorded kind listed: only then may the record (the Lease) go
    for api_version, kind in kinds_of(lease):
        resource = cluster.resource_for(api_version, kind)
        if resource is None or not resource.namespaced:
            continue  # a kind no longer served; cluster-scoped ones have their own owners
        try:
            selector = session_selector(session_id)
            objects = cluster.items(resource, namespace, label_selector=selector)
        except Forbidden:
            logger.warning("may not list %s in %s: left alone", resource.plural, namespace)
            complete = False
            continue
        for obj in objects:
            name = str(_metadata(obj).get("name") or "")
            uid = str(_metadata(obj).get("uid") or "")
            if cluster.delete_unchanged(resource, namespace, name, {"uid": uid}):
                deleted.append(f"{kind.lower()}/{name}")
    if complete:
        cluster.delete_unchanged(LEASE, namespace, LEASE_NAME, unchanged(lease))
    return deleted


@dataclass(frozen=True)
class ReapedSession:
    """What a sweep did (or, dry, would do) with a dead session in an existing namespace."""

    namespace: str
    session: str
    reason: str
    deleted: tuple[str, ...]  # kind/name of its objects
    dry_run: bool = False


def reap_existing(
    cluster: Cluster,
    grace: timedelta | float,
    *,
    selector: str | None = None,
    dry_run: bool = False,
    now: Callable[[], datetime] | None = None,
    namespace: str | None = None,
) -> list[ReapedSession]:
    """One sweep over the Leases of sessions in existing namespaces: reap those
    :func:`decide` condemns, after reading each afresh (a renewal since the listing wins)."""
    now = now or cluster.server_clock.wall
    done = []
    for listed in list_existing(cluster, selector, namespace):
        where, session_id = str(_metadata(listed).get("namespace")), ""
        try:
            fresh = cluster.get_or_none(LEASE, where, LEASE_NAME)
            if fresh is None:
                continue
            judged = existing_session(fresh)
            session_id = judged.labels.get(SESSION_LABEL, "")
            decision = decide(judged, now(), grace)
            if not decision.delete:
                continue
            deleted = () if dry_run else tuple(reap_session(cluster, fresh))
        except KubefixturesError as error:  # one namespace must not stop the sweep
            logger.warning("reaping session %s in namespace %s: %s", session_id, where, error)
            continue
        done.append(ReapedSession(where, session_id, decision.reason, deleted, dry_run))
    return done
