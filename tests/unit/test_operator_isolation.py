"""The plugin, the CLI and the session side never import kopf or the operator."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    "module",
    [
        "kubefixtures",
        "kubefixtures.plugin",
        "kubefixtures.cli",
        "kubefixtures.leases.renewal",
        "kubefixtures.leases.reaping",
    ],
)
def test_importing_does_not_pull_in_kopf(module: str) -> None:
    code = (
        f"import sys, {module}\n"
        "from kubefixtures.cli import build_parser\n"
        "build_parser()\n"
        "loaded = sorted(m for m in sys.modules if m == 'kopf' or m.startswith(('kopf.', "
        "'kubefixtures.operator')))\n"
        "print(','.join(loaded))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""
