"""Sharing through pytest-xdist and details files, as users meet it (pytester, no cluster):
the inner conftest replaces the provisioning's cluster steps with ones that log to a file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

FAKE = """
import importlib
import os
import time
from pathlib import Path

from kubefixtures.details import Environment, EnvironmentDetails

fresh = importlib.import_module("kubefixtures.provisioning.fresh")
LOG = Path(__file__).parent / "calls.log"


def log(*words):
    with LOG.open("a") as out:
        out.write(" ".join(str(word) for word in words) + "\\n")


def fake_setup(self):
    log("setup", self.spec.name, os.environ.get("PYTEST_XDIST_WORKER", "-"), time.time())
    time.sleep(0.5)  # the others arrive meanwhile, and wait
    self.namespace = "kf-" + self.spec.name + "-" + self.session.session_id
    details = EnvironmentDetails(
        name=self.spec.name, namespace=self.namespace, session_id=self.session.session_id,
        secrets={"token": "s3cret-token"},
    )
    self.environment = Environment(details, [{"kind": "ConfigMap"}])
    return self.environment


def fake_teardown(self, *, keep=False, why=""):
    log("teardown", self.spec.name, os.environ.get("PYTEST_XDIST_WORKER", "-"), time.time(),
        "keep" if keep else "delete", why)
    if keep:
        self.session.reporter.summary(f"kept namespace {self.namespace} ({why})")


fresh.FreshProvisioning.setup = fake_setup
fresh.FreshProvisioning.teardown = fake_teardown

from kubefixtures import environment

shop = environment("manifests/")
"""

TESTS = """
import os
import time

import pytest

from conftest import log


@pytest.mark.parametrize("index", range({count}))
def test_uses_shop(shop, index):
    time.sleep(0.05)
    assert shop.secrets["token"] == "s3cret-token"
    assert shop.objects == ({{"kind": "ConfigMap"}},)
    log("test", index, os.environ.get("PYTEST_XDIST_WORKER", "-"), time.time(), shop.namespace)
    {assertion}
"""


def project(pytester: pytest.Pytester, count: int = 12, assertion: str = "") -> None:
    pytester.makeconftest(FAKE)
    (pytester.path / "manifests").mkdir()
    pytester.makepyfile(test_shop=TESTS.format(count=count, assertion=assertion or "pass"))


def calls(pytester: pytest.Pytester, kind: str) -> list[list[str]]:
    lines = (pytester.path / "calls.log").read_text().splitlines()
    return [line.split()[1:] for line in lines if line.split()[0] == kind]


def test_one_worker_brings_the_environment_up_and_all_share_it(pytester: pytest.Pytester) -> None:
    project(pytester)
    result = pytester.runpytest_subprocess("-n", "3", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=12)
    [setup] = calls(pytester, "setup")
    [teardown] = calls(pytester, "teardown")
    tests = calls(pytester, "test")
    assert setup[1] == teardown[1]  # the manager tears down
    assert len({test[1] for test in tests}) == 3  # every worker ran tests
    assert len({test[3] for test in tests}) == 1  # all in the manager's namespace
    # Only after the last test of any worker.
    assert float(teardown[2]) > max(float(test[2]) for test in tests)
    assert teardown[3] == "delete"


def test_a_failure_on_any_worker_keeps_the_shared_environment(pytester: pytest.Pytester) -> None:
    project(pytester, assertion="assert index != 7")
    result = pytester.runpytest_subprocess(
        "-n", "3", "-p", "no:cacheprovider", "--kubefixtures-keep-on-failure"
    )
    result.assert_outcomes(passed=11, failed=1)
    [teardown] = calls(pytester, "teardown")
    assert teardown[3:] == [
        "keep",
        "1",
        "failed",
        "test(s),",
        "first",
        "test_shop.py::test_uses_shop[7]",
    ]
    # The worker's summary line reaches the controller's terminal.
    result.stdout.fnmatch_lines(
        ["*= kubefixtures =*", "kept namespace kf-shop-* (1 failed test(s)*"]
    )


def test_without_xdist_nothing_changes(pytester: pytest.Pytester) -> None:
    project(pytester, count=3)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)
    assert [setup[1] for setup in calls(pytester, "setup")] == ["-"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "*missing.json: cannot read the details file: *No such file or directory*"),
        (
            {"version": 2, "name": "shop", "namespace": "ns", "session_id": "s"},
            "*details.json: details field version: version 2 is not 1 *",
        ),
        (
            {"version": 1, "name": "cache", "namespace": "ns", "session_id": "s"},
            "*KUBEFIXTURES_DETAILS=*details.json: no environment named 'shop' (the file(s) "
            "hold 'cache')*",
        ),
    ],
)
def test_details_file_errors_are_one_line(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    content: dict[str, object] | None,
    message: str,
) -> None:
    project(pytester, count=2)
    path = pytester.path / ("details.json" if content else "missing.json")
    if content is not None:
        path.write_text(json.dumps(content))
    monkeypatch.setenv("KUBEFIXTURES_DETAILS", str(path))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines([message])
    result.stdout.no_fnmatch_line("*Traceback*")
    assert not Path(pytester.path / "calls.log").exists()  # nothing was brought up
