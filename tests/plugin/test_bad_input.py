"""Bad input, as users meet it through pytest (pytester, no cluster): one line naming the
option or file, no traceback, no INTERNALERROR."""

from __future__ import annotations

import os

import pytest

pytest_plugins = ["pytester"]


@pytest.mark.parametrize(
    "option",
    [
        "--kubefixtures-lease-duration=inf",
        "--kubefixtures-keep-for=1e15",
        "--kubefixtures-ready-timeout=nan",
        "--kubefixtures-log-lines=99999999999",
        "--kubefixtures-pool=101",
        "--kubefixtures-pool-max-age=inf",
    ],
)
def test_an_out_of_range_option_stops_pytest_before_anything_runs(
    pytester: pytest.Pytester, option: str
) -> None:
    pytester.makepyfile("def test_nothing(): pass")
    result = pytester.runpytest(option)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    name = option.partition("=")[0]
    result.stderr.fnmatch_lines([f"ERROR: kubefixtures: {name} (ini *): * is out of range*"])
    result.stderr.no_fnmatch_line("*Traceback*")


def test_an_alias_bomb_is_a_render_error_before_the_cluster_is_needed(
    pytester: pytest.Pytester,
) -> None:
    manifests = pytester.path / "manifests"
    manifests.mkdir()
    levels = ['  a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    levels += [
        f"  {name}: &{name} [{', '.join([f'*{previous}'] * 9)}]"
        for previous, name in zip("abcdefgh", "bcdefghi", strict=True)
    ]
    (manifests / "bomb.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\ndata:\n" + "\n".join(levels) + "\n"
    )
    pytester.makeconftest("from kubefixtures import environment\nshop = environment('manifests')\n")
    pytester.makepyfile("def test_it(shop): pass\n")
    # The kubeconfig does not exist: rendering fails first, so no cluster is ever needed.
    result = pytester.runpytest("--kubefixtures-kubeconfig=/nonexistent/kubeconfig")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [f"{manifests / 'bomb.yaml'}:*: the objects expand to more than 16 MiB here*"]
    )
    result.stdout.no_fnmatch_line("*Traceback*")


# On each xdist worker: creating files in the shared temp directory is refused, as in a
# read-only one (the tests run as root, which no file mode stops).
UNWRITABLE_SHARED_DIRECTORY = """
import os
from pathlib import Path

import os

import pytest

from kubefixtures import environment
from kubefixtures.details import Environment, EnvironmentDetails

shop = environment("manifests/")


def pytest_configure(config):
    workerinput = getattr(config, "workerinput", None)
    if workerinput is None:
        return
    shared = str(Path(config.option.basetemp).parent)
    real_open = os.open

    def refusing_open(path, flags, *args, **kwargs):
        if str(path).startswith(shared) and flags & os.O_CREAT:
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args, **kwargs)

    os.open = refusing_open

    import importlib

    fresh = importlib.import_module("kubefixtures.provisioning.fresh")

    def fake_setup(self):
        details = EnvironmentDetails(
            name=self.spec.name, namespace="kf-fake", session_id=self.session.session_id
        )
        self.environment = Environment(details, [])
        return self.environment

    fresh.FreshProvisioning.setup = fake_setup
    fresh.FreshProvisioning.teardown = lambda self, *, keep=False, why="": None
"""


def test_an_unwritable_shared_temp_dir_under_xdist_is_one_line_not_an_internal_error(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(UNWRITABLE_SHARED_DIRECTORY)
    (pytester.path / "manifests").mkdir()
    pytester.makepyfile("def test_one(shop): pass\ndef test_two(shop): pass\n")
    result = pytester.runpytest_subprocess("-n", "2", "-p", "no:cacheprovider", "-rA")
    result.assert_outcomes(passed=2)
    output = "\n".join(result.outlines + result.errlines)
    assert "INTERNALERROR" not in output
    result.stdout.fnmatch_lines(
        [
            "kubefixtures: not sharing environments with other workers: *.lock: cannot update "
            "the xdist state file: Permission denied"
        ]
    )


def test_a_bad_ready_probe_fails_when_the_conftest_loads(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        "from kubefixtures import environment\n"
        "shop = environment('m/', ready={'web': 'http:healthz'})\n"
    )
    pytester.makepyfile("def test_it(): pass")
    result = pytester.runpytest()
    assert result.ret != pytest.ExitCode.OK
    text = "\n".join(result.outlines + result.errlines)
    assert "ValueError: environment(ready={'web': 'http:healthz'}): not a probe (use 'tcp'" in text


def test_a_ready_probe_of_an_unknown_service_is_one_line_before_the_cluster_is_needed(
    pytester: pytest.Pytester,
) -> None:
    (pytester.path / "m").mkdir()
    (pytester.path / "m" / "svc.yaml").write_text(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n"
        "spec:\n  selector: {app: web}\n  ports: [{port: 80, name: http}]\n"
    )
    pytester.makeconftest(
        "from kubefixtures import environment\n"
        "shop = environment('m/', ready={'wbe': 'http:/healthz'})\n"
    )
    pytester.makepyfile("def test_it(shop): pass\n")
    result = pytester.runpytest("--kubefixtures-kubeconfig=/nonexistent/kubeconfig")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*environment 'shop': ready={'wbe': 'http:/healthz'}: no forwarded Service 'wbe' "
            "among its objects (its Services: web)"
        ]
    )
    result.stdout.no_fnmatch_line("*Traceback*")


FAILING_KUBECTL = """#!/bin/sh
echo "error: accumulating resources: accumulation err='accumulating resources from \
'deployment.yaml': open $2/deployment.yaml: no such file or directory'" >&2
exit 1
"""


def test_a_kustomize_failure_is_one_line_naming_the_directory(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = pytester.path / "bin"
    bin_dir.mkdir()
    (bin_dir / "kubectl").write_text(FAILING_KUBECTL)
    (bin_dir / "kubectl").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    overlay = pytester.path / "overlays" / "test"
    overlay.mkdir(parents=True)
    (overlay / "kustomization.yaml").write_text("resources: [deployment.yaml]\n")
    pytester.makeconftest(
        "from kubefixtures import environment\nshop = environment('overlays/test/')\n"
    )
    pytester.makepyfile("def test_it(shop): pass\n")
    result = pytester.runpytest("--kubefixtures-kubeconfig=/nonexistent/kubeconfig")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            f"{overlay}: kustomize failed: accumulating resources: accumulation "
            "err='accumulating resources from 'deployment.yaml': open "
            f"{overlay}/deployment.yaml: no such file or directory'"
        ]
    )
    result.stdout.no_fnmatch_line("*Traceback*")
