"""Which pod and port a forwarded Service port leads to, and why none is ready."""

from __future__ import annotations

from typing import Any

import pytest

from kubefixtures.kube.portforward._endpoints import (
    ServicePort,
    ServicePortError,
    Target,
    explain_no_ready_pods,
    ready_targets,
    resolve_service_port,
    target_for_pod,
)


def service(**spec: Any) -> dict[str, Any]:
    base = {
        "selector": {"app": "web"},
        "ports": [
            {"name": "http", "port": 80, "targetPort": "web", "protocol": "TCP"},
            {"name": "echo", "port": 7000, "targetPort": 7000, "protocol": "TCP"},
        ],
    }
    base.update(spec)
    return {"metadata": {"name": "web", "namespace": "ns"}, "spec": base}


def endpoint(
    pod: str, *, ready: bool | None = True, terminating: bool = False, address: str = "10.0.0.1"
) -> dict[str, Any]:
    conditions: dict[str, Any] = {"terminating": terminating}
    if ready is not None:
        conditions["ready"] = ready
    return {
        "addresses": [address],
        "conditions": conditions,
        "targetRef": {"kind": "Pod", "name": pod},
    }


def endpoint_slice(*endpoints: dict[str, Any], http_port: int = 8080) -> dict[str, Any]:
    return {
        "addressType": "IPv4",
        "endpoints": list(endpoints),
        "ports": [{"name": "http", "port": http_port}, {"name": "echo", "port": 7000}],
    }


HTTP = ServicePort("http", 80, "web", "TCP")


@pytest.mark.parametrize("wanted", [80, "http", "80"])
def test_resolve_by_number_or_name(wanted: int | str) -> None:
    assert resolve_service_port(service(), wanted) == HTTP


def test_resolve_unknown_port_lists_the_ports() -> None:
    with pytest.raises(
        ServicePortError, match=r"Service ns/web has no port 81 \(its ports: 80/http, 7000/echo\)"
    ):
        resolve_service_port(service(), 81)


def test_unnamed_single_port_defaults_target_to_port() -> None:
    svc = service(ports=[{"port": 6379}])
    assert resolve_service_port(svc, 6379) == ServicePort("", 6379, 6379, "TCP")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"selector": None}, "no pod selector"),
        ({"type": "ExternalName"}, "ExternalName"),
        ({"ports": [{"port": 53, "protocol": "UDP"}]}, "UDP; port-forwarding carries TCP only"),
    ],
)
def test_services_that_cannot_be_forwarded(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(ServicePortError, match=message):
        resolve_service_port(service(**spec), 53 if "ports" in spec else 80)


def test_only_ready_pods_are_chosen_with_their_own_port() -> None:
    slices = [
        endpoint_slice(endpoint("web-b"), endpoint("web-c", ready=False), http_port=8080),
        # Another slice: pods whose named port "web" is 9090.
        endpoint_slice(
            endpoint("web-a"), endpoint("web-d", terminating=True, ready=False), http_port=9090
        ),
    ]
    assert ready_targets(slices, HTTP) == [
        Target("web-a", 9090, "10.0.0.1"),
        Target("web-b", 8080, "10.0.0.1"),
    ]


def test_unknown_readiness_counts_as_ready_but_terminating_never() -> None:
    slices = [endpoint_slice(endpoint("web-a", ready=None), endpoint("web-b", terminating=True))]
    assert ready_targets(slices, HTTP) == [Target("web-a", 8080, "10.0.0.1")]


def test_endpoints_without_pods_or_the_port_are_skipped() -> None:
    not_a_pod = {"conditions": {"ready": True}, "targetRef": {"kind": "Node", "name": "n"}}
    no_ref = {"conditions": {"ready": True}}
    without_port = {
        "addressType": "IPv4",
        "endpoints": [endpoint("web-x")],
        "ports": [{"name": "other", "port": 1}],
    }
    fqdn = endpoint_slice(endpoint("web-y")) | {"addressType": "FQDN"}
    slices = [endpoint_slice(not_a_pod, no_ref), without_port, fqdn]
    assert ready_targets(slices, HTTP) == []


def test_unnamed_service_port_matches_unnamed_slice_port() -> None:
    port = ServicePort("", 6379, 6379, "TCP")
    slices = [
        {"addressType": "IPv4", "endpoints": [endpoint("redis-0")], "ports": [{"port": 6379}]}
    ]
    assert ready_targets(slices, port) == [Target("redis-0", 6379, "10.0.0.1")]


def pod(name: str, **status: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {
            "containers": [{"name": "app", "ports": [{"name": "web", "containerPort": 8080}]}]
        },
        "status": status,
    }


def test_named_target_port_resolves_per_pod() -> None:
    assert target_for_pod(pod("a"), HTTP) == 8080
    assert target_for_pod({"spec": {"containers": [{"name": "x"}]}}, HTTP) is None
    assert target_for_pod({}, ServicePort("", 1, 6379, "TCP")) == 6379


def test_explain_no_pods() -> None:
    assert explain_no_ready_pods(service(), [], HTTP) == "no pod matches its selector app=web"


def test_explain_waiting_container() -> None:
    waiting = pod(
        "web-1",
        phase="Pending",
        containerStatuses=[
            {
                "name": "app",
                "ready": False,
                "state": {
                    "waiting": {"reason": "ImagePullBackOff", "message": "no such image\nmore"}
                },
            }
        ],
    )
    crashed = pod(
        "web-2",
        phase="Running",
        containerStatuses=[
            {"name": "app", "state": {"terminated": {"reason": "Error", "exitCode": 3}}}
        ],
    )
    unready = pod(
        "web-3",
        phase="Running",
        containerStatuses=[{"name": "app", "ready": False, "state": {"running": {}}}],
    )
    text = explain_no_ready_pods(service(), [unready, crashed, waiting], HTTP)
    assert text == (
        "pod web-1 not ready (phase Pending; "
        "container app waiting: ImagePullBackOff (no such image)); "
        "pod web-2 not ready (phase Running; container app terminated: Error (exit code 3)); "
        "pod web-3 not ready (phase Running; container app running but not ready)"
    )
    assert "\n" not in text


def test_explain_terminating_missing_port_and_conditions() -> None:
    gone = pod("a") | {"metadata": {"name": "a", "deletionTimestamp": "2024-01-01T00:00:00Z"}}
    portless = {"metadata": {"name": "b"}, "spec": {"containers": [{"name": "x"}]}}
    unscheduled = pod(
        "c",
        phase="Pending",
        conditions=[{"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}],
    )
    extra = [pod(f"z{i}") for i in range(2)]
    text = explain_no_ready_pods(service(), [gone, portless, unscheduled, *extra], HTTP)
    assert text == (
        "pod a is terminating; pod b has no container port named 'web'; "
        "pod c not ready (phase Pending; PodScheduled: Unschedulable) (and 2 more)"
    )


def test_targets_carry_the_pod_ip_for_a_direct_route() -> None:
    slices = [
        endpoint_slice(endpoint("web-b", address="10.0.0.9"), endpoint("web-a", address="fd00::7"))
    ]
    assert ready_targets(slices, HTTP) == [
        Target("web-a", 8080, "fd00::7"),
        Target("web-b", 8080, "10.0.0.9"),
    ]
    without = {"conditions": {"ready": True}, "targetRef": {"kind": "Pod", "name": "web-c"}}
    assert ready_targets([endpoint_slice(without)], HTTP) == [Target("web-c", 8080, "")]
