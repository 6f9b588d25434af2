"""A pod that is Ready before its app listens: clients that write at once are refused
promptly, and the forward works as soon as the app listens (nothing stalls the tunnel).

The kubelet stops reading a tunnel's frames for a connection it could not dial if the
client already sent bytes on it; those frames then held up others on the same tunnel
until the forwarder gave up on it. Uses test_portforward.py's namespace.
"""

from __future__ import annotations

import socket
import time
from typing import Literal

import pytest

from kubefixtures.kube.portforward import ServicePortForward
from tests.integration.test_portforward import (
    Cluster,
    cluster,  # noqa: F401 (the module's namespace)
    deployment,
    service,
)

pytestmark = pytest.mark.cluster

LISTENS_AFTER = 6  # seconds the container sleeps before its server listens
# A refused connection comes back in milliseconds; one that has heard nothing for this
# long is stuck behind something (what the bug looked like), not refused.
STALLED_AFTER = 5.0
GIVE_UP = 60.0
REQUEST = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"

Outcome = Literal["answered", "refused", "stalled"]


def late_listener(name: str) -> tuple[dict[str, object], dict[str, object]]:
    """A Deployment Ready at once (no readiness probe) whose server listens seconds later."""
    late = deployment(name)
    app = late["spec"]["template"]["spec"]["containers"][0]  # type: ignore[index]
    del app["readinessProbe"]
    app["command"] = ["sh", "-c", f"sleep {LISTENS_AFTER}; exec testserver both"]
    return late, service(name)


def request_at_once(port: int) -> Outcome:
    """Connects and writes a request before hearing anything, as an HTTP client does."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=STALLED_AFTER) as sock:
            sock.sendall(REQUEST)
            answer = sock.recv(1 << 16)
    except TimeoutError:
        return "stalled"
    except (ConnectionResetError, BrokenPipeError):
        return "refused"
    return "answered" if answer.startswith(b"HTTP/1.1 200") else "refused"


@pytest.mark.parametrize(
    "transport",
    [
        pytest.param(
            "spdy",
            # Known residual (CHANGELOG, docs/routes.md): a refusal the kubelet reports after
            # the next connection opened on the same SPDY tunnel can still hold that
            # connection behind the kubelet's blocked frame worker. Seen 2 in 3 runs on a
            # quiet machine (a follow-up stalled); v4 never. Runs, and reports either way.
            marks=pytest.mark.xfail(
                reason="a late refusal can still stall one SPDY connection", strict=False
            ),
        ),
        "v4",
    ],
)
def test_clients_writing_before_the_app_listens_never_stall_the_forward(
    cluster: Cluster,  # noqa: F811
    transport: str,
) -> None:
    name = f"late-{transport}"
    late, late_service = late_listener(name)
    cluster.apps.create_namespaced_deployment(cluster.namespace, late)
    cluster.core.create_namespaced_service(cluster.namespace, late_service)
    try:
        cluster.wait_ready(name)
        outcomes: list[Outcome] = []
        with ServicePortForward(
            cluster.configuration,
            cluster.namespace,
            name,
            "http",
            transport=transport,  # type: ignore[arg-type]
            route="forward",
            connect_timeout=30.0,
        ) as fwd:
            deadline = time.monotonic() + GIVE_UP
            while time.monotonic() < deadline:
                outcome = request_at_once(fwd.local_port)
                outcomes.append(outcome)
                if outcome == "answered":
                    break
                time.sleep(0.1)
            # Once answered, the forward keeps answering.
            follow_up = [request_at_once(fwd.local_port) for _ in range(3)]
    finally:
        cluster.apps.delete_namespaced_deployment(name, cluster.namespace)
        cluster.core.delete_namespaced_service(name, cluster.namespace)

    assert outcomes[0] == "refused", outcomes  # the scenario: written before the app listened
    assert outcomes[-1] == "answered", outcomes
    assert "stalled" not in outcomes, outcomes
    assert follow_up == ["answered"] * 3
