"""``--kubefixtures-direct-address=service`` on the real cluster: this host's kube-proxy
routes ClusterIPs, so a Service on the direct route is handed out at its ClusterIP and
port, with nothing of ours in between.

The testserver's ``GET /`` names the pod that answered and the client's address as the pod
saw it (127.0.0.1 through a port-forward). "A machine without the route" is simulated as
in test_direct_route: connections from this host to the pod's IP on its HTTP port are
rejected. kube-proxy rewrites a connection to the ClusterIP into one to the pod's IP before
that rule looks at it, so the same rule cuts the ClusterIP off too.
"""

from __future__ import annotations

import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from kubefixtures import Environment
from kubefixtures.details import EnvironmentDetails
from kubefixtures.kube import Cluster
from kubefixtures.kube.client import POD
from kubefixtures.kube.control import SERVICE
from kubefixtures.kube.portforward import ServicePortForward
from tests.integration.catch_all import catch_all_beside_the_cluster
from tests.integration.sharing_support import (
    delete_all,
    environ,
    output,
    run_pytest,
    start_up,
    unique,
    wait_for,
)
from tests.integration.test_direct_route import (
    DIRECT_WEB,
    delete_pod_with_kubectl,
    direct_web,
    unreachable_from_this_host,
    write_inner_suite,
)

pytestmark = pytest.mark.cluster

__all__ = ["direct_web"]  # the module-scoped environment, a fixture here too

# The inner suite: the host and route its environment got, checked against the Service's
# ClusterIP and against what the pod saw, through httpx.
INNER_TEST = """
import os
import subprocess

import httpx


def test_address({name}):
    web = {name}.services["web"]
    assert web.route == os.environ["EXPECTED_ROUTE"], web
    cluster_ip = subprocess.run(
        ["kubectl", "-n", {name}.namespace, "get", "service", "web",
         "-o", "jsonpath={{.spec.clusterIP}}"],
        check=True, capture_output=True, text=True,
    ).stdout
    if web.route == "service":
        assert (web.host, web.port, web.ports) == (cluster_ip, 80, {{80: 80}}), web
    else:
        assert web.host == "127.0.0.1", web
    assert web.url == f"http://{{web.host}}:{{web.port}}"
    with httpx.Client(trust_env=False, timeout=10) as client:
        info = client.get(web.url + "/").json()
    forwarded = info["remote"].rsplit(":", 1)[0] in ("127.0.0.1", "[::1]")
    assert forwarded == (web.route == "forward"), info
"""


def who_answers(url: str) -> dict[str, Any]:
    """The testserver's answer, by httpx, never through a proxy of the environment (a
    ClusterIP is no loopback address, which proxy settings usually leave out)."""
    info: dict[str, Any] = httpx.get(url + "/", timeout=5, trust_env=False).json()
    return info


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (("--kubefixtures-direct-address=service",), "service"),
        (("--kubefixtures-direct-address=service", "--kubefixtures-route=forward"), "forward"),
        ((), "direct"),
    ],
)
def test_service_address_is_the_cluster_ip_and_forward_still_tunnels(
    tmp_path: Path, kubefixtures_cluster: Cluster, options: tuple[str, ...], expected: str
) -> None:
    name = unique("address")
    write_inner_suite(tmp_path, name, INNER_TEST)
    try:
        result = run_pytest(tmp_path, "-s", *options, env=environ(EXPECTED_ROUTE=expected))
        assert result.returncode == 0, output(result)
        assert f"({expected})" in result.stdout, output(result)  # the environment's line
    finally:
        delete_all(kubefixtures_cluster, name)


# The catalog's Redis: its connection URL is built on the Service's host, and redis-py
# reaches it there.
CATALOG_TEST = """
import redis as redis_client


def test_redis_at_its_cluster_ip(redis, kubefixtures_redis):
    (service,) = kubefixtures_redis.services.values()
    assert service.route == "service", service
    assert redis.host == service.host != "127.0.0.1"
    assert redis.url.endswith(f"@{service.host}:6379/0")
    client = redis_client.Redis.from_url(redis.url, socket_timeout=10)
    client.set("kubefixtures", "at the ClusterIP")
    assert client.get("kubefixtures") == b"at the ClusterIP"
    client.close()
"""


def run_catalog_suite(
    directory: Path, cluster: Cluster, test: str, *options: str
) -> subprocess.CompletedProcess[str]:
    """``test`` (a module using the catalog's Redis) run by an inner pytest with
    ``options``, its namespace deleted if a failure left it."""
    (directory / "conftest.py").write_text('pytest_plugins = ["kubefixtures.catalog.fixtures"]\n')
    (directory / "test_catalog_redis.py").write_text(test)
    result = run_pytest(
        directory,
        "-s",
        "--kubefixtures-image-overrides=redis:7=kubefixtures.local/redis:7.0",
        *options,
    )
    # The session deletes its namespace; one left by a failure is this run's alone.
    for namespace in set(re.findall(r"namespace (kf-kubefixtures-redis-[a-z0-9]+)", result.stdout)):
        cluster.delete_namespace(namespace)
    return result


def test_the_catalogs_urls_use_the_cluster_ip(
    tmp_path: Path, kubefixtures_cluster: Cluster
) -> None:
    result = run_catalog_suite(
        tmp_path, kubefixtures_cluster, CATALOG_TEST, "--kubefixtures-direct-address=service"
    )
    assert result.returncode == 0, output(result)


def test_the_cluster_ip_follows_a_pod_restart_by_itself(
    kubefixtures_cluster: Cluster, direct_web: Environment
) -> None:
    service = kubefixtures_cluster.get_or_none(SERVICE, direct_web.namespace, "web")
    assert service is not None
    forward = ServicePortForward(
        kubefixtures_cluster.config,
        direct_web.namespace,
        "web",
        "http",
        route="direct",
        address="service",
    )
    with forward:
        assert (forward.route, forward.host) == ("service", service["spec"]["clusterIP"])
        assert forward.local_port == 80
        url = f"http://{forward.host}:{forward.local_port}"
        first = who_answers(url)
        assert not first["remote"].startswith("127.0.0.1:")
        delete_pod_with_kubectl(kubefixtures_cluster, direct_web.namespace, first["pod"])

        def answered_by_another_pod() -> bool:
            try:
                return bool(who_answers(url)["pod"] != first["pod"])
            except httpx.HTTPError:
                return False  # between the pods: kube-proxy has no ready endpoint yet

        wait_for(answered_by_another_pod, 120, "the ClusterIP to reach the new pod")
        # Once there, it stays there: every request is answered, by the new pod.
        answers = {who_answers(url)["pod"] for _ in range(20)}
        assert len(answers) == 1, answers
        assert first["pod"] not in answers


def test_a_details_file_at_the_cluster_ip_falls_back_to_forwarding(
    tmp_path: Path, kubefixtures_cluster: Cluster
) -> None:
    name = unique("address_details")
    details_file = tmp_path / "env.json"
    write_inner_suite(tmp_path, name, INNER_TEST)
    up, printed = start_up(
        tmp_path,
        str(DIRECT_WEB),
        *("--name", name, "--details-out", str(details_file), "--direct-address", "service"),
    )
    try:
        details = EnvironmentDetails.read(details_file)
        web = details.services["web"]
        assert (web.route, web.port) == ("service", 80), printed
        assert f"web http://{web.host}:80 (service)" in printed
        # The ClusterIP outlives `up`: a run on this machine needs no forward of its own.
        up.send_signal(signal.SIGTERM)
        rest, _ = up.communicate(timeout=60)
        assert up.returncode == 0, rest
        with_details = environ(KUBEFIXTURES_DETAILS=str(details_file), EXPECTED_ROUTE="service")
        result = run_pytest(tmp_path, "-s", env=with_details)
        assert result.returncode == 0, output(result)
        assert "forwarded again" not in result.stdout, output(result)

        # Where anything answers for any address, the ClusterIP's answer proves nothing: the
        # file's Service is forwarded again, on the direct route.
        with catch_all_beside_the_cluster():
            result = run_pytest(tmp_path, "-s", env={**with_details, "EXPECTED_ROUTE": "direct"})
        assert result.returncode == 0, output(result)
        assert "1 port(s) forwarded again (direct)" in result.stdout, output(result)

        # Without the route, the file's Service is forwarded through the apiserver.
        (pod,) = kubefixtures_cluster.list_objects(POD, details.namespace)["items"]
        with unreachable_from_this_host(pod["status"]["podIP"], 8080, details.namespace):
            started = time.monotonic()
            for options in ((), ("--kubefixtures-direct-address=service",)):
                result = run_pytest(
                    tmp_path, "-s", *options, env={**with_details, "EXPECTED_ROUTE": "forward"}
                )
                assert result.returncode == 0, output(result)
                assert "1 port(s) forwarded again (forward)" in result.stdout, output(result)
            assert time.monotonic() - started < 120
    finally:
        if up.poll() is None:
            up.kill()
            up.communicate()
        delete_all(kubefixtures_cluster, name)
