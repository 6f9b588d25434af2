"""``--kubefixtures-reuse`` on the real cluster: the second run adopts the first run's
namespace with the same secrets; between runs the Lease carries keep-until and is not
renewed; a changed manifest replaces the stale namespace."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from kubefixtures.kube import Cluster
from kubefixtures.kube.client import LEASE
from kubefixtures.leases.policy import KEEP_UNTIL_ANNOTATION, LEASE_NAME, parse_time
from tests.integration.sharing_support import (
    delete_all,
    live,
    namespaces,
    output,
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
