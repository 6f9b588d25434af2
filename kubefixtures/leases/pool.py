"""The Lease policy of pooled environments: how a spare copy is marked, found and claimed.

A spare is an ordinary session namespace with two more labels, on the namespace and on its
Lease ``kubefixtures-session``: ``kubefixtures.io/pool-key`` (the environment's key, the
digest ``--kubefixtures-reuse`` computes too) and ``kubefixtures.io/pool`` (``starting``
while its maintainer brings it up and renews its Lease; ``spare`` once it is ready). A ready
spare's Lease is no longer renewed: it carries keep-until (the maintainer's protection) and
the released annotation, so reapers keep it until then and delete it at once after, and
``kubefixtures.io/spare-since`` (when it became ready, for the pool's maximum age).

Claiming is one compare-and-swap: a merge patch of the Lease carrying the resourceVersion it
was read at, which makes the new holder the claimant, drops the pool labels and the
protection; the API answers 409 Conflict to every other claimant of the same copy. From then
on it is an ordinary session namespace (its Lease renewed by the claimant, reaped once that
expires). Pure logic only: nothing here talks to a cluster.

The operator maintains pools too (``kubefixtures pool create``; kubefixtures.operator.pools):
its copies are labelled exactly so, plus ``kubefixtures.io/pool-name`` and
``kubefixtures.io/pool-home`` (the Pool object's name and namespace), which tell the operator
which copies are its own; claimants never look at those two.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from kubefixtures.leases.policy import (
    KEEP_UNTIL_ANNOTATION,
    RELEASED_ANNOTATION,
    format_time,
    parse_time,
)
from kubefixtures.naming import MANAGED_BY_LABEL, MANAGED_BY_VALUE, SESSION_LABEL, USER_LABEL

__all__ = [
    "POOL_HOME_LABEL",
    "POOL_KEY_LABEL",
    "POOL_LABEL",
    "POOL_NAME_LABEL",
    "SPARE",
    "SPARE_SINCE_ANNOTATION",
    "STARTING",
    "claim_metadata",
    "namespace_claim_patch",
    "operator_pool_selector",
    "pool_state",
    "protection_patch",
    "spare_metadata",
    "spare_selector",
    "spare_since",
]

POOL_KEY_LABEL = "kubefixtures.io/pool-key"
POOL_LABEL = "kubefixtures.io/pool"
STARTING = "starting"  # its maintainer is bringing it up (and renews its Lease)
SPARE = "spare"  # ready, unclaimed, protected by keep-until
SPARE_SINCE_ANNOTATION = "kubefixtures.io/spare-since"
# An operator-maintained pool's copies: the Pool object they were made for.
POOL_NAME_LABEL = "kubefixtures.io/pool-name"
POOL_HOME_LABEL = "kubefixtures.io/pool-home"


def spare_selector(key: str, user: str | None, state: str | None = SPARE) -> str:
    """The label selector of one user's pool members of ``key`` (in ``state``; None: any)."""
    parts = [f"{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}", f"{POOL_KEY_LABEL}={key}"]
    parts.append(f"{POOL_LABEL}={state}" if state else POOL_LABEL)
    if user:
        parts.append(f"{USER_LABEL}={user}")
    return ",".join(parts)


def operator_pool_selector(home: str, name: str | None = None, state: str | None = None) -> str:
    """The label selector of the copies the operator made for the Pools of namespace
    ``home`` (of the Pool ``name`` only; in ``state`` only: ``starting``, ``spare``)."""
    parts = [f"{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}", f"{POOL_HOME_LABEL}={home}"]
    parts.append(f"{POOL_NAME_LABEL}={name}" if name else POOL_NAME_LABEL)
    if state:
        parts.append(f"{POOL_LABEL}={state}")
    return ",".join(parts)


def spare_metadata(until: datetime, now: datetime) -> dict[str, Any]:
    """The Lease metadata of a copy that just became ready: a spare, protected until
    ``until``, no longer renewed by its maintainer."""
    return {
        "labels": {POOL_LABEL: SPARE},
        "annotations": {
            KEEP_UNTIL_ANNOTATION: format_time(until),
            RELEASED_ANNOTATION: format_time(now),
            SPARE_SINCE_ANNOTATION: format_time(now),
        },
    }


def protection_patch(until: datetime, resource_version: str) -> dict[str, Any]:
    """The Lease patch by which a pool's maintainer extends a ready spare's protection to
    ``until``: on condition that the Lease is still as it was read (``resource_version``),
    so that a copy claimed meanwhile is never protected again (409 Conflict instead)."""
    return {
        "metadata": {
            "resourceVersion": resource_version,
            "annotations": {KEEP_UNTIL_ANNOTATION: format_time(until)},
        }
    }


def claim_metadata() -> dict[str, Any]:
    """What a claim removes from the spare's Lease (the holder and times are the claimant's,
    set by ``SessionLease.take_over``): it is no pool member and no longer protected."""
    return {
        "labels": {
            POOL_LABEL: None,
            POOL_KEY_LABEL: None,
            POOL_NAME_LABEL: None,
            POOL_HOME_LABEL: None,
        },
        "annotations": {KEEP_UNTIL_ANNOTATION: None, SPARE_SINCE_ANNOTATION: None},
    }


def namespace_claim_patch(session_label: str) -> dict[str, Any]:
    """The claimed namespace's labels: the claimant's session, no pool labels any more."""
    return {
        "metadata": {
            "labels": {
                POOL_LABEL: None,
                POOL_KEY_LABEL: None,
                POOL_NAME_LABEL: None,
                POOL_HOME_LABEL: None,
                SESSION_LABEL: session_label,
            }
        }
    }


def _metadata(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    metadata = obj.get("metadata")
    return metadata if isinstance(metadata, Mapping) else {}


def pool_state(labels: Mapping[str, str]) -> str | None:
    """``starting`` or ``spare`` for a pool member's labels (namespace or Lease), else None."""
    if not labels.get(POOL_KEY_LABEL):
        return None
    return labels.get(POOL_LABEL) or None


def spare_since(lease: Mapping[str, Any]) -> datetime | None:
    """When a spare's Lease says it became ready (None: not a ready spare, or unreadable)."""
    annotations = _metadata(lease).get("annotations") or {}
    return parse_time(annotations.get(SPARE_SINCE_ANNOTATION))
