"""The watch-driven waiter, against a scripted stand-in for the API (no cluster).

The stand-in serves lists and watch streams from a script of events, so these tests pin the
waiter's own logic: readiness noticed from watch events, objects announced as they become
ready, early failure, and the deadline's message.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from kubefixtures.errors import NotReadyError
from kubefixtures.kube.client import EVENT, Resource
from kubefixtures.readiness.wait import Tracked, ready_now, wait_ready

DEPLOYMENT = Resource("apps/v1", "Deployment", "deployments", namespaced=True)
SERVICE = Resource("v1", "Service", "services", namespaced=True)
CONFIG_MAP = Resource("v1", "ConfigMap", "configmaps", namespaced=True)


class ScriptedStream:
    def __init__(self, events: queue.Queue[dict[str, Any] | None]) -> None:
        self._events = events
        self._closed = threading.Event()

    def __iter__(self) -> Iterator[dict[str, Any]]:
        while not self._closed.is_set():
            try:
                event = self._events.get(timeout=0.05)
            except queue.Empty:
                continue
            if event is None:
                return
            yield event

    def close(self) -> None:
        self._closed.set()


class ScriptedCluster:
    """Lists return ``initial``; watches replay what ``emit`` sends, per plural."""

    def __init__(self, initial: dict[str, list[dict[str, Any]]]) -> None:
        self.initial = initial
        self.streams: dict[str, queue.Queue[dict[str, Any] | None]] = {}
        self.events: list[dict[str, Any]] = []

    def list_objects(self, resource: Resource, namespace: str | None, **_: Any) -> dict[str, Any]:
        if resource == EVENT:
            return {"items": self.events, "metadata": {"resourceVersion": "1"}}
        items = [dict(item) for item in self.initial.get(resource.plural, [])]
        return {"items": items, "metadata": {"resourceVersion": "1"}}

    def watch(self, resource: Resource, namespace: str | None, version: str, timeout: int) -> Any:
        return ScriptedStream(self.streams.setdefault(resource.plural, queue.Queue()))

    def emit(self, plural: str, event_type: str, obj: dict[str, Any]) -> None:
        self.streams.setdefault(plural, queue.Queue()).put({"type": event_type, "object": obj})


def deployment(name: str, available: int) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "generation": 1, "resourceVersion": "2"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}}},
        "status": {"observedGeneration": 1, "updatedReplicas": 1, "availableReplicas": available},
    }


def pod(name: str, app: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": {"app": app}},
        "status": {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "False"}],
            "containerStatuses": [{"name": "main", "ready": False, "state": {"running": {}}}],
        },
    }


def test_ready_objects_are_announced_and_watch_events_finish_the_wait() -> None:
    cluster = ScriptedCluster(
        {"deployments": [deployment("web", 0)], "configmaps": [{"metadata": {"name": "cm"}}]}
    )
    announced: list[str] = []
    tracked = [Tracked(CONFIG_MAP, "cm"), Tracked(DEPLOYMENT, "web")]

    def become_ready() -> None:
        time.sleep(0.2)
        cluster.emit("deployments", "MODIFIED", deployment("web", 1))

    threading.Thread(target=become_ready, daemon=True).start()
    started = time.monotonic()
    wait_ready(
        cluster,  # type: ignore[arg-type]
        "ns",
        tracked,
        deadline=started + 10,
        environment="shop",
        started=started,
        on_ready=lambda item: announced.append(str(item)),
    )
    assert announced == ["configmap/cm", "deployment/web"]
    assert time.monotonic() - started < 2


def test_the_deadline_message_names_objects_pods_and_events() -> None:
    cluster = ScriptedCluster(
        {"deployments": [deployment("web", 0)], "pods": [pod("web-abc", "web")]}
    )
    cluster.events = [
        {
            "involvedObject": {"kind": "Pod", "name": "web-abc"},
            "type": "Warning",
            "reason": "Unhealthy",
            "message": "Readiness probe failed: 503",
            "count": 4,
            "lastTimestamp": "2026-01-01T00:00:00Z",
        }
    ]
    started = time.monotonic()
    with pytest.raises(NotReadyError) as caught:
        wait_ready(
            cluster,  # type: ignore[arg-type]
            "kf-shop-abc123",
            [Tracked(DEPLOYMENT, "web")],
            deadline=started + 0.3,
            environment="shop",
            started=started,
        )
    lines = str(caught.value).splitlines()
    assert lines[0].startswith("environment 'shop' timed out after 0.")
    assert lines[0].endswith(
        "s in namespace kf-shop-abc123: deployment/web (0/1 replicas available)"
    )
    assert lines[1:] == [
        "  deployment/web: pending: 0/1 replicas available",
        "    pod/web-abc: Running; container main running but not ready",
        "      event: Warning Unhealthy (x4): Readiness probe failed: 503",
    ]


def test_a_failed_job_stops_the_wait_at_once() -> None:
    job = Resource("batch/v1", "Job", "jobs", namespaced=True)
    failed = {
        "metadata": {"name": "migrate"},
        "status": {
            "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]
        },
    }
    cluster = ScriptedCluster({"jobs": [failed]})
    started = time.monotonic()
    with pytest.raises(NotReadyError, match=r"environment 'db' failed after .*job/migrate"):
        wait_ready(
            cluster,  # type: ignore[arg-type]
            "ns",
            [Tracked(job, "migrate")],
            deadline=started + 30,
            environment="db",
            started=started,
        )
    assert time.monotonic() - started < 5


def test_nothing_to_watch_returns_at_once() -> None:
    cluster = ScriptedCluster({})
    announced: list[str] = []
    wait_ready(
        cluster,  # type: ignore[arg-type]
        "ns",
        [Tracked(CONFIG_MAP, "a")],
        deadline=time.monotonic() + 1,
        environment="e",
        started=time.monotonic(),
        on_ready=lambda item: announced.append(item.name),
    )
    assert announced == ["a"]


def test_a_cancelled_wait_ends_soon() -> None:
    cluster = ScriptedCluster({"deployments": [deployment("web", 0)]})
    cancelled = threading.Event()
    threading.Timer(0.1, cancelled.set).start()
    started = time.monotonic()
    with pytest.raises(NotReadyError, match="environment 'shop' was cancelled after"):
        wait_ready(
            cluster,  # type: ignore[arg-type]
            "ns",
            [Tracked(DEPLOYMENT, "web")],
            deadline=started + 30,
            environment="shop",
            started=started,
            cancelled=cancelled,
        )
    assert time.monotonic() - started < 2


def test_ready_now_is_one_list_per_kind_and_gives_what_it_listed() -> None:
    slices = [
        {
            "metadata": {"name": "web-1", "labels": {"kubernetes.io/service-name": "web"}},
            "endpoints": [{"conditions": {"ready": True}, "targetRef": {"kind": "Pod"}}],
        }
    ]
    service = {"metadata": {"name": "web"}, "spec": {"selector": {"app": "web"}}}
    cluster = ScriptedCluster(
        {"deployments": [deployment("web", 1)], "services": [service], "endpointslices": slices}
    )
    tracked = [Tracked(CONFIG_MAP, "cm"), Tracked(DEPLOYMENT, "web"), Tracked(SERVICE, "web")]
    listed = ready_now(cluster, "ns", tracked)  # type: ignore[arg-type]
    assert listed is not None
    assert [item["metadata"]["name"] for item in listed.items["Service"]] == ["web"]
    assert [item["metadata"]["name"] for item in listed.items["EndpointSlice"]] == ["web-1"]
    assert listed.versions == {"Deployment": "1", "EndpointSlice": "1", "Service": "1"}
    assert cluster.streams == {}  # nothing watched
    # Not ready after all (a pod went away): the caller waits as usual.
    cluster.initial["deployments"] = [deployment("web", 0)]
    assert ready_now(cluster, "ns", tracked) is None  # type: ignore[arg-type]
