"""hack/kind: the node-image recipe agrees with itself, and the runc wrapper edits specs as it must.

kind itself runs in `make kind-test` (docs/clusters.md, "kind without a registry"); these
checks need neither Docker nor kind.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kubefixtures.cluster.local.build import kubernetes_version

KIND_DIR = Path(__file__).resolve().parents[2] / "hack" / "kind"
WRAPPER = KIND_DIR / "runc-nosysresource"
ALL_CAPS = ["CAP_CHOWN", "CAP_SYS_RESOURCE", "CAP_SYS_ADMIN"]


def _kind_config() -> dict[str, object]:
    loaded = yaml.safe_load((KIND_DIR / "kind-config.yaml").read_text())
    assert isinstance(loaded, dict)
    return loaded


def test_the_node_image_is_the_kubernetes_version_we_build() -> None:
    nodes = _kind_config()["nodes"]
    assert isinstance(nodes, list)
    assert nodes[0]["image"] == f"kubefixtures.local/kind-node:{kubernetes_version()}"


def test_the_pod_subnet_is_the_one_the_node_images_cni_uses() -> None:
    conflist = json.loads(
        (KIND_DIR / "node/files/etc/cni/net.d/10-kind-bridge.conflist").read_text()
    )
    subnet = conflist["plugins"][0]["ipam"]["ranges"][0][0]["subnet"]
    networking = _kind_config()["networking"]
    assert isinstance(networking, dict)
    assert networking["podSubnet"] == subnet


def test_the_ranges_differ_from_the_local_providers() -> None:
    # A node's packets to a range it does not route leave through the host, where the local
    # cluster's kube-proxy would answer for its own Services.
    from kubefixtures.cluster.local import layout

    networking = _kind_config()["networking"]
    assert isinstance(networking, dict)
    assert networking["serviceSubnet"] != layout.SERVICE_CIDR
    assert networking["podSubnet"].split(".")[:2] != layout.POD_SUBNET.split(".")[:2]


def _run_wrapper(tmp_path: Path, *args: str) -> list[str]:
    """Runs the wrapper with `echo` standing in for runc; returns the arguments runc got."""
    env = dict(os.environ, KF_RUNC="/bin/echo")
    result = subprocess.run(
        [sys.executable, str(WRAPPER), *args],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    )
    return result.stdout.split()


def test_create_drops_the_withheld_capability_from_the_bundles_spec(tmp_path: Path) -> None:
    spec = {"process": {"capabilities": {"bounding": ALL_CAPS, "effective": ALL_CAPS}}}
    (tmp_path / "config.json").write_text(json.dumps(spec))
    argv = _run_wrapper(tmp_path, "--root", "/r", "create", "--bundle", str(tmp_path), "c1")
    assert argv == ["--root", "/r", "create", "--bundle", str(tmp_path), "c1"]
    edited = json.loads((tmp_path / "config.json").read_text())["process"]["capabilities"]
    assert edited == {
        "bounding": ["CAP_CHOWN", "CAP_SYS_ADMIN"],
        "effective": ["CAP_CHOWN", "CAP_SYS_ADMIN"],
    }


def test_exec_drops_it_from_the_process_spec(tmp_path: Path) -> None:
    process = tmp_path / "process.json"
    process.write_text(json.dumps({"args": ["sh"], "capabilities": {"permitted": ALL_CAPS}}))
    _run_wrapper(tmp_path, "exec", "--process", str(process), "--detach", "c1")
    assert json.loads(process.read_text())["capabilities"] == {
        "permitted": ["CAP_CHOWN", "CAP_SYS_ADMIN"]
    }


@pytest.mark.parametrize("command", ["state", "delete", "kill"])
def test_other_commands_pass_through(tmp_path: Path, command: str) -> None:
    assert _run_wrapper(tmp_path, command, "c1") == [command, "c1"]
