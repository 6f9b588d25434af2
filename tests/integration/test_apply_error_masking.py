"""Errors of a setup quote what the cluster says, which may hold one of the environment's
secrets: an object the apiserver rejects (its message quotes the bad value), a container
that cannot start (its events and state quote its command). The error shown has it masked."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]
# Read now: pytester points HOME at a temporary directory while a test runs.
KUBECONFIG = os.environ.get("KUBECONFIG") or str(Path.home() / ".kube" / "config")
pytestmark = pytest.mark.cluster


def secret_and(secret: str, manifest: str) -> str:
    """A Secret holding ``secret``, and ``manifest`` (which quotes it)."""
    return (
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\n"
        f"stringData:\n  password: {secret}\n---\n{manifest}"
    )


def set_up(pytester: pytest.Pytester, name: str, manifest: str, timeout: float = 60) -> str:
    """Run a suite whose one test uses environment ``name`` of ``manifest``: its output."""
    (pytester.path / "env").mkdir()
    (pytester.path / "env" / "app.yaml").write_text(manifest)
    pytester.makeconftest(
        f"from kubefixtures import environment\n{name} = environment('env', timeout={timeout})\n"
    )
    pytester.makepyfile(f"def test_uses_it({name}):\n    pass\n")
    result = pytester.runpytest_inprocess(
        "-p", "no:cacheprovider", f"--kubefixtures-kubeconfig={KUBECONFIG}"
    )
    result.assert_outcomes(errors=1)
    return "\n".join(result.outlines + result.errlines)


def test_an_apply_error_quoting_a_secret_shows_it_masked(pytester: pytest.Pytester) -> None:
    secret = f"leaked-{secrets.token_hex(8)}"
    service = (
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n"
        f"spec:\n  type: {secret}\n  ports:\n  - port: 80\n"
    )
    output = set_up(pytester, f"rejected_{secrets.token_hex(3)}", secret_and(secret, service))
    pytest.LineMatcher(output.splitlines()).fnmatch_lines(
        ["*service/web was rejected*Unsupported value: ?********?*"]
    )
    assert secret not in output


def test_a_readiness_failure_quoting_a_secret_shows_it_masked(pytester: pytest.Pytester) -> None:
    # The container's command is the secret: the runtime cannot start it and says so, quoting
    # it, in the container's state and the pod's events, which the readiness error shows.
    secret = f"/leaked-{secrets.token_hex(8)}"
    pod = (
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: app\nspec:\n  containers:\n"
        "  - name: app\n    image: kubefixtures.local/redis:7.0\n"
        f"    imagePullPolicy: IfNotPresent\n    command: [{secret!r}]\n"
    )
    name = f"unready_{secrets.token_hex(3)}"
    output = set_up(pytester, name, secret_and(secret, pod), timeout=20)
    assert f"environment {name!r} timed out" in output, output
    assert "********" in output, output  # the runtime's words made it into the error
    assert secret not in output
    assert secret.lstrip("/") not in output
