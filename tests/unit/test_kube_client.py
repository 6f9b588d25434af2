"""The API client's own logic, with its HTTP layer replaced (no cluster)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from kubefixtures.errors import ApplyError
from kubefixtures.kube.client import ApiError, Cluster, Resource

DEPLOYMENTS = Resource("apps/v1", "Deployment", "deployments", namespaced=True)
MANIFEST = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}}


class ScriptedCluster(Cluster):
    """A Cluster whose requests answer from a script: a list of results or ApiErrors."""

    def __init__(self, answers: list[Any]) -> None:  # no super(): no client, no connection
        self.answers = answers
        self.calls: list[tuple[str, str, dict[str, Any]]] = []
        self._resources = {}
        self._resource_lists = {}
        self.description = "context test (https://example)"
        self._lock = threading.Lock()

    def request(self, method: str, path: str, **options: Any) -> dict[str, Any]:
        self.calls.append((method, path, options))
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return dict(answer)


def test_apply_is_server_side_apply_into_the_namespace() -> None:
    cluster = ScriptedCluster([{"applied": True}])
    assert cluster.apply(DEPLOYMENTS, MANIFEST, "ns", time.monotonic() + 5) == {"applied": True}
    [(method, path, options)] = cluster.calls
    assert method == "PATCH"
    assert path == "/apis/apps/v1/namespaces/ns/deployments/web"
    assert options["query"] == [("fieldManager", "kubefixtures"), ("force", "true")]
    assert options["content_type"] == "application/apply-patch+yaml"
    assert options["body"]["metadata"] == {"name": "web", "namespace": "ns"}
    assert "namespace" not in MANIFEST["metadata"]  # the rendered object is left alone


def test_a_missing_service_account_right_after_namespace_creation_is_retried() -> None:
    not_yet = ApiError(
        403,
        "Forbidden",
        'error looking up service account ns/default: serviceaccount "default" not found',
    )
    cluster = ScriptedCluster([not_yet, not_yet, {"applied": True}])
    assert cluster.apply(DEPLOYMENTS, MANIFEST, "ns", time.monotonic() + 5) == {"applied": True}
    assert len(cluster.calls) == 3


def test_a_rejected_object_names_location_object_and_reason() -> None:
    invalid = ApiError(
        422, "Invalid", 'Deployment.apps "web" is invalid: spec.replicas: must be >= 0'
    )
    cluster = ScriptedCluster([invalid])
    with pytest.raises(ApplyError) as caught:
        cluster.apply(DEPLOYMENTS, MANIFEST, "ns", time.monotonic() + 5, "web.yaml:3")
    assert str(caught.value) == (
        'web.yaml:3: deployment/web was rejected: Deployment.apps "web" is invalid: '
        "spec.replicas: must be >= 0"
    )


def test_resolve_refuses_unknown_kinds() -> None:
    listing = {
        "resources": [
            {"name": "deployments", "kind": "Deployment", "namespaced": True},
            {"name": "deployments/status", "kind": "Deployment", "namespaced": True},
        ]
    }
    cluster = ScriptedCluster([listing])
    [resource] = cluster.resolve([("apps/v1", "Deployment", "a.yaml:1")])
    assert resource == DEPLOYMENTS
    cluster = ScriptedCluster([ApiError(404, "NotFound", "nope")])
    with pytest.raises(
        ApplyError,
        match=r"^w\.yaml:4: context test \(https://example\) does not serve kind Widget "
        r"in apiVersion example\.com/v1$",
    ):
        cluster.resolve([("example.com/v1", "Widget", "w.yaml:4")])


def test_resolve_knows_cluster_scoped_kinds_and_those_defined_alongside() -> None:
    cluster = ScriptedCluster(
        [{"resources": [{"name": "clusterroles", "kind": "ClusterRole", "namespaced": False}]}]
    )
    widget = Resource("example.com/v1", "Widget", "widgets", namespaced=True)
    role, defined = cluster.resolve(
        [
            ("rbac.authorization.k8s.io/v1", "ClusterRole", "r.yaml:1"),
            ("example.com/v1", "Widget", "w.yaml:1"),
        ],
        defined={("example.com/v1", "Widget"): widget},
    )
    assert role == Resource("rbac.authorization.k8s.io/v1", "ClusterRole", "clusterroles", False)
    assert defined == widget  # no discovery asked for a kind its CRD has not installed yet
