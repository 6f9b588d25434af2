"""``--kubefixtures-namespace``: environments in a namespace the user has, against the real
cluster, with the credentials such users have: a ServiceAccount whose Role grants
everything in that one namespace and nothing else (it may not create namespaces).

Every session is a real pytest run (a subprocess). Whatever happens, the namespace stays,
and so does everything in it that is not the session's.
"""

from __future__ import annotations

import json
import secrets
import shlex
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kubefixtures.errors import ClusterError
from kubefixtures.kube import Cluster
from kubefixtures.kube.client import LEASE, Resource
from kubefixtures.kube.config import load_config
from kubefixtures.leases.existing_namespaces import APPLIED_KINDS_ANNOTATION
from kubefixtures.leases.policy import EXISTING_NAMESPACE_LABEL, LEASE_NAME
from kubefixtures.naming import ENVIRONMENT_LABEL, HOST_LABEL, SESSION_LABEL, USER_LABEL
from tests.integration.operator_support import operator_in_process
from tests.integration.sharing_support import BIN
from tests.integration.test_cluster_scoped import (
    ENVIRONMENTS,
    GRACE_SECONDS,
    LEASE_SECONDS,
    Session,
    wait_until,
)
from tests.integration.test_credentials import write_kubeconfig

pytestmark = pytest.mark.cluster

SOURCE = ENVIRONMENTS / "existing-namespace"
CONFIG_MAPS = Resource("v1", "ConfigMap", "configmaps", True)
DEPLOYMENTS = Resource("apps/v1", "Deployment", "deployments", True)
SERVICES = Resource("v1", "Service", "services", True)
ROLES = Resource("rbac.authorization.k8s.io/v1", "Role", "roles", True)
BINDINGS = Resource("rbac.authorization.k8s.io/v1", "RoleBinding", "rolebindings", True)
ACCOUNTS = Resource("v1", "ServiceAccount", "serviceaccounts", True)

# The test reads its environment through the forward, as any test would.
FETCH = """
import urllib.request
assert b"hello from web-" in urllib.request.urlopen(env.services["web"].url, timeout=10).read()
assert env.namespace == NAMESPACE
"""


@dataclass(frozen=True)
class Team:
    """A namespace someone gave us, and a kubeconfig that may do anything in it only."""

    namespace: str
    kubeconfig: Path

    def arguments(self) -> tuple[str, ...]:
        return (
            f"--kubefixtures-kubeconfig={self.kubeconfig}",
            f"--kubefixtures-namespace={self.namespace}",
        )


@pytest.fixture
def team(kubefixtures_cluster: Cluster, tmp_path: Path) -> Iterator[Team]:
    cluster = kubefixtures_cluster
    namespace = f"team-{secrets.token_hex(3)}"
    cluster.create_namespace(namespace, {"kubefixtures.io/test": "existing-namespace"})
    try:
        cluster.create(ACCOUNTS, namespace, {"metadata": {"name": "ci"}})
        cluster.create(
            ROLES,
            namespace,
            {
                "metadata": {"name": "ci"},
                "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}],
            },
        )
        cluster.create(
            BINDINGS,
            namespace,
            {
                "metadata": {"name": "ci"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "ci"},
                "subjects": [{"kind": "ServiceAccount", "name": "ci", "namespace": namespace}],
            },
        )
        # Someone else's objects in the namespace: a ConfigMap and a Lease.
        cluster.create(
            CONFIG_MAPS, namespace, {"metadata": {"name": "not-ours"}, "data": {"a": "b"}}
        )
        cluster.create(
            LEASE,
            namespace,
            {"metadata": {"name": "someone-elses"}, "spec": {"holderIdentity": "someone"}},
        )
        token = cluster.request(
            "POST",
            f"/api/v1/namespaces/{namespace}/serviceaccounts/ci/token",
            body={"spec": {"expirationSeconds": 3600}},
        )["status"]["token"]
        (tmp_path / "token").write_text(token)
        kubeconfig = write_kubeconfig(tmp_path / "config", cluster, {"tokenFile": "token"})
        yield Team(namespace, kubeconfig)
    finally:
        cluster.delete_namespace(namespace)


@pytest.fixture
def sessions(tmp_path: Path, team: Team) -> Iterator[Callable[..., Session]]:
    started: list[Session] = []

    def start(fixture: str, *more: str, check: str = FETCH) -> Session:
        session = Session(
            tmp_path / fixture,
            fixture,
            {},
            check=check.replace("NAMESPACE", repr(team.namespace)),
            source=SOURCE,
            arguments=(*team.arguments(), *more),
        )
        started.append(session)
        return session

    yield start
    for session in started:
        if session.process.poll() is None:
            session.kill()


def fixture_name() -> str:
    return f"kfex_{secrets.token_hex(3)}"


def session_objects(cluster: Cluster, namespace: str, session_id: str) -> list[str]:
    selector = f"{SESSION_LABEL}={session_id}"
    return [
        f"{resource.kind}/{item['metadata']['name']}"
        for resource in (CONFIG_MAPS, DEPLOYMENTS, SERVICES)
        for item in cluster.items(resource, namespace, label_selector=selector)
        if not item["metadata"].get("deletionTimestamp")
    ]


def the_lease(cluster: Cluster, namespace: str) -> dict[str, Any] | None:
    return cluster.get_or_none(LEASE, namespace, LEASE_NAME)


def assert_left_alone(cluster: Cluster, namespace: str) -> None:
    """The namespace and what is not ours in it are as they were."""
    found = cluster.namespace(namespace)
    assert found is not None, f"namespace {namespace} was deleted"
    assert not found["metadata"].get("deletionTimestamp"), f"namespace {namespace} is going"
    assert cluster.get_or_none(CONFIG_MAPS, namespace, "not-ours")["data"] == {"a": "b"}  # type: ignore[index]
    assert cluster.get_or_none(LEASE, namespace, "someone-elses") is not None
    assert cluster.get_or_none(ROLES, namespace, "ci") is not None


def test_the_credentials_may_not_create_namespaces(team: Team) -> None:
    limited = Cluster(load_config(str(team.kubeconfig)))
    try:
        with pytest.raises(ClusterError, match="may not create namespaces"):
            limited.check_access()
        limited.check_access(team.namespace)  # leases in the namespace: allowed
    finally:
        limited.close()


def test_a_session_leaves_the_namespace_and_what_is_not_ours_and_refuses_a_second_one(
    kubefixtures_cluster: Cluster, team: Team, sessions: Callable[..., Session]
) -> None:
    cluster = kubefixtures_cluster
    first = sessions(fixture_name())
    assert first.namespace() == team.namespace
    lease = the_lease(cluster, team.namespace)
    assert lease is not None
    labels = lease["metadata"]["labels"]
    assert labels[EXISTING_NAMESPACE_LABEL] == "true"
    session_id = labels[SESSION_LABEL]
    kinds = json.loads(lease["metadata"]["annotations"][APPLIED_KINDS_ANNOTATION])
    assert ["apps/v1", "Deployment"] in kinds
    assert sorted(session_objects(cluster, team.namespace, session_id)) == [
        "ConfigMap/web-settings",
        "Deployment/web",
        "Service/web",
    ]
    # A second session in the same namespace is refused, naming the holder.
    second = sessions(fixture_name())
    assert second.finish() != 0
    assert (
        f"--kubefixtures-namespace {team.namespace}: the namespace is in use by session "
        f"{session_id} (user " in second.output
    ), second.output
    assert first.finish() == 0, first.output
    assert session_objects(cluster, team.namespace, session_id) == []
    assert the_lease(cluster, team.namespace) is None
    assert_left_alone(cluster, team.namespace)


def test_status_lists_a_session_in_an_existing_namespace_marked_as_such(
    kubefixtures_cluster: Cluster,
    team: Team,
    sessions: Callable[..., Session],
    capsys: pytest.CaptureFixture[str],
) -> None:
    from kubefixtures.cli import main as cli_main

    fixture = fixture_name()
    session = sessions(fixture)
    session.namespace()
    lease = the_lease(kubefixtures_cluster, team.namespace)
    assert lease is not None
    capsys.readouterr()
    assert cli_main(["status", f"--selector={ENVIRONMENT_LABEL}={fixture}"]) == 0
    header, *rows = capsys.readouterr().out.splitlines()
    assert header.split()[:2] == ["NAMESPACE", "OWNER"], header
    assert len(rows) == 1, rows
    row = rows[0]
    assert row.startswith(f"{team.namespace} (existing namespace) "), row
    labels = lease["metadata"]["labels"]
    assert f" {labels[USER_LABEL]} " in row, row
    assert f" {labels[HOST_LABEL]} " in row, row
    assert " live (" in row, row
    assert session.finish() == 0, session.output
    capsys.readouterr()
    assert cli_main(["status", f"--selector={ENVIRONMENT_LABEL}={fixture}"]) == 0
    assert capsys.readouterr().out.startswith("no kubefixtures sessions on ")
    assert_left_alone(kubefixtures_cluster, team.namespace)


def test_an_object_not_ours_of_the_same_name_is_refused_and_untouched(
    kubefixtures_cluster: Cluster, team: Team, sessions: Callable[..., Session]
) -> None:
    cluster = kubefixtures_cluster
    cluster.create(
        CONFIG_MAPS, team.namespace, {"metadata": {"name": "web-settings"}, "data": {"mine": "1"}}
    )
    session = sessions(fixture_name())
    assert session.finish() != 0
    assert (
        f"configmap/web-settings already exists in namespace {team.namespace} (not made by "
        "kubefixtures); kubefixtures never changes what it did not apply there" in session.output
    ), session.output
    assert cluster.get_or_none(CONFIG_MAPS, team.namespace, "web-settings")["data"] == {"mine": "1"}  # type: ignore[index]
    assert cluster.get_or_none(DEPLOYMENTS, team.namespace, "web") is None
    assert the_lease(cluster, team.namespace) is None
    assert_left_alone(cluster, team.namespace)


def test_keep_on_failure_keeps_the_objects_with_commands_that_work(
    kubefixtures_cluster: Cluster, team: Team, sessions: Callable[..., Session]
) -> None:
    cluster = kubefixtures_cluster
    session = sessions(fixture_name(), "--kubefixtures-keep-on-failure=true", check="assert False")
    assert session.finish() != 0
    assert "kept the objects of environment" in session.output, session.output
    lines = [
        line.strip() for line in session.output.splitlines() if line.strip().startswith("kubectl ")
    ]
    lease = the_lease(cluster, team.namespace)
    assert lease is not None
    session_id = lease["metadata"]["labels"][SESSION_LABEL]
    assert "Deployment/web" in session_objects(cluster, team.namespace, session_id)
    # Pasting the printed lines removes the objects and the Lease (and nothing else).
    for line in lines:
        if " delete " in line:
            command = shlex.split(line.partition("  #")[0])
            command[0] = str(BIN / "kubectl")  # the project's kubectl
            subprocess.run(command, check=True, capture_output=True, timeout=60)
    wait_until(lambda: not session_objects(cluster, team.namespace, session_id), 30, "deletion")
    assert the_lease(cluster, team.namespace) is None
    assert_left_alone(cluster, team.namespace)


def test_a_killed_sessions_objects_are_reaped_by_gc_but_never_the_namespace(
    kubefixtures_cluster: Cluster,
    team: Team,
    sessions: Callable[..., Session],
    capsys: pytest.CaptureFixture[str],
) -> None:
    from kubefixtures.cli import main as cli_main

    cluster = kubefixtures_cluster
    fixture = fixture_name()
    session = sessions(fixture)
    session.namespace()
    session_id = the_lease(cluster, team.namespace)["metadata"]["labels"][SESSION_LABEL]  # type: ignore[index]
    session.kill()
    time.sleep(LEASE_SECONDS + GRACE_SECONDS + 1)
    capsys.readouterr()
    assert (
        cli_main(["gc", f"--grace={GRACE_SECONDS}", f"--selector={ENVIRONMENT_LABEL}={fixture}"])
        == 0
    )
    out = capsys.readouterr().out
    assert (
        f"reaped        session {session_id} in namespace {team.namespace} (the namespace stays)"
        in out
    ), out
    wait_until(lambda: not session_objects(cluster, team.namespace, session_id), 30, "deletion")
    assert the_lease(cluster, team.namespace) is None
    assert_left_alone(cluster, team.namespace)
    # With the team's own credentials (no namespace or cluster-wide rights), `gc
    # --namespace` finds nothing left to reap there.
    capsys.readouterr()
    limited = ["gc", f"--kubeconfig={team.kubeconfig}", f"--namespace={team.namespace}"]
    assert cli_main(limited) == 0
    assert f"gc: 0 dead sessions in namespace {team.namespace}" in capsys.readouterr().out
    # The namespace is free for the next session.
    again = sessions(fixture_name())
    assert again.namespace() == team.namespace
    assert again.finish() == 0, again.output


def test_a_killed_sessions_objects_are_reaped_by_the_operator_but_never_the_namespace(
    kubefixtures_cluster: Cluster,
    team: Team,
    sessions: Callable[..., Session],
    monkeypatch: pytest.MonkeyPatch,
) -> None:

    cluster = kubefixtures_cluster
    fixture = fixture_name()
    monkeypatch.setenv("KUBEFIXTURES_OPERATOR_GRACE", str(GRACE_SECONDS))
    monkeypatch.setenv("KUBEFIXTURES_OPERATOR_SELECTOR", f"{ENVIRONMENT_LABEL}={fixture}")
    session = sessions(fixture)
    session.namespace()
    session_id = the_lease(cluster, team.namespace)["metadata"]["labels"][SESSION_LABEL]  # type: ignore[index]
    with operator_in_process() as runner:
        session.kill()
        reaped = wait_until(
            lambda: the_lease(cluster, team.namespace) is None,
            LEASE_SECONDS + GRACE_SECONDS + 15,
            "the killed session's objects and lease reaped",
        )
        assert session_objects(cluster, team.namespace, session_id) == []
        time.sleep(6)  # more than a sweep
        assert_left_alone(cluster, team.namespace)
    print(f"objects reaped {reaped:.1f} s after SIGKILL (lease {LEASE_SECONDS} s)")
    assert runner.exit_code == 0, runner.output
    assert (
        f"reaped session {session_id} in namespace {team.namespace} (the namespace stays)"
        in runner.output
    )
