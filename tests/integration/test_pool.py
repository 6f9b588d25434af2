"""``--kubefixtures-pool`` on the real cluster: spare copies made by one run are claimed by
the next ones, never twice, never across a changed manifest; a dead claimant's copy is
reaped; spares are never leaks; a function-scoped environment claims one per test."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from kubefixtures.kube import Cluster
from kubefixtures.kube.client import LEASE
from kubefixtures.leases.pool import POOL_KEY_LABEL, POOL_LABEL, SPARE
from tests.integration.sharing_support import (
    TOKEN_WEB,
    delete_all,
    environ,
    namespaces,
    output,
    pytest_command,
    records,
    run_kubefixtures,
    run_pytest,
    unique,
    wait_for,
)

pytestmark = pytest.mark.cluster

CLAIMED = "a spare copy from the pool (--kubefixtures-pool)"

TESTS = """
import hashlib
import json
import time
import urllib.request

import pytest


@pytest.mark.parametrize("index", range({count}))
def test_health({name}, index):
    with urllib.request.urlopen({name}.services["web"].url + "/health", timeout=10) as answer:
        assert answer.status == 200
    record = {{
        "namespace": {name}.namespace,
        "token": hashlib.sha256({name}.secrets["token"].encode()).hexdigest(),
    }}
    with open("records.jsonl", "a") as out:
        out.write(json.dumps(record) + "\\n")
    time.sleep({sleep})
"""


def write_suite(
    directory: Path,
    name: str,
    *,
    scope: str = "session",
    count: int = 1,
    sleep: float = 0,
    values: Mapping[str, Any] | None = None,
) -> None:
    values = {"ready_delay": 0, **(values or {})}
    (directory / "conftest.py").write_text(
        "from kubefixtures import environment\n\n"
        f"{name} = environment({str(TOKEN_WEB)!r}, values={dict(values)!r}, scope={scope!r})\n"
    )
    (directory / "test_suite.py").write_text(TESTS.format(name=name, count=count, sleep=sleep))


def spares(cluster: Cluster, name: str) -> set[str]:
    """The namespaces of ``name`` whose Lease says they are ready, unclaimed spares."""
    selector = f"kubefixtures.io/environment={name},{POOL_KEY_LABEL},{POOL_LABEL}={SPARE}"
    return {
        str(lease["metadata"]["namespace"])
        for lease in cluster.items(LEASE, None, selector)
        if namespaces(cluster, name).get(str(lease["metadata"]["namespace"])) is False
    }


def pooled_run(directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    (directory / "records.jsonl").unlink(missing_ok=True)
    result = run_pytest(
        directory, "--kubefixtures-pool=2", "--kubefixtures-lease-duration=3", *args
    )
    assert result.returncode == 0, output(result)
    return result


def kubefixtures(*args: str) -> str:
    return run_kubefixtures(*args).stdout


def test_two_concurrent_sessions_claim_two_different_spares(
    tmp_path: Path, kubefixtures_cluster: Cluster
) -> None:
    name = unique("pool_race")
    first, second = tmp_path / "a", tmp_path / "b"
    for directory in (first, second):
        directory.mkdir()
        write_suite(directory, name, sleep=2)
    try:
        made = pooled_run(first)  # no spare yet: provisions as without a pool, makes two
        assert CLAIMED not in output(made)
        assert "made 2 spare copies for the next runs" in output(made)
        ready = spares(kubefixtures_cluster, name)
        assert len(ready) == 2, ready
        (first / "records.jsonl").unlink()
        runs = [
            subprocess.Popen(
                pytest_command("--kubefixtures-pool=2", "--kubefixtures-lease-duration=3"),
                cwd=directory,
                env=environ(),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for directory in (first, second)
        ]
        outputs = [run.communicate(timeout=300)[0] for run in runs]
        for run, out in zip(runs, outputs, strict=True):
            assert run.returncode == 0, out
            assert CLAIMED in out, out
        [one], [other] = records(first), records(second)
        assert {one["namespace"], other["namespace"]} == ready  # each its own spare
        assert one["token"] != other["token"]  # every copy has secrets of its own
    finally:
        delete_all(kubefixtures_cluster, name)


def test_a_changed_manifest_never_gets_an_old_spare_and_spares_are_never_leaks(
    tmp_path: Path, kubefixtures_cluster: Cluster
) -> None:
    name = unique("pool_stale")
    write_suite(tmp_path, name)
    try:
        pooled_run(tmp_path)
        old = spares(kubefixtures_cluster, name)
        assert len(old) == 2

        # Neither status nor gc (even with no grace) counts them as leaks.
        selector = f"--selector=kubefixtures.io/environment={name}"
        status = kubefixtures("status", selector)
        for namespace in old:
            [line] = [line for line in status.splitlines() if line.startswith(namespace)]
            assert "kept; pool spare" in line
            assert "leaked" not in line
        gc = kubefixtures("gc", "--grace=0", selector)
        for namespace in old:
            assert f"kept          {namespace}: kept until" in gc
            assert "(pool spare, --kubefixtures-pool)" in gc
        assert spares(kubefixtures_cluster, name) == old

        write_suite(tmp_path, name, values={"ready_delay": 1})  # another manifest
        changed = pooled_run(tmp_path)
        assert CLAIMED not in output(changed)
        [record] = records(tmp_path)
        assert record["namespace"] not in old
        assert old <= spares(kubefixtures_cluster, name)  # untouched, still spares of the old
    finally:
        delete_all(kubefixtures_cluster, name)


def test_a_killed_claimants_copy_is_reaped_by_gc(
    tmp_path: Path, kubefixtures_cluster: Cluster
) -> None:
    name = unique("pool_kill")
    slow, fast = tmp_path / "slow", tmp_path / "fast"
    for directory, sleep in ((slow, 300), (fast, 0)):
        directory.mkdir()
        write_suite(directory, name, sleep=sleep)
    try:
        pooled_run(fast)
        ready = spares(kubefixtures_cluster, name)
        claimant = subprocess.Popen(
            pytest_command("--kubefixtures-pool=1", "--kubefixtures-lease-duration=3"),
            cwd=slow,
            env=environ(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            [record] = wait_for(lambda: records(slow), 120, "the claimant's test to run")
        finally:
            os.killpg(claimant.pid, signal.SIGKILL)
            claimant.wait()
        claimed = record["namespace"]
        assert claimed in ready
        selector = f"--selector=kubefixtures.io/environment={name}"

        def reaped() -> bool:
            # Within the Lease's 3 s it is kept; then gc (no grace) deletes it.
            return f"deleted       {claimed}: lease held by" in kubefixtures(
                "gc", "--grace=0", selector
            )

        wait_for(reaped, 30, f"gc to delete {claimed}", interval=1.0)
        assert namespaces(kubefixtures_cluster, name).get(claimed, True)  # gone or going
        assert (ready - {claimed}) <= spares(kubefixtures_cluster, name)  # spares kept
    finally:
        delete_all(kubefixtures_cluster, name)


def test_a_function_scoped_environment_claims_a_spare_per_test(
    tmp_path: Path, kubefixtures_cluster: Cluster
) -> None:
    name = unique("pool_function")
    write_suite(tmp_path, name, scope="function", count=10)
    try:
        result = run_pytest(tmp_path, "--kubefixtures-pool=3", "--kubefixtures-lease-duration=5")
        assert result.returncode == 0, output(result)
        seen = records(tmp_path)
        assert len(seen) == 10
        assert len({record["namespace"] for record in seen}) == 10  # a fresh copy per test
        assert len({record["token"] for record in seen}) == 10  # with secrets of its own
        claims = output(result).count(CLAIMED)
        # The spares start at collection: every test claims one (the first waits for it).
        assert claims == 10, output(result)
    finally:
        delete_all(kubefixtures_cluster, name)


def test_a_suite_larger_than_the_pool_gets_a_fresh_copy_per_test_and_leaves_the_pool(
    tmp_path: Path, kubefixtures_cluster: Cluster
) -> None:
    name = unique("pool_suite")
    write_suite(tmp_path, name, scope="function", count=8)
    try:
        result = run_pytest(tmp_path, "--kubefixtures-pool=1", "--kubefixtures-lease-duration=5")
        assert result.returncode == 0, output(result)
        seen = records(tmp_path)
        used = {record["namespace"] for record in seen}
        assert len(used) == 8  # a fresh copy per test
        assert len({record["token"] for record in seen}) == 8  # with secrets of its own
        # The run counted its 8 tests at collection and started a copy for each, not one:
        # every test claimed a spare.
        assert output(result).count(CLAIMED) == 8, output(result)
        assert "made 9 spare copies" in output(result), output(result)
        # What is left: the pool's one spare, ready; every claimed copy is gone or going.
        left = namespaces(kubefixtures_cluster, name)
        assert not [namespace for namespace in used if left.get(namespace) is False]
        assert {namespace for namespace, going in left.items() if not going} == spares(
            kubefixtures_cluster, name
        )
        assert len(spares(kubefixtures_cluster, name)) == 1
    finally:
        delete_all(kubefixtures_cluster, name)


def test_a_spare_older_than_the_maximum_age_is_replaced_not_claimed(
    tmp_path: Path, kubefixtures_cluster: Cluster
) -> None:
    name = unique("pool_age")
    write_suite(tmp_path, name)
    try:
        pooled_run(tmp_path, "--kubefixtures-pool=1")
        [old] = spares(kubefixtures_cluster, name)
        time.sleep(2)
        aged = pooled_run(tmp_path, "--kubefixtures-pool=1", "--kubefixtures-pool-max-age=1")
        assert CLAIMED not in output(aged)  # too old to claim
        [record] = records(tmp_path)
        assert record["namespace"] != old
        assert namespaces(kubefixtures_cluster, name).get(old, True)  # retired: gone or going
        assert old not in spares(kubefixtures_cluster, name)
    finally:
        delete_all(kubefixtures_cluster, name)
