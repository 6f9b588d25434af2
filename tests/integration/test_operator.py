"""The garbage-collecting operator and `kubefixtures gc` against the real cluster.

Three ways in: the operator installed from its Helm chart (the image built and loaded first),
the same operator in-process with kopf's KopfRunner (fast feedback), and `kubefixtures gc`.
Every namespace made here carries a per-run environment label, and every operator started
here is narrowed to it with --selector: other people's sessions on a shared cluster are never
at risk. Sessions are real processes holding real Leases (``SessionLease``), and one is a
real pytest run using the plugin; all are ended with SIGKILL.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from kubefixtures import naming
from kubefixtures.cli import main as cli_main
from kubefixtures.kube import ApiError, Cluster
from kubefixtures.kube.client import LEASE, NAMESPACE
from kubefixtures.leases.policy import (
    KEEP_UNTIL_ANNOTATION,
    LEASE_NAME,
    decide,
    format_time,
    parse_time,
)
from kubefixtures.leases.reaping import EVENT_REASON, list_sessions
from kubefixtures.settings import Settings
from tests.integration.operator_support import operator_in_process

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "kubefixtures-operator"
ENVIRONMENT_LABEL = naming.ENVIRONMENT_LABEL
LEASE_SECONDS = 6
GRACE_SECONDS = 3
# What the issue promises: a killed session's namespace is gone within this after the kill.
REAP_DEADLINE = LEASE_SECONDS + GRACE_SECONDS + 10

# A session in a subprocess: a managed namespace and a renewed Lease, exactly as the plugin
# makes them, then nothing until it is killed.
HOLDER = """
import sys, time
from datetime import UTC, datetime, timedelta
from kubefixtures import naming
from kubefixtures.kube import Cluster
from kubefixtures.leases.renewal import SessionLease
from kubefixtures.leases.policy import holder_identity

environment, duration, keep = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
cluster = Cluster.connect()
session_id = naming.new_session_id()
namespace = naming.namespace_name("kf", environment)
labels = naming.namespace_labels(session_id, environment)
cluster.create_namespace(namespace, labels)
lease = SessionLease(cluster, namespace, holder_identity(session_id), duration, labels=labels)
lease.create()
lease.start()
if keep:
    lease.keep_until(datetime.now(UTC) + timedelta(seconds=keep))
print(namespace, flush=True)
time.sleep(3600)
"""


def tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path=str(ROOT / ".venv" / "bin"))
    assert found, f"{name} is needed by the operator tests"
    return found


def unique_environment() -> str:
    # Also a Python identifier: the pytest session below names its fixture after it.
    return f"kfop_{secrets.token_hex(3)}"


class Holder:
    """A session process holding a Lease in its own namespace."""

    def __init__(self, environment: str, duration: float = LEASE_SECONDS, keep: float = 0) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", HOLDER, environment, str(duration), str(keep)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        self.namespace = self.process.stdout.readline().strip()
        if not self.namespace:
            self.process.wait(10)
            assert self.process.stderr is not None
            pytest.fail(f"session holder failed: {self.process.stderr.read()}")
        self.killed_at: float | None = None

    def kill(self) -> None:
        self.process.kill()  # SIGKILL: no teardown, no last renewal
        self.process.communicate(timeout=10)  # reaps it and closes the pipes
        self.killed_at = time.monotonic()


def state(cluster: Cluster, name: str) -> str:
    """'gone', 'terminating' or 'active'."""
    try:
        namespace = cluster.request("GET", NAMESPACE.object_path(None, name))
    except ApiError as error:
        if error.status == 404:
            return "gone"
        raise
    return "terminating" if namespace["metadata"].get("deletionTimestamp") else "active"


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll ``condition`` every 0.2 s; returns the seconds it took, fails after ``timeout``."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            pytest.fail(f"{what}: not within {timeout:.0f} s")
        time.sleep(0.2)
    return time.monotonic() - started


def create_namespace(cluster: Cluster, labels: dict[str, str]) -> str:
    name = naming.namespace_name("kf", labels.get(ENVIRONMENT_LABEL, "x"))
    cluster.create_namespace(name, labels)
    return name


def create_stale_lease(cluster: Cluster, namespace: str, labels: dict[str, str]) -> None:
    """A Lease that expired an hour ago, as a long-dead session would have left it."""
    old = format_time(datetime.now(UTC) - timedelta(hours=1), micro=True)
    cluster.request(
        "POST",
        LEASE.collection_path(namespace),
        body={
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": LEASE_NAME, "labels": labels},
            "spec": {
                "holderIdentity": "dead@nowhere/1",
                "leaseDurationSeconds": 1,
                "renewTime": old,
            },
        },
    )


def lookalike_labels(environment: str) -> dict[str, str]:
    """Every kubefixtures label but the managed-by one (which says someone else manages it)."""
    labels = naming.namespace_labels("lookalike", environment)
    labels[naming.MANAGED_BY_LABEL] = "someone-else"
    return labels


def finalizers(cluster: Cluster, namespace: str) -> tuple[list[str], list[str]]:
    """metadata.finalizers of the namespace and of its Lease (spec.finalizers is Kubernetes')."""
    ns = cluster.request("GET", NAMESPACE.object_path(None, namespace))
    lease = cluster.request("GET", LEASE.object_path(namespace, LEASE_NAME))
    return ns["metadata"].get("finalizers", []), lease["metadata"].get("finalizers", [])


@pytest.fixture
def cleanup(kubefixtures_cluster: Cluster) -> Iterator[Callable[[str], str]]:
    """``cleanup(environment)``: every namespace labelled with it is deleted after the test."""
    environments: list[str] = []
    yield lambda environment: environments.append(environment) or environment
    for environment in environments:
        selector = f"{ENVIRONMENT_LABEL}={environment}"
        for item in kubefixtures_cluster.list_objects(NAMESPACE, None, selector)["items"]:
            with contextlib.suppress(ApiError):
                kubefixtures_cluster.delete_namespace(item["metadata"]["name"])


# --- the operator installed from the Helm chart ---------------------------------------------


@pytest.fixture(scope="module")
def operator_image() -> None:
    """Build the operator image (a no-op when up to date) and load it into the cluster."""
    images = Path(
        os.environ.get("KUBEFIXTURES_IMAGES_DIR") or "~/.cache/kubefixtures/images"
    ).expanduser()
    build = subprocess.run(
        [sys.executable, str(ROOT / "hack/images/build.py"), "--out", str(images), "operator"],
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, build.stderr
    load = subprocess.run(
        [tool("kubefixtures"), "cluster", "load-image", str(images / "operator.tar")],
        capture_output=True,
        text=True,
    )
    assert load.returncode == 0, load.stderr


RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
}


class Release:
    def __init__(self, environment: str) -> None:
        self.environment = environment
        self.name = f"kfop-{environment.rpartition('_')[2]}"
        self.namespace = f"{self.name}-system"
        self.selector = f"{ENVIRONMENT_LABEL}={environment}"

    def helm(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [tool("helm"), *args, "-n", self.namespace], capture_output=True, text=True
        )
        assert result.returncode == 0 or not check, result.stderr
        return result

    def logs(self) -> str:
        result = subprocess.run(
            [
                tool("kubectl"),
                "-n",
                self.namespace,
                "logs",
                f"deploy/{self.name}-kubefixtures-operator",
            ],
            capture_output=True,
            text=True,
        )
        return result.stdout + result.stderr


@pytest.fixture(scope="module")
def release(operator_image: None, kubefixtures_cluster: Cluster) -> Iterator[Release]:
    """The operator, installed with helm into its own namespace, narrowed to this run. The
    namespace enforces the "restricted" Pod Security Standard, which the chart's default
    security contexts promise to pass (--wait fails if the pod is refused)."""
    release = Release(unique_environment())
    kubefixtures_cluster.create_namespace(release.namespace, RESTRICTED)
    try:
        release.helm(
            "install",
            release.name,
            str(CHART),
            f"--set=grace={GRACE_SECONDS}",
            f"--set=selector={release.selector}",
            "--set=verbose=true",
            "--wait",
            "--timeout=120s",
        )
        yield release
    finally:
        # Also after a failed install: its cluster-scoped RBAC objects go with the release.
        release.helm("uninstall", release.name, "--wait", check=False)
        with contextlib.suppress(ApiError):
            kubefixtures_cluster.delete_namespace(release.namespace)
        selector = f"{ENVIRONMENT_LABEL}={release.environment}"
        for item in kubefixtures_cluster.list_objects(NAMESPACE, None, selector)["items"]:
            with contextlib.suppress(ApiError):
                kubefixtures_cluster.delete_namespace(item["metadata"]["name"])


VICTIM_APP = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 1
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      terminationGracePeriodSeconds: 0  # Kubernetes deletes the namespace sooner
      containers:
        - name: web
          image: kubefixtures.local/testserver:0.1
          imagePullPolicy: IfNotPresent
          command: ["testserver", "http", "--port", "8080"]
          readinessProbe:
            httpGet: {path: /health, port: 8080}
            periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {app: web}
  ports:
    - {name: http, port: 8080}
"""


def start_pytest_session(directory: Path, environment: str) -> tuple[subprocess.Popen[str], str]:
    """A real pytest run whose environment comes up, then hangs in its test: (process, ns)."""
    (directory / "app").mkdir()
    (directory / "app" / "web.yaml").write_text(VICTIM_APP)
    (directory / "conftest.py").write_text(
        f"from kubefixtures import environment\n\n{environment} = environment('app/')\n"
    )
    (directory / "test_hangs.py").write_text(
        textwrap.dedent(
            f"""
            import os, pathlib, time

            def test_hangs({environment}):
                pathlib.Path(os.environ["KFOP_NAMESPACE_FILE"]).write_text({environment}.namespace)
                time.sleep(600)
            """
        )
    )
    out = directory / "namespace.txt"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            f"--kubefixtures-lease-duration={LEASE_SECONDS}",
            "test_hangs.py",
        ],
        cwd=directory,
        env={**os.environ, "KFOP_NAMESPACE_FILE": str(out)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    started = time.monotonic()
    while not out.exists():
        if process.poll() is not None or time.monotonic() - started > 120:
            process.kill()
            output = process.communicate()[0]
            pytest.fail(f"the pytest session did not bring its environment up:\n{output}")
        time.sleep(0.2)
    time.sleep(0.1)  # the file is written in one go, but let the write finish
    return process, out.read_text().strip()


def test_chart_operator_reaps_a_killed_pytest_session_and_nothing_else(
    release: Release, kubefixtures_cluster: Cluster, tmp_path: Path
) -> None:
    cluster = kubefixtures_cluster
    environment = release.environment
    live = Holder(environment)
    kept = Holder(environment, keep=600)
    lookalike = create_namespace(cluster, lookalike_labels(environment))
    create_stale_lease(cluster, lookalike, lookalike_labels(environment))
    session, victim = start_pytest_session(tmp_path, environment)
    try:
        kept.kill()
        assert finalizers(cluster, victim) == ([], [])
        os.killpg(session.pid, signal.SIGKILL)
        killed = time.monotonic()
        session.communicate(timeout=10)
        requested = wait_until(
            lambda: state(cluster, victim) != "active", REAP_DEADLINE, f"deletion of {victim}"
        )
        gone = wait_until(
            lambda: state(cluster, victim) == "gone",
            REAP_DEADLINE - (time.monotonic() - killed),
            f"{victim} gone within {REAP_DEADLINE} s of the kill",
        )
        print(
            f"deletion requested {requested:.1f} s, gone {time.monotonic() - killed:.1f} s "
            f"after SIGKILL (gone {gone:.1f} s after the request)"
        )
        # Several more lease periods: nothing else may go, the operator keeps looking.
        deadline = time.monotonic() + 3 * (LEASE_SECONDS + GRACE_SECONDS)
        while time.monotonic() < deadline:
            for name in (live.namespace, kept.namespace, lookalike):
                assert state(cluster, name) == "active", f"{name} was deleted"
            time.sleep(1)
        assert finalizers(cluster, live.namespace) == ([], [])
    finally:
        live.kill()
        if session.poll() is None:
            os.killpg(session.pid, signal.SIGKILL)
            session.communicate(timeout=10)
    logs = release.logs()
    assert f"deleted namespace {victim}: lease held by" in logs
    for survivor in (live.namespace, kept.namespace, lookalike):
        assert f"deleted namespace {survivor}" not in logs
    events = cluster.request(
        "GET",
        "/api/v1/namespaces/default/events",
        query=[("fieldSelector", f"involvedObject.name={victim},reason={EVENT_REASON}")],
    )
    (event,) = events["items"]
    assert event["involvedObject"]["kind"] == "Namespace"
    assert "expired" in event["message"]


def test_stopping_the_operator_never_blocks_deleting_a_namespace(
    release: Release, kubefixtures_cluster: Cluster
) -> None:
    cluster = kubefixtures_cluster
    holder = Holder(release.environment)
    try:
        time.sleep(1)  # the operator has seen the namespace and its Lease
        release.helm("uninstall", release.name, "--wait")
        cluster.delete_namespace(holder.namespace)
        wait_until(
            lambda: state(cluster, holder.namespace) == "gone",
            30,
            f"{holder.namespace} deleted while the operator is gone",
        )
    finally:
        holder.kill()


# --- the same operator in-process, with kopf's KopfRunner --------------------------------------


def test_in_process_operator_reaps_what_decide_condemns(
    kubefixtures_cluster: Cluster,
    cleanup: Callable[[str], str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:

    cluster = kubefixtures_cluster
    environment = cleanup(unique_environment())
    monkeypatch.setenv("KUBEFIXTURES_OPERATOR_GRACE", "1")
    monkeypatch.setenv("KUBEFIXTURES_OPERATOR_SELECTOR", f"{ENVIRONMENT_LABEL}={environment}")
    live = Holder(environment, duration=3)
    dead = Holder(environment, duration=3)
    no_lease = create_namespace(cluster, naming.namespace_labels("nolease", environment))
    lookalike = create_namespace(cluster, lookalike_labels(environment))
    create_stale_lease(cluster, lookalike, lookalike_labels(environment))
    dead.kill()
    try:
        with operator_in_process() as runner:
            wait_until(lambda: state(cluster, no_lease) != "active", 10, f"deletion of {no_lease}")
            wait_until(lambda: state(cluster, dead.namespace) != "active", 3 + 1 + 5, "reaping")
            time.sleep(4)  # more than a lease period: the live one is renewed, not reaped
            assert state(cluster, live.namespace) == "active"
            assert state(cluster, lookalike) == "active"
            assert finalizers(cluster, live.namespace) == ([], [])
    finally:
        live.kill()
    assert runner.exit_code == 0, runner.output
    assert f"deleted namespace {no_lease}: no lease and" in runner.output
    assert f"deleted namespace {dead.namespace}: lease held by" in runner.output
    # Stopped: deleting what it watched does not wait for it.
    cluster.delete_namespace(live.namespace)
    wait_until(lambda: state(cluster, live.namespace) == "gone", 30, "deletion after stop")


# --- kubefixtures gc and status -----------------------------------------------------------------


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    capsys.readouterr()
    assert cli_main(list(args)) == 0
    return capsys.readouterr().out


def test_gc_makes_the_operators_decisions_once(
    kubefixtures_cluster: Cluster,
    cleanup: Callable[[str], str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    cluster = kubefixtures_cluster
    environment = cleanup(unique_environment())
    selector = f"{ENVIRONMENT_LABEL}={environment}"
    live = Holder(environment, duration=4)
    expired = Holder(environment, duration=2)
    kept = Holder(environment, duration=2, keep=600)
    no_lease = create_namespace(cluster, naming.namespace_labels("nolease", environment))
    lookalike = create_namespace(cluster, lookalike_labels(environment))
    create_stale_lease(cluster, lookalike, lookalike_labels(environment))
    expired.kill()
    kept.kill()
    try:
        time.sleep(2 + 2 + 1)  # lease + grace + a second
        condemned = {expired.namespace, no_lease}
        spared = {live.namespace, kept.namespace}

        now = datetime.now(UTC)
        decided = {s.name: decide(s, now, 2).delete for s in list_sessions(cluster, selector)}
        assert decided == {**dict.fromkeys(condemned, True), **dict.fromkeys(spared, False)}

        status = run_cli(capsys, "status", "--grace=2", f"--selector={selector}")
        lines = {line.split()[0]: line for line in status.splitlines()[1:]}
        assert set(lines) == condemned | spared  # the look-alike is not ours
        assert "live (" in lines[live.namespace]
        assert "(leaked)" in lines[expired.namespace]
        assert "missing (leaked)" in lines[no_lease]
        assert "kept" in lines[kept.namespace]

        dry = run_cli(capsys, "gc", "--dry-run", "--grace=2", f"--selector={selector}")
        assert {
            line.split()[2].rstrip(":")
            for line in dry.splitlines()
            if line.startswith("would delete")
        } == condemned
        assert all(state(cluster, name) == "active" for name in condemned | spared)

        real = run_cli(capsys, "gc", "--grace=2", f"--selector={selector}")
        assert {
            line.split()[1].rstrip(":") for line in real.splitlines() if line.startswith("deleted")
        } == condemned
        assert all(state(cluster, name) != "active" for name in condemned)
        assert all(state(cluster, name) == "active" for name in spared | {lookalike})
        for name in condemned:
            events = cluster.request(
                "GET",
                "/api/v1/namespaces/default/events",
                query=[("fieldSelector", f"involvedObject.name={name},reason={EVENT_REASON}")],
            )
            assert len(events["items"]) == 1
    finally:
        live.kill()


def test_gc_and_status_say_what_is_wrong_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    code = cli_main(["gc", "--context", "no-such-context"])
    err = capsys.readouterr().err
    assert code == 1
    assert err.count("\n") == 1
    assert "no-such-context" in err


def test_keep_on_failure_marks_the_lease_and_gc_respects_it(
    kubefixtures_cluster: Cluster,
    cleanup: Callable[[str], str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    environment = cleanup(unique_environment())
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "config.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  a: b\n"
    )
    (tmp_path / "conftest.py").write_text(
        f"from kubefixtures import environment\n\n{environment} = environment('app/')\n"
    )
    (tmp_path / "test_fails.py").write_text(
        f"def test_fails({environment}):\n"
        f"    open('namespace.txt', 'w').write({environment}.namespace)\n"
        "    assert False\n"
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "--kubefixtures-keep-on-failure",
            f"--kubefixtures-lease-duration={LEASE_SECONDS}",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    namespace = (tmp_path / "namespace.txt").read_text()
    assert f"namespace {namespace} is kept until" in result.stdout
    lease = kubefixtures_cluster.request("GET", LEASE.object_path(namespace, LEASE_NAME))
    until = parse_time(lease["metadata"]["annotations"][KEEP_UNTIL_ANNOTATION])
    assert until is not None
    keep_for = Settings().keep_for  # the default, 2 h
    assert keep_for - 100 < (until - datetime.now(UTC)).total_seconds() <= keep_for

    time.sleep(LEASE_SECONDS + 1)  # renewals stopped at teardown: the lease has expired
    selector = f"--selector={ENVIRONMENT_LABEL}={environment}"
    status = run_cli(capsys, "status", "--grace=0", selector)
    assert "kept" in status
    assert format_time(until) in status
    gc = run_cli(capsys, "gc", "--grace=0", selector)
    assert f"kept          {namespace}: kept until {format_time(until)}" in gc
    assert state(kubefixtures_cluster, namespace) == "active"


def test_the_liveness_probe_fails_once_the_reaper_task_has_ended(
    kubefixtures_cluster: Cluster,
    cleanup: Callable[[str], str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """kopf and its watches stay up when the reaping task dies; the probe must not."""
    import gc
    import socket
    import urllib.error
    import urllib.request

    from kubefixtures.operator.reaper import Reaper

    environment = cleanup(unique_environment())
    monkeypatch.setenv("KUBEFIXTURES_OPERATOR_SELECTOR", f"{ENVIRONMENT_LABEL}={environment}")
    with socket.socket() as probe_socket:
        probe_socket.bind(("127.0.0.1", 0))
        port = probe_socket.getsockname()[1]
    url = f"http://127.0.0.1:{port}/healthz"

    def health() -> int:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return int(response.status)
        except urllib.error.HTTPError as error:
            return error.code
        except OSError:
            return 0  # not serving yet

    with operator_in_process(f"--liveness={url}") as runner:
        wait_until(lambda: health() == 200, 20, "a healthy operator")
        (reaper,) = [
            obj for obj in gc.get_objects() if isinstance(obj, Reaper) and obj._task is not None
        ]
        task = reaper._task
        assert task is not None
        task.get_loop().call_soon_threadsafe(task.cancel)  # as if it had died
        # kopf caches probe results for 10 s.
        wait_until(lambda: health() == 500, 20, "the probe failing")
    assert "the reaper stopped" in runner.output
