"""The real apiserver and kubelet keep to the protocol rules the forwarder now enforces
(issue 12): heavy traffic on both transports completes without a single protocol error.

Uses test_portforward.py's namespace fixture (a testserver Deployment behind a Service).
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import logging
import os

import pytest

from tests.integration.test_portforward import (
    Cluster,
    cluster,  # noqa: F401 (the module's namespace and Deployment)
    echo_roundtrip,
    forward,
    http_get,
)

pytestmark = pytest.mark.cluster


@pytest.mark.parametrize("transport", ["spdy", "v4"])
def test_real_traffic_breaks_no_protocol_rule(
    cluster: Cluster,  # noqa: F811
    transport: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    payloads = [os.urandom(size) for size in (1, 125, 126, 65535, 65536, 4 * 1024 * 1024)]
    with (
        caplog.at_level(logging.WARNING, "kubefixtures.portforward"),
        forward(cluster, "echo", transport=transport) as echo,
        forward(cluster, "http", transport=transport) as http,
    ):
        with concurrent.futures.ThreadPoolExecutor(len(payloads)) as pool:
            results = list(pool.map(lambda p: echo_roundtrip(echo.local_port, p), payloads))
        statuses = [http_get(http.local_port, "/health")[0] for _ in range(20)]
    assert [hashlib.sha256(r).digest() for r in results] == [
        hashlib.sha256(p).digest() for p in payloads
    ]
    assert statuses == [200] * 20
    assert [r.getMessage() for r in caplog.records] == []
