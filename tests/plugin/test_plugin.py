"""The plugin as users meet it, through pytester: options and ini keys, fixture scoping,
keep-on-failure, error messages and the terminal line. No cluster: where a test needs an
environment to come up, the inner conftest replaces the provisioning's cluster steps."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from kubefixtures.settings import OPTIONS

pytest_plugins = ["pytester"]

# Replaces FreshProvisioning.setup/teardown (the cluster steps) and logs every call to calls.log.
FAKE_LIFECYCLE = """
import importlib
import time
from pathlib import Path

from kubefixtures.details import Environment, EnvironmentDetails

# Through sys.modules: pytester drops modules first imported by an earlier in-process run,
# while the package attribute `kubefixtures.provisioning.fresh` would name the old module.
fresh = importlib.import_module("kubefixtures.provisioning.fresh")

LOG = Path(__file__).parent / "calls.log"


def log(*words):
    with LOG.open("a") as out:
        out.write(" ".join(str(word) for word in words) + "\\n")


def fake_setup(self):
    self._started = time.monotonic()
    self.namespace = "kf-" + self.spec.name + "-fake01"
    log("setup", self.spec.name, self.timeout, [path.name for path in self.spec.sources])
    details = EnvironmentDetails(
        name=self.spec.name, namespace=self.namespace, session_id=self.session.session_id
    )
    self.environment = Environment(details, [])
    return self.environment


def fake_teardown(self, *, keep=False, why=""):
    log("teardown", self.spec.name, "keep" if keep else "delete", why)


real = (fresh.FreshProvisioning.setup, fresh.FreshProvisioning.teardown)
fresh.FreshProvisioning.setup = fake_setup
fresh.FreshProvisioning.teardown = fake_teardown


def pytest_unconfigure(config):
    # The outer session may share the module: later runs must see the real provisioning.
    fresh.FreshProvisioning.setup, fresh.FreshProvisioning.teardown = real
"""


def calls(pytester: pytest.Pytester) -> list[str]:
    log = pytester.path / "calls.log"
    return log.read_text().splitlines() if log.exists() else []


def all_output(result: pytest.RunResult) -> pytest.LineMatcher:
    """stdout and stderr together (conftest import errors go to stderr)."""
    return pytest.LineMatcher(result.outlines + result.errlines)


def fake_project(pytester: pytest.Pytester, declarations: str) -> None:
    pytester.makeconftest(
        FAKE_LIFECYCLE + "\nfrom kubefixtures import environment\n" + declarations
    )
    (pytester.path / "manifests").mkdir()


def test_every_setting_is_an_option_and_an_ini_key(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help")
    for option in OPTIONS:
        result.stdout.fnmatch_lines([f"*{option.flag}*"])
        result.stdout.fnmatch_lines([f"*{option.ini} *"])


def test_options_and_ini_keys_reach_the_settings(pytester: pytest.Pytester) -> None:
    pytester.makeini(
        """
        [pytest]
        kubefixtures_context = from-ini
        kubefixtures_ready_timeout = 42
        kubefixtures_image_overrides =
            redis:7=local/redis:7.0
            nginx=local/nginx
        """
    )
    pytester.makepyfile(
        """
        from kubefixtures.session import session_state

        def test_settings(pytestconfig):
            settings = session_state(pytestconfig).settings
            assert settings.context == "from-option"
            assert settings.ready_timeout == 42
            assert settings.keep_on_failure is True
            assert dict(settings.image_overrides) == {
                "redis:7": "local/redis:7.0", "nginx": "local/nginx", "busybox": "local/bb"
            }
        """
    )
    result = pytester.runpytest(
        "--kubefixtures-context=from-option",
        "--kubefixtures-keep-on-failure",
        "--kubefixtures-image-overrides=busybox=local/bb",
    )
    result.assert_outcomes(passed=1)


def test_a_bad_setting_is_a_one_line_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_nothing(): pass")
    result = pytester.runpytest("--kubefixtures-ready-timeout=soon")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: kubefixtures: --kubefixtures-ready-timeout (ini kubefixtures_ready_timeout): "
            "'soon' is not a number of seconds"
        ]
    )


def test_session_scope_brings_an_environment_up_once(pytester: pytest.Pytester) -> None:
    fake_project(pytester, 'shop = environment("manifests/")\n')
    pytester.makepyfile(
        test_a="def test_one(shop): pass\ndef test_two(shop): pass\n",
        test_b="def test_three(shop):\n    assert shop.namespace == 'kf-shop-fake01'\n",
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=3)
    assert calls(pytester) == ["setup shop 180.0 ['manifests']", "teardown shop delete "]


def test_module_and_function_scopes(pytester: pytest.Pytester) -> None:
    fake_project(
        pytester,
        'per_module = environment("manifests/", scope="module", timeout=5)\n'
        'per_test = environment("manifests/", scope="function")\n',
    )
    pytester.makepyfile(
        test_a=(
            "def test_one(per_module, per_test): pass\ndef test_two(per_module, per_test): pass\n"
        ),
        test_b="def test_three(per_module): pass\n",
    )
    result = pytester.runpytest("-p", "no:randomly")
    result.assert_outcomes(passed=3)
    setups = [line for line in calls(pytester) if line.startswith("setup")]
    assert setups == [
        "setup per_module 5 ['manifests']",
        "setup per_test 180.0 ['manifests']",
        "setup per_test 180.0 ['manifests']",
        "setup per_module 5 ['manifests']",
    ]


def test_name_overrides_the_variable_name(pytester: pytest.Pytester) -> None:
    fake_project(pytester, '_declared = environment("manifests/", name="store")\n')
    pytester.makepyfile("def test_it(store):\n    assert store.name == 'store'\n")
    pytester.runpytest().assert_outcomes(passed=1)


def test_the_terminal_line_names_environment_namespace_and_objects(
    pytester: pytest.Pytester,
) -> None:
    fake_project(pytester, 'shop = environment("manifests/")\n')
    pytester.makepyfile("def test_it(shop): pass\n")
    result = pytester.runpytest()
    result.stdout.fnmatch_lines(
        ["kubefixtures: environment 'shop' ready in *s: namespace kf-shop-fake01, 0 objects"]
    )


@pytest.mark.parametrize(
    ("options", "outcome", "teardown"),
    [
        ((), "failed", "teardown shop delete "),
        (("--kubefixtures-keep-on-failure",), "passed", "teardown shop delete "),
        (
            ("--kubefixtures-keep-on-failure",),
            "failed",
            "teardown shop keep 1 failed test(s), first test_it.py::test_it",
        ),
    ],
)
def test_keep_on_failure_keeps_only_environments_of_failed_tests(
    pytester: pytest.Pytester, options: tuple[str, ...], outcome: str, teardown: str
) -> None:
    fake_project(pytester, 'shop = environment("manifests/")\nother = environment("manifests/")\n')
    assertion = "assert False" if outcome == "failed" else "pass"
    pytester.makepyfile(
        test_it=f"def test_it(shop):\n    {assertion}\n",
        test_other="def test_other(other):\n    assert False\n",
    )
    result = pytester.runpytest(*options)
    counts = {"passed": 0, "failed": 1}  # test_other always fails
    counts[outcome] += 1
    result.assert_outcomes(**counts)
    assert teardown in calls(pytester)


def test_declaration_errors_are_raised_when_the_conftest_loads(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        "from kubefixtures import environment\nshop = environment(values={'namespace': 'x'})\n"
    )
    pytester.makepyfile("def test_it(): pass")
    result = pytester.runpytest()
    all_output(result).fnmatch_lines(["*TypeError: environment() needs at least one source*"])
    pytester.makeconftest(
        "from kubefixtures import environment\n"
        "shop = environment('m/', values={'namespace': 'x'})\n"
    )
    result = pytester.runpytest()
    all_output(result).fnmatch_lines(
        ["*ValueError: environment(values=...): namespace are built-in placeholders*"]
    )
    pytester.makeconftest(
        "from kubefixtures import environment\nshop = environment('m/', scope='year')\n"
    )
    result = pytester.runpytest()
    all_output(result).fnmatch_lines(["*environment(scope='year'): scope must be one of session*"])
    pytester.makeconftest(
        "from kubefixtures import environment\nshop = environment('m/', values_files='v.yaml')\n"
    )
    result = pytester.runpytest()
    all_output(result).fnmatch_lines(["*environment(values_files=...) takes a list of files*"])


def test_a_render_error_is_one_line_naming_file_line_and_placeholder(
    pytester: pytest.Pytester,
) -> None:
    manifests = pytester.path / "manifests"
    manifests.mkdir()
    (manifests / "cm.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\ndata:\n  a: ${missing}\n"
    )
    pytester.makeconftest("from kubefixtures import environment\nshop = environment('manifests')\n")
    pytester.makepyfile("def test_it(shop): pass\n")
    # No cluster is needed to find the mistake, and none is contacted successfully.
    result = pytester.runpytest("--kubefixtures-kubeconfig=/nonexistent/kubeconfig")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*_ ERROR at setup of test_it _*",
            f"{manifests / 'cm.yaml'}:6: unknown placeholder ${{missing}}",
            "*= short test summary info =*",
        ]
    )
    result.stdout.no_fnmatch_line("*Traceback*")
    result.stdout.no_fnmatch_line("*During handling*")


def test_a_missing_kubeconfig_is_one_line(pytester: pytest.Pytester) -> None:
    (pytester.path / "manifests").mkdir()
    (pytester.path / "manifests" / "cm.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n"
    )
    pytester.makeconftest("from kubefixtures import environment\nshop = environment('manifests')\n")
    pytester.makepyfile("def test_it(shop): pass\ndef test_again(shop): pass\n")
    result = pytester.runpytest("--kubefixtures-kubeconfig=/nonexistent/kubeconfig")
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(
        [
            "kubeconfig /nonexistent/kubeconfig does not exist "
            "(set --kubefixtures-kubeconfig or KUBECONFIG)"
        ]
    )


UNREACHABLE_KUBECONFIG = """
apiVersion: v1
kind: Config
clusters:
  - name: nowhere
    cluster:
      server: https://127.0.0.1:{port}
      insecure-skip-tls-verify: true
users:
  - name: someone
    user:
      token: not-a-real-token
contexts:
  - name: nowhere
    context: {{cluster: nowhere, user: someone}}
current-context: nowhere
"""


def test_an_unreachable_cluster_is_one_line_naming_the_context(
    pytester: pytest.Pytester, tmp_path: Path
) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(UNREACHABLE_KUBECONFIG.format(port=port))
    (pytester.path / "manifests").mkdir()
    (pytester.path / "manifests" / "cm.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n"
    )
    pytester.makeconftest("from kubefixtures import environment\nshop = environment('manifests')\n")
    pytester.makepyfile("def test_it(shop): pass\n")
    result = pytester.runpytest(f"--kubefixtures-kubeconfig={kubeconfig}", "-p", "no:logging")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [f"context nowhere (https://127.0.0.1:{port}) is unreachable: *Connection refused*"]
    )
    result.stdout.no_fnmatch_line("*Traceback*")


def test_an_unknown_context_is_one_line(pytester: pytest.Pytester, tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(UNREACHABLE_KUBECONFIG.format(port=1))
    (pytester.path / "m.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n")
    pytester.makeconftest("from kubefixtures import environment\nshop = environment('m.yaml')\n")
    pytester.makepyfile("def test_it(shop): pass\n")
    result = pytester.runpytest(
        f"--kubefixtures-kubeconfig={kubeconfig}", "--kubefixtures-context=elsewhere"
    )
    result.stdout.fnmatch_lines([f"kubeconfig {kubeconfig}: no context named 'elsewhere'"])


def test_a_suite_without_environments_never_imports_the_kubernetes_client(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        import sys

        def test_it():
            assert "kubernetes" not in sys.modules
            assert "pydantic" not in sys.modules
            assert "kubefixtures.provisioning.dispatch" not in sys.modules
        """
    )
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=1)


def test_a_suite_with_environments_imports_them_before_collecting_never_beside_it(
    pytester: pytest.Pytester, tmp_path: Path
) -> None:
    # What the first environment needs is imported in the background from pytest_configure
    # on; test modules import what they like as they are collected, so collection waits.
    pytester.makeconftest("from kubefixtures import environment\nshop = environment('m')\n")
    pytester.makepyfile(
        """
        import sys
        import threading

        IMPORTED = "kubefixtures.provisioning.dispatch" in sys.modules
        IMPORTING = [t for t in threading.enumerate() if t.name == "kubefixtures-import"]

        def test_it():
            assert IMPORTED
            assert not [t for t in IMPORTING if t.is_alive()]
        """
    )
    result = pytester.runpytest_subprocess(f"--kubefixtures-kubeconfig={tmp_path / 'none'}")
    result.assert_outcomes(passed=1)


def test_kubefixtures_modules_are_imported_without_assertion_rewriting(
    pytester: pytest.Pytester, tmp_path: Path
) -> None:
    # pytest marks every module of a plugin's distribution for assertion rewriting, whose
    # import hook costs CPU on a first environment's path; ours opts its modules out (the
    # plugin module itself is imported before it can).
    pytester.makeconftest("from kubefixtures import environment\nshop = environment('m')\n")
    pytester.makepyfile(
        """
        import importlib

        from _pytest.assertion.rewrite import AssertionRewritingHook

        def test_it():
            for name in ("kubefixtures.kube.client", "kubefixtures.provisioning.fresh"):
                loader = importlib.import_module(name).__loader__
                assert not isinstance(loader, AssertionRewritingHook), name
        """
    )
    result = pytester.runpytest_subprocess(f"--kubefixtures-kubeconfig={tmp_path / 'none'}")
    result.assert_outcomes(passed=1)


def test_assertions_in_tests_and_conftests_are_still_rewritten(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        "from kubefixtures import environment\nshop = environment('m')\n"
        "def check(value):\n    assert value == 2\n"
    )
    pytester.makepyfile(
        """
        from conftest import check

        def test_in_the_test():
            value = 1
            assert value == 2

        def test_in_the_conftest():
            check(1)
        """
    )
    result = pytester.runpytest_subprocess("--kubefixtures-kubeconfig=none")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["*assert 1 == 2*", "*assert 1 == 2*"])


ORDERED_TESTS = """
import time
from pathlib import Path

LOG = Path(__file__).parent / "calls.log"


def test_first():
    # With prestart, the environment comes up in the background before its first test:
    # give that thread a moment, then note what this test saw.
    deadline = time.monotonic() + float(__import__("os").environ.get("WAIT_FOR_SETUP", "0"))
    while time.monotonic() < deadline and "setup" not in (LOG.read_text() if LOG.exists() else ""):
        time.sleep(0.01)
    with LOG.open("a") as out:
        out.write("test_first ran\\n")


def test_second(shop):
    pass
"""


def test_prestart_brings_environments_up_before_their_first_test(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_project(pytester, 'shop = environment("manifests/")\n')
    pytester.makepyfile(test_order=ORDERED_TESTS)
    monkeypatch.setenv("WAIT_FOR_SETUP", "10")
    pytester.runpytest().assert_outcomes(passed=2)
    log = calls(pytester)
    assert log.index("setup shop 180.0 ['manifests']") < log.index("test_first ran")


def test_prestart_can_be_turned_off(pytester: pytest.Pytester) -> None:
    fake_project(pytester, 'shop = environment("manifests/")\n')
    pytester.makepyfile(test_order=ORDERED_TESTS)
    pytester.runpytest("--kubefixtures-prestart=false").assert_outcomes(passed=2)
    log = calls(pytester)
    assert log.index("test_first ran") < log.index("setup shop 180.0 ['manifests']")


def test_an_environment_no_test_claimed_is_torn_down(pytester: pytest.Pytester) -> None:
    fake_project(pytester, 'shop = environment("manifests/")\n')
    pytester.makepyfile(
        "def test_fails():\n    assert False\n\ndef test_never_runs(shop):\n    pass\n"
    )
    pytester.runpytest("-x").assert_outcomes(failed=1)
    assert calls(pytester) == ["setup shop 180.0 ['manifests']", "teardown shop delete "]


@pytest.mark.parametrize("option", ["--collect-only", "--setup-plan"])
def test_listing_tests_brings_nothing_up(pytester: pytest.Pytester, option: str) -> None:
    fake_project(pytester, 'shop = environment("manifests/")\n')
    pytester.makepyfile("def test_it(shop):\n    pass\n")
    pytester.runpytest(option)
    assert calls(pytester) == []
