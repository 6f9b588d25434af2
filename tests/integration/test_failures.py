"""How environments fail on the real cluster: early, in one message, leaving nothing behind.

Each case runs an inner pytest session (pytester) whose conftest declares the environment,
so that the failing fixture is observed from the outside, as a user would see it.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from kubefixtures.kube import Cluster
from kubefixtures.kube.portforward._loop import THREAD_NAME

pytest_plugins = ["pytester"]
ENVIRONMENTS = Path(__file__).parent / "environments"
# Read now: pytester points HOME at a temporary directory while a test runs.
# Long enough for the pod to be running (so the reason is its probe), short for a test.
DEADLINE = 10
KUBECONFIG = os.environ.get("KUBECONFIG") or str(Path.home() / ".kube" / "config")
pytestmark = pytest.mark.cluster

INNER_TEST = """
def test_uses_it({name}):
    pass
"""


def unique(stem: str) -> str:
    return f"{stem}_{secrets.token_hex(3)}"


def run_inner(
    pytester: pytest.Pytester, name: str, source: Path, *args: str, **options: object
) -> pytest.RunResult:
    extra = "".join(f", {key}={value!r}" for key, value in options.items())
    pytester.makeconftest(
        f"from kubefixtures import environment\n{name} = environment({str(source)!r}{extra})\n"
    )
    pytester.makepyfile(INNER_TEST.format(name=name))
    return pytester.runpytest_inprocess(
        "-p", "no:cacheprovider", f"--kubefixtures-kubeconfig={KUBECONFIG}", *args
    )


def test_unknown_placeholder_fails_before_a_namespace_exists(
    pytester: pytest.Pytester, all_namespaces: Callable[[str], list[str]]
) -> None:
    name = unique("bad_placeholder")
    result = run_inner(pytester, name, ENVIRONMENTS / "bad-placeholder")
    result.assert_outcomes(errors=1)
    source = ENVIRONMENTS / "bad-placeholder" / "config.yaml"
    result.stdout.fnmatch_lines([f"*{source}:6: unknown placeholder ${{redis_versoin}}*"])
    result.stdout.no_fnmatch_line("*Traceback*")
    assert all_namespaces(name) == []


def test_a_kind_the_cluster_does_not_serve_fails_before_a_namespace_exists(
    pytester: pytest.Pytester, all_namespaces: Callable[[str], list[str]]
) -> None:
    name = unique("unknown_kind")
    result = run_inner(pytester, name, ENVIRONMENTS / "unknown-kind")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*widget.yaml:6: *does not serve kind Widget in apiVersion widgets.example.com/v1*"]
    )
    assert all_namespaces(name) == []


def test_a_never_ready_pod_fails_within_the_deadline_naming_pod_and_reason(
    pytester: pytest.Pytester,
    live_namespaces: Callable[[str], list[str]],
) -> None:
    name = unique("never_ready")
    started = time.monotonic()
    result = run_inner(pytester, name, ENVIRONMENTS / "never-ready", timeout=DEADLINE)
    elapsed = time.monotonic() - started
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            f"*environment '{name}' timed out after {DEADLINE}.* s in namespace kf-*: "
            "pod/never-ready*",
            "*pod/never-ready: pending: Running; container app running but not ready*",
            "*event: Warning Unhealthy*Readiness probe failed*",
        ]
    )
    assert elapsed < DEADLINE + 5, (
        f"the deadline was {DEADLINE} s, the session took {elapsed:.1f} s"
    )
    assert live_namespaces(name) == []  # deleted, or on its way out
    # The Service's forward, started with the wait, was cancelled with the setup.
    assert [thread for thread in threading.enumerate() if thread.name == THREAD_NAME] == []


def test_keep_on_failure_keeps_the_namespace_and_says_how_to_inspect_it(
    pytester: pytest.Pytester,
    kubefixtures_cluster: Cluster,
    live_namespaces: Callable[[str], list[str]],
) -> None:
    name = unique("kept")
    pytester.makeconftest(
        "from kubefixtures import environment\n"
        f"{name} = environment({str(ENVIRONMENTS / 'shop')!r}, values={{'greeting': 'hi'}})\n"
    )
    pytester.makepyfile(f"def test_fails({name}):\n    assert False\n")
    result = pytester.runpytest_inprocess(
        "-p",
        "no:cacheprovider",
        "--kubefixtures-keep-on-failure",
        f"--kubefixtures-kubeconfig={KUBECONFIG}",
        "--kubefixtures-image-overrides=redis=kubefixtures.local/redis:7.0",
    )
    try:
        result.assert_outcomes(failed=1)
        [namespace] = live_namespaces(name)
        kubectl = f"kubectl --context {kubefixtures_cluster.context} -n {namespace}"
        result.stdout.fnmatch_lines(
            [
                "*= kubefixtures =*",
                f"kept namespace {namespace} of environment '{name}' (1 failed test(s), first "
                f"test_keep_on_failure_keeps_the_namespace_and_says_how_to_inspect_it.py"
                f"::test_fails); inspect: {kubectl} get all,events;*",
            ]
        )
    finally:
        for namespace in live_namespaces(name):
            kubefixtures_cluster.delete_namespace(namespace)


TWO_SESSIONS_CONFTEST = """
from kubefixtures import environment

tiny = environment("tiny.yaml")
"""
TWO_SESSIONS_TEST = """
import os

def test_write_namespace(tiny):
    with open(os.environ["NAMESPACE_FILE"], "w") as out:
        out.write(tiny.namespace)
"""


def test_two_sessions_at_once_get_different_namespaces(tmp_path: Path) -> None:
    (tmp_path / "tiny.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: tiny\ndata:\n  sid: ${session_id}\n"
    )
    (tmp_path / "conftest.py").write_text(TWO_SESSIONS_CONFTEST)
    (tmp_path / "test_tiny.py").write_text(TWO_SESSIONS_TEST)
    sessions = []
    for index in range(2):
        env = {**os.environ, "NAMESPACE_FILE": str(tmp_path / f"ns{index}")}
        sessions.append(
            subprocess.Popen(
                [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
                cwd=tmp_path,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    outputs = [session.communicate(timeout=120)[0] for session in sessions]
    assert [session.returncode for session in sessions] == [0, 0], outputs
    first, second = ((tmp_path / f"ns{index}").read_text() for index in range(2))
    assert first != second
    assert first.startswith("kf-tiny-")
    assert second.startswith("kf-tiny-")


def test_an_environment_no_test_claims_is_cancelled_and_removed(
    pytester: pytest.Pytester, live_namespaces: Callable[[str], list[str]]
) -> None:
    name = unique("unclaimed")
    pytester.makeconftest(
        "from kubefixtures import environment\n"
        f"{name} = environment({str(ENVIRONMENTS / 'never-ready')!r}, timeout=120)\n"
    )
    # The first test fails and -x stops the run: the environment, brought up in advance
    # for the second test, is never claimed.
    pytester.makepyfile(
        f"import time\n\ndef test_fails():\n    time.sleep(2)\n    assert False\n\n"
        f"def test_never_runs({name}):\n    pass\n"
    )
    started = time.monotonic()
    result = pytester.runpytest_inprocess(
        "-p", "no:cacheprovider", "-x", f"--kubefixtures-kubeconfig={KUBECONFIG}"
    )
    elapsed = time.monotonic() - started
    result.assert_outcomes(failed=1)
    assert elapsed < 30, f"the unclaimed environment held the session for {elapsed:.0f} s"
    assert live_namespaces(name) == []
