"""Readiness rules: ready, pending (and why) or failed for good."""

from __future__ import annotations

from typing import Any

import pytest

from kubefixtures.readiness.rules import (
    State,
    assess,
    describe_events,
    describe_pod,
    pod_is_hopeless,
)


def deployment(replicas: int = 1, **status: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "generation": 1},
        "spec": {"replicas": replicas},
        "status": {"observedGeneration": 1, **status},
    }


def pod(phase: str = "Running", ready: bool = False, **extra: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p"},
        "status": {
            "phase": phase,
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            **extra,
        },
    }


def test_deployment_ready_when_all_replicas_updated_and_available() -> None:
    assert assess(deployment(2, updatedReplicas=2, availableReplicas=2)).ready
    verdict = assess(deployment(2, updatedReplicas=2, availableReplicas=1))
    assert verdict.state is State.PENDING
    assert verdict.reason == "1/2 replicas available"
    assert assess(deployment(2, updatedReplicas=1)).reason == "1/2 replicas updated"


def test_deployment_not_ready_until_its_generation_is_observed() -> None:
    obj = deployment(1, updatedReplicas=1, availableReplicas=1)
    obj["metadata"]["generation"] = 2
    assert assess(obj).reason == "the controller has not seen the latest spec yet"


def test_deployment_scaled_to_zero_is_ready() -> None:
    assert assess(deployment(0)).ready


def test_deployment_past_its_progress_deadline_fails() -> None:
    obj = deployment(
        1,
        conditions=[
            {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
             "message": "ReplicaSet web-1 has timed out progressing."}
        ],
    )  # fmt: skip
    verdict = assess(obj)
    assert verdict.state is State.FAILED
    assert "timed out progressing" in verdict.reason


@pytest.mark.parametrize("kind", ["StatefulSet", "ReplicaSet"])
def test_replica_workloads_count_ready_replicas(kind: str) -> None:
    obj = {**deployment(3, readyReplicas=3), "kind": kind}
    assert assess(obj).ready
    obj = {**deployment(3, readyReplicas=2), "kind": kind}
    assert assess(obj).reason == "2/3 replicas ready"


def test_daemonset() -> None:
    obj = {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": "d", "generation": 1},
        "status": {"observedGeneration": 1, "desiredNumberScheduled": 1},
    }
    assert assess(obj).state is State.PENDING
    obj["status"].update(numberAvailable=1, updatedNumberScheduled=1)
    assert assess(obj).ready


def test_pods() -> None:
    assert assess(pod(ready=True)).ready
    assert assess(pod("Succeeded")).ready
    assert assess(pod()).state is State.PENDING
    failed = assess(pod("Failed", reason="Evicted", message="low on memory"))
    assert failed.state is State.FAILED
    assert "Evicted: low on memory" in failed.reason


def test_pod_descriptions_say_why() -> None:
    waiting = pod(
        containerStatuses=[
            {
                "name": "app",
                "ready": False,
                "restartCount": 3,
                "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s"}},
                "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}},
            },
            {"name": "sidecar", "ready": False, "state": {"running": {}}},
            {"name": "fine", "ready": True, "state": {"running": {}}},
        ]
    )
    assert describe_pod(waiting) == (
        "Running; container app waiting: CrashLoopBackOff (back-off 40s), 3 restarts "
        "(last exit code 1 Error); container sidecar running but not ready"
    )
    unschedulable = pod(
        "Pending",
        conditions=[
            {"type": "PodScheduled", "status": "False", "message": "0/1 nodes are available"}
        ],
    )
    assert describe_pod(unschedulable) == "Pending; unschedulable: 0/1 nodes are available"


def test_bad_image_names_are_hopeless() -> None:
    hopeless = pod(
        "Pending",
        containerStatuses=[{"name": "a", "state": {"waiting": {"reason": "InvalidImageName"}}}],
    )
    assert pod_is_hopeless(hopeless)
    assert assess(hopeless).state is State.FAILED
    pulling = pod(
        "Pending",
        containerStatuses=[{"name": "a", "state": {"waiting": {"reason": "ImagePullBackOff"}}}],
    )
    assert not pod_is_hopeless(pulling)
    assert assess(pulling).state is State.PENDING


def test_jobs() -> None:
    job: dict[str, Any] = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"}}
    job["status"] = {"active": 1}
    assert assess(job).reason == "0/1 completions, 1 active, 0 failed"
    job["status"] = {"conditions": [{"type": "Complete", "status": "True"}]}
    assert assess(job).ready
    job["status"] = {
        "conditions": [
            {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "x"}
        ]
    }
    assert assess(job).state is State.FAILED
    assert assess(job).reason == "BackoffLimitExceeded: x"


def test_pvcs() -> None:
    pvc: dict[str, Any] = {"apiVersion": "v1", "kind": "PersistentVolumeClaim"}
    assert assess({**pvc, "status": {"phase": "Bound"}}).ready
    assert assess({**pvc, "status": {"phase": "Pending"}}).reason == "Pending, not bound"
    assert assess({**pvc, "status": {"phase": "Lost"}}).state is State.FAILED


def test_services_need_a_ready_endpoint() -> None:
    service = {"apiVersion": "v1", "kind": "Service", "spec": {"selector": {"app": "web"}}}
    assert assess(service).reason == "no ready endpoints (selector app=web)"
    not_ready = {"endpoints": [{"conditions": {"ready": False}}]}
    assert not assess(service, [not_ready]).ready
    ready = {"endpoints": [{"conditions": {"ready": True}}]}
    assert assess(service, [not_ready, ready]).ready
    assert assess(service, [{"endpoints": [{"addresses": ["10.0.0.1"]}]}]).ready


def test_services_without_selector_and_other_kinds_are_ready_at_once() -> None:
    assert assess({"apiVersion": "v1", "kind": "Service", "spec": {"ports": []}}).ready
    external = {"apiVersion": "v1", "kind": "Service", "spec": {"type": "ExternalName"}}
    assert assess(external).ready
    assert assess({"apiVersion": "v1", "kind": "ConfigMap"}).ready
    assert assess({"apiVersion": "example.com/v1", "kind": "Deployment"}).ready


def test_events_are_summarised_newest_last() -> None:
    at = "2026-01-01T00:00:0{}Z".format
    events: list[dict[str, Any]] = [
        {"type": "Warning", "reason": "Unhealthy", "count": 7, "lastTimestamp": at(2),
         "message": "Readiness probe failed:\n  nope"},
        {"type": "Normal", "reason": "Pulled", "lastTimestamp": at(1), "message": "ok"},
        {"type": "Normal", "reason": "Scheduled", "lastTimestamp": at(0), "message": "s"},
    ]  # fmt: skip
    assert describe_events(events, limit=2) == [
        "Normal Pulled: ok",
        "Warning Unhealthy (x7): Readiness probe failed: nope",
    ]


def rolling(total: int, updated: int, available: int) -> dict[str, Any]:
    """A Deployment of one wanted replica, with ``total`` pods running."""
    obj = deployment(1, updatedReplicas=updated, availableReplicas=available)
    obj["status"]["replicas"] = total
    return obj


def test_deployment_restarting_waits_for_its_old_pods() -> None:
    # Mid-rollout: the new pod is updated, the old one still available (and counted).
    verdict = assess(rolling(2, 1, 1))
    assert verdict.state is State.PENDING
    assert verdict.reason == "1 old replicas pending termination"
    assert assess(rolling(1, 1, 1)).ready


def test_deployment_scaling_down_waits_for_the_surplus() -> None:
    verdict = assess(rolling(2, 2, 2))
    assert verdict.reason == "2/1 replicas, scaling down"


def stateful_set(wanted: int = 1, strategy: str | None = None, **status: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"replicas": wanted}
    if strategy:
        spec["updateStrategy"] = {"type": strategy}
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "db", "generation": 2},
        "spec": spec,
        "status": {"observedGeneration": 2, **status},
    }


def test_stateful_set_restarting_waits_for_the_update_revision() -> None:
    rolling = stateful_set(
        readyReplicas=1, replicas=1, currentRevision="db-1", updateRevision="db-2"
    )
    assert assess(rolling).reason == "rolling update: 0/1 replicas updated"
    done = stateful_set(readyReplicas=1, replicas=1, currentRevision="db-2", updateRevision="db-2")
    assert assess(done).ready
    # OnDelete never rolls: the old revision is what runs until pods are deleted by hand.
    on_delete = stateful_set(
        1, "OnDelete", readyReplicas=1, replicas=1, currentRevision="db-1", updateRevision="db-2"
    )
    assert assess(on_delete).ready
