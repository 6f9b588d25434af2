"""A ClusterIP that answers from here is only trusted when nothing else would answer for it
(tests/integration/catch_all.py builds a host where anything answers; the details file's
case is in test_direct_address)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from kubefixtures.cluster.local import layout
from kubefixtures.kube import Cluster
from tests.integration.catch_all import UNALLOCATED, catch_all_beside_the_cluster
from tests.integration.sharing_support import output
from tests.integration.test_direct_address import run_catalog_suite

pytestmark = pytest.mark.cluster


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
