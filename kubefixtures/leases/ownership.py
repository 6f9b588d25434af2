"""Who uses a cluster-scoped object: the owners annotation, the definition hash, liveness.

A cluster-scoped object of an environment (a CRD, a ClusterRole...) outlives no namespace,
so the sessions using it say so on the object itself: the label
``app.kubernetes.io/managed-by=kubefixtures``, the annotation ``kubefixtures.io/owners`` (a
JSON list of ``{"namespace": ..., "session": ...}``, one entry per environment namespace
holding a session Lease) and ``kubefixtures.io/definition-hash`` (the SHA-256 of the
definition as the first session rendered it). Sessions with the same definition share the
object; the last owner to go (or a reaper, once every owner's Lease has expired) deletes it.

Pure logic only: objects are the JSON dicts the API returns.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from kubefixtures.leases.policy import SessionNamespace, decide
from kubefixtures.naming import (
    HOST_LABEL,
    MANAGED_BY_LABEL,
    MANAGED_BY_VALUE,
    USER_LABEL,
)

__all__ = [
    "DEFINITION_HASH_ANNOTATION",
    "OWNERS_ANNOTATION",
    "MalformedOwners",
    "Owner",
    "definition_hash",
    "describe_owner",
    "hash_of",
    "is_managed",
    "is_owned",
    "owned_manifest",
    "owner_alive",
    "owners_of",
    "owners_patch",
]

OWNERS_ANNOTATION = "kubefixtures.io/owners"
DEFINITION_HASH_ANNOTATION = "kubefixtures.io/definition-hash"


class MalformedOwners(ValueError):
    """The owners annotation cannot be read: a human edited it; nobody deletes the object."""


@dataclass(frozen=True, order=True)
class Owner:
    """One environment using the object: the namespace holding its Lease, and its session."""

    namespace: str
    session: str

    def to_json(self) -> dict[str, str]:
        return {"namespace": self.namespace, "session": self.session}


def definition_hash(manifest: Mapping[str, Any]) -> str:
    """SHA-256 of the definition as rendered (before kubefixtures adds its label and
    annotations), canonical JSON: the same YAML gives the same hash on every machine."""
    canonical = json.dumps(manifest, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _metadata(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    metadata = obj.get("metadata")
    return metadata if isinstance(metadata, Mapping) else {}


def is_managed(obj: Mapping[str, Any]) -> bool:
    return (_metadata(obj).get("labels") or {}).get(MANAGED_BY_LABEL) == MANAGED_BY_VALUE


def is_owned(obj: Mapping[str, Any]) -> bool:
    """Whether ``obj`` is a cluster-scoped object sessions share: managed, and carrying the
    owners annotation. Session namespaces are managed too, but owned by no annotation: their
    Lease decides (kubefixtures.leases.policy), never this."""
    annotations = _metadata(obj).get("annotations") or {}
    return is_managed(obj) and OWNERS_ANNOTATION in annotations


def hash_of(obj: Mapping[str, Any]) -> str:
    return str((_metadata(obj).get("annotations") or {}).get(DEFINITION_HASH_ANNOTATION) or "")


def owners_of(obj: Mapping[str, Any]) -> list[Owner]:
    """The owners recorded on ``obj``; MalformedOwners when the annotation is unreadable."""
    raw = (_metadata(obj).get("annotations") or {}).get(OWNERS_ANNOTATION)
    if raw is None or raw == "":
        return []
    try:
        entries = json.loads(raw)
    except (TypeError, ValueError):
        raise MalformedOwners(f"annotation {OWNERS_ANNOTATION} is not JSON") from None
    if not isinstance(entries, list):
        raise MalformedOwners(f"annotation {OWNERS_ANNOTATION} is not a JSON list")
    owners = []
    for entry in entries:
        if not (
            isinstance(entry, Mapping)
            and isinstance(entry.get("namespace"), str)
            and isinstance(entry.get("session"), str)
        ):
            raise MalformedOwners(
                f"annotation {OWNERS_ANNOTATION} holds an entry without namespace and session"
            )
        owners.append(Owner(entry["namespace"], entry["session"]))
    return owners


def _owners_text(owners: Sequence[Owner]) -> str:
    return json.dumps([owner.to_json() for owner in sorted(set(owners))], separators=(",", ":"))


def owned_manifest(
    manifest: Mapping[str, Any], owners: Sequence[Owner], labels: Mapping[str, str]
) -> dict[str, Any]:
    """``manifest`` with the managed label and the creating environment's namespace labels
    (``labels``: user, host, environment..., so that reapers' selectors match it as they
    match namespaces), the owners and the hash of ``manifest`` itself."""
    metadata = dict(_metadata(manifest))
    metadata.pop("namespace", None)
    metadata["labels"] = {
        **(metadata.get("labels") or {}),
        **labels,
        MANAGED_BY_LABEL: MANAGED_BY_VALUE,  # over a chart's "Helm": kubefixtures manages it
    }
    metadata["annotations"] = {
        **(metadata.get("annotations") or {}),
        OWNERS_ANNOTATION: _owners_text(owners),
        DEFINITION_HASH_ANNOTATION: definition_hash(manifest),
    }
    return {**manifest, "metadata": metadata}


def owners_patch(obj: Mapping[str, Any], owners: Sequence[Owner]) -> dict[str, Any]:
    """A merge patch setting the owners, valid only while ``obj`` is unchanged: its
    resourceVersion makes the API answer 409 Conflict to a writer who read an older one."""
    return {
        "metadata": {
            "resourceVersion": str(_metadata(obj).get("resourceVersion") or ""),
            "annotations": {OWNERS_ANNOTATION: _owners_text(owners)},
        }
    }


def owner_alive(session: SessionNamespace | None, now: datetime, grace: timedelta | float) -> bool:
    """Whether the owner's environment still lives: its namespace exists, is not being
    deleted, and the reapers' decision would keep it (live Lease, kept, or within grace).

    The namespace's managed label is not required: what proves life here is the Lease.
    """
    if session is None or session.terminating:
        return False
    judged = replace(
        session, labels={**session.labels, MANAGED_BY_LABEL: MANAGED_BY_VALUE}, objects_only=True
    )
    return not decide(judged, now, grace).delete


def describe_owner(owner: Owner, session: SessionNamespace | None) -> str:
    """``session abc123 (user alice, host ci-7, namespace kf-shop-x1y2z3)``, for errors."""
    labels = session.labels if session is not None else {}
    holder = session.lease.holder if session is not None and session.lease else None
    host = labels.get(HOST_LABEL) or (holder.partition("@")[2].partition("/")[0] if holder else "")
    parts = [f"user {labels[USER_LABEL]}"] if labels.get(USER_LABEL) else []
    parts += [f"host {host}"] if host else []
    parts.append(f"namespace {owner.namespace}")
    return f"session {owner.session} ({', '.join(parts)})"
