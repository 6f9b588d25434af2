"""Details files on the real cluster: ``kubefixtures up`` brings an environment up and serves
it; ``KUBEFIXTURES_DETAILS=FILE pytest`` uses it and creates or deletes no namespace (and
forwards again once ``up`` has stopped); ``kubefixtures down FILE`` removes it."""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from kubefixtures.details import EnvironmentDetails
from kubefixtures.kube import Cluster
from kubefixtures.kube.client import LEASE
from kubefixtures.leases.policy import KEEP_UNTIL_ANNOTATION, LEASE_NAME
from tests.integration.sharing_support import (
    BIN,
    TOKEN_WEB,
    delete_all,
    environ,
    live,
    namespaces,
    output,
    records,
    run_pytest,
    start_up,
    unique,
    wait_for,
    write_suite,
)

pytestmark = pytest.mark.cluster


def renew_time(cluster: Cluster, namespace: str) -> str:
    return str(
        cluster.request("GET", LEASE.object_path(namespace, LEASE_NAME))["spec"]["renewTime"]
    )


def test_up_then_pytest_then_down(tmp_path: Path, kubefixtures_cluster: Cluster) -> None:
    name = unique("details")
    details_file = tmp_path / "env.json"
    write_suite(tmp_path, name, count=5)
    up, printed = start_up(
        tmp_path, str(TOKEN_WEB), "--name", name, "--values", "ready_delay=0",
        "--details-out", str(details_file), "--lease-duration", "3",
    )  # fmt: skip
    try:
        assert details_file.exists(), printed
        assert details_file.stat().st_mode & 0o777 == 0o600
        details = EnvironmentDetails.read(details_file)
        namespace = details.namespace
        assert live(kubefixtures_cluster, name) == [namespace]
        assert f"KUBEFIXTURES_DETAILS={details_file} pytest" in printed

        # While `up` holds it, the Lease is renewed (every second with a 3 s lease).
        first = renew_time(kubefixtures_cluster, namespace)
        wait_for(lambda: renew_time(kubefixtures_cluster, namespace) != first, 10, "a renewal")

        with_details = environ(KUBEFIXTURES_DETAILS=str(details_file))
        result = run_pytest(tmp_path, env=with_details)
        assert result.returncode == 0, output(result)
        assert {record["namespace"] for record in records(tmp_path)} == {namespace}
        assert namespaces(kubefixtures_cluster, name) == {namespace: False}  # nothing else
        assert "forwarded again" not in output(result)  # up's forwards served it

        # `up` stops serving and leaves the environment up, kept from reapers.
        up.send_signal(signal.SIGTERM)
        rest, _ = up.communicate(timeout=60)
        assert up.returncode == 0, rest
        assert f"namespace {namespace} stays up" in rest
        lease = kubefixtures_cluster.request("GET", LEASE.object_path(namespace, LEASE_NAME))
        assert KEEP_UNTIL_ANNOTATION in lease["metadata"]["annotations"]

        # Its ports no longer answer: pytest forwards again from the details.
        result = run_pytest(tmp_path, "-n", "2", env=with_details)
        assert result.returncode == 0, output(result)
        assert namespaces(kubefixtures_cluster, name) == {namespace: False}

        kept_copy = tmp_path / "copy.json"
        shutil.copy(details_file, kept_copy)
        down = subprocess.run(
            [str(BIN / "kubefixtures"), "down", str(details_file)],
            env=environ(), capture_output=True, text=True, timeout=180,
        )  # fmt: skip
        assert down.returncode == 0, output(down)
        assert f"deleted namespace {namespace} of environment '{name}'" in down.stdout
        assert not details_file.exists()
        assert namespaces(kubefixtures_cluster, name) == {}

        # A details file whose namespace is gone: one line, nothing created.
        started = time.monotonic()
        result = run_pytest(tmp_path, env=environ(KUBEFIXTURES_DETAILS=str(kept_copy)))
        assert result.returncode == 1
        assert time.monotonic() - started < 60
        message = (
            f"{kept_copy}: namespace {namespace} of environment '{name}' no longer exists on "
            "context "
        )
        assert message in result.stdout, output(result)
        assert "Traceback" not in result.stdout
        assert namespaces(kubefixtures_cluster, name) == {}
    finally:
        if up.poll() is None:
            up.kill()
            up.communicate()
        delete_all(kubefixtures_cluster, name)


def test_down_refuses_a_namespace_that_is_not_the_recorded_one(
    tmp_path: Path, kubefixtures_cluster: Cluster
) -> None:
    # A details file naming a namespace kubefixtures did not make for that session.
    details = EnvironmentDetails(name="x", namespace="default", session_id="not-this-one")
    details.write(tmp_path / "env.json")
    down = subprocess.run(
        [str(BIN / "kubefixtures"), "down", str(tmp_path / "env.json")],
        env=environ(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert down.returncode == 1
    assert down.stderr.strip().splitlines() == [
        f"kubefixtures: error: {tmp_path / 'env.json'}: namespace default is not the one "
        "kubefixtures created for session not-this-one (its labels differ); not deleting it"
    ]
    assert (tmp_path / "env.json").exists()
    assert kubefixtures_cluster.request("GET", "/api/v1/namespaces/default")
