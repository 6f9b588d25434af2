"""decide(): the table every reaper (operator, gc) follows, and reading Leases/Namespaces."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kubefixtures.leases.policy import (
    DEFAULT_LEASE_SECONDS,
    KEEP_UNTIL_ANNOTATION,
    LeaseInfo,
    LeaseState,
    SessionNamespace,
    decide,
    format_time,
    holder_identity,
    lease_from_object,
    lease_state,
    namespace_from_object,
    parse_time,
)
from kubefixtures.naming import MANAGED_BY_LABEL

NOW = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
GRACE = timedelta(seconds=30)
MANAGED = {MANAGED_BY_LABEL: "kubefixtures", "kubefixtures.io/session": "abc"}


def ago(seconds: float) -> datetime:
    return NOW - timedelta(seconds=seconds)


def namespace(
    *,
    labels: dict[str, str] | None = None,
    age: float = 600,
    lease: LeaseInfo | None = None,
    terminating: bool = False,
    keep_until: datetime | None = None,
    invalid_keep_until: str | None = None,
) -> SessionNamespace:
    return SessionNamespace(
        name="kf-shop-abc123",
        uid="u1",
        resource_version="7",
        labels=MANAGED if labels is None else labels,
        created=ago(age),
        terminating=terminating,
        keep_until=keep_until,
        invalid_keep_until=invalid_keep_until,
        lease=lease,
    )


def lease(renewed_ago: float | None, duration: float = 60, **extra: Any) -> LeaseInfo:
    renew = ago(renewed_ago) if renewed_ago is not None else None
    return LeaseInfo(
        holder="abc@host/42", duration_seconds=duration, renew_time=renew, created=ago(900), **extra
    )


# (case, namespace, delete?, state, recheck_at or None)
TABLE = [
    ("live lease", namespace(lease=lease(5)), False, LeaseState.LIVE, ago(5 - 60 - 30)),
    (
        "lease expired, within grace",
        namespace(lease=lease(70)),
        False,
        LeaseState.EXPIRED,
        ago(-20),
    ),
    ("lease expired exactly at grace", namespace(lease=lease(90)), True, LeaseState.EXPIRED, None),
    ("lease expired long ago", namespace(lease=lease(3600)), True, LeaseState.EXPIRED, None),
    ("no lease, young", namespace(age=10), False, LeaseState.MISSING, ago(10 - 30)),
    ("no lease, older than grace", namespace(age=31), True, LeaseState.MISSING, None),
    (
        "not managed, lease long expired",
        namespace(labels={"team": "x"}, lease=lease(3600)),
        False,
        LeaseState.UNMANAGED,
        None,
    ),
    (
        "managed-by someone else",
        namespace(labels={MANAGED_BY_LABEL: "helm"}, age=3600),
        False,
        LeaseState.UNMANAGED,
        None,
    ),
    (
        "already terminating",
        namespace(lease=lease(3600), terminating=True),
        False,
        LeaseState.DELETING,
        None,
    ),
    (
        "keep-until on the lease in the future",
        namespace(lease=lease(3600, keep_until=ago(-600))),
        False,
        LeaseState.KEPT,
        ago(-600),
    ),
    (
        "keep-until in the future, lease still live: wait for both",
        namespace(lease=lease(0, keep_until=ago(-10))),
        False,
        LeaseState.KEPT,
        ago(-90),
    ),
    (
        "keep-until on the namespace in the future",
        namespace(lease=lease(3600), keep_until=ago(-600)),
        False,
        LeaseState.KEPT,
        ago(-600),
    ),
    (
        "keep-until passed, lease expired",
        namespace(lease=lease(3600, keep_until=ago(60))),
        True,
        LeaseState.EXPIRED,
        None,
    ),
    (
        "keep-until passed, lease live",
        namespace(lease=lease(1, keep_until=ago(60))),
        False,
        LeaseState.LIVE,
        ago(1 - 90),
    ),
    (
        "keep-until unreadable",
        namespace(lease=lease(3600, invalid_keep_until="tomorrow")),
        False,
        LeaseState.KEPT,
        None,
    ),
    (
        "lease never renewed: acquire time counts",
        namespace(
            lease=LeaseInfo(duration_seconds=60, acquire_time=ago(200), created=ago(200)),
        ),
        True,
        LeaseState.EXPIRED,
        None,
    ),
    (
        "lease without times: creation counts",
        namespace(lease=LeaseInfo(duration_seconds=60, created=ago(20))),
        False,
        LeaseState.LIVE,
        ago(20 - 90),
    ),
    (
        "renewTime in the future (clock skew) is live",
        namespace(lease=lease(-300)),
        False,
        LeaseState.LIVE,
        ago(-300 - 90),
    ),
    (
        "short test lease",
        namespace(lease=lease(10, duration=6)),
        False,
        LeaseState.EXPIRED,
        ago(-26),
    ),
]


@pytest.mark.parametrize(
    ("session", "delete", "state", "recheck_at"),
    [case[1:] for case in TABLE],
    ids=[case[0] for case in TABLE],
)
def test_decide(
    session: SessionNamespace, delete: bool, state: LeaseState, recheck_at: datetime | None
) -> None:
    decision = decide(session, NOW, GRACE)
    assert decision.delete is delete, decision.reason
    assert decision.state is state
    assert lease_state(session, NOW) is state
    assert decision.recheck_at == recheck_at
    assert decision.reason
    assert "\n" not in decision.reason


def test_grace_may_be_seconds() -> None:
    session = namespace(lease=lease(70))
    assert decide(session, NOW, 30.0) == decide(session, NOW, GRACE)
    assert decide(session, NOW, 5).delete


def test_reasons_say_why() -> None:
    assert "expired" in decide(namespace(lease=lease(3600)), NOW, GRACE).reason
    assert "abc@host/42" in decide(namespace(lease=lease(3600)), NOW, GRACE).reason
    assert "no lease" in decide(namespace(age=3600), NOW, GRACE).reason
    assert "not managed" in decide(namespace(labels={}), NOW, GRACE).reason
    kept = decide(namespace(lease=lease(3600, keep_until=ago(-600))), NOW, GRACE)
    assert "kept until 2025-03-01T12:10:00Z" in kept.reason
    passed = decide(namespace(lease=lease(3600, keep_until=ago(60))), NOW, GRACE)
    assert "keep-until 2025-03-01T11:59:00Z has passed" in passed.reason
    assert "tomorrow" in decide(namespace(invalid_keep_until="tomorrow"), NOW, GRACE).reason


def test_a_live_session_is_never_deleted_whatever_the_grace() -> None:
    session = namespace(lease=lease(0), age=10**6)
    for grace in (0, 1, 30, 3600):
        assert not decide(session, NOW, grace).delete


def test_an_unmanaged_namespace_is_never_deleted() -> None:
    for labels in ({}, {MANAGED_BY_LABEL: "Kubefixtures"}, {"kubefixtures.io/session": "abc"}):
        for session_lease in (None, lease(10**6)):
            session = namespace(labels=labels, age=10**6, lease=session_lease)
            assert not decide(session, NOW, 0).delete


# --- reading objects -------------------------------------------------------------------------


def lease_object(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": "kubefixtures-session",
            "namespace": "kf-x",
            "creationTimestamp": "2025-03-01T11:00:00Z",
            "annotations": {KEEP_UNTIL_ANNOTATION: "2025-03-01T13:00:00Z"},
        },
        "spec": spec,
    }


def test_lease_from_object() -> None:
    info = lease_from_object(
        lease_object(
            holderIdentity="abc@h/1",
            leaseDurationSeconds=6,
            renewTime="2025-03-01T11:59:58.123456Z",
            acquireTime="2025-03-01T11:00:00.000000Z",
        )
    )
    assert info.holder == "abc@h/1"
    assert info.duration_seconds == 6
    assert info.renew_time == datetime(2025, 3, 1, 11, 59, 58, 123456, tzinfo=UTC)
    assert info.expires_at == datetime(2025, 3, 1, 12, 0, 4, 123456, tzinfo=UTC)
    assert info.keep_until == datetime(2025, 3, 1, 13, 0, tzinfo=UTC)


def test_a_lease_read_carries_its_version_for_a_compare_and_swap() -> None:
    # A run that judged a Lease free takes it over against the version it judged (reuse).
    body = lease_object(holderIdentity="a@h/1")
    body["metadata"]["resourceVersion"] = "4711"
    assert lease_from_object(body).resource_version == "4711"
    assert lease_from_object(lease_object(holderIdentity="a@h/1")).resource_version == ""


def test_a_lease_without_a_duration_gets_the_default() -> None:
    info = lease_from_object(lease_object(holderIdentity="a@h/1", leaseDurationSeconds=None))
    assert info.duration_seconds == DEFAULT_LEASE_SECONDS
    assert info.problem is None


def test_a_bad_keep_until_is_kept_raw() -> None:
    body = lease_object()
    body["metadata"]["annotations"][KEEP_UNTIL_ANNOTATION] = "next week"
    info = lease_from_object(body)
    assert info.keep_until is None
    assert info.invalid_keep_until == "next week"


def test_namespace_from_object() -> None:
    body = {
        "metadata": {
            "name": "kf-x",
            "uid": "u",
            "resourceVersion": "12",
            "labels": dict(MANAGED),
            "creationTimestamp": "2025-03-01T11:00:00Z",
            "deletionTimestamp": "2025-03-01T11:30:00Z",
        },
        "status": {"phase": "Terminating"},
    }
    session = namespace_from_object(body)
    assert session.managed
    assert session.terminating
    assert session.created == datetime(2025, 3, 1, 11, 0, tzinfo=UTC)
    assert session.resource_version == "12"
    assert session.lease is None
    assert not namespace_from_object({"metadata": {"name": "x"}}).managed


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-03-01T12:00:00Z", NOW),
        ("2025-03-01T12:00:00.000000Z", NOW),
        ("2025-03-01T13:00:00+01:00", NOW),
        ("2025-03-01T12:00:00", NOW),
        ("", None),
        ("soon", None),
        (None, None),
        (42, None),
    ],
)
def test_parse_time(text: object, expected: datetime | None) -> None:
    assert parse_time(text) == expected


def test_format_time_round_trips() -> None:
    moment = datetime(2025, 3, 1, 12, 0, 0, 5, tzinfo=UTC)
    assert format_time(moment) == "2025-03-01T12:00:00Z"
    assert format_time(moment, micro=True) == "2025-03-01T12:00:00.000005Z"
    assert parse_time(format_time(moment, micro=True)) == moment


def test_holder_identity() -> None:
    assert holder_identity("abc", "laptop", 42) == "abc@laptop/42"
    assert holder_identity("abc").startswith("abc@")
