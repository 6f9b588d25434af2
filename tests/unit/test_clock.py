"""The API server's time, as measured from the Date headers of its answers, and the
session's Lease written in it whatever this machine's clock says."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from kubefixtures.clock import ServerClock
from kubefixtures.leases.policy import decide, lease_from_object, namespace_from_object, parse_time
from kubefixtures.leases.renewal import SessionLease
from kubefixtures.naming import MANAGED_BY_LABEL
from tests.unit.test_lease_renewal import FakeCluster

TRUE_NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


class SkewedClock:
    """This machine's clock, ``skew`` seconds off the true time."""

    def __init__(self, skew: float) -> None:
        self.true_now = TRUE_NOW
        self.skew = timedelta(seconds=skew)

    def wall(self) -> datetime:
        return self.true_now + self.skew

    def monotonic(self) -> float:
        return (self.true_now - TRUE_NOW).total_seconds()


def date_header(moment: datetime) -> str:
    return format_datetime(moment.replace(microsecond=0), usegmt=True)


@pytest.mark.parametrize("skew", [-600.0, 0.0, 600.0])
def test_the_server_clock_follows_the_server_not_this_machine(skew: float) -> None:
    local = SkewedClock(skew)
    clock = ServerClock(local)
    assert clock.wall() == local.wall()  # nothing measured yet
    sent = local.wall()
    local.true_now += timedelta(seconds=0.2)  # a 0.2 s round trip, answered at +0.1 s
    clock.observe(date_header(TRUE_NOW + timedelta(seconds=0.1)), sent, local.wall())
    assert abs((clock.wall() - local.true_now).total_seconds()) <= 1.0
    local.true_now += timedelta(minutes=5)  # it keeps following without new answers
    assert abs((clock.wall() - local.true_now).total_seconds()) <= 1.0


@pytest.mark.parametrize("header", [None, "", "not a date", "Tue, 99 Foo 2026 99:99:99 GMT"])
def test_an_unreadable_date_changes_nothing(header: str | None) -> None:
    local = SkewedClock(600)
    clock = ServerClock(local)
    clock.observe(header, local.wall(), local.wall())
    assert clock.offset is None
    assert clock.wall() == local.wall()


@pytest.mark.parametrize("skew", [-600.0, 600.0])
def test_a_session_ten_minutes_off_writes_its_lease_in_server_time(skew: float) -> None:
    """The session machine is 10 minutes ahead or behind; gc and the operator, on the server's
    time, see a live Lease, and the namespace is kept."""
    local = SkewedClock(skew)
    cluster = FakeCluster()
    cluster.server_clock = ServerClock(local)
    cluster.server_clock.observe(date_header(TRUE_NOW), local.wall(), local.wall())
    session_lease = SessionLease(cluster, "kf-x", "a@h/1", 60)  # type: ignore[arg-type]
    session_lease.create()
    session_lease.renew()
    for _, _, body in cluster.requests:
        renewed = parse_time(body["spec"]["renewTime"])
        assert renewed is not None
        assert abs((renewed - TRUE_NOW).total_seconds()) <= 1.0
    _, _, created = cluster.requests[0]
    namespace = namespace_from_object(
        {"metadata": {"name": "kf-x", "labels": {MANAGED_BY_LABEL: "kubefixtures"}}},
        lease_from_object(created),
    )
    # gc on a machine with the right time, right after: live, kept (grace 0 even).
    assert not decide(namespace, TRUE_NOW + timedelta(seconds=1), 0).delete
