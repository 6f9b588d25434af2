"""Who owns a cluster-scoped object, and the order an environment's objects are applied in."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from kubefixtures.kube.client import Resource
from kubefixtures.leases.cluster_scoped import webhooks_into
from kubefixtures.leases.ownership import (
    DEFINITION_HASH_ANNOTATION,
    OWNERS_ANNOTATION,
    MalformedOwners,
    Owner,
    definition_hash,
    describe_owner,
    hash_of,
    is_managed,
    is_owned,
    owned_manifest,
    owner_alive,
    owners_of,
    owners_patch,
)
from kubefixtures.leases.policy import LeaseInfo, SessionNamespace
from kubefixtures.provisioning.cluster_scoped import Placed, defined_resources, in_apply_order
from kubefixtures.rendering import RenderedObject

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
ROLE = {
    "apiVersion": "rbac.authorization.k8s.io/v1",
    "kind": "ClusterRole",
    "metadata": {"name": "reader", "labels": {"app.kubernetes.io/managed-by": "Helm"}},
    "rules": [],
}


def test_an_owned_manifest_carries_label_owners_and_the_hash_of_the_definition() -> None:
    labels = {"kubefixtures.io/environment": "shop", "app.kubernetes.io/managed-by": "x"}
    owned = owned_manifest(ROLE, [Owner("kf-b", "s2"), Owner("kf-a", "s1")], labels)
    assert is_managed(owned)
    assert owned["metadata"]["labels"]["kubefixtures.io/environment"] == "shop"
    assert hash_of(owned) == definition_hash(ROLE)
    assert owners_of(owned) == [Owner("kf-a", "s1"), Owner("kf-b", "s2")]  # sorted, stable
    assert not is_managed(ROLE)  # the definition itself is left as rendered


def test_only_managed_objects_with_an_owners_annotation_are_shared_or_reaped() -> None:
    assert is_owned(owned_manifest(ROLE, [], {}))  # "[]": owned, by nobody any more
    session_namespace = {"metadata": {"labels": {"app.kubernetes.io/managed-by": "kubefixtures"}}}
    assert is_managed(session_namespace)
    assert not is_owned(session_namespace)  # its Lease decides, not the owners sweep
    assert not is_owned({"metadata": {"annotations": {OWNERS_ANNOTATION: "[]"}}})  # unlabelled


def test_the_hash_ignores_key_order_but_not_content() -> None:
    reordered = {key: ROLE[key] for key in reversed(list(ROLE))}
    assert definition_hash(reordered) == definition_hash(ROLE)
    assert definition_hash({**ROLE, "rules": [{"verbs": ["get"]}]}) != definition_hash(ROLE)


@pytest.mark.parametrize(
    "annotation",
    [
        "not json",
        '{"namespace": "x"}',
        '[{"namespace": "x"}]',
        '[{"namespace": 1, "session": "s"}]',
    ],
)
def test_unreadable_owners_are_malformed(annotation: str) -> None:
    with pytest.raises(MalformedOwners, match=OWNERS_ANNOTATION):
        owners_of({"metadata": {"annotations": {OWNERS_ANNOTATION: annotation}}})


def test_no_owners_annotation_means_no_owners() -> None:
    assert owners_of({"metadata": {}}) == []


def test_the_owners_patch_is_conditional_on_the_version_read() -> None:
    live = {"metadata": {"resourceVersion": "42", "annotations": {DEFINITION_HASH_ANNOTATION: "h"}}}
    patch = owners_patch(live, [Owner("kf-a", "s1")])
    assert patch["metadata"]["resourceVersion"] == "42"
    assert json.loads(patch["metadata"]["annotations"][OWNERS_ANNOTATION]) == [
        {"namespace": "kf-a", "session": "s1"}
    ]


def session(**changes: object) -> SessionNamespace:
    fields: dict[str, object] = {
        "name": "kf-a",
        "created": NOW - timedelta(minutes=5),
        "labels": {"kubefixtures.io/user": "alice", "kubefixtures.io/host": "ci-7"},
        "lease": LeaseInfo(holder="s1@ci-7/12", duration_seconds=60, renew_time=NOW),
    }
    fields.update(changes)
    return SessionNamespace(**fields)  # type: ignore[arg-type]


def test_an_owner_lives_while_its_lease_does_and_within_the_grace() -> None:
    assert owner_alive(session(), NOW, 10)  # labels without managed-by: the Lease decides
    expired = LeaseInfo(duration_seconds=60, renew_time=NOW - timedelta(seconds=65))
    assert owner_alive(session(lease=expired), NOW, 10)  # expired 5 s ago, grace 10 s
    assert not owner_alive(session(lease=expired), NOW, 1)
    assert not owner_alive(session(terminating=True), NOW, 10)
    assert not owner_alive(None, NOW, 10)  # the namespace is gone


def test_an_owner_is_described_by_session_user_host_and_namespace() -> None:
    owner = Owner("kf-a", "s1")
    assert describe_owner(owner, session()) == "session s1 (user alice, host ci-7, namespace kf-a)"
    no_labels = session(labels={})
    assert describe_owner(owner, no_labels) == "session s1 (host ci-7, namespace kf-a)"
    assert describe_owner(owner, None) == "session s1 (namespace kf-a)"


def rendered(manifest: dict[str, object]) -> RenderedObject:
    return RenderedObject(manifest=manifest, location="x.yaml:1")


CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.example.com"},
    "spec": {
        "group": "example.com",
        "scope": "Cluster",
        "names": {"kind": "Widget", "plural": "widgets"},
        "versions": [{"name": "v1", "served": True}, {"name": "v0", "served": False}],
    },
}


def test_kinds_defined_by_the_environments_crds_are_known_with_their_scope() -> None:
    assert defined_resources([rendered(CRD)]) == {
        ("example.com/v1", "Widget"): Resource("example.com/v1", "Widget", "widgets", False)
    }


def placed(kind: str, api_version: str, namespaced: bool) -> Placed:
    manifest = (
        CRD if kind == "CustomResourceDefinition" else {"apiVersion": api_version, "kind": kind}
    )
    return Placed(rendered(manifest), Resource(api_version, kind, kind.lower() + "s", namespaced))


def test_objects_go_crds_then_cluster_scoped_then_namespaced_then_custom_resources() -> None:
    objects = [
        placed("Widget", "example.com/v1", False),
        placed("Service", "v1", True),
        placed("ClusterRole", "rbac.authorization.k8s.io/v1", False),
        placed("CustomResourceDefinition", "apiextensions.k8s.io/v1", False),
    ]
    groups = in_apply_order(objects, defined_resources([rendered(CRD)]))
    assert [[item.obj.kind for item in group] for group in groups] == [
        ["CustomResourceDefinition"],
        ["ClusterRole"],
        ["Service"],
        ["Widget"],
    ]


def test_a_webhook_configuration_calls_into_the_namespaces_of_its_services() -> None:
    configuration = {
        "webhooks": [
            {"clientConfig": {"url": "https://example"}},
            {"clientConfig": {"service": {"namespace": "kf-a", "name": "hook"}}},
        ]
    }
    assert webhooks_into(configuration, "kf-a")
    assert not webhooks_into(configuration, "kf-b")
