"""The cluster itself does what kubefixtures relies on: one Ready node of the version we
built, Deployments from local images, DNS between pods, port-forward, logs, events, exec,
and namespaces that really go away. Runs against whatever cluster kubectl points at."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubefixtures.cluster.tools import find_tool

pytestmark = pytest.mark.cluster

REDIS_IMAGE = "kubefixtures.local/redis:7.0"


def kubectl(*args: str, timeout: float = 60, check: bool = True) -> str:
    tool = find_tool("kubectl")
    assert tool is not None, "kubectl is not installed (make venv links it into .venv/bin)"
    result = subprocess.run([str(tool), *args], capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


def apply(namespace: str, manifest: dict[str, object]) -> None:
    subprocess.run(
        [str(find_tool("kubectl")), "-n", namespace, "apply", "-f", "-"],
        input=json.dumps(manifest),
        text=True,
        check=True,
        capture_output=True,
    )


def redis_manifests() -> list[dict[str, object]]:
    labels = {"app": "redis"}
    return [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "redis"},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "terminationGracePeriodSeconds": 1,
                        "containers": [
                            {
                                "name": "redis",
                                "image": REDIS_IMAGE,
                                "imagePullPolicy": "IfNotPresent",
                                "ports": [{"containerPort": 6379, "name": "redis"}],
                                "readinessProbe": {"tcpSocket": {"port": 6379}, "periodSeconds": 1},
                            }
                        ],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "redis"},
            "spec": {"selector": labels, "ports": [{"port": 6379, "targetPort": "redis"}]},
        },
    ]


@pytest.fixture(scope="module")
def namespace() -> Iterator[str]:
    name = f"kf-cluster-test-{uuid.uuid4().hex[:6]}"
    kubectl("create", "namespace", name)
    yield name
    kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="module")
def redis(namespace: str) -> str:
    for manifest in redis_manifests():
        apply(namespace, manifest)
    kubectl(
        "-n", namespace, "wait", "deployment/redis", "--for=condition=Available", "--timeout=90s",
        timeout=100,
    )  # fmt: skip
    return namespace


def test_one_ready_node_of_the_built_version() -> None:
    nodes = json.loads(kubectl("get", "nodes", "-o", "json"))["items"]
    assert len(nodes) == 1
    conditions = {c["type"]: c["status"] for c in nodes[0]["status"]["conditions"]}
    assert conditions["Ready"] == "True"
    server = json.loads(kubectl("version", "-o", "json"))["serverVersion"]["gitVersion"]
    assert nodes[0]["status"]["nodeInfo"]["kubeletVersion"] == server
    if "kubefixtures" in kubectl("config", "current-context"):
        from kubefixtures.cluster.local.build import kubernetes_version

        assert server == kubernetes_version()


def test_deployment_of_a_local_image_becomes_available(redis: str) -> None:
    status = json.loads(kubectl("-n", redis, "get", "deployment/redis", "-o", "json"))["status"]
    assert status["availableReplicas"] == 1


def test_another_pod_reaches_the_service_by_dns_name(redis: str) -> None:
    host = f"redis.{redis}.svc.cluster.local"
    apply(
        redis,
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "redis-client"},
            "spec": {
                "restartPolicy": "Never",
                "containers": [
                    {
                        "name": "ping",
                        "image": REDIS_IMAGE,
                        "imagePullPolicy": "IfNotPresent",
                        # Like any client, allow the Service's rules a moment to appear.
                        "command": [
                            "sh",
                            "-c",
                            f"for i in $(seq 20); do redis-cli -h {host} ping && exit 0; "
                            "sleep 0.5; done; exit 1",
                        ],
                    }
                ],
            },
        },
    )
    kubectl(
        "-n", redis, "wait", "pod/redis-client", "--for=jsonpath={.status.phase}=Succeeded",
        "--timeout=60s", timeout=70, check=False,
    )  # fmt: skip
    phase = kubectl("-n", redis, "get", "pod/redis-client", "-o", "jsonpath={.status.phase}")
    output = kubectl("-n", redis, "logs", "pod/redis-client", check=False)
    assert (phase, output.strip().splitlines()[-1]) == ("Succeeded", "PONG")


def test_kubectl_port_forward_from_the_host(redis: str) -> None:
    tool = find_tool("kubectl")
    assert tool is not None
    with subprocess.Popen(
        [str(tool), "-n", redis, "port-forward", "service/redis", ":6379"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as forward:
        try:
            assert forward.stdout is not None
            line = forward.stdout.readline()
            match = re.search(r"127\.0\.0\.1:(\d+)", line)
            assert match, f"unexpected port-forward output: {line!r}"
            port = int(match.group(1))
            with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
                client.sendall(b"PING\r\n")
                assert client.recv(64) == b"+PONG\r\n"
        finally:
            forward.terminate()


def test_logs_and_events_can_be_read(redis: str) -> None:
    assert "Ready to accept connections" in kubectl("-n", redis, "logs", "deployment/redis")
    events = json.loads(kubectl("-n", redis, "get", "events", "-o", "json"))["items"]
    reasons = {event["reason"] for event in events}
    assert {"Scheduled", "Started"} <= reasons


def test_exec_runs_in_the_container(redis: str) -> None:
    output = kubectl("-n", redis, "exec", "deployment/redis", "--", "redis-cli", "ping")
    assert output.strip() == "PONG"


def test_a_deleted_namespace_is_gone_within_30_seconds(redis: str) -> None:
    name = f"kf-doomed-{uuid.uuid4().hex[:6]}"
    kubectl("create", "namespace", name)
    for manifest in redis_manifests():
        apply(name, manifest)
    kubectl("-n", name, "wait", "deployment/redis", "--for=condition=Available", "--timeout=60s")
    kubectl("delete", "namespace", name, "--wait=false")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if kubectl("get", "namespace", name, check=False, timeout=10) == "":
            return
        time.sleep(0.5)
    pytest.fail(f"namespace {name} still exists 30 s after deletion")


def test_the_admin_kubeconfig_is_private() -> None:
    from kubefixtures.cluster.kubeconfig import user_kubeconfig_path

    path: Path = user_kubeconfig_path()
    assert path.stat().st_mode & 0o077 == 0


def test_remove_image_takes_a_loaded_tag_out_of_the_runtime(tmp_path: Path) -> None:
    """`kubefixtures cluster remove-image` undoes `load-image` for a tag of its own (what
    the chaos benchmark does after its run); an absent tag is no error."""
    from kubefixtures.cluster import get_provider
    from tests.image_support import retag_archive

    provider = get_provider()
    if provider.name != "local":
        reason = f"lists images through the local provider's containerd, not {provider.name}'s"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI=true but the test {reason}", pytrace=False)
        pytest.skip(reason)
    images = Path(
        os.environ.get("KUBEFIXTURES_IMAGES_DIR") or Path.home() / ".cache/kubefixtures/images"
    )
    ref = f"kubefixtures.local/remove-image-test:{uuid.uuid4().hex[:8]}"
    archive = retag_archive(images / "busybox.tar", ref, tmp_path / "image.tar")
    kubefixtures = str(Path(sys.executable).with_name("kubefixtures"))

    def listed() -> bool:
        socket_path = provider.paths.containerd_socket  # type: ignore[attr-defined]
        names = subprocess.run(
            ["ctr", "--address", str(socket_path), "--namespace", "k8s.io", "images", "ls", "-q"],
            capture_output=True, text=True, check=True,
        ).stdout.split()  # fmt: skip
        return ref in names

    subprocess.run([kubefixtures, "cluster", "load-image", str(archive)], check=True)
    assert listed()
    for _ in range(2):  # the second time the tag is already gone
        done = subprocess.run(
            [kubefixtures, "cluster", "remove-image", ref], capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        assert not listed()
