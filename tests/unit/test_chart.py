"""The operator's chart as Helm users expect it: every value in the schema and the README,
the image tag following the chart's appVersion, the usual switches (rbac.create,
serviceAccount.*, imagePullSecrets, security contexts, ...) rendered as asked, and bad
values refused by `helm template` and `helm lint`."""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

import kubefixtures
from tests.chart_support import (
    CHART,
    NAMESPACE,
    RELEASE,
    ROOT,
    VALUE_SETS,
    by_kind,
    pod_spec,
    refusal,
    render,
    run_helm,
    the,
)

VALUES = yaml.safe_load((CHART / "values.yaml").read_text())
SCHEMA = json.loads((CHART / "values.schema.json").read_text())
CHART_META = yaml.safe_load((CHART / "Chart.yaml").read_text())
APP_VERSION = CHART_META["appVersion"]
CHART_LABELS = {
    "helm.sh/chart": f"kubefixtures-operator-{CHART_META['version']}",
    "app.kubernetes.io/name": "kubefixtures-operator",
    "app.kubernetes.io/instance": RELEASE,
    "app.kubernetes.io/version": APP_VERSION,
    "app.kubernetes.io/component": "operator",
    "app.kubernetes.io/managed-by": "Helm",
}


# --- the chart's files, without helm ----------------------------------------------------------


def test_the_app_version_is_the_package_version() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert APP_VERSION == project["version"] == kubefixtures.__version__


def test_the_locally_built_image_is_the_default_one() -> None:
    recipes = tomllib.loads((ROOT / "hack" / "images" / "recipes.toml").read_text())
    repository, _, tag = recipes["images"]["operator"]["ref"].rpartition(":")
    assert repository == VALUES["image"]["repository"]
    assert VALUES["image"]["tag"] == ""  # so the chart's appVersion, checked below
    assert tag == APP_VERSION


def subschema(schema: dict[str, Any], key: str) -> dict[str, Any] | None:
    """The schema of ``key`` in an object described by ``schema``, if it describes one."""
    if key in schema.get("properties", {}):
        found: dict[str, Any] = schema["properties"][key]
        return found
    extra = schema.get("additionalProperties")
    return extra if isinstance(extra, dict) else None


def every_key(values: Any, schema: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted key, the schema of its value) for every key in ``values``, at every depth."""
    if isinstance(values, dict):
        for key, value in values.items():
            path = f"{prefix}{key}"
            found = subschema(schema, key)
            yield path, found
            if found is not None:
                yield from every_key(value, found, f"{path}.")
    elif isinstance(values, list):
        for index, item in enumerate(values):
            yield from every_key(item, schema.get("items", {}), f"{prefix[:-1]}[{index}].")


def test_the_schema_is_draft_07_and_types_every_value() -> None:
    assert SCHEMA["$schema"] == "http://json-schema.org/draft-07/schema#"
    untyped = [key for key, schema in every_key(VALUES, SCHEMA) if not (schema or {}).get("type")]
    assert untyped == []
    # ...and describes no value that values.yaml lacks (global is Helm's own).
    assert set(SCHEMA["properties"]) - {"global"} == set(VALUES)


def documented_keys(values: dict[str, Any], schema: dict[str, Any], prefix: str = "") -> Any:
    """Dotted keys down to the values users set as a whole: the chart's own objects (whose
    keys the schema requires) key by key, Kubernetes' (resources, securityContext...) whole."""
    for key, value in values.items():
        found = subschema(schema, key) or {}
        if isinstance(value, dict) and found.get("required"):
            yield from documented_keys(value, found, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def test_the_readme_gives_every_value_with_its_default() -> None:
    readme = (CHART / "README.md").read_text()
    rows = {
        cells[1].strip()[1:-1]: cells[2].strip()
        for line in readme.splitlines()
        if line.startswith("| `") and len(cells := line.split("|")) > 3
    }
    documented = dict(documented_keys(VALUES, SCHEMA))
    assert set(rows) == set(documented)
    for key, default in documented.items():
        if not isinstance(default, dict | list) or not default:
            assert rows[key] == f"`{json.dumps(default)}`", key


# --- helm lint and helm template with several value sets --------------------------------------


@pytest.mark.parametrize("values", VALUE_SETS.values(), ids=VALUE_SETS.keys())
def test_helm_lint_passes(values: dict[str, Any]) -> None:
    result = run_helm("lint", values, "--strict")
    assert result.returncode == 0, result.stdout + result.stderr


def test_defaults_make_the_usual_objects_with_the_usual_labels() -> None:
    docs = render()
    assert sorted(doc["kind"] for doc in docs) == [
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
        "Role",
        "RoleBinding",
        "ServiceAccount",
    ]
    for doc in docs:
        assert doc["metadata"]["labels"] == CHART_LABELS, doc["kind"]
    deployment = the(docs, "Deployment")
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector == {
        "app.kubernetes.io/name": "kubefixtures-operator",
        "app.kubernetes.io/instance": RELEASE,
    }
    assert deployment["spec"]["template"]["metadata"]["labels"] == CHART_LABELS
    pod = pod_spec(docs)
    assert pod["serviceAccountName"] == RELEASE
    assert "imagePullSecrets" not in pod
    (container,) = pod["containers"]
    assert container["image"] == f"kubefixtures.local/operator:{APP_VERSION}"
    assert the(docs, "ServiceAccount")["metadata"]["namespace"] == NAMESPACE


def test_an_existing_service_account_without_rbac() -> None:
    docs = render(VALUE_SETS["existing service account, no RBAC"])
    assert [doc["kind"] for doc in docs] == ["Deployment"]
    assert pod_spec(docs)["serviceAccountName"] == "reaper"


def test_rbac_for_an_existing_service_account() -> None:
    docs = render({"serviceAccount": {"create": False, "name": "reaper"}})
    assert by_kind(docs, "ServiceAccount") == []
    bindings = by_kind(docs, "ClusterRoleBinding") + by_kind(docs, "RoleBinding")
    assert len(bindings) == 2
    for binding in bindings:
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "reaper", "namespace": NAMESPACE}
        ]
    # The RBAC objects are named after the release, not after someone else's account.
    assert the(docs, "ClusterRole")["metadata"]["name"] == RELEASE


def test_not_creating_the_service_account_needs_its_name() -> None:
    result = run_helm("template", {"serviceAccount": {"create": False}})
    assert result.returncode != 0
    assert "serviceAccount.create=false needs serviceAccount.name" in result.stderr


def test_the_image_and_its_pull_secrets() -> None:
    pod = pod_spec(render(VALUE_SETS["custom image"]))
    (container,) = pod["containers"]
    assert container["image"] == "registry.example.com:5000/kf/operator:9.9.9-rc1"
    assert container["imagePullPolicy"] == "Always"
    assert pod["imagePullSecrets"] == [{"name": "registry-a"}, {"name": "registry-b"}]


def test_security_contexts_are_merged_into_the_secure_defaults() -> None:
    pod = pod_spec(render(VALUE_SETS["security contexts overridden"]))
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 1000,
        "runAsGroup": 1000,
        "fsGroup": 1000,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    (container,) = pod["containers"]
    assert container["securityContext"] == {  # null removed readOnlyRootFilesystem
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "runAsUser": 1001,
    }


def test_every_other_value_reaches_its_object() -> None:
    values = VALUE_SETS["everything else"]
    docs = render(values)
    assert {doc["metadata"]["name"] for doc in docs} == {"reaper", "reaper-events"}
    account = the(docs, "ServiceAccount")
    assert account["metadata"]["annotations"] == {"iam.example.com/role": "reaper"}
    rules = the(docs, "ClusterRole")["rules"]
    # Always granted: webhook configurations calling into a namespace go before it.
    assert rules[2] == {
        "apiGroups": ["admissionregistration.k8s.io"],
        "resources": ["validatingwebhookconfigurations", "mutatingwebhookconfigurations"],
        "verbs": ["get", "list", "patch", "delete"],
    }
    assert rules[3:] == [
        {
            "apiGroups": ["apiextensions.k8s.io"],
            "resources": ["customresourcedefinitions"],
            "verbs": ["get", "list", "watch", "patch", "delete"],
        },
        {
            "apiGroups": [""],
            "resources": ["persistentvolumes"],
            "verbs": ["get", "list", "watch", "patch", "delete"],
        },
    ]
    template = the(docs, "Deployment")["spec"]["template"]
    assert template["metadata"]["labels"] == {**CHART_LABELS, "team": "ci"}
    assert template["metadata"]["annotations"] == values["podAnnotations"]
    pod = template["spec"]
    for key in ("nodeSelector", "tolerations", "affinity"):
        assert pod[key] == values[key]
    (container,) = pod["containers"]
    assert container["args"] == [
        "--grace=2.5",
        "--liveness=http://0.0.0.0:8080/healthz",
        "--selector=kubefixtures.io/ci-job in (a, b)",
        "--verbose",
    ]
    # Helm merges maps: the memory limit stays.
    assert container["resources"] == {
        "requests": {"cpu": 0.5, "memory": "64Mi"},
        "limits": {"memory": "256Mi"},
    }


def test_a_large_grace_is_rendered_in_full() -> None:
    (container,) = pod_spec(render({"grace": 1000000}))["containers"]
    assert container["args"][0] == "--grace=1000000"


# --- the schema refuses bad values ------------------------------------------------------------

BAD_VALUES: dict[str, tuple[dict[str, Any], str]] = {
    "negative grace": ({"grace": -1}, "grace"),
    "grace over a year": ({"grace": 31536001}, "grace"),
    "grace as text": ({"grace": "60"}, "grace"),
    "verbose as text": ({"verbose": "yes"}, "verbose"),
    "unknown pull policy": ({"image": {"pullPolicy": "Sometimes"}}, "pullPolicy"),
    "misspelt key": ({"image": {"tags": "1.0"}}, "tags"),
    "unknown top-level key": ({"replicas": 2}, "replicas"),
    "tag as a number": ({"image": {"tag": 1.5}}, "tag"),
    "rbac.create as text": ({"rbac": {"create": "yes"}}, "create"),
    "pull secret as a string": ({"imagePullSecrets": ["registry"]}, "imagePullSecrets"),
    "wildcard reaper kind": (
        {"reaper": {"clusterScopedKinds": [{"apiGroup": "", "resource": "*"}]}},
        "resource",
    ),
    "reaper kind without resource": (
        {"reaper": {"clusterScopedKinds": [{"apiGroup": "rbac.authorization.k8s.io"}]}},
        "resource",
    ),
    "negative user id": ({"securityContext": {"runAsUser": -1}}, "runAsUser"),
    "unknown seccomp profile": (
        {"podSecurityContext": {"seccompProfile": {"type": "Default"}}},
        "type",
    ),
    "a pod label the chart owns": (
        {"podLabels": {"app.kubernetes.io/name": "other"}},
        "app.kubernetes.io/name",
    ),
}


@pytest.mark.parametrize(("values", "named"), BAD_VALUES.values(), ids=BAD_VALUES.keys())
def test_the_schema_refuses_bad_values(values: dict[str, Any], named: str) -> None:
    error = refusal(values)
    assert "schema" in error
    assert re.search(rf"\b{re.escape(named)}\b", error), error
