"""The operator's Helm chart and its plain manifests: least-privilege RBAC, a hardened pod,
and the two install paths kept equal."""

from __future__ import annotations

from typing import Any

import yaml

from tests.chart_support import MANIFESTS, NAMESPACE, RELEASE, by_kind, pod_spec, render

HELM_ONLY_LABELS = ("helm.sh/chart", "app.kubernetes.io/managed-by")


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
        {
            "apiGroups": ["admissionregistration.k8s.io"],
            "resources": ["validatingwebhookconfigurations", "mutatingwebhookconfigurations"],
            "verbs": ["get", "list", "patch", "delete"],
        },
    ]
    (role,) = by_kind(docs, "Role")
    assert role["metadata"]["namespace"] == "default"
    assert role["rules"] == [{"apiGroups": [""], "resources": ["events"], "verbs": ["create"]}]
    for binding in by_kind(docs, "ClusterRoleBinding") + by_kind(docs, "RoleBinding"):
        (subject,) = binding["subjects"]
        assert subject == {"kind": "ServiceAccount", "name": RELEASE, "namespace": NAMESPACE}


def test_the_pod_is_hardened_and_configured_from_values() -> None:
    pod = pod_spec(render({"grace": 7, "selector": "team=a", "verbose": True}))
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 65534,
        "runAsGroup": 65534,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    (container,) = pod["containers"]
    assert container["args"] == [
        "--grace=7",
        "--liveness=http://0.0.0.0:8080/healthz",
        "--selector=team=a",
        "--verbose",
    ]
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    # Nothing the operator itself deploys may carry the label it reaps by.
    for doc in render():
        assert doc["metadata"].get("labels", {}).get("app.kubernetes.io/managed-by") != (
            "kubefixtures"
        )


def test_pools_add_their_rights_and_the_cap_only_when_asked_for() -> None:
    docs = render(
        {"pool": {"maxNamespaces": 12, "kinds": [{"apiGroup": "batch", "resource": "jobs"}]}}
    )
    (container,) = pod_spec(docs)["containers"]
    assert "--pool-max-namespaces=12" in container["args"]
    (cluster_role,) = by_kind(docs, "ClusterRole")
    rules = cluster_role["rules"]
    assert {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["create", "patch"]} in rules
    assert {
        "apiGroups": ["batch"],
        "resources": ["jobs"],
        "verbs": ["get", "list", "watch", "create", "patch"],
    } in rules
    pools = [role for role in by_kind(docs, "Role") if role["metadata"]["name"].endswith("-pools")]
    (role,) = pools
    assert role["metadata"]["namespace"] == NAMESPACE
    assert role["rules"] == [
        {
            "apiGroups": ["kubefixtures.io"],
            "resources": ["pools"],
            "verbs": ["get", "list", "watch", "patch"],
        }
    ]
    # The defaults keep none of it (test_rbac_is_least_privilege checks the rules).
    (default,) = pod_spec(render())["containers"]
    assert not any(arg.startswith("--pool") for arg in default["args"])
    assert not [
        role for role in by_kind(render(), "Role") if role["metadata"]["name"].endswith("-pools")
    ]


def test_the_pool_crd_is_a_helm_crd() -> None:
    from tests.chart_support import CHART

    (crd,) = list(yaml.safe_load_all((CHART / "crds" / "pools.yaml").read_text()))
    assert crd["metadata"]["name"] == "pools.kubefixtures.io"
    (version,) = crd["spec"]["versions"]
    assert (crd["spec"]["group"], version["name"], crd["spec"]["names"]["kind"]) == (
        "kubefixtures.io",
        "v1alpha1",
        "Pool",
    )
    from kubefixtures.kube.client import POOL

    assert (POOL.api_version, POOL.kind, POOL.plural, POOL.namespaced) == (
        f"{crd['spec']['group']}/{version['name']}",
        crd["spec"]["names"]["kind"],
        crd["spec"]["names"]["plural"],
        crd["spec"]["scope"] == "Namespaced",
    )
