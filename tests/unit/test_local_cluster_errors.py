"""The local provider's error messages: one line that says what happened and what to do,
plus the tail of the log where a program failed."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import pytest

from kubefixtures.cluster import get_provider
from kubefixtures.cluster.base import ClusterError
from kubefixtures.cluster.local import build, host
from kubefixtures.cluster.local.layout import Layout
from kubefixtures.cluster.local.processes import Component, Supervisor, alive


@pytest.fixture
def paths(tmp_path: Path) -> Layout:
    return Layout(state=tmp_path / "state", run=tmp_path / "run", cache=tmp_path / "cache")


def test_not_root_is_refused_with_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(ClusterError, match=r"needs root; run `sudo kubefixtures cluster up`"):
        host.require_root()


def test_a_taken_port_names_the_port_and_its_component() -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        with pytest.raises(ClusterError) as raised:
            host.check_ports_free({port: "etcd"}, "127.0.0.1")
    message = str(raised.value)
    assert f"port 127.0.0.1:{port} (for etcd) is taken" in message
    assert "\n" not in message


def test_a_failed_go_build_says_so_with_the_end_of_its_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_bin = tmp_path / "fake-bin"
    fake_bin.mkdir()
    fake_go = fake_bin / "go"
    fake_go.write_text("#!/bin/sh\necho 'compile: undefined: something' >&2\nexit 2\n")
    fake_go.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_bin}{os.pathsep}{os.environ['PATH']}")
    tool = build.GoTool("tool", "tool", "example.com/tool", "example.com/tool", "v1.0.0", 1.0, 1.0)
    with pytest.raises(ClusterError) as raised:
        build.ensure_go_tool(tool, tmp_path / "bin", tmp_path)
    first, *rest = str(raised.value).splitlines()
    assert first.startswith("the Go build of tool v1.0.0 failed (exit 2)")
    assert any("undefined: something" in line for line in rest)


def test_a_component_that_exits_while_starting_shows_its_log(paths: Layout) -> None:
    supervisor = Supervisor(paths)
    component = Component(
        "etcd",
        [sys.executable, "-c", "print('etcdmain: listen tcp: address in use'); exit(1)"],
        healthy=lambda: False,
    )
    with pytest.raises(ClusterError) as raised:
        supervisor.start_all([component])
    first, *rest = str(raised.value).splitlines()
    assert first.startswith("etcd exited with code 1 while starting; log: ")
    assert "address in use" in "\n".join(rest)


def test_a_component_that_never_becomes_healthy_is_reported_in_time(paths: Layout) -> None:
    supervisor = Supervisor(paths)
    component = Component(
        "kube-apiserver",
        [
            sys.executable,
            "-c",
            "import time; print('waiting for etcd', flush=True); time.sleep(30)",
            "kube-apiserver",
        ],
        healthy=lambda: False,
        startup_timeout=1.0,
    )
    pid = supervisor.start(component)
    try:
        with pytest.raises(ClusterError, match=r"kube-apiserver did not become healthy within 1 s"):
            supervisor.wait_healthy(component, pid)
    finally:
        supervisor.stop("kube-apiserver")
    assert not alive(pid)
    assert supervisor.pid("kube-apiserver") is None


def test_an_unknown_provider_is_named() -> None:
    with pytest.raises(ClusterError, match=r"unknown cluster provider 'minikube'"):
        get_provider("minikube")
