"""``--kubefixtures-namespace``: the setting, the Lease's records, and the reapers' decision
(a Lease saying the namespace is not ours never condemns the namespace)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kubefixtures.cli.sessions import status_rows
from kubefixtures.commands_for_people import kept_objects_lines
from kubefixtures.errors import SettingsError
from kubefixtures.leases.existing_namespaces import (
    MAX_KINDS,
    existing_session,
    kinds_of,
    kinds_text,
)
from kubefixtures.leases.ownership import owner_alive
from kubefixtures.leases.policy import (
    EXISTING_NAMESPACE_LABEL,
    LEASE_NAME,
    decide,
    format_time,
    lease_from_object,
    namespace_from_object,
)
from kubefixtures.naming import MANAGED_BY_LABEL, SESSION_LABEL
from kubefixtures.settings import Settings

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


class FakeConfig:
    def __init__(self, ini: dict[str, Any]) -> None:
        self.ini = ini

    def getoption(self, name: str) -> Any:
        return None

    def getini(self, name: str) -> Any:
        return self.ini.get(name)


def test_the_setting_is_a_namespace_name_and_excludes_reuse() -> None:
    settings = Settings.from_config(FakeConfig({"kubefixtures_namespace": "team-ci"}))
    assert settings.namespace == "team-ci"
    assert Settings.from_config(FakeConfig({})).namespace is None
    with pytest.raises(SettingsError, match=r"^--kubefixtures-namespace \(ini kubefixtures_"):
        Settings.from_config(FakeConfig({"kubefixtures_namespace": "Team_CI"}))
    with pytest.raises(SettingsError, match="cannot be combined with --kubefixtures-reuse"):
        Settings.from_config(
            FakeConfig({"kubefixtures_namespace": "team-ci", "kubefixtures_reuse": "true"})
        )


def lease(renewed: datetime, **annotations: str) -> dict[str, Any]:
    return {
        "metadata": {
            "name": LEASE_NAME,
            "namespace": "team-ci",
            "uid": "u1",
            "resourceVersion": "7",
            "creationTimestamp": format_time(renewed - timedelta(minutes=5)),
            "labels": {
                MANAGED_BY_LABEL: "kubefixtures",
                SESSION_LABEL: "abc12345",
                EXISTING_NAMESPACE_LABEL: "true",
            },
            "annotations": annotations,
        },
        "spec": {
            "holderIdentity": "abc12345@ci-7/42",
            "leaseDurationSeconds": 60,
            "renewTime": format_time(renewed, micro=True),
        },
    }


def test_a_dead_sessions_lease_condemns_its_objects_only() -> None:
    dead = lease(NOW - timedelta(minutes=3))
    assert decide(existing_session(dead), NOW, 60).delete
    assert not decide(existing_session(lease(NOW - timedelta(seconds=10))), NOW, 60).delete
    # The namespace reaper, judging the user's namespace (labelled as ours by mistake)
    # with that Lease, never deletes it.
    namespace = namespace_from_object(
        {
            "metadata": {
                "name": "team-ci",
                "creationTimestamp": "2020-01-01T00:00:00Z",
                "labels": {MANAGED_BY_LABEL: "kubefixtures"},
            }
        },
        lease_from_object(dead),
    )
    decision = decide(namespace, NOW, 60)
    assert not decision.delete
    assert "not ours" in decision.reason


def test_status_marks_a_session_in_an_existing_namespace_and_gives_its_own_age() -> None:
    live, dead = lease(NOW - timedelta(seconds=10)), lease(NOW - timedelta(minutes=3))
    [header, *rows] = status_rows([existing_session(live), existing_session(dead)], NOW, 60)
    assert header[0] == "NAMESPACE"
    assert [row[0] for row in rows] == ["team-ci (existing namespace)"] * 2
    assert [row[3] for row in rows] == ["5m", "8m"]  # the session's Lease, not the namespace
    assert rows[0][4] == "live (50s left)"
    assert rows[1][4] == "expired 2m ago (leaked)"
    # A namespace of our own is not marked.
    ours = namespace_from_object(
        {"metadata": {"name": "kf-shop-ab12cd", "creationTimestamp": format_time(NOW)}}
    )
    assert status_rows([ours], NOW, 60)[1][0] == "kf-shop-ab12cd"


def test_an_owner_in_an_existing_namespace_is_judged_by_its_lease() -> None:
    namespace = namespace_from_object(
        {"metadata": {"name": "team-ci", "creationTimestamp": "2020-01-01T00:00:00Z"}}
    )
    live = namespace.with_lease(lease_from_object(lease(NOW - timedelta(seconds=10))))
    dead = namespace.with_lease(lease_from_object(lease(NOW - timedelta(minutes=3))))
    assert owner_alive(live, NOW, 60)
    assert not owner_alive(dead, NOW, 60)


def test_the_kinds_record_is_small_sorted_and_read_back() -> None:
    text = kinds_text([("apps/v1", "Deployment"), ("v1", "Service"), ("apps/v1", "Deployment")])
    assert text == '[["apps/v1","Deployment"],["v1","Service"]]'
    recorded = lease(NOW, **{"kubefixtures.io/applied-kinds": text})
    assert kinds_of(recorded) == [("apps/v1", "Deployment"), ("v1", "Service")]
    assert kinds_of(lease(NOW, **{"kubefixtures.io/applied-kinds": "{not json"})) == []
    with pytest.raises(ValueError, match=f"at most {MAX_KINDS}"):
        kinds_text([("example.com/v1", f"Kind{number}") for number in range(MAX_KINDS + 1)])


def test_kept_objects_lines_select_by_label_and_leave_the_namespace() -> None:
    lines = kept_objects_lines(
        "team-ci",
        "shop",
        "test_cart failed",
        selector="kubefixtures.io/session=abc12345,kubefixtures.io/environment=shop",
        kinds=["deployments", "services"],
        context="ci",
        kubeconfig=None,
        environ={},
    )
    assert lines[0].startswith("kept the objects of environment 'shop' in namespace team-ci")
    assert (
        "  kubectl --context ci -n team-ci get deployments,services "
        "-l kubefixtures.io/session=abc12345,kubefixtures.io/environment=shop" in lines
    )
    assert lines[-2].endswith("# remove them (the namespace stays)")
    assert lines[-1] == (
        "  kubectl --context ci -n team-ci delete lease kubefixtures-session  # then let the "
        "next session in"
    )
    assert not any("delete namespace" in line for line in lines)


class FakeLease:
    """What a share of an existing namespace's Lease calls on it."""

    namespace = "team-ci"
    holder = "abc12345@ci-7/42"

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.clock = self

    def wall(self) -> datetime:
        return NOW

    def start(self) -> None:
        self.calls.append("start")

    def stop(self) -> None:
        self.calls.append("stop")

    def delete(self) -> str | None:
        self.calls.append("delete")
        return None

    def keep_until(self, until: datetime, because: str | None, *, released: bool) -> None:
        self.calls.append(f"keep {format_time(until)} {because} released={released}")


def shares(count: int) -> tuple[FakeLease, list[Any]]:
    from kubefixtures.provisioning import existing

    lease = FakeLease()
    hold = existing._Hold(lease)  # type: ignore[arg-type]
    hold.users = count
    key = ("test", f"team-{count}")
    existing._holds[key] = hold
    return lease, [existing._Share(key, hold) for _ in range(count)]


def test_the_last_environment_deletes_the_lease() -> None:
    lease, (first, second) = shares(2)
    assert first.finish(None) is None
    assert lease.calls == []  # the second environment still needs it
    assert first.finish(None) is None  # a second finish of the same share counts once
    assert second.finish(None) is None
    assert lease.calls == ["delete"]


def test_one_kept_environment_keeps_the_lease_for_the_longest_keep() -> None:
    lease, (first, second) = shares(2)
    first.finish(3600, "test_a failed")
    line = second.finish(None)
    assert lease.calls == [
        "stop",
        f"keep {format_time(NOW + timedelta(seconds=3600))} test_a failed released=True",
    ]
    assert line is not None
    assert "objects of session abc12345 in namespace team-ci are kept until" in line
    assert "never the namespace" in line
