"""An object the apiserver rejects: its message quotes the bad value, which may be one of
the environment's secrets; the error shown has it masked."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]
# Read now: pytester points HOME at a temporary directory while a test runs.
KUBECONFIG = os.environ.get("KUBECONFIG") or str(Path.home() / ".kube" / "config")
pytestmark = pytest.mark.cluster


def test_an_apply_error_quoting_a_secret_shows_it_masked(pytester: pytest.Pytester) -> None:
    secret = f"leaked-{secrets.token_hex(8)}"
    manifest = (
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\n"
        f"stringData:\n  password: {secret}\n"
        "---\n"
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n"
        f"spec:\n  type: {secret}\n  ports:\n  - port: 80\n"
    )
    name = f"rejected_{secrets.token_hex(3)}"
    (pytester.path / "env").mkdir()
    (pytester.path / "env" / "app.yaml").write_text(manifest)
    pytester.makeconftest(f"from kubefixtures import environment\n{name} = environment('env')\n")
    pytester.makepyfile(f"def test_uses_it({name}):\n    pass\n")
    result = pytester.runpytest_inprocess(
        "-p", "no:cacheprovider", f"--kubefixtures-kubeconfig={KUBECONFIG}"
    )
    output = "\n".join(result.outlines + result.errlines)
    pytest.LineMatcher(output.splitlines()).fnmatch_lines(
        ["*service/web was rejected*Unsupported value: ?********?*"]
    )
    assert secret not in output
