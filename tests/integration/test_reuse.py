"""``--kubefixtures-reuse`` on the real cluster: the second run adopts the first run's
namespace with the same secrets; between runs the Lease carries keep-until and is not
renewed; a changed manifest replaces the stale namespace."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from kubefixtures import naming
from kubefixtures.kube import Cluster
from kubefixtures.kube.client import LEASE, NAMESPACE
from kubefixtures.leases.policy import (
    KEEP_UNTIL_ANNOTATION,
    KEPT_BECAUSE_ANNOTATION,
    LEASE_NAME,
    SessionNamespace,
    holder_identity,
    parse_time,
)
from kubefixtures.leases.renewal import SessionLease
from kubefixtures.provisioning.base import EnvironmentSpec
from kubefixtures.provisioning.fresh import Adopted
from kubefixtures.provisioning.reused import REUSE_KEY_LABEL, ReuseNamespace
from kubefixtures.settings import Settings
from tests.integration.sharing_support import (
    delete_all,
    environ,
    live,
    namespaces,
    output,
    pytest_command,
    records,
    run_pytest,
    unique,
    wait_for,
    write_suite,
)

pytestmark = pytest.mark.cluster


def lease(cluster: Cluster, namespace: str) -> dict[str, object]:
    return cluster.request("GET", LEASE.object_path(namespace, LEASE_NAME))


def run_once(directory: Path, *args: str) -> dict[str, str]:
    """One reusing run of the suite: the namespace and secret digest its test saw."""
    (directory / "records.jsonl").unlink(missing_ok=True)
    result = run_pytest(directory, "--kubefixtures-reuse", "--kubefixtures-lease-duration=3", *args)
    assert result.returncode == 0, output(result)
    assert "for the next --kubefixtures-reuse run, kept until" in result.stdout
    [record] = records(directory)
    return {"namespace": record["namespace"], "token": record["token"], "output": output(result)}


def test_reuse_adopts_the_namespace_until_the_manifests_change(
    tmp_path: Path, kubefixtures_cluster: Cluster
) -> None:
    name = unique("reuse")
    write_suite(tmp_path, name)
    try:
        first = run_once(tmp_path)
        namespace = first["namespace"]
        # Between runs: kept from reapers, and nobody renews the Lease.
        between = lease(kubefixtures_cluster, namespace)
        annotations = between["metadata"]["annotations"]  # type: ignore[index]
        until = parse_time(annotations[KEEP_UNTIL_ANNOTATION])
        assert until is not None
        assert 7100 < until.timestamp() - time.time() <= 7200
        renewed = between["spec"]["renewTime"]  # type: ignore[index]
        time.sleep(1.5)  # half the lease: a renewal would have happened
        assert lease(kubefixtures_cluster, namespace)["spec"]["renewTime"] == renewed  # type: ignore[index]

        second = run_once(tmp_path)
        assert second["namespace"] == namespace
        assert second["token"] == first["token"]  # the same generated secret
        assert f"reused namespace {namespace}" in second["output"]
        assert live(kubefixtures_cluster, name) == [namespace]

        # Another value renders other manifests: the stale namespace goes, a new one comes.
        write_suite(tmp_path, name, values={"ready_delay": 1})
        third = run_once(tmp_path)
        assert third["namespace"] != namespace
        wait_for(
            lambda: namespaces(kubefixtures_cluster, name).get(namespace, True),
            30,
            f"namespace {namespace} to be deleted",
        )
        assert live(kubefixtures_cluster, name) == [third["namespace"]]
    finally:
        delete_all(kubefixtures_cluster, name)


def start_run(directory: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        pytest_command("--kubefixtures-reuse", "--kubefixtures-lease-duration=3", *args),
        cwd=directory,
        env=environ(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_two_concurrent_reuse_runs_never_share_a_namespace(
    tmp_path: Path, kubefixtures_cluster: Cluster
) -> None:
    """Both runs find the namespace an earlier run left: one adopts it, the other sees it
    held (or loses the race to take its Lease over) and brings up its own."""
    name = unique("reuse_race")
    first, second = tmp_path / "a", tmp_path / "b"
    for directory in (first, second):
        directory.mkdir()
        # Each holds its namespace long enough that the other surely starts while it is held,
        # even when one of the two pytest processes is slow to start on a loaded machine.
        write_suite(directory, name, sleep=10)
    try:
        left = run_once(first)["namespace"]
        (first / "records.jsonl").unlink()
        runs = [start_run(directory) for directory in (first, second)]
        outputs = [run.communicate(timeout=300)[0] for run in runs]
        for run, out in zip(runs, outputs, strict=True):
            assert run.returncode == 0, out
        seen = [records(directory)[0]["namespace"] for directory in (first, second)]
        assert len(set(seen)) == 2, outputs
        assert left in seen  # one of them adopted it, the other brought up its own
    finally:
        delete_all(kubefixtures_cluster, name)


FAILING_TEST = """
import json


def test_fails({name}):
    with open("records.jsonl", "a") as out:
        out.write(json.dumps({{"namespace": {name}.namespace}}) + "\\n")
    assert False, "kept on failure"
"""


def test_reuse_never_adopts_nor_replaces_a_namespace_kept_on_failure(
    tmp_path: Path, kubefixtures_cluster: Cluster
) -> None:
    name = unique("reuse_kept")
    write_suite(tmp_path, name, tests=FAILING_TEST)
    try:
        result = run_pytest(
            tmp_path,
            "--kubefixtures-reuse",
            "--kubefixtures-keep-on-failure",
            "--kubefixtures-lease-duration=3",
        )
        assert result.returncode == 1, output(result)
        [record] = records(tmp_path)
        kept = record["namespace"]
        annotations = lease(kubefixtures_cluster, kept)["metadata"]["annotations"]  # type: ignore[index]
        assert "1 failed test" in annotations[KEPT_BECAUSE_ANNOTATION]

        write_suite(tmp_path, name)  # the same environment, passing tests
        adopted = run_once(tmp_path)
        assert adopted["namespace"] != kept  # not adopted
        assert f"not reusing namespace {kept}: kept on failure" in adopted["output"]

        write_suite(tmp_path, name, values={"ready_delay": 1})  # other manifests
        replaced = run_once(tmp_path)
        assert (
            f"namespace {kept} was left for reuse with other manifests but is kept on "
            in (replaced["output"])
        )
        going = namespaces(kubefixtures_cluster, name)
        assert going[kept] is False  # not replaced: still there, not being deleted
        assert going[adopted["namespace"]] is True  # the stale one that was nobody's: replaced
    finally:
        delete_all(kubefixtures_cluster, name)


class Lines:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def write_line(self, line: str) -> None:
        self.lines.append(line)

    def summary(self, line: str) -> None:
        self.lines.append(line)

    def kept(self, namespace: str, environment: str, why: str, lines: Sequence[str]) -> None:
        self.lines.extend(lines)


def left_for_reuse(cluster: Cluster, environment: str) -> str:
    """A namespace as a finished reusing run leaves it: labelled with a reuse key, its Lease
    released and kept for the next run."""
    name = unique(environment).replace("_", "-")
    labels = {**naming.namespace_labels("earlier-run", environment), REUSE_KEY_LABEL: "old"}
    cluster.create(NAMESPACE, None, {"metadata": {"name": name, "labels": labels}})
    earlier = SessionLease(cluster, name, holder_identity("earlier-run"), 3)
    earlier.create()
    assert earlier.finish(keep_for=3600) is not None
    return name


def strategy(environment: str, session_id: str, lines: Lines) -> ReuseNamespace:
    spec = EnvironmentSpec(name=environment, sources=())
    return ReuseNamespace(spec, Settings(lease_duration=3), session_id, lines)


def in_between(strategy: ReuseNamespace, meanwhile: Callable[[], object]) -> None:
    """Run ``meanwhile`` right after ``strategy`` judged whom a namespace belongs to: the
    window another run may act in."""
    judge = strategy._owner

    def judged(cluster: Cluster, session: SessionNamespace) -> str | None:
        owner = judge(cluster, session)
        meanwhile()
        return owner

    strategy._owner = judged  # type: ignore[method-assign]


def test_replacing_a_stale_namespace_never_deletes_one_another_run_adopted_meanwhile(
    kubefixtures_cluster: Cluster,
) -> None:
    """A run with other manifests judges the namespace nobody's; before it deletes it, a run
    with the old manifests adopts it. The replacing run must lose: it claims the Lease by
    compare-and-swap first, and that fails."""
    environment = unique("reuse_replace")
    lines = Lines()
    try:
        name = left_for_reuse(kubefixtures_cluster, environment)
        adopting = strategy(environment, "adopting-run", lines)
        adopted: list[Adopted | None] = []
        replacing = strategy(environment, "replacing-run", lines)
        in_between(replacing, lambda: adopted.append(adopting._adopt(kubefixtures_cluster, name)))
        replacing._replace(kubefixtures_cluster, name)
        [adoption] = adopted
        assert adoption is not None
        assert adoption.namespace == name
        assert adoption.lease is not None
        adoption.lease.settle()
        assert namespaces(kubefixtures_cluster, environment) == {name: False}, lines.lines
        holder = lease(kubefixtures_cluster, name)["spec"]["holderIdentity"]  # type: ignore[index]
        assert holder == holder_identity("adopting-run")
    finally:
        delete_all(kubefixtures_cluster, environment)


def test_adopting_never_takes_a_namespace_another_run_is_deleting(
    kubefixtures_cluster: Cluster,
) -> None:
    """The other order: a run with the old manifests judges the namespace free; before it
    takes the Lease over, a run with other manifests replaces it. Adopting must fail."""
    environment = unique("reuse_replace")
    lines = Lines()
    try:
        name = left_for_reuse(kubefixtures_cluster, environment)
        adopting = strategy(environment, "adopting-run", lines)
        replacing = strategy(environment, "replacing-run", lines)
        in_between(adopting, lambda: replacing._replace(kubefixtures_cluster, name))
        assert adopting._adopt(kubefixtures_cluster, name) is None, lines.lines
        assert namespaces(kubefixtures_cluster, environment).get(name, True) is True
    finally:
        delete_all(kubefixtures_cluster, environment)
