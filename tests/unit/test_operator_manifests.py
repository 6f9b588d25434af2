"""The operator's Helm chart and its plain manifests: least-privilege RBAC, a hardened pod,
and the two install paths kept equal."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "kubefixtures-operator"
MANIFESTS = ROOT / "manifests" / "operator"
HELM_ONLY_LABELS = ("helm.sh/chart", "app.kubernetes.io/managed-by")


def helm() -> str:
    found = shutil.which("helm") or shutil.which("helm", path=str(ROOT / ".venv" / "bin"))
    if found is None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("CI=true but helm is not installed")
        pytest.skip("helm is not installed")
    return found


def render(*values: str, namespace: str = "kubefixtures-system") -> list[dict[str, Any]]:
    command = [helm(), "template", "kubefixtures-operator", str(CHART), "-n", namespace]
    for value in values:
        command += ["--set", value]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return [doc for doc in yaml.safe_load_all(output) if doc]


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["kind"] == kind]


def without_helm_labels(doc: dict[str, Any]) -> dict[str, Any]:
    for metadata in (doc["metadata"], doc.get("spec", {}).get("template", {}).get("metadata", {})):
        for label in HELM_ONLY_LABELS:
            metadata.get("labels", {}).pop(label, None)
    return doc


def test_the_plain_manifests_are_the_chart_without_helm() -> None:
    rendered = sorted(
        (without_helm_labels(doc) for doc in render()),
        key=lambda doc: (doc["kind"], doc["metadata"]["name"]),
    )
    plain = sorted(
        (
            doc
            for path in sorted(MANIFESTS.glob("*.yaml"))
            for doc in yaml.safe_load_all(path.read_text())
            if doc and doc["kind"] != "Namespace"
        ),
        key=lambda doc: (doc["kind"], doc["metadata"]["name"]),
    )
    assert plain == rendered


def test_rbac_is_least_privilege() -> None:
    docs = render()
    (cluster_role,) = by_kind(docs, "ClusterRole")
    assert cluster_role["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["namespaces"],
            "verbs": ["get", "list", "watch", "delete"],
        },
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "verbs": ["get", "list", "watch"],
        },
    ]
    (role,) = by_kind(docs, "Role")
    assert role["metadata"]["namespace"] == "default"
    assert role["rules"] == [{"apiGroups": [""], "resources": ["events"], "verbs": ["create"]}]
    for binding in by_kind(docs, "ClusterRoleBinding") + by_kind(docs, "RoleBinding"):
        (subject,) = binding["subjects"]
        assert subject == {
            "kind": "ServiceAccount",
            "name": "kubefixtures-operator",
            "namespace": "kubefixtures-system",
        }


def test_the_pod_is_hardened_and_configured_from_values() -> None:
    (deployment,) = by_kind(render("grace=7", "selector=team=a", "verbose=true"), "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    assert container["args"] == [
        "--grace=7",
        "--liveness=http://0.0.0.0:8080/healthz",
        "--selector=team=a",
        "--verbose",
    ]
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    # Nothing the operator itself deploys may carry the label it reaps by.
    for doc in render():
        assert doc["metadata"].get("labels", {}).get("app.kubernetes.io/managed-by") != (
            "kubefixtures"
        )
