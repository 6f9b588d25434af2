"""What the operator's chart renders, with each value set the unit tests use, is accepted by
a real API server (server-side dry run: nothing is stored). The plain manifests are the
defaults' output (tests/unit/test_operator_manifests.py); tests/integration/test_operator.py
installs the chart for real."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest

from kubefixtures.cluster.tools import find_tool
from tests.chart_support import VALUE_SETS, run_helm

pytestmark = pytest.mark.cluster

# Server-side dry runs need namespaces that exist; nothing is created in them.
EXISTING_NAMESPACE = "default"


def dry_run(manifest: str) -> subprocess.CompletedProcess[str]:
    kubectl = find_tool("kubectl")
    assert kubectl is not None, "kubectl is needed by the chart's integration tests"
    return subprocess.run(
        [str(kubectl), "apply", "--dry-run=server", "-f", "-"],
        input=manifest,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("values", VALUE_SETS.values(), ids=VALUE_SETS.keys())
def test_the_api_server_accepts_what_the_chart_renders(values: dict[str, Any]) -> None:
    rendered = run_helm("template", values, namespace=EXISTING_NAMESPACE)
    assert rendered.returncode == 0, rendered.stderr
    result = dry_run(rendered.stdout)
    assert result.returncode == 0, result.stderr
    assert "(server dry run)" in result.stdout
