"""pytest-xdist on the real cluster: one namespace for a whole ``pytest -n 4`` run, and
workers killed with SIGKILL (a non-manager: the run finishes and tears down; the manager:
the others fail with a clear error instead of waiting forever)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from kubefixtures.kube import Cluster
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


def test_forty_tests_on_four_workers_share_one_namespace(
    tmp_path: Path, kubefixtures_cluster: Cluster
) -> None:
    name = unique("xdist")
    write_suite(tmp_path, name, count=40)
    try:
        started = time.monotonic()
        report = tmp_path / "report.json"
        result = run_pytest(tmp_path, "-n", "4", f"--kubefixtures-report={report}")
        elapsed = time.monotonic() - started
        assert result.returncode == 0, output(result)
        assert "40 passed" in result.stdout
        check_report(report, result.stdout, name)
        seen = records(tmp_path)
        assert len(seen) == 40
        assert len({record["worker"] for record in seen}) > 1  # really spread over workers
        assert len({record["namespace"] for record in seen}) == 1
        assert len({record["token"] for record in seen}) == 1  # the same secrets everywhere
        [namespace] = {record["namespace"] for record in seen}
        # Exactly one namespace was ever created for the environment, and it is going.
        assert list(namespaces(kubefixtures_cluster, name)) in ([namespace], [])
        assert live(kubefixtures_cluster, name) == []
        print(f"pytest -n 4, 40 tests, one environment: {elapsed:.1f} s")
    finally:
        delete_all(kubefixtures_cluster, name)


def check_report(path: Path, stdout: str, name: str) -> None:
    """The controller's summary line and report hold what the workers did."""
    import jsonschema

    from kubefixtures.report.model import SCHEMA_PATH

    data = json.loads(path.read_text())
    jsonschema.validate(data, json.loads(SCHEMA_PATH.read_text()))
    assert data["outcome"]["passed"] == 40
    assert data["workers"] == ["gw0", "gw1", "gw2", "gw3"]
    brought_up = [env for env in data["environments"] if env["mode"] == "fresh"]
    [manager] = brought_up  # one worker brought it up; the others that needed it waited
    assert {env["mode"] for env in data["environments"]} <= {"fresh", "shared"}
    assert list(manager["phases"])[2:] == ["resolve", "namespace", "apply", "ready", "forward"]
    assert data["cluster"]["server"].startswith("https://")
    line = f"{name}: ready in * s (fresh, xdist worker {manager['worker']}): namespace "
    line += f"{manager['namespace']}, * objects, web http://127.0.0.1:* | * ready * s*"
    pytest.LineMatcher(stdout.splitlines()).fnmatch_lines(["*= kubefixtures =*", line])


def state_file(basetemp: Path) -> dict[str, Any] | None:
    files = list(basetemp.glob("kubefixtures-xdist-*.json"))
    if not files:
        return None
    try:
        state: dict[str, Any] = json.loads(files[0].read_text())
    except ValueError:  # replaced between listing and reading
        return None
    return state


def shared(basetemp: Path, status: str, attached: int) -> dict[str, Any] | None:
    """The environment's entry, once it has ``status`` and that many attached workers."""
    state = state_file(basetemp)
    for entry in (state or {}).get("environments", {}).values():
        if entry["status"] == status and len(entry["attached"]) >= attached:
            return dict(entry)
    return None


def start_run(directory: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        pytest_command(*args),
        cwd=directory,
        env=environ(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_a_killed_worker_does_not_hold_up_the_teardown(
    tmp_path: Path, kubefixtures_cluster: Cluster
) -> None:
    name = unique("xdist_kill")
    write_suite(tmp_path, name, count=24, sleep=0.5)
    basetemp = tmp_path / "base"
    run = start_run(tmp_path, "-n", "3", f"--basetemp={basetemp}")
    try:
        entry = wait_for(lambda: shared(basetemp, "ready", 2), 120, "workers to attach")
        victim_name, victim = sorted(entry["attached"].items())[0]
        os.kill(victim["pid"], signal.SIGKILL)
        started = time.monotonic()
        text, _ = run.communicate(timeout=240)
        assert time.monotonic() - started < 120, text
        assert f"worker {victim_name!r} crashed" in text, text
        assert "passed" in text
        assert live(kubefixtures_cluster, name) == [], text  # the manager tore down
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()
        delete_all(kubefixtures_cluster, name)


def test_a_killed_manager_ends_in_a_clear_error_not_a_hang(
    tmp_path: Path, kubefixtures_cluster: Cluster
) -> None:
    name = unique("xdist_manager")
    # Ready only after 20 s: the manager is still setting up when it is killed.
    write_suite(tmp_path, name, count=6, values={"ready_delay": 20})
    basetemp = tmp_path / "base"
    run = start_run(tmp_path, "-n", "3", f"--basetemp={basetemp}", "--max-worker-restart=1")
    try:
        entry = wait_for(lambda: shared(basetemp, "starting", 2), 120, "workers to wait")
        os.kill(entry["manager_process"]["pid"], signal.SIGKILL)
        killed = time.monotonic()
        text, _ = run.communicate(timeout=120)
        assert time.monotonic() - killed < 60, text
        assert run.returncode != 0
        assert f"xdist worker {entry['manager']} (pid {entry['manager_process']['pid']}), " in text
        assert "which managed it, died; its namespace is left to its lease" in text
        assert "Traceback" not in text.split("short test summary info")[0], text

    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()
        delete_all(kubefixtures_cluster, name)  # left to its lease; no need to wait here
