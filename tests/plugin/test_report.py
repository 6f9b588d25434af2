"""The timing report as users meet it (pytester, no cluster): one summary line per
environment, on the xdist controller too; ``--kubefixtures-report`` files; the header line.
The inner conftest replaces the provisioning's cluster steps with phases of its own."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from kubefixtures.report.model import SCHEMA_PATH

pytest_plugins = ["pytester"]

FAKE = """
import importlib
import time

from kubefixtures.details import Environment, EnvironmentDetails, ServiceDetails

fresh = importlib.import_module("kubefixtures.provisioning.fresh")


def fake_setup(self):
    self.phases.begin()
    with self.phases.phase("render"):
        time.sleep(0.01)
    with self.phases.phase("ready"):
        time.sleep({ready})
    self.namespace = "kf-" + self.spec.name + "-" + self.session.session_id
    web = ServiceDetails(
        name="web", namespace=self.namespace, port=41231, ports={{80: 41231}},
        url="http://127.0.0.1:41231",
    )
    details = EnvironmentDetails(
        name=self.spec.name, namespace=self.namespace, session_id=self.session.session_id,
        services={{"web": web}}, secrets={{"token": "s3cret-token"}},
    )
    self.environment = Environment(details, [{{"kind": "ConfigMap"}}])
    self.phases.end()
    return self.environment


def fake_teardown(self, *, keep=False, why=""):
    if keep:
        self.session.reporter.kept(
            self.namespace, self.spec.name, why,
            [f"kept namespace {{self.namespace}} ({{why}})",
             f"  kubectl -n {{self.namespace}} get all"],
        )


real = (fresh.FreshProvisioning.setup, fresh.FreshProvisioning.teardown)
fresh.FreshProvisioning.setup = fake_setup
fresh.FreshProvisioning.teardown = fake_teardown


def pytest_unconfigure(config):
    fresh.FreshProvisioning.setup, fresh.FreshProvisioning.teardown = real


from kubefixtures import environment

shop = environment("manifests/")
cache = environment("manifests/", scope="module")
"""

TESTS = """
import pytest


@pytest.mark.parametrize("index", range(6))
def test_uses_shop(shop, index):
    assert shop.secrets["token"] == "s3cret-token"
    {assertion}


def test_uses_cache(cache):
    pass
"""


def project(pytester: pytest.Pytester, assertion: str = "pass", ready: float = 0.3) -> None:
    pytester.makeconftest(FAKE.format(ready=ready))
    (pytester.path / "manifests").mkdir()
    pytester.makepyfile(test_shop=TESTS.format(assertion=assertion))


def validated(path: Path) -> dict[str, object]:
    data: dict[str, object] = json.loads(path.read_text())
    jsonschema.validate(data, json.loads(SCHEMA_PATH.read_text()))
    return data


def test_the_summary_has_one_line_per_environment_with_its_phases(
    pytester: pytest.Pytester,
) -> None:
    project(pytester)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=7)
    result.stdout.fnmatch_lines(
        [
            "*= kubefixtures =*",
            "shop: ready in 0.* s (fresh): namespace kf-shop-*, 0 objects, "
            "web http://127.0.0.1:41231 (forward) | render 0.0* ready 0.3* s",
            "cache: ready in 0.* s (fresh): namespace kf-cache-*, 0 objects, *",
        ]
    )


def test_the_xdist_controller_prints_every_workers_environment_lines(
    pytester: pytest.Pytester,
) -> None:
    project(pytester)
    result = pytester.runpytest_subprocess("-n", "2", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=7)
    # The session-scoped environment: one worker brought it up, the other used it.
    result.stdout.fnmatch_lines(
        [
            "*= kubefixtures =*",
            "shop: ready in 0.* s (fresh, xdist worker gw?): namespace kf-shop-*, 0 objects, "
            "web http://127.0.0.1:41231 (forward) | render 0.0* ready 0.3* s | shared with gw?",
        ]
    )
    # The module-scoped one: each worker that ran its test brought up its own.
    result.stdout.fnmatch_lines(["cache: ready in 0.* s (fresh, xdist worker gw?): *"])


def test_a_json_report_of_an_xdist_run_merges_the_workers(
    pytester: pytest.Pytester, tmp_path: Path
) -> None:
    project(pytester, assertion="assert index != 4")
    report = tmp_path / "session.json"
    result = pytester.runpytest_subprocess(
        "-n",
        "2",
        "-p",
        "no:cacheprovider",
        f"--kubefixtures-report={report}",
        "--kubefixtures-keep-on-failure",
    )
    result.assert_outcomes(passed=6, failed=1)
    result.stdout.fnmatch_lines([f"report: {report}"])
    data = validated(report)
    assert data["outcome"] == {
        "exit_status": 1,
        "passed": 6,
        "failed": 1,
        "errors": 0,
        "skipped": 0,
        "xfailed": 0,
        "xpassed": 0,
    }
    assert data["workers"] == ["gw0", "gw1"]
    environments = data["environments"]
    assert isinstance(environments, list)
    shop = [env for env in environments if env["name"] == "shop"]
    modes = sorted(env["mode"] for env in shop)
    assert modes == ["fresh", "shared"]
    manager = next(env for env in shop if env["mode"] == "fresh")
    assert list(manager["phases"]) == ["render", "ready"]
    assert manager["services"] == {
        "web": {
            "host": "127.0.0.1",
            "port": 41231,
            "url": "http://127.0.0.1:41231",
            "route": "forward",
        }
    }
    [kept] = data["kept_namespaces"]
    assert kept["environment"] == "shop"
    assert kept["commands"] == [f"kubectl -n {manager['namespace']} get all"]
    assert "s3cret-token" not in report.read_text()


def test_an_html_report_draws_every_environment(pytester: pytest.Pytester, tmp_path: Path) -> None:
    project(pytester, ready=0.05)
    pytester.makeini(f"[pytest]\nkubefixtures_report = {tmp_path / 'session.html'}\n")
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=7)
    text = (tmp_path / "session.html").read_text()
    assert 'data-environment="shop"' in text
    assert 'data-environment="cache"' in text
    assert 'data-phase="ready"' in text


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("report.txt", "'report.txt' must end in .json or .html (the report's format)"),
        ("nowhere/report.json", "'nowhere/report.json': directory * does not exist"),
    ],
)
def test_a_bad_report_path_is_a_one_line_usage_error(
    pytester: pytest.Pytester, value: str, problem: str
) -> None:
    pytester.makepyfile("def test_nothing(): pass")
    result = pytester.runpytest(f"--kubefixtures-report={value}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [f"ERROR: kubefixtures: --kubefixtures-report (ini kubefixtures_report): {problem}"]
    )


KUBECONFIG = """
apiVersion: v1
kind: Config
current-context: ci
clusters:
- {name: c, cluster: {server: "https://10.0.0.1:6443"}}
users:
- {name: u, user: {token: not-shown}}
contexts:
- {name: ci, context: {cluster: c, user: u}}
"""


def test_the_header_names_version_context_and_server(
    pytester: pytest.Pytester, tmp_path: Path
) -> None:
    from kubefixtures import __version__

    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(KUBECONFIG)
    project(pytester)
    # --collect-only: nothing connects; the header is there all the same.
    result = pytester.runpytest("--collect-only", f"--kubefixtures-kubeconfig={kubeconfig}")
    result.stdout.fnmatch_lines([f"kubefixtures {__version__}: cluster ci (https://10.0.0.1:6443)"])
    assert "not-shown" not in result.stdout.str()


def test_a_suite_without_environments_gets_no_header_line(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_nothing(): pass")
    # In a process of its own: declarations are counted per process.
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert "kubefixtures" not in result.stdout.str().replace("kubefixtures-0", "")
