"""Rendering the operator's Helm chart with the project's own helm, for the chart's tests.

helm is built by `kubefixtures cluster up` (and `make test`, `make demo`) and linked next to
the project's Python. Without it these tests skip, except under CI (``CI=true``), where a
missing helm is a failure: CI must never pass by skipping them.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubefixtures.cluster.tools import find_tool

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "charts" / "kubefixtures-operator"
MANIFESTS = ROOT / "manifests" / "operator"
RELEASE = "kubefixtures-operator"
NAMESPACE = "kubefixtures-system"

# Value sets the tests render, lint and (tests/integration/test_chart.py) dry-run on a cluster.
VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "existing service account, no RBAC": {
        "rbac": {"create": False},
        "serviceAccount": {"create": False, "name": "reaper"},
    },
    "custom image": {
        "image": {
            "repository": "registry.example.com:5000/kf/operator",
            "tag": "9.9.9-rc1",
            "pullPolicy": "Always",
        },
        "imagePullSecrets": [{"name": "registry-a"}, {"name": "registry-b"}],
    },
    "security contexts overridden": {
        "podSecurityContext": {"runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 1000},
        "securityContext": {"readOnlyRootFilesystem": None, "runAsUser": 1001},
    },
    "everything else": {
        "grace": 2.5,
        "selector": "kubefixtures.io/ci-job in (a, b)",
        "verbose": True,
        "fullnameOverride": "reaper",
        "serviceAccount": {"annotations": {"iam.example.com/role": "reaper"}},
        "reaper": {
            "clusterScopedKinds": [
                {"apiGroup": "apiextensions.k8s.io", "resource": "customresourcedefinitions"},
                {"apiGroup": "", "resource": "persistentvolumes"},
            ]
        },
        "resources": {"requests": {"cpu": 0.5, "memory": "64Mi"}},
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "ci", "operator": "Exists", "effect": "NoSchedule"}],
        "affinity": {"nodeAffinity": {}},
        "podAnnotations": {"example.com/scrape": "false"},
        "podLabels": {"team": "ci"},
    },
    "pools": {
        "pool": {
            "maxNamespaces": 12,
            "kinds": [
                {"apiGroup": "", "resource": "services"},
                {"apiGroup": "batch", "resource": "jobs"},
            ],
        }
    },
}


def helm() -> Path:
    found = find_tool("helm")
    if found is None:
        reason = "helm is not installed (`kubefixtures cluster up` builds it)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI=true but {reason}", pytrace=False)
        pytest.skip(reason)
    return found


def run_helm(
    command: str,
    values: Mapping[str, Any] | None = None,
    *args: str,
    namespace: str = NAMESPACE,
) -> subprocess.CompletedProcess[str]:
    """``helm COMMAND`` on the chart, with ``values`` given as a values file on stdin."""
    argv = [str(helm()), command]
    if command == "template":
        argv.append(RELEASE)
    argv += [str(CHART), "--namespace", namespace, "--values", "-", *args]
    return subprocess.run(
        argv,
        input=yaml.safe_dump(dict(values or {})),
        capture_output=True,
        text=True,
        timeout=60,
    )


def render(values: Mapping[str, Any] | None = None, *args: str) -> list[dict[str, Any]]:
    """The objects ``helm template`` makes of the chart with ``values``."""
    result = run_helm("template", values, *args)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def refusal(values: Mapping[str, Any]) -> str:
    """helm's error for ``values``, which ``helm template`` and ``helm lint`` must refuse."""
    template = run_helm("template", values)
    assert template.returncode != 0, f"helm template accepted {values}"
    lint = run_helm("lint", values)
    assert lint.returncode != 0, f"helm lint accepted {values}"
    return template.stderr


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["kind"] == kind]


def the(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (doc,) = by_kind(docs, kind)
    return doc


def pod_spec(docs: list[dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = the(docs, "Deployment")["spec"]["template"]["spec"]
    return spec
