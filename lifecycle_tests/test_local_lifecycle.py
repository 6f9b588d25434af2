"""The local cluster's own lifecycle, run by `make test` after the main suite because it
takes the cluster down: `down` leaves nothing of ours on the host, `up` after `down`
works, and `up` on a running cluster is a no-op that reports it; the kernel settings the
cluster changed are back as they were after `down`. Needs root, as the local provider
does; it ends with the cluster up again."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from kubefixtures.cluster.local import host
from kubefixtures.cluster.local.kernel import REQUIRED, KernelSettings
from kubefixtures.cluster.local.provider import COMPONENTS, LocalProvider
from kubefixtures.cluster.tools import find_tool

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 and os.environ.get("CI") != "true",
    reason="the local cluster needs root",
)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kubefixtures.cli", "cluster", *args, "--provider", "local"],
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_up_on_a_running_cluster_reports_it_and_changes_nothing() -> None:
    provider = LocalProvider()
    assert cli("up").returncode == 0
    pids = {name: provider.supervisor.pid(name) for name in COMPONENTS}
    started = time.monotonic()
    again = cli("up")
    assert again.returncode == 0, again.stderr
    assert time.monotonic() - started < 10
    assert "local cluster: running" in again.stdout
    assert "ready nodes: 1" in again.stdout
    assert {name: provider.supervisor.pid(name) for name in COMPONENTS} == pids


def jumps_to_the_reject_rule() -> list[str]:
    """The built-in chains that jump to the local cluster's reject rule, once per jump."""
    rules = subprocess.run(["iptables", "-S"], check=True, capture_output=True, text=True)
    return sorted(
        line.split()[1]
        for line in rules.stdout.splitlines()
        if line.startswith("-A ") and line.endswith(f"-j {host.UNSERVED_CHAIN}")
    )


def test_up_on_a_running_cluster_without_the_reject_rule_adds_it_once() -> None:
    """A cluster started by an older kubefixtures lacks the rule: `up` adds it, and
    another `up` does not add it twice (`down`, below, leaves none)."""
    assert cli("up").returncode == 0
    assert jumps_to_the_reject_rule() == ["FORWARD", "OUTPUT"]
    for chain in ("OUTPUT", "FORWARD"):
        subprocess.run(["iptables", "-D", chain, "-j", host.UNSERVED_CHAIN], check=True)
    subprocess.run(["iptables", "-F", host.UNSERVED_CHAIN], check=True)
    for _ in range(2):
        again = cli("up")
        assert again.returncode == 0, again.stderr
        assert jumps_to_the_reject_rule() == ["FORWARD", "OUTPUT"]
    rules = subprocess.run(
        ["iptables", "-S", host.UNSERVED_CHAIN], check=True, capture_output=True, text=True
    ).stdout
    assert rules.count("-j REJECT") == 2, rules


def run_pods(replicas: int = 3) -> None:
    """Pods to clear away: sandboxes, veths, mounts, cgroups and Service rules."""
    kubectl = str(find_tool("kubectl"))
    subprocess.run(
        [kubectl, "create", "deployment", "sleepers", "--image=kubefixtures.local/busybox:1.35",
         f"--replicas={replicas}", "--", "sleep", "3600"],
        check=True, capture_output=True,
    )  # fmt: skip
    subprocess.run(
        [kubectl, "expose", "deployment", "sleepers", "--port=80"], check=True, capture_output=True
    )
    subprocess.run(
        [kubectl, "wait", "deployment/sleepers", "--for=condition=Available", "--timeout=90s"],
        check=True,
        capture_output=True,
    )


def recorded_kernel_settings(kernel: KernelSettings) -> dict[str, dict[str, str | None]]:
    """What `up` recorded: each setting's value before and while the cluster runs."""
    recorded: dict[str, dict[str, str | None]] = json.loads(kernel.record.read_text())
    return recorded


def test_down_leaves_nothing_behind_and_up_brings_it_back() -> None:
    provider = LocalProvider()
    recorded = recorded_kernel_settings(provider.kernel)
    assert {name: recorded[name]["ours"] for name in REQUIRED} == REQUIRED
    run_pods()
    down = cli("down")
    assert down.returncode == 0, down.stderr
    assert provider.leftovers() == []  # our reject rule's chain among them
    assert jumps_to_the_reject_rule() == []
    # Every kernel setting the cluster (or a component of it) changed is as before `up`.
    assert {name: provider.kernel.read(name) for name in recorded} == {
        name: entry["before"] for name, entry in recorded.items()
    }
    status = cli("status")
    assert status.returncode == 3
    assert "not running" in status.stdout

    up = cli("up")
    assert up.returncode == 0, up.stderr
    assert "ready nodes: 1" in up.stdout


def test_up_clears_the_remains_of_a_killed_cluster() -> None:
    """As after a cancelled CI job or a restarted machine: processes gone, everything
    else (interfaces, mounts, iptables rules, pid files) still there."""
    provider = LocalProvider()
    before_the_killed_cluster = recorded_kernel_settings(provider.kernel)
    run_pods()
    for name in COMPONENTS:
        pid = provider.supervisor.pid(name)
        if pid is not None:
            os.kill(pid, 9)
    up = cli("up")
    assert up.returncode == 0, up.stderr
    assert "ready nodes: 1" in up.stdout
    # The remains' kernel settings were put back before the new cluster recorded them:
    # the record holds the host's own values, not the killed cluster's.
    recorded = recorded_kernel_settings(provider.kernel)
    assert {name: entry["before"] for name, entry in recorded.items()} == {
        name: entry["before"] for name, entry in before_the_killed_cluster.items()
    }
