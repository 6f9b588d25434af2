"""Leases no session wrote: every reaper (operator, gc, status) logs and skips them, never
deletes for them, and never dies of them. Released Leases: deleted at once."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import kopf
import pytest

from kubefixtures.cli.sessions import status_rows
from kubefixtures.leases.policy import (
    LEASE_NAME,
    RELEASED_ANNOTATION,
    LeaseState,
    decide,
    format_time,
    held,
    lease_from_object,
    namespace_from_object,
)
from kubefixtures.leases.reaping import Outcome
from kubefixtures.naming import MANAGED_BY_LABEL
from kubefixtures.operator import handlers
from kubefixtures.operator import reaper as reaper_module
from kubefixtures.operator.config import OperatorConfig
from kubefixtures.operator.reaper import Reaper

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
GOOD_SPEC = {
    "holderIdentity": "abc@host/1",
    "leaseDurationSeconds": 60,
    "renewTime": "2026-03-01T11:00:00.000000Z",  # expired an hour ago: deleted if well-formed
}


def lease(spec: Any = None, metadata: Any = None, namespace: str = "kf-x") -> dict[str, Any]:
    return {
        "metadata": {"name": LEASE_NAME, "namespace": namespace} if metadata is None else metadata,
        "spec": GOOD_SPEC if spec is None else spec,
    }


def namespace_object(name: str = "kf-x") -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "uid": f"uid-{name}",
            "labels": {MANAGED_BY_LABEL: "kubefixtures"},
            "creationTimestamp": "2026-03-01T10:00:00Z",
        }
    }


MALFORMED = {
    "renewTime near year 9999": {**GOOD_SPEC, "renewTime": "9999-12-31T23:59:59.999999Z"},
    "renewTime a day ahead": {**GOOD_SPEC, "renewTime": "2026-03-02T13:00:00.000000Z"},
    "renewTime in year 1": {**GOOD_SPEC, "renewTime": "0001-01-01T00:00:00Z"},
    "acquireTime in year 1": {**GOOD_SPEC, "acquireTime": "0001-01-01T00:00:00Z"},
    "renewTime a number": {**GOOD_SPEC, "renewTime": 1700000000},
    "renewTime not a time": {**GOOD_SPEC, "renewTime": "yesterday"},
    "duration 0": {**GOOD_SPEC, "leaseDurationSeconds": 0},
    "duration negative": {**GOOD_SPEC, "leaseDurationSeconds": -5},
    "duration huge": {**GOOD_SPEC, "leaseDurationSeconds": 10**12},
    "duration a string": {**GOOD_SPEC, "leaseDurationSeconds": "60"},
    "duration a bool": {**GOOD_SPEC, "leaseDurationSeconds": True},
    "holder a number": {**GOOD_SPEC, "holderIdentity": 42},
    "holder missing": {k: v for k, v in GOOD_SPEC.items() if k != "holderIdentity"},
    "spec a list": [],
    "spec empty": {},
}


def test_the_well_formed_lease_these_are_made_from_is_deleted() -> None:
    session = namespace_from_object(namespace_object(), lease_from_object(lease()))
    assert decide(session, NOW, 60).delete


@pytest.mark.parametrize("spec", MALFORMED.values(), ids=MALFORMED.keys())
def test_a_malformed_lease_is_kept_and_said_so(spec: Any) -> None:
    info = lease_from_object(lease(spec))
    session = namespace_from_object(namespace_object(), info)
    decision = decide(session, NOW, 60)
    assert not decision.delete
    assert decision.state is LeaseState.MALFORMED
    assert "malformed" in decision.reason
    assert not held(info, NOW)  # nor does it stop a reuse run from... see test_reuse
    ((*_, column, _),) = status_rows([session], NOW, 60)[1:]
    assert column.startswith("malformed (")


@pytest.mark.parametrize(
    "body",
    [
        {"metadata": [], "spec": GOOD_SPEC},
        {"metadata": {"annotations": "x", "name": LEASE_NAME}, "spec": GOOD_SPEC},
        {},
    ],
)
def test_odd_metadata_never_raises(body: dict[str, Any]) -> None:
    lease_from_object(body)
    namespace_from_object({"metadata": {"labels": [], "annotations": 3}})


def test_a_released_lease_is_deleted_at_once_unless_kept() -> None:
    released = lease(metadata={"name": LEASE_NAME, "annotations": {RELEASED_ANNOTATION: "x"}})
    released["spec"] = {**GOOD_SPEC, "renewTime": format_time(NOW, micro=True)}  # just now
    session = namespace_from_object(namespace_object(), lease_from_object(released))
    decision = decide(session, NOW, 3600)
    assert decision.delete
    assert decision.state is LeaseState.RELEASED
    assert "released" in decision.reason
    assert not held(session.lease, NOW)
    released["metadata"]["annotations"]["kubefixtures.io/keep-until"] = format_time(
        NOW + timedelta(hours=1)
    )
    kept = namespace_from_object(namespace_object(), lease_from_object(released))
    assert not decide(kept, NOW, 3600).delete


# --- the operator survives them ---------------------------------------------------------------


class Clock:
    def wall(self) -> datetime:
        return NOW

    def monotonic(self) -> float:
        return 0.0


@pytest.fixture
def deletions(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    deleted: list[str] = []

    def recheck(cluster: object, name: str, grace: Any, **kwargs: Any) -> Outcome:
        deleted.append(name)
        return Outcome(namespace=name, deleted=True, decision=None)

    monkeypatch.setattr(reaper_module, "recheck_and_delete", recheck)
    return deleted


def test_the_operator_logs_each_malformed_lease_once_and_goes_on(
    deletions: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    reaper = Reaper(None, OperatorConfig(grace_seconds=0), clock=Clock())  # type: ignore[arg-type]
    names = [f"kf-bad-{index}" for index in range(len(MALFORMED))]
    with caplog.at_level(logging.WARNING, logger="kubefixtures.operator"):
        for name, spec in zip(names, MALFORMED.values(), strict=True):
            reaper.namespace_event(None, namespace_object(name))
            reaper.lease_event(None, lease(spec, namespace=name))
            reaper.lease_event("MODIFIED", lease(spec, namespace=name))  # logged once only
        reaper.namespace_event(None, namespace_object("kf-released"))
        released = lease(namespace="kf-released")
        released["metadata"]["annotations"] = {RELEASED_ANNOTATION: format_time(NOW)}
        reaper.lease_event(None, released)

        async def check_due() -> None:
            for name in reaper.schedule.pop_due(NOW + timedelta(days=400)):
                await reaper.check(name)

        asyncio.run(check_due())
    assert deletions == ["kf-released"]
    skipped = [r.getMessage() for r in caplog.records if "skipping namespace" in r.getMessage()]
    assert len(skipped) == len(names)
    for name, line in zip(names, skipped, strict=True):
        assert line.startswith(f"skipping namespace {name}: lease {LEASE_NAME} is malformed")
        assert "\n" not in line


def test_a_check_that_fails_unexpectedly_is_logged_and_retried_later(
    deletions: list[str], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    reaper = Reaper(None, OperatorConfig(grace_seconds=0), clock=Clock())  # type: ignore[arg-type]
    reaper.namespace_event(None, namespace_object("kf-a"))
    reaper.lease_event(None, lease(namespace="kf-a"))

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise OverflowError("date value out of range")

    monkeypatch.setattr(reaper_module, "decide", broken)
    asyncio.run(reaper.check("kf-a"))  # no exception escapes
    assert "checking namespace kf-a failed" in caplog.text
    retry = reaper.schedule.due_at("kf-a")
    assert retry is not None
    assert retry > NOW


def test_the_liveness_probe_fails_once_the_reaper_task_ended() -> None:
    async def scenario() -> None:
        assert await handlers.reaper_alive(memo=kopf.Memo()) == "starting"
        reaper = Reaper(None, OperatorConfig(), clock=Clock())  # type: ignore[arg-type]
        memo = kopf.Memo(reaper=reaper)
        reaper.start()
        await asyncio.sleep(0)
        assert (await handlers.reaper_alive(memo=memo)).startswith("running")
        task = reaper._task
        assert task is not None
        task.cancel()  # as if it had died
        await asyncio.sleep(0.01)
        with pytest.raises(kopf.PermanentError, match="the reaper stopped"):
            await handlers.reaper_alive(memo=memo)

    asyncio.run(scenario())
