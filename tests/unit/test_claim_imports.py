"""What bringing an environment up imports (the modules the plugin loads in the background
once pytest is configured, kubefixtures.factories): collection waits for them, so a claimed
spare reaches its test only after them. What only some environments need stays out."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import kubefixtures.control

# Each loaded by the one place that needs it, when it does.
LEFT_OUT = (
    # Imported by the main thread once the environments are started (after collection),
    # so that it overlaps their round trips to the cluster: factories.import_models.
    "pydantic",
    "kubefixtures.details",
    "kubefixtures.kube.portforward._tunnel",  # a forward that tunnels (not a direct route)
    "kubefixtures.kube.portforward._wsconn",
    "kubefixtures.kube.portforward._spdy",
    "kubefixtures.kube.portforward._v4",
    "kubefixtures.control._core",  # a test that uses a control (env.exec, env.logs...)
    "kubefixtures.control._aio",
    "tarfile",
    "kubefixtures.leases.cluster_scoped",  # an environment with cluster-scoped objects
    "kubefixtures.leases.reaping",
)


def test_the_background_import_leaves_out_what_a_claim_does_not_use() -> None:
    code = (
        "import importlib, json, sys\n"
        "from kubefixtures import factories\n"
        "for name in factories._PRELOADED:\n"
        "    importlib.import_module(name)\n"
        "import kubefixtures.provisioning.pooled\n"
        f"print(json.dumps([m for m in {list(LEFT_OUT)!r} if m in sys.modules]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_the_models_come_with_import_models() -> None:
    code = (
        "import sys\n"
        "from kubefixtures import factories\n"
        "factories.import_models()\n"
        "print('kubefixtures.details' in sys.modules, 'kubefixtures.report.model' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "True"]


@pytest.mark.parametrize(
    "name",
    ["AsyncControls", "ExecError", "ExecResult", "Target", "applied_objects", "parse_target"],
)
def test_the_controls_names_are_still_there(name: str) -> None:
    assert getattr(kubefixtures.control, name).__name__ == name
    assert name in kubefixtures.control.__all__


def test_an_unknown_control_name_raises_attribute_error() -> None:
    with pytest.raises(AttributeError, match="nope"):
        kubefixtures.control.nope  # noqa: B018
