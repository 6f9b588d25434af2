"""The operator's in-memory schedule and its reaper loop, without a cluster.

The one step that talks to the API (``recheck_and_delete``) is replaced by a recorder here;
the integration tests run the real thing.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kubefixtures.clock import SYSTEM_CLOCK
from kubefixtures.leases.policy import (
    KEEP_UNTIL_ANNOTATION,
    decide,
    format_time,
    lease_from_object,
)
from kubefixtures.leases.reaping import Outcome
from kubefixtures.naming import MANAGED_BY_LABEL
from kubefixtures.operator import reaper as reaper_module
from kubefixtures.operator.config import OperatorConfig, OperatorConfigError
from kubefixtures.operator.reaper import Reaper
from kubefixtures.operator.schedule import Schedule

T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def namespace_body(name: str, created: datetime, **metadata: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "uid": f"uid-{name}",
            "resourceVersion": "1",
            "labels": {MANAGED_BY_LABEL: "kubefixtures"},
            "creationTimestamp": format_time(created),
            **metadata,
        }
    }


def lease_body(namespace: str, renewed: datetime, duration: int = 6, **annotations: str) -> Any:
    return {
        "metadata": {
            "name": "kubefixtures-session",
            "namespace": namespace,
            "creationTimestamp": format_time(T0),
            "annotations": annotations,
        },
        "spec": {
            "holderIdentity": "s@h/1",
            "leaseDurationSeconds": duration,
            "renewTime": format_time(renewed, micro=True),
        },
    }


# --- Schedule --------------------------------------------------------------------------------


def test_due_namespaces_come_out_soonest_first_once() -> None:
    schedule = Schedule()
    for name in ("a", "b", "c"):
        schedule.namespace_seen(namespace_body(name, T0))
    schedule.plan("a", at(30))
    schedule.plan("b", at(10))
    schedule.plan("c", at(20))
    assert schedule.next_due() == at(10)
    assert schedule.pop_due(at(5)) == []
    assert schedule.pop_due(at(25)) == ["b", "c"]
    assert schedule.pop_due(at(25)) == []
    assert schedule.next_due() == at(30)


def test_a_new_plan_replaces_the_old_one() -> None:
    schedule = Schedule()
    schedule.namespace_seen(namespace_body("a", T0))
    assert schedule.plan("a", at(10)) is True  # first plan: wake the reaper
    assert schedule.plan("a", at(50)) is False  # later than what is planned: no need to wake
    assert schedule.pop_due(at(20)) == []  # the superseded entry is skipped
    assert schedule.next_due() == at(50)
    assert schedule.plan("a", at(5)) is True
    assert schedule.pop_due(at(5)) == ["a"]
    assert schedule.next_due() is None


def test_forgotten_namespaces_are_never_due() -> None:
    schedule = Schedule()
    schedule.namespace_seen(namespace_body("a", T0))
    schedule.plan("a", at(10))
    schedule.namespace_gone("a")
    assert schedule.pop_due(at(100)) == []
    assert schedule.plan("a", at(10)) is False  # unknown namespaces are not planned
    assert len(schedule) == 0


def test_a_lease_seen_before_its_namespace_is_kept() -> None:
    schedule = Schedule()
    schedule.lease_seen(lease_body("a", at(0)))
    assert schedule.session("a") is None
    schedule.namespace_seen(namespace_body("a", T0))
    session = schedule.session("a")
    assert session is not None
    assert session.lease is not None
    assert session.lease.holder == "s@h/1"
    schedule.lease_gone("a")
    session = schedule.session("a")
    assert session is not None
    assert session.lease is None


# --- Reaper ----------------------------------------------------------------------------------


class Recorder:
    """Stands in for recheck_and_delete: decides from what it is told the API holds now."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.api: dict[str, Any] = {}  # name -> SessionNamespace as the API would return it

    def __call__(self, cluster: object, name: str, grace: Any, **kwargs: Any) -> Outcome:
        self.calls.append(name)
        session = self.api.get(name)
        if session is None:
            return Outcome(namespace=name, deleted=False, decision=None)
        observed = kwargs["observe"](session)
        decision = decide(observed, kwargs["now"](), grace)
        return Outcome(namespace=name, deleted=decision.delete, decision=decision, session=session)


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    recorder = Recorder()
    monkeypatch.setattr(reaper_module, "recheck_and_delete", recorder)
    return recorder


class FakeClock:
    """The operator's clocks: ``now`` is the true time (what the tests' times mean); the
    wall clock may be skewed from it, the monotonic one counts seconds from T0."""

    def __init__(self, skew: float = 0.0) -> None:
        self.now = T0
        self.skew = timedelta(seconds=skew)

    def wall(self) -> datetime:
        return self.now + self.skew

    def monotonic(self) -> float:
        return 1000.0 + (self.now - T0).total_seconds()


def make_reaper(clock: FakeClock, grace: float = 3) -> Reaper:
    config = OperatorConfig(grace_seconds=grace)
    return Reaper(cluster=None, config=config, clock=clock)  # type: ignore[arg-type]


def due(reaper: Reaper, name: str, clock: FakeClock) -> datetime | None:
    """When ``name`` is due, in true time."""
    when = reaper.schedule.due_at(name)
    return None if when is None else when - clock.skew


def test_a_live_lease_is_looked_at_when_it_could_have_expired(recorder: Recorder) -> None:
    clock = FakeClock()
    reaper = make_reaper(clock)
    reaper.namespace_event(None, namespace_body("a", T0))
    assert due(reaper, "a", clock) == at(3)  # no lease yet: first seen + grace
    reaper.lease_event(None, lease_body("a", at(0)))
    assert due(reaper, "a", clock) == at(6 + 3)  # seen renewed at 0: duration + grace
    clock.now = at(2)
    reaper.lease_event("MODIFIED", lease_body("a", at(2)))  # a renewal, seen at 2
    assert due(reaper, "a", clock) == at(2 + 6 + 3)


@pytest.mark.parametrize("skew", [-600, 600])
def test_a_session_with_a_skewed_clock_is_judged_by_when_its_renewals_are_seen(
    recorder: Recorder, skew: float
) -> None:
    """renewTime 10 minutes off (a session machine ahead or behind, older kubefixtures):
    what counts is that it changes, as the operator sees it."""
    clock = FakeClock()
    reaper = make_reaper(clock)
    reaper.namespace_event(None, namespace_body("a", T0))
    for second in range(0, 60, 2):
        clock.now = at(second)
        reaper.lease_event("MODIFIED", lease_body("a", at(second + skew)))
        recorder.api["a"] = reaper.schedule.session("a")
        asyncio.run(_check_due(reaper))
    assert reaper.deleted == 0
    assert due(reaper, "a", clock) == at(58 + 6 + 3)
    clock.now = at(58 + 6 + 3)  # the renewals stopped: deleted after duration + grace
    asyncio.run(_check_due(reaper))
    assert reaper.deleted == 1


@pytest.mark.parametrize("skew", [-600, 600])
def test_an_operator_with_a_skewed_clock_deletes_nothing_live(
    recorder: Recorder, skew: float
) -> None:
    clock = FakeClock(skew=skew)
    reaper = make_reaper(clock)
    reaper.namespace_event(None, namespace_body("a", T0))
    for second in range(0, 30, 2):
        clock.now = at(second)
        reaper.lease_event("MODIFIED", lease_body("a", at(second)))
        recorder.api["a"] = reaper.schedule.session("a")
        asyncio.run(_check_due(reaper))
    assert reaper.deleted == 0


def test_a_fresh_operator_waits_a_full_lease_and_grace_for_a_lease_it_never_saw_renewed(
    recorder: Recorder,
) -> None:
    clock = FakeClock()
    clock.now = at(3600)  # the operator starts an hour after the session died
    reaper = make_reaper(clock)
    reaper.namespace_event(None, namespace_body("a", T0))
    reaper.lease_event(None, lease_body("a", at(0)))
    assert due(reaper, "a", clock) == at(3600 + 6 + 3)


def test_due_and_condemned_in_memory_is_rechecked_then_deleted(recorder: Recorder) -> None:
    clock = FakeClock()
    reaper = make_reaper(clock)
    body = namespace_body("a", T0)
    reaper.namespace_event(None, body)
    reaper.lease_event(None, lease_body("a", at(0)))
    recorder.api["a"] = reaper.schedule.session("a")
    clock.now = at(10)
    asyncio.run(_check_due(reaper))
    assert recorder.calls == ["a"]
    assert reaper.deleted == 1
    assert "a" not in reaper.schedule


def test_a_renewal_the_watch_has_not_delivered_saves_the_namespace(recorder: Recorder) -> None:
    clock = FakeClock()
    reaper = make_reaper(clock)
    reaper.namespace_event(None, namespace_body("a", T0))
    reaper.lease_event(None, lease_body("a", at(0)))
    # The API already holds a renewal that memory has not seen.
    fresh = reaper.schedule.session("a")
    assert fresh is not None
    assert fresh.lease is not None
    renewed = lease_from_object(lease_body("a", at(9)))
    recorder.api["a"] = fresh.with_lease(renewed)
    clock.now = at(10)
    asyncio.run(_check_due(reaper))
    assert recorder.calls == ["a"]
    assert reaper.deleted == 0
    assert due(reaper, "a", clock) == at(10 + 6 + 3)  # seen renewed when it was read


def test_keep_until_and_terminating_namespaces(recorder: Recorder) -> None:
    clock = FakeClock()
    reaper = make_reaper(clock)
    until = format_time(at(600))
    reaper.namespace_event(None, namespace_body("kept", T0))
    reaper.lease_event(None, lease_body("kept", at(0), **{KEEP_UNTIL_ANNOTATION: until}))
    assert due(reaper, "kept", clock) == at(600)
    reaper.namespace_event(None, namespace_body("going", T0, deletionTimestamp=format_time(T0)))
    assert due(reaper, "going", clock) is None
    reaper.namespace_event("DELETED", namespace_body("going", T0))
    assert "going" not in reaper.schedule


def test_unmanaged_namespaces_are_never_planned(recorder: Recorder) -> None:
    clock = FakeClock()
    reaper = make_reaper(clock, grace=0)
    body = namespace_body("theirs", at(-3600))
    body["metadata"]["labels"] = {MANAGED_BY_LABEL: "helm"}
    reaper.namespace_event(None, body)
    assert due(reaper, "theirs", clock) is None
    clock.now = at(10**6)
    asyncio.run(_check_due(reaper))
    assert recorder.calls == []


def test_the_loop_sleeps_until_due_and_wakes_for_sooner_work(recorder: Recorder) -> None:
    async def scenario() -> None:
        reaper = Reaper(
            cluster=None,  # type: ignore[arg-type]
            config=OperatorConfig(grace_seconds=0.2),
            clock=SYSTEM_CLOCK,
        )
        now = datetime.now(UTC)
        reaper.start()
        await asyncio.sleep(0.05)  # asleep with nothing to do
        body = namespace_body("late", now)
        body["metadata"]["creationTimestamp"] = format_time(now, micro=True)
        reaper.namespace_event(None, body)
        recorder.api["late"] = reaper.schedule.session("late")
        await asyncio.sleep(0.05)
        assert recorder.calls == []  # not due before seen + 0.2 s
        for _ in range(60):
            await asyncio.sleep(0.05)
            if reaper.deleted:
                break
        await reaper.stop()
        assert recorder.calls == ["late"]
        assert reaper.deleted == 1

    asyncio.run(scenario())


async def _check_due(reaper: Reaper) -> None:
    for name in reaper.schedule.pop_due(reaper.clock.wall()):
        await reaper.check(name)


# --- configuration ---------------------------------------------------------------------------


def test_config_from_environment() -> None:
    config = OperatorConfig.from_env(
        {
            "KUBEFIXTURES_OPERATOR_GRACE": "2.5",
            "KUBEFIXTURES_OPERATOR_SELECTOR": "team=a",
        }
    )
    assert config.grace_seconds == 2.5
    assert config.selector == "team=a"


@pytest.mark.parametrize("value", ["soon", "-1", "nan"])
def test_a_bad_grace_names_the_variable(value: str) -> None:
    with pytest.raises(OperatorConfigError, match="KUBEFIXTURES_OPERATOR_GRACE"):
        OperatorConfig.from_env({"KUBEFIXTURES_OPERATOR_GRACE": value})
