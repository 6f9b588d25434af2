"""Release on cancel: a real pytest run sent SIGTERM, SIGINT or SIGHUP (what CI runners send
on cancel, a few seconds before SIGKILL) while its environment comes up or while a test
runs, alone or as a pytest-xdist controller: its namespaces are being deleted within 10 s of
the signal, and it exits as documented (SIGINT: 2; SIGTERM/SIGHUP: by that signal)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kubefixtures.kube import Cluster
from tests.integration.sharing_support import (
    delete_all,
    environ,
    live,
    namespaces,
    pytest_command,
    unique,
    wait_for,
    write_suite,
)

pytestmark = pytest.mark.cluster

DEADLINE = 10.0  # seconds from the signal to every namespace being deleted

# Tests that say they are running (one file per test), then wait to be cancelled.
TESTS_WAIT = """
import os
import pathlib
import time

import pytest


@pytest.mark.parametrize("index", range({count}))
def test_waits({name}, index):
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    pathlib.Path(f"running-{{worker}}-{{index}}").write_text({name}.namespace)
    time.sleep(600)
"""


# The inner run starts with SIGINT, SIGTERM and SIGHUP at their default dispositions. A
# signal ignored here is inherited as ignored (`nohup` ignores SIGHUP, a non-interactive
# shell's `&` ignores SIGINT), and kubefixtures rightly leaves an ignored signal ignored: the
# inner run would never see what the test sends it.
WITH_DEFAULT_SIGNALS = (
    "import os, signal, sys\n"
    "for name in ('SIGINT', 'SIGTERM', 'SIGHUP'):\n"
    "    signal.signal(getattr(signal, name), signal.SIG_DFL)\n"
    "os.execv(sys.argv[1], sys.argv[1:])"
)


def start(directory: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", WITH_DEFAULT_SIGNALS, *pytest_command(*args)],
        cwd=directory,
        env=environ(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # signals from the test reach only whom they are sent to
    )


def expected_exit(signum: int) -> int:
    return 2 if signum == signal.SIGINT else -signum


def cancel_and_check(
    process: subprocess.Popen[str],
    cluster: Cluster,
    name: str,
    signum: int,
    *,
    group: bool = False,
) -> None:
    created = list(namespaces(cluster, name))
    assert created, "no namespace was created before the signal"
    if group:
        os.killpg(process.pid, signum)
    else:
        process.send_signal(signum)
    signalled = time.monotonic()
    try:
        out, _ = process.communicate(timeout=DEADLINE + 5)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        out, _ = process.communicate()
        pytest.fail(f"pytest still running {DEADLINE + 5:.0f} s after the signal:\n{out}")
    exited = time.monotonic() - signalled
    remaining = max(DEADLINE - (time.monotonic() - signalled), 0.1)
    wait_for(lambda: not live(cluster, name), remaining, f"namespaces {created} deleted")
    deleted = time.monotonic() - signalled
    print(
        f"{signal.Signals(signum).name}: exited after {exited:.1f} s, namespaces {created} "
        f"being deleted {deleted:.1f} s after the signal"
    )
    assert process.returncode == expected_exit(signum), out


SIGNALS = [signal.SIGTERM, signal.SIGINT, signal.SIGHUP]


@pytest.mark.parametrize("signum", SIGNALS, ids=lambda s: signal.Signals(s).name)
def test_cancelled_while_its_environment_comes_up(
    tmp_path: Path, kubefixtures_cluster: Cluster, signum: int
) -> None:
    name = unique("cancel_setup")
    # Its web server turns ready after 10 minutes: the run is waiting when it is signalled.
    write_suite(tmp_path, name, values={"ready_delay": 600}, tests=TESTS_WAIT)
    process = start(tmp_path)
    try:
        wait_for(lambda: live(kubefixtures_cluster, name), 60, "the namespace")
        time.sleep(2)  # applied, pods starting: the run waits for readiness
        assert process.poll() is None
        cancel_and_check(process, kubefixtures_cluster, name, signum)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
        delete_all(kubefixtures_cluster, name)


@pytest.mark.parametrize("signum", SIGNALS, ids=lambda s: signal.Signals(s).name)
def test_cancelled_during_a_test(
    tmp_path: Path, kubefixtures_cluster: Cluster, signum: int
) -> None:
    name = unique("cancel_test")
    write_suite(tmp_path, name, tests=TESTS_WAIT)
    process = start(tmp_path)
    try:
        wait_for(lambda: list(tmp_path.glob("running-*")), 120, "the test running")
        cancel_and_check(process, kubefixtures_cluster, name, signum)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
        delete_all(kubefixtures_cluster, name)


def test_an_xdist_controller_alone_sent_sigterm_during_tests(
    tmp_path: Path, kubefixtures_cluster: Cluster
) -> None:
    """Only the controller gets the signal (as from `kill PID`): it passes it on to its
    workers, whose manager deletes the shared namespace."""
    name = unique("cancel_xdist")
    write_suite(tmp_path, name, count=4, tests=TESTS_WAIT)
    process = start(tmp_path, "-n", "2")
    try:
        wait_for(lambda: len(list(tmp_path.glob("running-gw*"))) >= 2, 120, "2 workers testing")
        cancel_and_check(process, kubefixtures_cluster, name, signal.SIGTERM)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
        delete_all(kubefixtures_cluster, name)


def test_an_xdist_run_interrupted_as_a_group_while_its_environment_comes_up(
    tmp_path: Path, kubefixtures_cluster: Cluster
) -> None:
    """Ctrl-C in a terminal: the controller and every worker get SIGINT at once."""
    name = unique("cancel_xdist_setup")
    write_suite(tmp_path, name, count=4, values={"ready_delay": 600}, tests=TESTS_WAIT)
    process = start(tmp_path, "-n", "2")
    try:
        wait_for(lambda: live(kubefixtures_cluster, name), 90, "the namespace")
        time.sleep(2)
        cancel_and_check(process, kubefixtures_cluster, name, signal.SIGINT, group=True)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
        delete_all(kubefixtures_cluster, name)
