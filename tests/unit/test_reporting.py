"""Diagnostics from a fake API: report sections (events, logs, previous logs), the bundle's
files, and secret values masked everywhere."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from kubefixtures.details import Environment, EnvironmentDetails
from kubefixtures.errors import ApplyError, ClusterError, NotReadyError, RenderError
from kubefixtures.kube import ApiError, Cluster
from kubefixtures.kube.errors import Invalid
from kubefixtures.provisioning.base import Inspection
from kubefixtures.reporting import report_sections, write_bundle
from kubefixtures.secrets import MASK, Masker, masked_error, secret_values

NS = "kf-shop-abc123"
GENERATED = "Gx7generatedSecretValue1"
USER_PASSWORD = "hunter2-password"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def pod(name: str, restarts: int = 0, waiting: bool = False) -> dict[str, Any]:
    state = {"waiting": {"reason": "CrashLoopBackOff"}} if waiting else {"running": {}}
    return {
        "metadata": {"name": name, "namespace": NS},
        "spec": {"nodeName": "node-1", "containers": [{"name": "app", "image": "app:1"}]},
        "status": {
            "phase": "Running",
            "podIP": "10.0.0.7",
            "conditions": [{"type": "Ready", "status": "False", "reason": "ContainersNotReady"}],
            "containerStatuses": [
                {
                    "name": "app",
                    "ready": False,
                    "restartCount": restarts,
                    "state": state,
                    "lastState": {"terminated": {"reason": "Error", "exitCode": 1}}
                    if restarts
                    else {},
                }
            ],
        },
    }


EVENTS = [
    {
        "involvedObject": {"kind": "Pod", "name": "web-1"},
        "type": "Warning",
        "reason": "BackOff",
        "message": f"Back-off restarting failed container (token {GENERATED})",
        "lastTimestamp": "2024-05-01T12:00:02Z",
        "count": 3,
    },
    {
        "involvedObject": {"kind": "Pod", "name": "web-1"},
        "type": "Normal",
        "reason": "Scheduled",
        "message": "Successfully assigned",
        "lastTimestamp": "2024-05-01T12:00:00Z",
    },
]
SECRETS = [
    {
        "metadata": {"name": "kubefixtures-secrets"},
        "data": {"secrets.json": b64(json.dumps({"token": GENERATED}))},
    },
    {"metadata": {"name": "db"}, "data": {"password": b64(USER_PASSWORD), "short": b64("ab")}},
]


class FakeCluster(Cluster):
    """The real Cluster's helpers over a fake API: requests answer from routes."""

    description = "context fake (https://fake)"
    context = "fake"

    def __init__(self) -> None:  # no connection: request() and request_text() are replaced
        self.pod_items = [pod("web-1", restarts=2), pod("worker-1", waiting=True)]
        self.container_logs = {
            ("web-1", "app", False): f"serving\nconnected with {GENERATED}\n",
            ("web-1", "app", True): f"crashed: bad password {USER_PASSWORD}\n",
        }
        self.log_queries: list[list[tuple[str, Any]]] = []

    def request(self, method: str, path: str, **_: Any) -> dict[str, Any]:
        assert method == "GET"
        routes: dict[str, dict[str, Any]] = {
            f"/api/v1/namespaces/{NS}": {"metadata": {"name": NS}},
            f"/api/v1/namespaces/{NS}/events": {"items": EVENTS},
            f"/api/v1/namespaces/{NS}/pods": {"items": self.pod_items},
            f"/api/v1/namespaces/{NS}/secrets": {"items": SECRETS},
            "/apis": {"groups": [{"preferredVersion": {"groupVersion": "apps/v1"}}]},
            "/api/v1": {
                "resources": [
                    {"name": "pods", "namespaced": True, "verbs": ["list", "get"]},
                    {"name": "pods/log", "namespaced": True, "verbs": ["get"]},
                    {"name": "secrets", "namespaced": True, "verbs": ["list"]},
                    {"name": "events", "namespaced": True, "verbs": ["list"]},
                    {"name": "nodes", "namespaced": False, "verbs": ["list"]},
                ]
            },
            "/apis/apps/v1": {
                "resources": [{"name": "deployments", "namespaced": True, "verbs": ["list"]}]
            },
            f"/apis/apps/v1/namespaces/{NS}/deployments": {
                "items": [
                    {
                        "metadata": {"name": "web", "managedFields": [{"manager": "x"}]},
                        "spec": {"replicas": 1},
                        "status": {"readyReplicas": 0},
                    }
                ]
            },
        }
        if path not in routes:
            raise ApiError(404, "NotFound", path)
        return routes[path]

    def request_text(self, path: str, *, query: Any = (), **_: Any) -> str:
        self.log_queries.append(list(query))
        name = path.split("/")[-2]
        options = dict(query)
        key = (name, options["container"], options.get("previous") == "true")
        if key not in self.container_logs:
            raise ApiError(400, "BadRequest", f'container "{key[1]}" is waiting to start')
        return self.container_logs[key]


def inspection(cluster: FakeCluster, masks: frozenset[str] = frozenset()) -> Inspection:
    return Inspection(cluster=cluster, namespace=NS, environment="shop", masks=masks)  # type: ignore[arg-type]


def test_masker_hides_every_secret_whole_and_leaves_short_values() -> None:
    mask = Masker(["abcdef", "abcdefgh", "xy"])
    assert mask("x abcdefgh y abcdef xy") == f"x {MASK} y {MASK} xy"
    assert Masker([])("unchanged") == "unchanged"


def test_secret_values_of_an_environment() -> None:
    details = EnvironmentDetails(
        name="shop", namespace=NS, session_id="s", secrets={"token": GENERATED}
    )
    objects = [
        {"apiVersion": "v1", "kind": "Secret", "stringData": {"a": "plain-value"}},
        {"apiVersion": "v1", "kind": "Secret", "data": {"b": b64("encoded-value"), "c": "!"}},
        {"apiVersion": "v1", "kind": "ConfigMap", "data": {"d": "not-a-secret"}},
    ]
    assert secret_values(Environment(details, objects)) == {
        GENERATED,
        "plain-value",
        "encoded-value",
    }


def test_report_sections_hold_events_and_logs_with_secrets_masked() -> None:
    cluster = FakeCluster()
    sections = dict(report_sections(inspection(cluster), log_lines=20))
    prefix = f"kubefixtures shop ({NS})"
    events = sections[f"{prefix}: events"]
    assert events.splitlines()[0].startswith("2024-05-01T12:00:00Z  pod/web-1  Normal Scheduled: ")
    assert "pod/web-1  Warning BackOff (x3): Back-off restarting failed container" in events
    assert "(x3)" in events
    assert sections[f"{prefix}: logs pod/web-1 app"] == f"serving\nconnected with {MASK}"
    previous = sections[f"{prefix}: logs pod/web-1 app (previous container)"]
    assert previous == f"crashed: bad password {MASK}"
    assert "waiting to start" in sections[f"{prefix}: logs pod/worker-1 app"]
    everything = "\n".join(sections.values())
    assert GENERATED not in everything
    assert USER_PASSWORD not in everything
    assert ("tailLines", 20) in cluster.log_queries[0]


def test_log_lines_zero_means_events_only() -> None:
    sections = report_sections(inspection(FakeCluster()), log_lines=0)
    assert [title for title, _ in sections] == [f"kubefixtures shop ({NS}): events"]


def test_an_unreachable_cluster_is_one_section_not_an_exception() -> None:
    class Unreachable(FakeCluster):
        def request(self, method: str, path: str, **_: Any) -> dict[str, Any]:
            raise ClusterError("connection refused")

    [(title, text)] = report_sections(inspection(Unreachable()), log_lines=5)
    assert title.endswith("diagnostics")
    assert "connection refused" in text


def test_the_bundle_has_objects_describe_logs_and_events_without_secrets(tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    bundle = write_bundle(FakeCluster(), NS, out, masks={"extra-secret-from-details"})  # type: ignore[arg-type]
    files = sorted(str(path.relative_to(out)) for path in out.rglob("*") if path.is_file())
    assert files == [
        "describe.txt",
        "events.txt",
        "logs/web-1/app.log",
        "logs/web-1/app.previous.log",
        "logs/worker-1/app.log",
        "objects/deployments.apps.yaml",
        "objects/pods.yaml",
        "objects/secrets.yaml",
        "summary.txt",
    ]
    assert bundle.objects == 5
    assert bundle.logs == 3
    assert bundle.events == 2
    describe = (out / "describe.txt").read_text()
    assert "Deployment web: 0/1 ready" in describe
    assert "Pod web-1: phase Running, node node-1, IP 10.0.0.7" in describe
    assert "container app (app:1): not ready, running since ?, 2 restarts" in describe
    assert "last state: terminated: Error (exit code 1) at ?" in describe
    assert "managedFields" not in (out / "objects" / "deployments.apps.yaml").read_text()
    secrets = (out / "objects" / "secrets.yaml").read_text()
    assert b64(USER_PASSWORD) not in secrets
    assert MASK in secrets
    for path in out.rglob("*"):
        if path.is_file():
            text = path.read_text()
            assert GENERATED not in text, path
            assert USER_PASSWORD not in text, path


def test_the_bundle_of_a_missing_namespace_is_a_one_line_error(tmp_path: Path) -> None:
    from kubefixtures.errors import KubefixturesError

    with pytest.raises(KubefixturesError, match=r"^namespace kf-gone does not exist on context"):
        write_bundle(FakeCluster(), "kf-gone", tmp_path)  # type: ignore[arg-type]
    assert not any(tmp_path.iterdir())


# A value YAML folds (long, with spaces) and quotes (a newline): masking the YAML text
# would miss it. One with double spaces and a newline, which an event line collapses.
LONG_SECRET = ("folded secret words " * 5).strip() + "\n" + "q" * 100
SPACED_SECRET = "two  spaces\nthen a newline"


class LeakyCluster(FakeCluster):
    """Secrets where serialising or normalising would hide them from a text masker."""

    def request(self, method: str, path: str, **extra: Any) -> dict[str, Any]:
        if path == f"/apis/apps/v1/namespaces/{NS}/deployments":
            annotations = {"config": f"password: {LONG_SECRET}"}
            deployment = {"metadata": {"name": "web", "annotations": annotations}}
            return {"items": [deployment]}
        if path == f"/api/v1/namespaces/{NS}/events":
            event = {
                "involvedObject": {"kind": "Pod", "name": "web-1"},
                "type": "Warning",
                "reason": "Failed",
                "message": f"auth failed: {SPACED_SECRET}",
                "lastTimestamp": "2024-05-01T12:00:03Z",
            }
            return {"items": [event]}
        return super().request(method, path, **extra)


def test_a_secret_yaml_folds_is_masked_in_the_bundle_objects(tmp_path: Path) -> None:
    import yaml

    assert len(LONG_SECRET) >= 200
    assert LONG_SECRET not in yaml.safe_dump({"config": LONG_SECRET})  # YAML does fold it
    write_bundle(LeakyCluster(), NS, tmp_path / "bundle", masks={LONG_SECRET})  # type: ignore[arg-type]
    text = (tmp_path / "bundle" / "objects" / "deployments.apps.yaml").read_text()
    [deployment] = yaml.safe_load_all(text)
    assert deployment["metadata"]["annotations"]["config"] == f"password: {MASK}"
    assert "folded secret" not in text


def test_an_event_secret_is_masked_before_its_whitespace_is_collapsed(tmp_path: Path) -> None:
    collapsed = " ".join(SPACED_SECRET.split())
    masks = frozenset({SPACED_SECRET})
    sections = dict(report_sections(inspection(LeakyCluster(), masks), log_lines=0))
    events = sections[f"kubefixtures shop ({NS}): events"]
    assert f"auth failed: {MASK}" in events
    assert collapsed not in events
    write_bundle(LeakyCluster(), NS, tmp_path / "bundle", masks=masks)  # type: ignore[arg-type]
    for name in ("events.txt", "describe.txt"):
        written = (tmp_path / "bundle" / name).read_text()
        assert f"auth failed: {MASK}" in written, name
        assert collapsed not in written, name


def test_the_bundle_is_private_even_under_umask_0(tmp_path: Path) -> None:
    out = tmp_path / "new" / "bundle"
    previous = os.umask(0)
    try:
        write_bundle(FakeCluster(), NS, out)  # type: ignore[arg-type]
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "new").stat().st_mode) == 0o700
    paths = [out, *out.rglob("*")]
    assert len(paths) > 10
    for path in paths:
        expected = 0o700 if path.is_dir() else 0o600
        assert stat.S_IMODE(path.stat().st_mode) == expected, path


def test_an_apply_error_is_masked_with_the_environment_secrets() -> None:
    manifests = [
        {"apiVersion": "v1", "kind": "Secret", "data": {"password": b64(USER_PASSWORD)}},
        {"apiVersion": "v1", "kind": "ConfigMap", "data": {"note": "not-a-secret"}},
    ]
    error = ApplyError(
        f"app.yaml:3: configmap/app was rejected: bad value {USER_PASSWORD!r} and "
        f"{GENERATED}; not-a-secret"
    )
    masked = masked_error(error, manifests, [GENERATED])
    assert isinstance(masked, ApplyError)
    assert str(masked) == (
        f"app.yaml:3: configmap/app was rejected: bad value '{MASK}' and {MASK}; not-a-secret"
    )


def test_any_setup_error_is_masked_and_keeps_its_class_and_fields() -> None:
    # A readiness failure quoting a container's command, the API server quoting a value, a
    # render error: each class is built differently, none may show the secret.
    unready = NotReadyError(f'event: Warning Failed: exec: "{GENERATED}": not found')
    masked_unready = masked_error(unready, [], [GENERATED])
    assert type(masked_unready) is NotReadyError
    assert str(masked_unready) == f'event: Warning Failed: exec: "{MASK}": not found'

    invalid = ApiError(422, "Invalid", f"spec.type: Unsupported value: {GENERATED!r}")
    masked_invalid = masked_error(invalid, [], [GENERATED])
    assert type(masked_invalid) is Invalid
    assert masked_invalid.status == 422
    assert masked_invalid.message == f"spec.type: Unsupported value: {MASK!r}"
    assert GENERATED not in str(masked_invalid)
    assert GENERATED not in repr(masked_invalid)

    render = RenderError("app.yaml:3", f"bad value {GENERATED}")
    masked_render = masked_error(render, [], [GENERATED])
    assert type(masked_render) is RenderError
    assert (masked_render.location, masked_render.problem) == ("app.yaml:3", f"bad value {MASK}")
    assert str(masked_render) == f"app.yaml:3: bad value {MASK}"

    clean = ClusterError("the cluster is unreachable")
    assert masked_error(clean, [], [GENERATED]) is clean  # nothing to mask: the same error
