"""Cluster-scoped objects owned by sessions, against the real cluster.

Every session here is a real pytest run (a subprocess using the plugin) bringing up
environments/operator-style/: a CRD, a custom resource, a shared ClusterRole, a
ClusterRoleBinding per session and a Deployment. Each test gets its own API group (the
CRD's and ClusterRole's names carry it) and its own environment name, so nothing here
can touch another run's objects.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from kubefixtures.kube import Cluster
from kubefixtures.kube.client import CRD, NAMESPACE, Resource
from kubefixtures.kube.errors import ApiError
from kubefixtures.leases.ownership import OWNERS_ANNOTATION
from kubefixtures.naming import ENVIRONMENT_LABEL, MANAGED_BY_LABEL
from tests.integration.operator_support import operator_in_process

pytestmark = pytest.mark.cluster

ENVIRONMENTS = Path(__file__).parent / "environments"
CLUSTER_ROLES = Resource("rbac.authorization.k8s.io/v1", "ClusterRole", "clusterroles", False)
BINDINGS = Resource(
    "rbac.authorization.k8s.io/v1", "ClusterRoleBinding", "clusterrolebindings", False
)
LEASE_SECONDS = 4
GRACE_SECONDS = 1

CONFTEST = """
from kubefixtures import environment

{fixture} = environment({source!r}, values={values!r}, values_files={values_files!r})
"""

# The test holds its environment until the outer test says go (or kills it).
HOLDING_TEST = """
import os, pathlib, time

from kubefixtures.kube import Cluster


def test_holds({fixture}):
    check = os.environ.get("KF_CHECK")
    if check:
        exec(check, {{"env": {fixture}, "Cluster": Cluster}})
    pathlib.Path(os.environ["KF_UP"]).write_text({fixture}.namespace)
    go = pathlib.Path(os.environ["KF_GO"])
    deadline = time.monotonic() + 300
    while not go.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
"""


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> float:
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            pytest.fail(f"{what}: not within {timeout:.0f} s")
        time.sleep(0.2)
    return time.monotonic() - started


class Session:
    """A pytest run bringing the operator-style environment up and holding it."""

    def __init__(
        self,
        directory: Path,
        fixture: str,
        values: dict[str, Any],
        *,
        check: str = "",
        source: Path = ENVIRONMENTS / "operator-style",
        values_files: tuple[str, ...] = (),
        arguments: tuple[str, ...] = (),  # more pytest options
    ) -> None:
        directory.mkdir()
        self.fixture = fixture
        self.up = directory / "up.txt"
        self.go = directory / "go"
        (directory / "conftest.py").write_text(
            CONFTEST.format(
                fixture=fixture, source=str(source), values=values, values_files=values_files
            )
        )
        (directory / "test_holds.py").write_text(HOLDING_TEST.format(fixture=fixture))
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pytest",
                "-p",
                "no:cacheprovider",
                f"--kubefixtures-lease-duration={LEASE_SECONDS}",
                *arguments,
                "test_holds.py",
            ],
            cwd=directory,
            env={
                **os.environ,
                "KF_UP": str(self.up),
                "KF_GO": str(self.go),
                "KF_CHECK": textwrap.dedent(check),
            },
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.output = ""

    def namespace(self, timeout: float = 120) -> str:
        """Wait until the environment is up (fails with the run's output if it ends first)."""
        started = time.monotonic()
        while not self.up.exists():
            if self.process.poll() is not None or time.monotonic() - started > timeout:
                self.finish()
                pytest.fail(f"the session did not come up:\n{self.output}")
            time.sleep(0.2)
        time.sleep(0.1)
        return self.up.read_text().strip()

    def finish(self) -> int:
        self.go.touch()
        if self.process.poll() is None or not self.output:
            self.output = self.process.communicate(timeout=120)[0]
        return self.process.returncode

    def kill(self) -> None:
        os.killpg(self.process.pid, signal.SIGKILL)
        self.output = self.process.communicate(timeout=10)[0]


@pytest.fixture
def group(kubefixtures_cluster: Cluster) -> Iterator[str]:
    """An API group of this test's own; whatever is left of it is deleted afterwards."""
    name = f"kf{secrets.token_hex(3)}.example.com"
    yield name
    cluster = kubefixtures_cluster
    for resource, object_name in (
        (CRD, f"widgets.{name}"),
        (CLUSTER_ROLES, f"widget-reader.{name}"),
        (CLUSTER_ROLES, f"widget-reader-lookalike.{name}"),
    ):
        with contextlib.suppress(ApiError):
            cluster.delete_unchanged(resource, None, object_name, {})


@pytest.fixture
def sessions(tmp_path: Path) -> Iterator[Callable[..., Session]]:
    started: list[Session] = []

    def start(
        fixture: str,
        group: str,
        max_size: int = 10,
        check: str = "",
        values: dict[str, Any] | None = None,
        **more: Any,
    ) -> Session:
        values = {"group": group, "max_size": max_size, "size": 3, **(values or {})}
        session = Session(tmp_path / fixture, fixture, values, check=check, **more)
        started.append(session)
        return session

    yield start
    for session in started:
        if session.process.poll() is None:
            session.kill()


def fixture_name() -> str:
    return f"kfcs_{secrets.token_hex(3)}"


def owners(cluster: Cluster, group: str) -> list[dict[str, str]] | None:
    crd = cluster.get_or_none(CRD, None, f"widgets.{group}")
    if crd is None or crd["metadata"].get("deletionTimestamp"):
        return None
    return list(json.loads(crd["metadata"]["annotations"][OWNERS_ANNOTATION]))


def cluster_scoped_left(cluster: Cluster, group: str, namespaces: list[str]) -> list[str]:
    """The operator-style environment's cluster-scoped objects that still exist."""
    wanted = [(CRD, f"widgets.{group}"), (CLUSTER_ROLES, f"widget-reader.{group}")]
    wanted += [(BINDINGS, f"widget-reader-{namespace}") for namespace in namespaces]
    return [
        f"{resource.kind}/{name}"
        for resource, name in wanted
        if cluster.get_or_none(resource, None, name) is not None
    ]


def create_lookalike(cluster: Cluster, group: str) -> str:
    """An unlabelled ClusterRole that looks like ours (owners annotation, an owner that is
    long gone): the reapers must never touch it."""
    name = f"widget-reader-lookalike.{group}"
    owners = json.dumps([{"namespace": "kf-gone-xxxxxx", "session": "gone"}])
    cluster.create(
        CLUSTER_ROLES,
        None,
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {
                "name": name,
                "labels": {ENVIRONMENT_LABEL: "lookalike"},
                "annotations": {OWNERS_ANNOTATION: owners},
            },
            "rules": [],
        },
    )
    return name


def assert_untouched(cluster: Cluster, name: str) -> None:
    role = cluster.get_or_none(CLUSTER_ROLES, None, name)
    assert role is not None, f"the unlabelled look-alike {name} was deleted"
    assert not role["metadata"].get("deletionTimestamp")
    assert MANAGED_BY_LABEL not in (role["metadata"].get("labels") or {})


def namespace_going(cluster: Cluster, name: str) -> bool:
    namespace = cluster.namespace(name)
    return namespace is None or bool(namespace["metadata"].get("deletionTimestamp"))


USABLE = """
cluster = Cluster.connect()
namespace = env.namespace
widget = cluster.request(
    "GET", f"/apis/{GROUP}/v1/namespaces/{namespace}/widgets/demo"
)
assert widget["spec"]["size"] == 3
review = cluster.request(
    "POST",
    "/apis/authorization.k8s.io/v1/subjectaccessreviews",
    body={
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "user": f"system:serviceaccount:{namespace}:widget-operator",
            "resourceAttributes": {"group": GROUP, "resource": "widgets", "verb": "list"},
        },
    },
)
assert review["status"]["allowed"], review
crd = cluster.get_or_none(
    __import__("kubefixtures.kube.client").kube.client.CRD, None, f"widgets.{GROUP}"
)
assert crd["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "kubefixtures"
"""


def test_an_operator_style_environment_comes_up_and_leaves_nothing_behind(
    kubefixtures_cluster: Cluster, group: str, sessions: Callable[..., Session]
) -> None:
    session = sessions(fixture_name(), group, check=USABLE.replace("GROUP", repr(group)))
    namespace = session.namespace()
    assert [owner["namespace"] for owner in owners(kubefixtures_cluster, group) or []] == [
        namespace
    ]
    assert session.finish() == 0, session.output
    assert cluster_scoped_left(kubefixtures_cluster, group, [namespace]) == []


def test_two_sessions_share_a_crd_and_the_last_one_deletes_it(
    kubefixtures_cluster: Cluster, group: str, sessions: Callable[..., Session]
) -> None:
    cluster = kubefixtures_cluster
    first = sessions(fixture_name(), group)
    second = sessions(fixture_name(), group)
    namespaces = [first.namespace(), second.namespace()]
    assert sorted(owner["namespace"] for owner in owners(cluster, group) or []) == sorted(
        namespaces
    )
    assert first.finish() == 0, first.output
    # The first to finish leaves the CRD (and the shared ClusterRole) to the second.
    assert [owner["namespace"] for owner in owners(cluster, group) or []] == [namespaces[1]]
    assert cluster_scoped_left(cluster, group, namespaces) == [
        f"CustomResourceDefinition/widgets.{group}",
        f"ClusterRole/widget-reader.{group}",
        f"ClusterRoleBinding/widget-reader-{namespaces[1]}",
    ]
    assert second.finish() == 0, second.output
    assert cluster_scoped_left(cluster, group, namespaces) == []


def test_a_different_definition_fails_before_anything_is_applied(
    kubefixtures_cluster: Cluster, group: str, sessions: Callable[..., Session]
) -> None:
    cluster = kubefixtures_cluster
    first = sessions(fixture_name(), group, max_size=10)
    namespace = first.namespace()
    second_fixture = fixture_name()
    second = sessions(second_fixture, group, max_size=99)
    assert second.finish() != 0
    session_id = (owners(cluster, group) or [{}])[0]["session"]
    assert (
        f"customresourcedefinition/widgets.{group} exists with a different definition, "
        f"installed by session {session_id} (user " in second.output
    ), second.output
    assert f"namespace {namespace})" in second.output
    # Nothing of the second: no namespace, no ClusterRoleBinding, the CRD untouched.
    selector = f"{ENVIRONMENT_LABEL}={second_fixture}"
    assert cluster.items(NAMESPACE, None, label_selector=selector) == []
    assert [owner["namespace"] for owner in owners(cluster, group) or []] == [namespace]
    assert first.finish() == 0, first.output


def test_a_stale_definition_is_replaced_once_its_owners_are_gone(
    kubefixtures_cluster: Cluster, group: str, sessions: Callable[..., Session]
) -> None:
    """A CRD left by a killed session whose Lease is released (as a cancelled session's
    is): a new session with a different definition replaces it instead of failing."""
    from kubefixtures.kube.client import LEASE
    from kubefixtures.leases.ownership import DEFINITION_HASH_ANNOTATION
    from kubefixtures.leases.policy import LEASE_NAME, RELEASED_ANNOTATION, format_time

    cluster = kubefixtures_cluster
    first = sessions(fixture_name(), group, max_size=10)
    stale_namespace = first.namespace()
    first.kill()  # its CRD stays, owned by a session that will never come back
    stale = cluster.get_or_none(CRD, None, f"widgets.{group}")
    assert stale is not None
    cluster.merge_patch(
        LEASE,
        stale_namespace,
        LEASE_NAME,
        {"metadata": {"annotations": {RELEASED_ANNOTATION: format_time(datetime.now(UTC))}}},
    )
    second = sessions(fixture_name(), group, max_size=99)
    namespace = second.namespace()
    crd = cluster.get_or_none(CRD, None, f"widgets.{group}")
    assert crd is not None
    assert crd["metadata"]["uid"] != stale["metadata"]["uid"]  # replaced, not patched
    annotations = crd["metadata"]["annotations"]
    assert (
        annotations[DEFINITION_HASH_ANNOTATION]
        != stale["metadata"]["annotations"][DEFINITION_HASH_ANNOTATION]
    )
    assert [owner["namespace"] for owner in json.loads(annotations[OWNERS_ANNOTATION])] == [
        namespace
    ]
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert schema["properties"]["spec"]["properties"]["size"]["maximum"] == 99
    assert second.finish() == 0, second.output
    cluster.delete_namespace(stale_namespace)


def test_a_killed_sessions_cluster_scoped_objects_are_reaped_by_gc(
    kubefixtures_cluster: Cluster,
    group: str,
    sessions: Callable[..., Session],
    capsys: pytest.CaptureFixture[str],
) -> None:
    from kubefixtures.cli import main as cli_main

    cluster = kubefixtures_cluster
    lookalike = create_lookalike(cluster, group)
    fixture = fixture_name()
    session = sessions(fixture, group)
    namespace = session.namespace()
    session.kill()
    time.sleep(LEASE_SECONDS + GRACE_SECONDS + 1)
    capsys.readouterr()
    selector = f"{ENVIRONMENT_LABEL}={fixture}"
    assert cli_main(["gc", f"--grace={GRACE_SECONDS}", f"--selector={selector}"]) == 0
    out = capsys.readouterr().out
    assert f"deleted       customresourcedefinition/widgets.{group}: owners gone" in out, out
    # A CRD takes a moment to go (its custom resources go first).
    wait_until(lambda: not cluster_scoped_left(cluster, group, [namespace]), 30, "deletion")
    assert_untouched(cluster, lookalike)


def test_a_killed_sessions_cluster_scoped_objects_are_reaped_by_the_operator(
    kubefixtures_cluster: Cluster,
    group: str,
    sessions: Callable[..., Session],
    monkeypatch: pytest.MonkeyPatch,
) -> None:

    cluster = kubefixtures_cluster
    lookalike = create_lookalike(cluster, group)
    fixture = fixture_name()
    monkeypatch.setenv("KUBEFIXTURES_OPERATOR_GRACE", str(GRACE_SECONDS))
    monkeypatch.setenv("KUBEFIXTURES_OPERATOR_SELECTOR", f"{ENVIRONMENT_LABEL}={fixture}")
    session = sessions(fixture, group)
    namespace = session.namespace()
    with operator_in_process() as runner:
        session.kill()
        reaped = wait_until(
            lambda: not cluster_scoped_left(cluster, group, [namespace]),
            LEASE_SECONDS + GRACE_SECONDS + 10,
            "the killed session's cluster-scoped objects reaped",
        )
        wait_until(lambda: namespace_going(cluster, namespace), 10, "the namespace reaped")
        time.sleep(6)  # more than a sweep: the look-alike is listed by nobody, kept by all
        assert_untouched(cluster, lookalike)
    print(f"cluster-scoped objects reaped {reaped:.1f} s after SIGKILL (lease {LEASE_SECONDS} s)")
    assert runner.exit_code == 0, runner.output
    assert f"deleted customresourcedefinition/widgets.{group}: owners gone" in runner.output


def test_objects_made_after_the_operators_full_sweep_are_reaped_when_their_session_dies(
    kubefixtures_cluster: Cluster,
    group: str,
    sessions: Callable[..., Session],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """At rest the sweep lists only kinds that held managed objects (none here: the selector
    narrows it to this test's fixture); the session's CRD, ClusterRole and binding come
    after the operator's first full sweep, and the next full one is an hour away: the
    session's end must make the sweep list every kind."""

    from kubefixtures.operator import cluster_scoped

    cluster = kubefixtures_cluster
    fixture = fixture_name()
    monkeypatch.setattr(cluster_scoped, "FULL_SWEEP_SECONDS", 3600.0)
    monkeypatch.setenv("KUBEFIXTURES_OPERATOR_GRACE", str(GRACE_SECONDS))
    monkeypatch.setenv("KUBEFIXTURES_OPERATOR_SELECTOR", f"{ENVIRONMENT_LABEL}={fixture}")
    with operator_in_process() as runner:
        time.sleep(cluster_scoped.SWEEP_SECONDS + 1)  # the first, full, sweep is done
        session = sessions(fixture, group)
        namespace = session.namespace()
        time.sleep(cluster_scoped.SWEEP_SECONDS + 1)  # a sweep at rest, which lists nothing
        assert not namespace_going(cluster, namespace)
        session.kill()
        reaped = wait_until(
            lambda: not cluster_scoped_left(cluster, group, [namespace]),
            LEASE_SECONDS + GRACE_SECONDS + 15,
            "the killed session's cluster-scoped objects reaped",
        )
    print(f"cluster-scoped objects reaped {reaped:.1f} s after SIGKILL (lease {LEASE_SECONDS} s)")
    assert runner.exit_code == 0, runner.output
    assert f"deleted customresourcedefinition/widgets.{group}: owners gone" in runner.output


CHART = ENVIRONMENTS / "chart-hooks"
GADGETS = "gadgets.hooks.kubefixtures.test"
HOOKED = """
from kubefixtures.kube.client import Resource

cluster = Cluster.connect()
namespace = env.namespace
configmaps = Resource("v1", "ConfigMap", "configmaps", True)
jobs = Resource("batch/v1", "Job", "jobs", True)
assert cluster.get_or_none(configmaps, namespace, "before-install") is not None
assert cluster.get_or_none(jobs, namespace, "pre-install-check") is None  # hook-succeeded
smoke = cluster.get_or_none(jobs, namespace, "post-install-smoke")
complete = [c for c in smoke["status"]["conditions"] if c["type"] == "Complete"]
assert complete and complete[0]["status"] == "True", smoke["status"]
greeting = cluster.get_or_none(configmaps, namespace, "greeting")
assert greeting["data"]["greeting"] == "from-values-file", greeting["data"]
gadgets = Resource("hooks.kubefixtures.test/v1", "Gadget", "gadgets", True)
assert cluster.items(gadgets, namespace)
assert env.services["web"].url
"""


def test_a_chart_with_crds_hooks_and_a_subchart_works(
    kubefixtures_cluster: Cluster, sessions: Callable[..., Session]
) -> None:
    session = sessions(
        fixture_name(),
        "unused.example.com",
        check=HOOKED,
        source=CHART,
        values_files=(str(CHART / "extra-values.yaml"),),
    )
    session.namespace()
    crd = kubefixtures_cluster.get_or_none(CRD, None, GADGETS)
    assert crd is not None
    assert crd["metadata"]["labels"][MANAGED_BY_LABEL] == "kubefixtures"
    assert session.finish() == 0, session.output
    crd = kubefixtures_cluster.get_or_none(CRD, None, GADGETS)
    assert crd is None or crd["metadata"].get("deletionTimestamp")


WEBHOOKS = Resource(
    "admissionregistration.k8s.io/v1",
    "ValidatingWebhookConfiguration",
    "validatingwebhookconfigurations",
    False,
)


def test_a_webhook_into_the_environment_goes_with_it(
    kubefixtures_cluster: Cluster, sessions: Callable[..., Session]
) -> None:
    cluster = kubefixtures_cluster
    session = sessions(fixture_name(), "unused.example.com", source=ENVIRONMENTS / "webhook")
    namespace = session.namespace()
    webhook = cluster.get_or_none(WEBHOOKS, None, f"kf-guard-{namespace}")
    assert webhook is not None
    assert webhook["metadata"]["labels"][MANAGED_BY_LABEL] == "kubefixtures"
    assert session.finish() == 0, session.output
    assert cluster.get_or_none(WEBHOOKS, None, f"kf-guard-{namespace}") is None


def test_gc_removes_a_killed_sessions_webhook_before_its_namespace(
    kubefixtures_cluster: Cluster,
    sessions: Callable[..., Session],
    capsys: pytest.CaptureFixture[str],
) -> None:
    from kubefixtures.cli import main as cli_main
    from kubefixtures.leases.cluster_scoped import remove_webhooks_into

    cluster = kubefixtures_cluster
    fixture = fixture_name()
    session = sessions(fixture, "unused.example.com", source=ENVIRONMENTS / "webhook")
    namespace = session.namespace()
    session.kill()
    assert remove_webhooks_into(cluster, f"{namespace}-other") == []  # only into its namespace
    assert cluster.get_or_none(WEBHOOKS, None, f"kf-guard-{namespace}") is not None
    time.sleep(LEASE_SECONDS + GRACE_SECONDS + 1)
    selector = f"{ENVIRONMENT_LABEL}={fixture}"
    assert cli_main(["gc", f"--grace={GRACE_SECONDS}", f"--selector={selector}"]) == 0
    assert f"deleted       {namespace}" in capsys.readouterr().out
    assert cluster.get_or_none(WEBHOOKS, None, f"kf-guard-{namespace}") is None


def test_an_existing_object_not_made_by_kubefixtures_is_refused_before_anything_is_applied(
    kubefixtures_cluster: Cluster, group: str, sessions: Callable[..., Session]
) -> None:
    cluster = kubefixtures_cluster
    name = f"widget-reader.{group}"
    cluster.create(
        CLUSTER_ROLES,
        None,
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": name},
            "rules": [],
        },
    )
    fixture = fixture_name()
    session = sessions(fixture, group)
    assert session.finish() != 0
    refusal = f"clusterrole/{name} already exists on the cluster and is not managed"
    assert refusal in session.output, session.output
    assert cluster.items(NAMESPACE, None, label_selector=f"{ENVIRONMENT_LABEL}={fixture}") == []
    assert cluster.get_or_none(CRD, None, f"widgets.{group}") is None  # nothing applied
    role = cluster.get_or_none(CLUSTER_ROLES, None, name)
    assert role is not None
    assert MANAGED_BY_LABEL not in (role["metadata"].get("labels") or {})


def test_up_with_a_values_file_then_down_leaves_no_cluster_scoped_object(
    kubefixtures_cluster: Cluster, group: str, tmp_path: Path
) -> None:
    from tests.integration.sharing_support import BIN, environ

    values = tmp_path / "values.yaml"
    values.write_text(f"group: {group}\nmax_size: 10\nsize: 3\n")
    details = tmp_path / "widgets.json"
    name = fixture_name()
    up = subprocess.Popen(
        [
            str(BIN / "kubefixtures"), "up", str(ENVIRONMENTS / "operator-style"),
            "--name", name, "--values-file", str(values), "--details-out", str(details),
        ],
        cwd=tmp_path, env=environ(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        assert up.stdout is not None
        lines = []
        for line in up.stdout:
            lines.append(line)
            if line.startswith("serving the port-forwards"):
                break
        assert details.exists(), "".join(lines)
        namespace = json.loads(details.read_text())["namespace"]
        assert owners(kubefixtures_cluster, group) is not None
    finally:
        up.send_signal(signal.SIGTERM)
        up.communicate(timeout=30)
    down = subprocess.run(
        [str(BIN / "kubefixtures"), "down", str(details)],
        env=environ(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert down.returncode == 0, down.stderr
    wait_until(
        lambda: not cluster_scoped_left(kubefixtures_cluster, group, [namespace]), 30, "gone"
    )


def test_a_failing_hook_fails_the_environment_naming_it_and_leaves_nothing(
    kubefixtures_cluster: Cluster, sessions: Callable[..., Session]
) -> None:
    fixture = fixture_name()
    session = sessions(
        fixture, "unused.example.com", source=CHART, values={"smokePath": "/missing"}
    )
    assert session.finish() != 0
    assert "helm post-install hook job/post-install-smoke failed in namespace" in session.output
    assert "BackoffLimitExceeded" in session.output, session.output
    assert "  pod/post-install-smoke-" in session.output, session.output
    selector = f"{ENVIRONMENT_LABEL}={fixture}"
    wait_until(
        lambda: (
            not [
                item
                for item in kubefixtures_cluster.items(NAMESPACE, None, label_selector=selector)
                if not item["metadata"].get("deletionTimestamp")
            ]
        ),
        30,
        "the failed environment's namespace deleted",
    )
    crd = kubefixtures_cluster.get_or_none(CRD, None, GADGETS)
    assert crd is None or crd["metadata"].get("deletionTimestamp"), crd
