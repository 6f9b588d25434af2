"""The pool's Lease policy (kubefixtures.leases.pool), as the reapers and a claimant see it:
a spare is kept while its protection lasts and deleted at once after; a claim leaves an
ordinary session Lease; ``status`` and ``gc`` name pool members, never as leaks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from kubefixtures.cli.sessions import status_rows
from kubefixtures.leases.policy import (
    KEEP_UNTIL_ANNOTATION,
    RELEASED_ANNOTATION,
    LeaseState,
    decide,
    format_time,
    lease_from_object,
    lease_state,
    namespace_from_object,
)
from kubefixtures.leases.pool import (
    POOL_KEY_LABEL,
    POOL_LABEL,
    SPARE,
    STARTING,
    claim_metadata,
    namespace_claim_patch,
    pool_state,
    spare_metadata,
    spare_selector,
    spare_since,
)
from kubefixtures.naming import MANAGED_BY_LABEL, MANAGED_BY_VALUE, SESSION_LABEL

NOW = datetime(2026, 12, 1, 11, 0, 0, tzinfo=UTC)
LABELS = {MANAGED_BY_LABEL: MANAGED_BY_VALUE, POOL_KEY_LABEL: "abc123"}


def merged(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """A JSON merge patch (RFC 7386) applied, as the API server does."""
    result = dict(base)
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict):
            result[key] = merged(result.get(key) or {}, value)
        else:
            result[key] = value
    return result


def spare_lease(ready_at: datetime, keep_for: float = 7200) -> dict[str, Any]:
    starting = {
        "metadata": {"labels": {**LABELS, POOL_LABEL: STARTING}, "creationTimestamp": "x"},
        "spec": {
            "holderIdentity": "maintainer@host/1",
            "leaseDurationSeconds": 60,
            "renewTime": format_time(ready_at - timedelta(seconds=5), micro=True),
        },
    }
    return merged(
        starting, {"metadata": spare_metadata(ready_at + timedelta(seconds=keep_for), ready_at)}
    )


def judged(lease: dict[str, Any], labels: dict[str, str], now: datetime) -> Any:
    namespace = namespace_from_object(
        {"metadata": {"name": "kf-shop-abc123", "labels": labels, "creationTimestamp": "x"}},
        lease_from_object(lease),
    )
    return namespace, decide(namespace, now, 60)


def test_a_ready_spare_is_kept_while_protected_and_deleted_at_once_after() -> None:
    lease = spare_lease(NOW)
    labels = {**LABELS, POOL_LABEL: SPARE}
    namespace, decision = judged(lease, labels, NOW + timedelta(hours=1))
    assert not decision.delete  # nobody renews it, but keep-until protects it
    assert decision.state is LeaseState.KEPT
    _, decision = judged(lease, labels, NOW + timedelta(hours=2, seconds=1))
    assert decision.delete  # protection gone: released, deleted without waiting for grace
    assert spare_since(lease) == NOW
    assert pool_state(namespace.labels) == SPARE


def test_a_claim_leaves_an_ordinary_session_lease() -> None:
    lease = spare_lease(NOW)
    claimed = merged(
        lease,
        {
            # As SessionLease.take_over writes it: the claim's metadata, released removed.
            "metadata": {
                "labels": claim_metadata()["labels"],
                "annotations": {**claim_metadata()["annotations"], RELEASED_ANNOTATION: None},
            },
            "spec": {
                "holderIdentity": "claimant@host/2",
                "leaseDurationSeconds": 3,
                "renewTime": format_time(NOW + timedelta(minutes=5), micro=True),
            },
        },
    )
    annotations = claimed["metadata"].get("annotations") or {}
    assert KEEP_UNTIL_ANNOTATION not in annotations
    assert RELEASED_ANNOTATION not in annotations
    assert spare_since(claimed) is None
    assert pool_state(claimed["metadata"]["labels"]) is None
    labels = merged({**LABELS, POOL_LABEL: SPARE, SESSION_LABEL: "maint"}, {})
    labels = merged(labels, namespace_claim_patch("claimant")["metadata"]["labels"])
    assert labels == {MANAGED_BY_LABEL: MANAGED_BY_VALUE, SESSION_LABEL: "claimant"}
    later = NOW + timedelta(minutes=5, seconds=1)
    _, decision = judged(claimed, labels, later)
    assert decision.state is LeaseState.LIVE  # the claimant's now
    # The claimant dies: its Lease expires, and the copy is reaped like any leaked session.
    _, decision = judged(claimed, labels, later + timedelta(seconds=3 + 61))
    assert decision.delete
    assert decision.state is LeaseState.EXPIRED


def test_selectors_find_one_users_members_of_one_key() -> None:
    assert spare_selector("k1", "alice") == (
        f"{MANAGED_BY_LABEL}={MANAGED_BY_VALUE},{POOL_KEY_LABEL}=k1,{POOL_LABEL}={SPARE},"
        "kubefixtures.io/user=alice"
    )
    assert spare_selector("k1", None, state=None).endswith(f"{POOL_KEY_LABEL}=k1,{POOL_LABEL}")


def test_status_and_gc_show_pool_members_as_such_never_as_leaked() -> None:
    lease = spare_lease(NOW)
    namespace, _ = judged(lease, {**LABELS, POOL_LABEL: SPARE}, NOW)
    [header, row] = status_rows([namespace], NOW + timedelta(minutes=30), 60)
    assert header[4] == "LEASE"
    assert row[4] == "kept; pool spare"
    assert "leaked" not in " ".join(row)
    assert row[5] == format_time(NOW + timedelta(hours=2))
    assert lease_state(namespace, NOW) is LeaseState.KEPT
