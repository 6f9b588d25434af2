"""The local cluster's secret files and etcd's trust: every private key and kubeconfig is
0600 from the moment it exists, and etcd trusts a CA that signs nothing but etcd's own
certificates (the cluster CA also signs whatever CSR the controller-manager approves)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from kubefixtures.cluster.local import configs, pki
from kubefixtures.cluster.local.layout import Layout
from tests.unit.file_creation import creation_modes


@pytest.fixture(scope="module")
def pki_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("pki")
    with pytest.MonkeyPatch.context() as monkeypatch, creation_modes(monkeypatch) as modes:
        pki.ensure_pki(directory)
    keys = sorted(directory.glob("*.key"))
    assert len(keys) == len(pki.identities()) + 3  # two CAs and the service-account key
    assert {key.resolve(): modes.get(key.resolve()) for key in keys} == {
        key.resolve(): 0o600 for key in keys
    }
    return directory


def test_every_private_key_is_created_0600(pki_dir: Path) -> None:
    """Checked in the fixture, which watches the keys being made."""


def test_every_kubeconfig_is_created_0600(
    pki_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = Layout(state=tmp_path / "state", run=tmp_path / "run", cache=tmp_path / "cache")
    paths.state.mkdir()
    (paths.state / "pki").symlink_to(pki_dir)
    with creation_modes(monkeypatch) as modes:
        configs.write_kubeconfigs(paths)
    written = [paths.admin_kubeconfig, *paths.config.glob("*.kubeconfig")]
    assert len(written) == 6
    assert {path.resolve(): modes.get(path.resolve()) for path in written} == {
        path.resolve(): 0o600 for path in written
    }


def verifies(pki_dir: Path, ca: str, certificate: str) -> bool:
    result = subprocess.run(
        ["openssl", "verify", "-CAfile", f"{ca}.crt", f"{certificate}.crt"],
        cwd=pki_dir,
        capture_output=True,
    )
    return result.returncode == 0


@pytest.mark.parametrize("certificate", ["etcd-server", "etcd-peer", "apiserver-etcd-client"])
def test_etcd_certificates_come_from_etcd_s_own_ca(pki_dir: Path, certificate: str) -> None:
    assert verifies(pki_dir, pki.ETCD_CA_NAME, certificate)
    assert not verifies(pki_dir, pki.CA_NAME, certificate)


@pytest.mark.parametrize("certificate", ["admin", "apiserver", "kubelet", "controller-manager"])
def test_no_cluster_certificate_opens_etcd(pki_dir: Path, certificate: str) -> None:
    assert verifies(pki_dir, pki.CA_NAME, certificate)
    assert not verifies(pki_dir, pki.ETCD_CA_NAME, certificate)
