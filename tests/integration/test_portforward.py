"""The port forwarder against the real cluster (issue 4's "what must hold").

The module creates its own namespace with a Deployment of the testserver image (an HTTP
server and a TCP echo server in one pod) behind a Service with named target ports, and
deletes the namespace afterwards.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import os
import re
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from kubefixtures.kube.portforward import (
    NoReadyEndpointsError,
    PortForwardForbiddenError,
    ServiceNotFoundError,
    ServicePortForward,
)
from kubefixtures.kube.portforward._loop import THREAD_NAME
from kubefixtures.session import session_state

pytestmark = pytest.mark.cluster

IMAGE = "kubefixtures.local/testserver:0.1"
READY_TIMEOUT = 120.0


def deployment(name: str, replicas: int = 1) -> dict[str, Any]:
    labels = {"app": name}
    app = {
        "name": "app",
        "image": IMAGE,  # its default command serves HTTP on 8080 and TCP echo on 7000
        "imagePullPolicy": "IfNotPresent",
        "ports": [
            {"name": "http", "containerPort": 8080},
            {"name": "echo", "containerPort": 7000},
        ],
        "readinessProbe": {"httpGet": {"path": "/health", "port": "http"}, "periodSeconds": 1},
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"terminationGracePeriodSeconds": 1, "containers": [app]},
            },
        },
    }


def service(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {
            "selector": {"app": name},
            "ports": [
                {"name": "http", "port": 80, "targetPort": "http"},
                {"name": "echo", "port": 7000, "targetPort": "echo"},
            ],
        },
    }


class Cluster:
    """Just what these tests need, with the official client."""

    def __init__(self, configuration: Any) -> None:
        self.configuration = configuration
        self.api = client.ApiClient(self.configuration)
        self.core = client.CoreV1Api(self.api)
        self.apps = client.AppsV1Api(self.api)
        self.namespace = f"kf-pf-{secrets.token_hex(3)}"

    def create(self) -> None:
        # Not labelled managed-by kubefixtures: the operator reaps those that have no Lease.
        labels = {"kubefixtures.io/test": "portforward"}
        self.core.create_namespace({"metadata": {"name": self.namespace, "labels": labels}})
        self.apps.create_namespaced_deployment(self.namespace, deployment("echo"))
        self.core.create_namespaced_service(self.namespace, service("echo"))

    def ready_pods(self, app: str) -> list[str]:
        pods = self.core.list_namespaced_pod(self.namespace, label_selector=f"app={app}").items
        return sorted(
            pod.metadata.name
            for pod in pods
            if pod.metadata.deletion_timestamp is None
            and any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])
        )

    def wait_ready(self, app: str, count: int = 1, timeout: float = READY_TIMEOUT) -> list[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pods = self.ready_pods(app)
            if len(pods) >= count:
                return pods
            time.sleep(0.1)
        raise AssertionError(f"{app} has no {count} ready pods after {timeout}s")

    def delete(self) -> None:
        with contextlib.suppress(client.ApiException):
            self.core.delete_namespace(self.namespace)
        self.api.close()


def official_configuration(request: pytest.FixtureRequest, context: str | None) -> Any:
    """The official client's configuration of the context the suite runs against: the
    forwarder takes it as well as kubefixtures' own (and these tests set up with it)."""
    from kubernetes import config

    configuration = client.Configuration()
    config.load_kube_config(
        config_file=session_state(request.config).settings.kubeconfig,
        context=context,
        client_configuration=configuration,
        persist_config=False,
    )
    return configuration


@pytest.fixture(scope="module")
def cluster(request: pytest.FixtureRequest, kubefixtures_cluster: Any) -> Iterator[Cluster]:
    # kubefixtures_cluster (tests/integration/conftest.py) honours --kubefixtures-context
    # and friends, and skips without a cluster (fails under CI).
    cluster = Cluster(official_configuration(request, kubefixtures_cluster.context))
    cluster.create()
    try:
        cluster.wait_ready("echo")
        yield cluster
    finally:
        cluster.delete()


def forward(cluster: Cluster, port: int | str, **options: Any) -> ServicePortForward:
    return ServicePortForward(cluster.configuration, cluster.namespace, "echo", port, **options)


def echo_roundtrip(port: int, payload: bytes, timeout: float = 10.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(1 << 16):
            chunks.append(chunk)
        return b"".join(chunks)


def http_get(port: int, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """One request; reads the response by its Content-Length (the runtime holds a closed
    forwarded connection open for a second unless the client half-closes)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(1 << 16)
            assert chunk, f"connection closed after {data!r}"
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = int(re.search(rb"(?i)content-length:\s*(\d+)", head).group(1))  # type: ignore[union-attr]
        while len(body) < length:
            chunk = sock.recv(1 << 16)
            assert chunk, "connection closed in the body"
            body += chunk
    return int(head.split(b" ", 2)[1]), body


def forwarder_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == THREAD_NAME]


@pytest.fixture
def threads_before() -> list[threading.Thread]:
    """The loop thread is shared: another test's live forward (a session-scoped environment
    in the same xdist worker) may own it. Ours must leave it as they found it."""
    return forwarder_threads()


@pytest.mark.parametrize("transport", ["spdy", "v4"])
def test_http_by_port_name_and_number(cluster: Cluster, transport: str) -> None:
    with (
        forward(cluster, "http", transport=transport) as by_name,
        forward(cluster, 80) as by_number,
    ):  # type: ignore[arg-type]
        assert by_name.transport == transport
        assert http_get(by_name.local_port, "/health")[0] == 200
        assert http_get(by_number.local_port, "/health")[0] == 200


def test_fifty_concurrent_echo_connections(cluster: Cluster) -> None:
    with forward(cluster, "echo") as pf:
        payloads = [os.urandom(64 * 1024) + f"#{i}".encode() for i in range(50)]
        with concurrent.futures.ThreadPoolExecutor(50) as pool:
            results = list(pool.map(lambda p: echo_roundtrip(pf.local_port, p), payloads))
    assert [hashlib.sha256(r).hexdigest() for r in results] == [
        hashlib.sha256(p).hexdigest() for p in payloads
    ]


def test_hundred_mib_through_one_connection_arrives_intact(cluster: Cluster) -> None:
    size = 100 * 1024 * 1024
    with (
        forward(cluster, "echo") as pf,
        socket.create_connection(("127.0.0.1", pf.local_port), timeout=60) as sock,
    ):
        sent = hashlib.sha256()
        received = hashlib.sha256()
        count = 0

        def reader() -> None:
            nonlocal count
            while chunk := sock.recv(1 << 20):
                received.update(chunk)
                count += len(chunk)

        thread = threading.Thread(target=reader)
        thread.start()
        block = os.urandom(1 << 20)
        for index in range(size // len(block)):
            chunk = block[index % 7 :] + block[: index % 7]  # not the same block every time
            sent.update(chunk)
            sock.sendall(chunk)
        sock.shutdown(socket.SHUT_WR)
        thread.join(120)
    assert count == size
    assert received.hexdigest() == sent.hexdigest()


def test_pod_deleted_new_connections_heal(cluster: Cluster) -> None:
    with forward(cluster, "http", connect_timeout=5) as pf:
        old = pf.pod
        assert old is not None
        assert http_get(pf.local_port, "/health")[0] == 200
        # A connection in flight when the pod dies must end, not hang.
        in_flight = socket.create_connection(("127.0.0.1", pf.local_port), timeout=30)
        in_flight.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        in_flight.recv(4096)

        cluster.core.delete_namespaced_pod(old, cluster.namespace, grace_period_seconds=0)
        deadline = time.monotonic() + READY_TIMEOUT
        new: list[str] = []
        while not new and time.monotonic() < deadline:
            new = [p for p in cluster.ready_pods("echo") if p != old]
            time.sleep(0.05)
        assert new, "the Deployment did not replace the pod"
        ready_at = time.monotonic()

        # Within 2 s of the replacement being ready, new connections succeed; every attempt
        # before that ends within its own timeout.
        succeeded_at = None
        while time.monotonic() - ready_at < 10:
            started = time.monotonic()
            try:
                if http_get(pf.local_port, "/health", timeout=2)[0] == 200:
                    succeeded_at = time.monotonic()
                    break
            except OSError:
                pass
            assert time.monotonic() - started < 7, "an attempt hung past its timeout"
        assert succeeded_at is not None
        assert succeeded_at - ready_at < 2.0, f"healed {succeeded_at - ready_at:.2f}s after ready"
        assert pf.pod == new[0]

        in_flight.settimeout(15)
        with contextlib.suppress(OSError):
            while in_flight.recv(4096):
                pass
        in_flight.close()


def test_stop_closes_the_port_and_leaves_no_thread_or_socket(
    cluster: Cluster, threads_before: list[threading.Thread]
) -> None:
    pf = forward(cluster, "echo")
    pf.start()
    port = pf.local_port
    assert echo_roundtrip(port, b"hello") == b"hello"
    before = open_sockets()
    pf.stop()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    assert forwarder_threads() == threads_before
    assert open_sockets() < before
    assert not [s for s in open_sockets() if s[0] == port]


def open_sockets() -> set[tuple[int, str]]:
    """(local port, remote address) of this process's TCP sockets, from /proc."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    found = set()
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        with open(table) as lines:
            for line in list(lines)[1:]:
                fields = line.split()
                if fields[9] in inodes:
                    found.add((int(fields[1].split(":")[1], 16), fields[2]))
    return found


def test_errors_name_what_is_wrong(
    cluster: Cluster, threads_before: list[threading.Thread]
) -> None:
    with pytest.raises(
        ServiceNotFoundError, match=rf"^Service {cluster.namespace}/nope not found$"
    ):
        ServicePortForward(cluster.configuration, cluster.namespace, "nope", 80).start()
    with pytest.raises(
        ServiceNotFoundError, match=r"has no port 81 \(its ports: 80/http, 7000/echo\)"
    ):
        forward(cluster, 81).start()
    assert forwarder_threads() == threads_before


def test_no_ready_endpoints_says_why(cluster: Cluster) -> None:
    broken = deployment("broken")
    broken["spec"]["template"]["spec"]["containers"][0]["image"] = "kubefixtures.local/absent:0"
    broken["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = "Never"
    cluster.apps.create_namespaced_deployment(cluster.namespace, broken)
    cluster.core.create_namespaced_service(cluster.namespace, service("broken"))
    pf = ServicePortForward(
        cluster.configuration, cluster.namespace, "broken", "http", ready_timeout=3
    )
    with pytest.raises(
        NoReadyEndpointsError, match=r"has no ready endpoints for port http after 3s: pod broken-"
    ):
        pf.start()


def test_rbac_forbidding_portforward(
    cluster: Cluster, threads_before: list[threading.Thread]
) -> None:
    # A service account that may read Services and EndpointSlices, but not port-forward.
    name = "no-portforward"
    ns = cluster.namespace
    cluster.core.create_namespaced_service_account(ns, {"metadata": {"name": name}})
    rbac = client.RbacAuthorizationV1Api(cluster.api)
    rules = [
        {"apiGroups": [""], "resources": ["services", "pods"], "verbs": ["get", "list"]},
        {
            "apiGroups": ["discovery.k8s.io"],
            "resources": ["endpointslices"],
            "verbs": ["list", "watch"],
        },
    ]
    rbac.create_namespaced_role(ns, {"metadata": {"name": name}, "rules": rules})
    rbac.create_namespaced_role_binding(
        ns,
        {
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": ns}],
        },
    )
    token = cluster.core.create_namespaced_service_account_token(
        name, ns, {"spec": {"expirationSeconds": 600}}
    ).status.token
    restricted = client.Configuration()
    restricted.host = cluster.configuration.host
    restricted.ssl_ca_cert = cluster.configuration.ssl_ca_cert
    restricted.verify_ssl = cluster.configuration.verify_ssl
    restricted.api_key = {"authorization": token}
    restricted.api_key_prefix = {"authorization": "Bearer"}
    pf = ServicePortForward(restricted, ns, "echo", "http")
    with pytest.raises(
        PortForwardForbiddenError,
        match=rf"RBAC forbids port-forwarding to pod {ns}/echo-.*portforward",
    ):
        pf.start()
    assert forwarder_threads() == threads_before
