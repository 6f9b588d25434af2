"""``--kubefixtures-relay=process`` on the real cluster: the direct route's connections are
relayed by a child process of the test process (kubefixtures.kube.portforward._relay).

One inner pytest run, two modules, each with an environment of its own (the catalog's
redis and the testserver, module-scoped): the first goes through the relay with redis-py
and httpx and follows a pod restart; the second kills the relay (SIGKILL) and connects
again. Each writes the relay's process id down; the first must be the one started while pytest
collected (before any forward); once the run is over, no relay process may be left.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kubefixtures.kube import Cluster
from tests.integration.sharing_support import delete_all, environ, output, run_pytest, unique
from tests.integration.test_direct_route import DIRECT_WEB
from tests.unit.test_portforward_relay import alive

pytestmark = pytest.mark.cluster

CONFTEST = """
import os
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import redis

from kubefixtures.catalog import RedisDetails, catalog
from kubefixtures.kube.portforward import _relay

{first} = catalog("redis", sources=[{web!r}], scope="module")
{second} = catalog("redis", sources=[{web!r}], scope="module")


def relay_pid() -> int:
    relay = _relay.SHARED.current
    assert relay is not None, "no relay process"
    with open(os.environ["RELAY_PIDS"], "a") as pids:
        pids.write(f"{{relay.pid}}\\n")
    return relay.pid


def pytest_collection_modifyitems(items):
    # Before any environment comes up: the relay process started early is running.
    relay = _relay.SHARED.current
    assert relay is not None, "no relay process before the first forward"
    with open(os.environ["EARLY_PID"], "w") as early:
        early.write(str(relay.pid))


def wait_until(condition, timeout=120.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = condition()
            if value:
                return value
        except (httpx.HTTPError, redis.RedisError):
            pass
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def who_answers(url: str) -> dict:
    return httpx.get(url + "/", timeout=10).json()


def through_redis(env) -> None:
    details = RedisDetails.from_environment(env)
    assert details.host == "127.0.0.1"
    client = redis.Redis.from_url(details.url, socket_timeout=10)
    client.set("relayed", "yes")
    assert client.get("relayed") == b"yes"
    client.close()
"""

FIRST = """
import os
import subprocess

from conftest import relay_pid, through_redis, wait_until, who_answers


def test_redis_and_httpx_go_through_the_relay({first}):
    web = {first}.services["web"]
    assert web.route == "direct", web
    assert relay_pid() != os.getpid()
    through_redis({first})
    info = who_answers(str(web.url))
    assert not info["remote"].startswith("127.0.0.1:"), info  # from this host, not a tunnel


def test_a_pod_restart_is_followed({first}):
    url = str({first}.services["web"].url)
    before = who_answers(url)["pod"]
    context = os.environ["KUBECTL_CONTEXT"]
    subprocess.run(
        ["kubectl", "-n", {first}.namespace, *(["--context", context] if context else []),
         "delete", "pod", before, "--wait=false"],
        check=True, capture_output=True, timeout=60,
    )
    after = wait_until(lambda: (pod := who_answers(url)["pod"]) != before and pod)
    assert after != before
    through_redis({first})
"""

SECOND = """
import os
import signal

from kubefixtures.kube.portforward import _relay

from conftest import relay_pid, through_redis, wait_until, who_answers


def test_a_killed_relay_the_next_connections_still_succeed({second}, caplog):
    web = {second}.services["web"]
    pid = relay_pid()
    relay = _relay.SHARED.current
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: relay.lost is not None, 30)
    wait_until(lambda: "relayed in this process from now on" in caplog.text, 30)
    assert "was killed by SIGKILL" in caplog.text
    through_redis({second})
    assert who_answers(str(web.url))["pod"]
"""


def test_redis_and_httpx_through_the_relay_process_restarts_and_a_killed_relay(
    tmp_path: Path, kubefixtures_cluster: Cluster
) -> None:
    first, second = unique("relay_a"), unique("relay_b")
    names = {"first": first, "second": second, "web": str(DIRECT_WEB)}
    (tmp_path / "conftest.py").write_text(CONFTEST.format(**names))
    (tmp_path / "test_a.py").write_text(FIRST.format(**names))
    (tmp_path / "test_b.py").write_text(SECOND.format(**names))
    pids = tmp_path / "pids"
    early = tmp_path / "early"
    try:
        result = run_pytest(
            tmp_path,
            "--kubefixtures-relay=process",
            "--kubefixtures-route=direct",
            "--kubefixtures-image-overrides=redis:7=kubefixtures.local/redis:7.0",
            "-p",
            "no:randomly",
            env=environ(
                RELAY_PIDS=str(pids),
                EARLY_PID=str(early),
                KUBECTL_CONTEXT=kubefixtures_cluster.context or "",
            ),
        )
        assert result.returncode == 0, output(result)
        assert "3 passed" in result.stdout, output(result)
        in_order = [int(line) for line in pids.read_text().split()]
        # The first forwards were served by the relay started while pytest collected.
        assert in_order[0] == int(early.read_text())
        recorded = set(in_order)
        assert os.getpid() not in recorded
        assert not [pid for pid in recorded if alive(pid)], "a relay process outlived the run"
    finally:
        delete_all(kubefixtures_cluster, first)
        delete_all(kubefixtures_cluster, second)
