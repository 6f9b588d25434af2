"""The session's Lease holder: renewals from a thread, retries, and saying so loudly.

The cluster is a stand-in that records requests and fails on demand; what the requests
look like on a real API server is covered by tests/integration/test_operator.py.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from kubefixtures.clock import ServerClock
from kubefixtures.errors import ClusterError
from kubefixtures.kube.client import ApiError, Cluster
from kubefixtures.leases.policy import KEEP_UNTIL_ANNOTATION, LEASE_NAME, parse_time
from kubefixtures.leases.renewal import SessionLease


class FakeCluster(Cluster):
    """The real Cluster's helpers over requests that are recorded, and fail on demand."""

    def __init__(self) -> None:  # no connection: request() is replaced
        self.server_clock = ServerClock()
        self.requests: list[tuple[str, str, Any]] = []
        self.failing: BaseException | None = None
        self.lock = threading.Lock()

    def request(self, method: str, path: str, *, body: Any = None, **_: Any) -> dict[str, Any]:
        with self.lock:
            self.requests.append((method, path, body))
            failing = self.failing
        if failing is not None and method == "PATCH":
            raise failing
        return {}

    def renewals(self) -> int:
        with self.lock:
            return sum(
                1 for method, _, body in self.requests if method == "PATCH" and "spec" in body
            )


def holder(cluster: FakeCluster, duration: float, lines: list[str]) -> SessionLease:
    return SessionLease(
        cluster,  # type: ignore[arg-type]
        "kf-shop-abc123",
        "abc@host/1",
        duration,
        labels={"kubefixtures.io/session": "abc"},
        warn=lines.append,
    )


def wait_for(condition: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def test_create_writes_a_labelled_lease() -> None:
    cluster = FakeCluster()
    lease = holder(cluster, 6, [])
    lease.create()
    ((method, path, body),) = cluster.requests
    assert method == "POST"
    assert path == "/apis/coordination.k8s.io/v1/namespaces/kf-shop-abc123/leases"
    assert body["metadata"]["name"] == LEASE_NAME
    assert body["metadata"]["labels"] == {
        "app.kubernetes.io/managed-by": "kubefixtures",
        "kubefixtures.io/session": "abc",
    }
    assert body["spec"]["holderIdentity"] == "abc@host/1"
    assert body["spec"]["leaseDurationSeconds"] == 6
    assert parse_time(body["spec"]["renewTime"]) is not None


def test_a_short_duration_is_never_rounded_to_nothing() -> None:
    assert holder(FakeCluster(), 0.2, []).duration == 1


def test_renews_every_third_of_the_duration_until_stopped() -> None:
    cluster = FakeCluster()
    lease = holder(cluster, 1.5, [])  # renewals every 0.5 s (whole seconds: 2 s -> 0.67 s)
    lease.start()
    wait_for(lambda: cluster.renewals() >= 2)
    lease.stop()
    count = cluster.renewals()
    time.sleep(1)
    assert cluster.renewals() == count  # stopped means stopped


def test_failures_are_retried_and_a_whole_duration_without_renewal_is_loud() -> None:
    cluster = FakeCluster()
    lines: list[str] = []
    lease = holder(cluster, 1, lines)  # interval 1/3 s
    cluster.failing = ClusterError("connection refused")
    lease.start()
    try:
        wait_for(lambda: lines, timeout=5)
        assert len(lines) == 1
        assert "WARNING: could not renew the lease of namespace kf-shop-abc123" in lines[0]
        assert "connection refused" in lines[0]
        attempts = cluster.renewals()
        assert attempts >= 3  # retried with backoff, not once per interval
        cluster.failing = None
        wait_for(lambda: len(lines) == 2, timeout=5)
        assert "renewed the lease of namespace kf-shop-abc123 again" in lines[1]
    finally:
        lease.stop()
    assert lease.trouble == lines[1]


def test_a_lost_lease_is_reported_once_and_renewals_end() -> None:
    cluster = FakeCluster()
    lines: list[str] = []
    lease = holder(cluster, 1, lines)
    cluster.failing = ApiError(404, "NotFound", "leases.coordination.k8s.io not found")
    lease.start()
    try:
        wait_for(lambda: lines)
        assert "is gone" in lines[0]
        count = cluster.renewals()
        time.sleep(0.8)
        assert cluster.renewals() == count
    finally:
        lease.stop()


def test_finish_with_keep_marks_keep_until() -> None:
    cluster = FakeCluster()
    lease = holder(cluster, 60, [])
    line = lease.finish(keep_for=3600)
    ((method, _, body),) = cluster.requests
    assert method == "PATCH"
    until = parse_time(body["metadata"]["annotations"][KEEP_UNTIL_ANNOTATION])
    assert until is not None
    assert 3590 < (until - datetime.now(UTC)).total_seconds() <= 3600
    assert line is not None
    assert "kept until" in line


def test_finish_says_when_keep_until_could_not_be_set() -> None:
    cluster = FakeCluster()
    cluster.failing = ClusterError("forbidden")
    line = holder(cluster, 60, []).finish(keep_for=60)
    assert line is not None
    assert "forbidden" in line
    assert "\n" not in line


def test_finish_without_trouble_says_nothing() -> None:
    assert holder(FakeCluster(), 60, []).finish() is None


@pytest.mark.parametrize("error", [ClusterError("timed out"), ApiError(500, "Internal", "etcd")])
def test_renew_raises_what_the_api_said(error: ClusterError) -> None:
    cluster = FakeCluster()
    cluster.failing = error
    with pytest.raises(ClusterError):
        holder(cluster, 60, []).renew()
