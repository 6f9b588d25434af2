"""A ClusterIP that answers from here is only trusted when nothing else would answer for it.

Behind many hosts' default route a transparent proxy, a VPN's or a sandbox's catch-all
accepts a connection to any address (this CI's answers ``HTTP/1.1 400 Bad Request`` to
redis-py). A connection to a ClusterIP that kube-proxy has not rewritten yet (a new
Service, in iptables mode) goes there, so a connect probe to the ClusterIP cannot tell
kube-proxy's answer from the stranger's. ``catch_all_beside_the_cluster`` builds such a
host on purpose, the same on any machine: what kube-proxy does not rewrite in the Service
range is redirected to a local listener that answers as that proxy does. kube-proxy's
rewrite comes first, so programmed Services keep working, as they do behind a real one.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubefixtures.cluster.local import layout
from kubefixtures.details import EnvironmentDetails
from kubefixtures.kube import Cluster
from tests.integration.sharing_support import (
    delete_all,
    environ,
    output,
    run_pytest,
    start_up,
    unique,
)
from tests.integration.test_direct_address import run_catalog_suite
from tests.integration.test_direct_route import DIRECT_WEB, write_inner_suite

pytestmark = pytest.mark.cluster

PROXY_ANSWER = b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n"
# An address of the Service range that no Service is given (the allocator hands out the
# range's low end first on a cluster this small).
UNALLOCATED = "10.96.255.254"


def _answer_everyone(listener: socket.socket, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            connection, _ = listener.accept()
        except OSError:
            return
        with connection:
            connection.settimeout(1)
            with contextlib.suppress(OSError):
                connection.recv(4096)
                connection.sendall(PROXY_ANSWER)


@contextlib.contextmanager
def catch_all_beside_the_cluster() -> Iterator[None]:
    """Connections to the Service range that kube-proxy does not rewrite are accepted here
    and answered as an HTTP proxy answers what it cannot parse."""
    iptables = shutil.which("iptables")
    if iptables is None:
        pytest.fail("iptables is needed to build a catch-all (apt install iptables)")
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()
    thread = threading.Thread(target=_answer_everyone, args=(listener, stop), daemon=True)
    thread.start()
    # Appended: kube-proxy's jump to its Service rules comes first in the chain.
    rule = [
        "-t", "nat", "OUTPUT", "-d", layout.SERVICE_CIDR, "-p", "tcp",
        "-m", "comment", "--comment", "kubefixtures-test-catch-all",
        "-j", "REDIRECT", "--to-ports", str(listener.getsockname()[1]),
    ]  # fmt: skip
    adding = [iptables, rule[0], rule[1], "-A", *rule[2:]]
    subprocess.run(adding, check=True, capture_output=True, timeout=30)
    try:
        with socket.create_connection((UNALLOCATED, 6379), timeout=5) as stranger:
            stranger.sendall(b"PING\r\n")
            assert stranger.recv(100).startswith(b"HTTP/1.1 400"), "the catch-all is in place"
        yield
    finally:
        removing = [iptables, rule[0], rule[1], "-D", *rule[2:]]
        subprocess.run(removing, check=True, capture_output=True, timeout=30)
        stop.set()
        listener.close()
        thread.join(timeout=5)


def test_the_local_cluster_refuses_what_no_service_serves() -> None:
    """Where kube-proxy has rewritten nothing (no Service at that address or port), the
    local cluster refuses the connection, whatever this host's default route would do."""
    for address, port in ((UNALLOCATED, 6379), (layout.KUBERNETES_SERVICE_IP, 9)):
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((address, port), timeout=5).close()
    # The apiserver's own Service is rewritten and answers.
    socket.create_connection((layout.KUBERNETES_SERVICE_IP, 443), timeout=5).close()


# redis-py through the address the catalog hands out: a ClusterIP whose answer might be
# the catch-all's is not handed out; the splice on 127.0.0.1 is.
CATALOG_TEST = """
import redis as redis_client


def test_redis_beside_a_catch_all(redis, kubefixtures_redis):
    (service,) = kubefixtures_redis.services.values()
    assert (service.route, service.host) == ("direct", "127.0.0.1"), service
    assert redis.host == "127.0.0.1"
    client = redis_client.Redis.from_url(redis.url, socket_timeout=10)
    client.set("kubefixtures", "past the catch-all")
    assert client.get("kubefixtures") == b"past the catch-all"
    client.close()
"""


def test_the_service_address_is_not_handed_out_where_anything_answers(
    tmp_path: Path, kubefixtures_cluster: Cluster
) -> None:
    with catch_all_beside_the_cluster():
        result = run_catalog_suite(
            tmp_path, kubefixtures_cluster, CATALOG_TEST, "--kubefixtures-direct-address=service"
        )
    assert result.returncode == 0, output(result)
    assert "(direct)" in result.stdout, output(result)


# The details file's Service, reached where it was forwarded again.
DETAILS_TEST = """
import httpx


def test_address({name}):
    web = {name}.services["web"]
    assert (web.route, web.host) == ("direct", "127.0.0.1"), web
    with httpx.Client(trust_env=False, timeout=10) as client:
        assert client.get(web.url + "/").status_code == 200
"""


def test_a_details_file_at_the_cluster_ip_is_forwarded_again_where_anything_answers(
    tmp_path: Path, kubefixtures_cluster: Cluster
) -> None:
    name = unique("stray_details")
    details_file = tmp_path / "env.json"
    write_inner_suite(tmp_path, name, DETAILS_TEST)
    up, printed = start_up(
        tmp_path,
        str(DIRECT_WEB),
        *("--name", name, "--details-out", str(details_file), "--direct-address", "service"),
    )
    try:
        assert EnvironmentDetails.read(details_file).services["web"].route == "service", printed
        up.send_signal(signal.SIGTERM)
        rest, _ = up.communicate(timeout=60)
        assert up.returncode == 0, rest
        with catch_all_beside_the_cluster():
            result = run_pytest(tmp_path, "-s", env=environ(KUBEFIXTURES_DETAILS=str(details_file)))
        assert result.returncode == 0, output(result)
        assert "1 port(s) forwarded again (direct)" in result.stdout, output(result)
    finally:
        if up.poll() is None:
            up.kill()
            up.communicate()
        delete_all(kubefixtures_cluster, name)
