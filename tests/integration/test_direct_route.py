"""Direct routes on the real cluster: the local cluster's pod network is reachable from its
host, so ``--kubefixtures-route=auto`` (the default) splices 127.0.0.1 to the pod's IP.

The testserver's ``GET /`` names the pod that answered and the client's address as the pod
saw it: 127.0.0.1 through a port-forward (the runtime dials the pod from inside its network
namespace), this host's address on the pod network through the direct route.

"A machine without the route" is simulated with one iptables rule on this host, for the
test's duration only: it answers connections to the test pod's IP on its HTTP port (and
nothing else: not other pods, not the echo port the readiness probe dials) with an ICMP
host-unreachable, which is what a host without a route to the pod network gets from its
gateway. The port-forward is unaffected: the runtime dials the port from inside the pod's
network namespace, past this host's OUTPUT chain.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from kubefixtures import Environment, environment
from kubefixtures.details import EnvironmentDetails
from kubefixtures.kube import Cluster
from kubefixtures.kube.client import POD
from kubefixtures.kube.portforward import ServicePortForward
from tests.integration.sharing_support import (
    BIN,
    delete_all,
    environ,
    output,
    run_pytest,
    start_up,
    unique,
    wait_for,
)

pytestmark = pytest.mark.cluster

DIRECT_WEB = Path(__file__).parent / "environments" / "direct-route"

direct_web = environment(DIRECT_WEB, scope="module")

# The inner suite: the route its environment took, checked against what the pod saw.
INNER_TEST = """
import json
import os
import urllib.request


def test_route({name}):
    web = {name}.services["web"]
    assert web.route == os.environ["EXPECTED_ROUTE"], web
    with urllib.request.urlopen(web.url + "/", timeout=10) as answer:
        info = json.load(answer)
    forwarded = info["remote"].rsplit(":", 1)[0] in ("127.0.0.1", "[::1]")
    assert forwarded == (web.route == "forward"), info
"""


def write_inner_suite(directory: Path, name: str, test: str = INNER_TEST) -> None:
    (directory / "conftest.py").write_text(
        f"from kubefixtures import environment\n\n{name} = environment({str(DIRECT_WEB)!r})\n"
    )
    (directory / "test_inner.py").write_text(test.format(name=name))


def who_answers(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url + "/", timeout=10) as answer:
        info: dict[str, Any] = json.load(answer)
        return info


@pytest.mark.parametrize(
    ("options", "expected"), [((), "direct"), (("--kubefixtures-route=forward",), "forward")]
)
def test_auto_goes_direct_here_and_forward_turns_it_off(
    tmp_path: Path, kubefixtures_cluster: Cluster, options: tuple[str, ...], expected: str
) -> None:
    name = unique("route")
    write_inner_suite(tmp_path, name)
    try:
        result = run_pytest(tmp_path, "-s", *options, env=environ(EXPECTED_ROUTE=expected))
        assert result.returncode == 0, output(result)
        # The environment's line says which route its Service took.
        assert f"({expected})" in result.stdout, output(result)
    finally:
        delete_all(kubefixtures_cluster, name)


def delete_pod_with_kubectl(cluster: Cluster, namespace: str, pod: str) -> None:
    """``kubectl delete pod`` without waiting: the restart a user would cause."""
    kubectl = [str(BIN / "kubectl"), "-n", namespace]
    if cluster.context:
        kubectl += ["--context", cluster.context]
    deleted = subprocess.run(
        [*kubectl, "delete", "pod", pod, "--wait=false"],
        env=environ(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert deleted.returncode == 0, output(deleted)


def test_direct_route_follows_a_pod_restart(
    kubefixtures_cluster: Cluster, direct_web: Environment
) -> None:
    forward = ServicePortForward(
        kubefixtures_cluster.config, direct_web.namespace, "web", "http", route="direct"
    )
    with forward:
        assert forward.route == "direct"
        url = f"http://127.0.0.1:{forward.local_port}"
        first = who_answers(url)
        assert first["pod"] == forward.pod
        assert not first["remote"].startswith("127.0.0.1:")  # straight from this host
        delete_pod_with_kubectl(kubefixtures_cluster, direct_web.namespace, first["pod"])
        wait_for(lambda: forward.pod not in (None, first["pod"]), 120, "a new ready pod")
        second = who_answers(url)
        assert second["pod"] == forward.pod != first["pod"]
        # The session's own forward (on the session's route) followed it too.
        wait_for(
            lambda: who_answers(str(direct_web.services["web"].url))["pod"] == second["pod"],
            30,
            "the environment's port to reach the new pod",
        )


@contextmanager
def unreachable_from_this_host(address: str, port: int, tag: str) -> Iterator[None]:
    """Connections from this host to ``address:port`` fail with "No route to host"."""
    iptables = shutil.which("iptables")
    if iptables is None:
        pytest.fail("iptables is needed to cut this host off from a pod (apt install iptables)")
    rule = [
        "OUTPUT", "-d", f"{address}/32", "-p", "tcp", "--dport", str(port),
        "-m", "comment", "--comment", f"kubefixtures-test-{tag}",
        "-j", "REJECT", "--reject-with", "icmp-host-unreachable",
    ]  # fmt: skip
    subprocess.run([iptables, "-I", *rule], check=True, capture_output=True, timeout=30)
    try:
        yield
    finally:
        subprocess.run([iptables, "-D", *rule], check=True, capture_output=True, timeout=30)


def test_a_details_file_used_without_the_route_falls_back_to_forwarding(
    tmp_path: Path, kubefixtures_cluster: Cluster
) -> None:
    name = unique("route_details")
    details_file = tmp_path / "env.json"
    write_inner_suite(tmp_path, name)
    up, printed = start_up(
        tmp_path, str(DIRECT_WEB), "--name", name, "--details-out", str(details_file)
    )
    try:
        details = EnvironmentDetails.read(details_file)
        assert details.services["web"].route == "direct", printed
        # `up` stops: its ports no longer answer, and a run elsewhere forwards again.
        up.send_signal(signal.SIGTERM)
        rest, _ = up.communicate(timeout=60)
        assert up.returncode == 0, rest

        (pod,) = kubefixtures_cluster.list_objects(POD, details.namespace)["items"]
        address = pod["status"]["podIP"]
        with_details = environ(KUBEFIXTURES_DETAILS=str(details_file), EXPECTED_ROUTE="forward")
        with unreachable_from_this_host(address, 8080, details.namespace):
            started = time.monotonic()
            result = run_pytest(tmp_path, "-s", env=with_details)
            assert result.returncode == 0, output(result)
            assert "1 port(s) forwarded again (forward)" in result.stdout, output(result)
            assert time.monotonic() - started < 60

            # Forced, the direct route fails in one line naming the Service and the probe.
            result = run_pytest(tmp_path, "--kubefixtures-route=direct", env=with_details)
            assert result.returncode != 0
            message = (
                f"Service {details.namespace}/web: no direct route to pod "
                f"{pod['metadata']['name']} at {address}:8080: No route to host"
            )
            assert message in result.stdout, output(result)
            assert "Traceback" not in result.stdout

        # With the route back, the same file goes direct again.
        result = run_pytest(tmp_path, "-s", env={**with_details, "EXPECTED_ROUTE": "direct"})
        assert result.returncode == 0, output(result)
        assert "1 port(s) forwarded again (direct)" in result.stdout, output(result)
    finally:
        if up.poll() is None:
            up.kill()
            up.communicate()
        delete_all(kubefixtures_cluster, name)
