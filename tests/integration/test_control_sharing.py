"""The controls work the same from pytest-xdist workers (the manager's environment, used
by the others) and on an environment from a details file (``kubefixtures up``)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from kubefixtures.details import EnvironmentDetails
from kubefixtures.kube import Cluster
from tests.integration.sharing_support import (
    BIN,
    delete_all,
    environ,
    output,
    records,
    run_pytest,
    unique,
)

pytestmark = pytest.mark.cluster

CONTROL = Path(__file__).parent / "environments" / "control"

# Every control, once, from whichever worker runs the test. The disruptive ones act on
# redis only, so that they do not pull the shell's pod from under another worker's exec.
TESTS = """
import asyncio
import json
import os
import socket
import time
import urllib.request


def record(name, {name}):
    entry = {{"test": name, "worker": os.environ.get("PYTEST_XDIST_WORKER", "main"),
              "namespace": {name}.namespace}}
    with open("records.jsonl", "a") as out:
        out.write(json.dumps(entry) + "\\n")


def ping(address):
    try:
        with socket.create_connection(address, timeout=2) as connection:
            connection.sendall(b"PING\\r\\n")
            return connection.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def test_logs_get_events({name}):
    assert "started shell-" in {name}.logs("deployment/shell")
    assert {name}.get("configmap", "settings")["data"]["mode"] == "calm"
    assert {name}.events()
    record("logs", {name})


def test_exec_and_copies({name}, tmp_path):
    assert {name}.exec("deployment/shell", ["echo", "hi"]).stdout == b"hi\\n"
    assert {name}.exec("deployment/shell", ["cat"], stdin=b"x" * 100000).stdout == b"x" * 100000
    (tmp_path / "f.txt").write_text("payload")
    remote = "/tmp/f-" + os.environ.get("PYTEST_XDIST_WORKER", "main")
    {name}.copy_to("deployment/shell", tmp_path / "f.txt", remote)
    {name}.copy_from("deployment/shell", remote, tmp_path / "back.txt")
    assert (tmp_path / "back.txt").read_text() == "payload"
    record("exec", {name})


def test_apply_patch_wait({name}):
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    [ref] = {name}.apply({{"apiVersion": "v1", "kind": "ConfigMap",
                          "metadata": {{"name": "from-" + worker}}, "data": {{"a": "1"}}}})
    assert str(ref) == "configmap/from-" + worker
    {name}.patch("configmap/from-" + worker, {{"data": {{"a": "2"}}}})
    assert {name}.get("configmap", "from-" + worker)["data"]["a"] == "2"
    {name}.wait_ready(["deployment/shell", "redis"])
    record("apply", {name})


def test_forward({name}):
    address = {name}.forward("deployment/shell", 8080)
    url = "http://%s:%d/" % address.address
    with urllib.request.urlopen(url, timeout=10) as answer:
        assert answer.read().startswith(b"hello from shell-")
    record("forward", {name})


def test_restart_scale_delete({name}):
    {name}.restart("deployment/redis")
    {name}.scale("deployment/redis", 2)
    {name}.scale("deployment/redis", 1)
    {name}.delete_pod("redis")
    {name}.wait_ready(["deployment/redis", "redis"], timeout=60)
    address = {name}.services["redis"].address
    deadline = time.monotonic() + 20
    while not ping(address) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert ping(address)
    record("restart", {name})


def test_async_twins({name}):
    async def both():
        return await asyncio.gather({name}.aio.exec("deployment/shell", ["echo", "a"]),
                                    {name}.aio.logs("deployment/shell", tail=1))
    result, tail = asyncio.run(both())
    assert result.stdout == b"a\\n"
    assert tail
    record("aio", {name})
"""


def write_control_suite(directory: Path, name: str) -> None:
    (directory / "conftest.py").write_text(
        f"from kubefixtures import environment\n\n{name} = environment({str(CONTROL)!r})\n"
    )
    (directory / "test_controls.py").write_text(TESTS.format(name=name))


def test_every_control_from_xdist_workers(tmp_path: Path, kubefixtures_cluster: Cluster) -> None:
    name = unique("ctlx")
    write_control_suite(tmp_path, name)
    try:
        result = run_pytest(tmp_path, "-n", "2", "-p", "no:randomly")
        assert result.returncode == 0, output(result)
        assert "6 passed" in result.stdout
        seen = records(tmp_path)
        assert {record["test"] for record in seen} == {
            "logs", "exec", "apply", "forward", "restart", "aio",
        }  # fmt: skip
        assert len({record["namespace"] for record in seen}) == 1
        assert len({record["worker"] for record in seen}) == 2  # both workers used controls
    finally:
        delete_all(kubefixtures_cluster, name)


def test_every_control_on_a_details_file_environment(
    tmp_path: Path, kubefixtures_cluster: Cluster
) -> None:
    name = unique("ctld")
    details_file = tmp_path / "env.json"
    up = subprocess.Popen(
        [
            str(BIN / "kubefixtures"), "up", str(CONTROL), "--name", name,
            "--details-out", str(details_file),
        ],
        cwd=tmp_path, env=environ(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    try:
        assert up.stdout is not None
        lines = []
        for line in up.stdout:
            lines.append(line)
            if line.startswith("serving the port-forwards"):
                break
        assert details_file.exists(), "".join(lines)
        namespace = EnvironmentDetails.read(details_file).namespace
        suite = tmp_path / "suite"
        suite.mkdir()
        write_control_suite(suite, name)
        result = run_pytest(
            suite, "-p", "no:randomly", env=environ(KUBEFIXTURES_DETAILS=str(details_file))
        )
        assert result.returncode == 0, output(result)
        assert "6 passed" in result.stdout
        assert {record["namespace"] for record in records(suite)} == {namespace}
        # What the tests applied is gone; the environment itself stays (up serves it).
        configmaps = kubefixtures_cluster.request(
            "GET", f"/api/v1/namespaces/{namespace}/configmaps"
        )["items"]
        names = {item["metadata"]["name"] for item in configmaps}
        assert "settings" in names
        assert "from-main" not in names
    finally:
        up.terminate()
        try:
            up.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            up.kill()
            up.communicate()
        delete_all(kubefixtures_cluster, name)
