"""Diagnostics on the real cluster: a failing test's report carries the environment's events
and pod logs (secrets masked); keep-on-failure prints commands that work when pasted, the
``kubefixtures diagnose`` bundle among them."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from kubefixtures.kube import Cluster
from tests.integration.sharing_support import (
    delete_all,
    environ,
    live,
    output,
    run_pytest,
    unique,
    write_suite,
)

pytestmark = pytest.mark.cluster

FAILING = """
def test_fails({name}):
    with open("token.txt", "w") as out:  # for the check that it is masked everywhere
        out.write({name}.secrets["token"])
    raise AssertionError("fails on purpose")
"""


def pasted_commands(text: str) -> list[str]:
    """The command lines printed under 'commands to paste:', as a human would copy them."""
    lines = text.splitlines()
    start = next(index for index, line in enumerate(lines) if line.endswith("commands to paste:"))
    commands = []
    for line in lines[start + 1 :]:
        if not line.startswith("  "):
            break
        commands.append(line.strip())
    return commands


def test_a_failing_test_reports_events_and_logs_and_kept_commands_work(
    tmp_path: Path, kubefixtures_cluster: Cluster
) -> None:
    name = unique("diagnose")
    write_suite(tmp_path, name, tests=FAILING)
    try:
        result = run_pytest(
            tmp_path, "--kubefixtures-keep-on-failure", "--kubefixtures-log-lines=20"
        )
        text = output(result)
        assert result.returncode == 1, text
        token = (tmp_path / "token.txt").read_text()
        [namespace] = live(kubefixtures_cluster, name)

        # The report: events, then each container's last lines, the token masked.
        prefix = f"kubefixtures {name} ({namespace})"
        assert f" {prefix}: events " in text
        assert re.search(r"  pod/web-\S+  Normal Scheduled: ", text)
        assert "  deployment/web  Normal ScalingReplicaSet: Scaled up replica set" in text
        assert f" {prefix}: logs pod/web-" in text
        assert "started with token ********" in text
        assert token not in text

        # The commands, run as printed (kubectl and kubefixtures on PATH).
        commands = pasted_commands(result.stdout)
        assert commands[-1].endswith("# remove it")
        for command in commands[:-1]:
            ran = subprocess.run(
                ["bash", "-c", command],
                cwd=tmp_path,
                env=environ(),
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert ran.returncode == 0, f"{command}: {output(ran)}"
            if " logs --all-containers " in command:
                assert "started with token" in ran.stdout  # the real logs (unmasked: kubectl)
            if " get all" in command:
                assert "deployment.apps/web" in ran.stdout

        # The bundle written by the pasted `kubefixtures diagnose`.
        bundle = tmp_path / f"kubefixtures-{namespace}"
        files = {str(path.relative_to(bundle)) for path in bundle.rglob("*") if path.is_file()}
        assert {"summary.txt", "events.txt", "describe.txt"} <= files
        assert "objects/deployments.apps.yaml" in files
        assert "objects/secrets.yaml" in files
        assert any(file.startswith("logs/web-") and file.endswith("/web.log") for file in files)
        assert "Deployment web: 1/1 ready" in (bundle / "describe.txt").read_text()
        for file in files:
            assert token not in (bundle / file).read_text(), file
        logs = next(bundle.glob("logs/web-*/web.log")).read_text()
        assert "started with token ********" in logs

        ran = subprocess.run(
            ["bash", "-c", commands[-1]], env=environ(), capture_output=True, text=True, timeout=60
        )
        assert ran.returncode == 0, output(ran)
        assert live(kubefixtures_cluster, name) == []
    finally:
        delete_all(kubefixtures_cluster, name)


def test_diagnostics_can_be_turned_off(tmp_path: Path, kubefixtures_cluster: Cluster) -> None:
    name = unique("quiet")
    write_suite(tmp_path, name, tests=FAILING)
    try:
        result = run_pytest(tmp_path, "--kubefixtures-diagnostics=false")
        assert result.returncode == 1, output(result)
        assert f"kubefixtures {name} (" not in result.stdout
        assert live(kubefixtures_cluster, name) == []  # no keep-on-failure: deleted
    finally:
        delete_all(kubefixtures_cluster, name)
