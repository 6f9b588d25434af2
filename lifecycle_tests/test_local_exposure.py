"""The local cluster runs as root and must not open the machine to its other users: an
unprivileged user (`nobody`) reaches neither etcd nor the apiserver's or kubelet's data,
nor containerd, and reads none of the keys and kubeconfigs. Needs root (to become
`nobody`) and a running local cluster; the cluster is left as it was."""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

from kubefixtures.cluster.kubeconfig import user_kubeconfig_path
from kubefixtures.cluster.local import layout, pki
from kubefixtures.cluster.local.provider import LocalProvider

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 and os.environ.get("CI") != "true",
    reason="becoming another user needs root",
)

NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/"}
APISERVER = f"https://{layout.NODE_IP}:{layout.APISERVER_PORT}"
KUBELET = f"https://{layout.NODE_IP}:{layout.KUBELET_PORT}"
ETCD_PEER = f"https://127.0.0.1:{layout.ETCD_PEER_PORT}"


def run(*argv: str, user: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*(user or []), *argv], capture_output=True, text=True, timeout=30, env=ENV
    )


def as_nobody(*argv: str) -> subprocess.CompletedProcess[str]:
    return run(*argv, user=NOBODY)


def curl(*args: str) -> list[str]:
    # -q first: no ~/.curlrc; --max-time: a refused handshake must not hang the test.
    return ["curl", "-q", "--silent", "--show-error", "--max-time", "10", *args]


def etcd_range(prefix: str) -> list[str]:
    """The etcd v3 gateway's range request over every key under ``prefix``."""
    body = {
        "key": base64.b64encode(prefix.encode()).decode(),
        "range_end": base64.b64encode(prefix[:-1].encode() + b"0").decode(),
        "limit": 1,
    }
    return ["-X", "POST", "--data", json.dumps(body)]


@pytest.fixture(scope="module")
def provider() -> LocalProvider:
    provider = LocalProvider()
    status = provider.status()
    assert (status.running, status.nodes_ready) == (True, 1), "the local cluster must be up"
    return provider


def test_nobody_cannot_read_etcd(provider: LocalProvider) -> None:
    pki_dir = provider.paths.pki
    request = etcd_range("/registry/")
    # The control: with etcd's client certificate the same request returns data, so a
    # refusal below is etcd refusing, not a wrong request.
    allowed = run(*curl(
        "--cacert", str(pki_dir / f"{pki.ETCD_CA_NAME}.crt"),
        "--cert", str(pki_dir / "apiserver-etcd-client.crt"),
        "--key", str(pki_dir / "apiserver-etcd-client.key"),
        f"{layout.ETCD_CLIENT_URL}/v3/kv/range", *request,
    ))  # fmt: skip
    assert allowed.returncode == 0, allowed.stderr
    assert '"kvs"' in allowed.stdout

    attempts = {
        "TLS without a certificate": curl("--insecure", f"{layout.ETCD_CLIENT_URL}/v3/kv/range"),
        "plain HTTP": curl(f"http://127.0.0.1:{layout.ETCD_CLIENT_PORT}/v3/kv/range"),
        "the peer port": curl("--insecure", f"{ETCD_PEER}/members"),
    }
    for what, command in attempts.items():
        refused = as_nobody(*command, *request)
        assert refused.returncode != 0, f"{what}: {refused.stdout}"
        assert refused.stdout == "", what


@pytest.mark.parametrize(
    "url",
    [
        f"{APISERVER}/api/v1/secrets",
        f"{APISERVER}/api/v1/namespaces/kube-system/configmaps",
        f"{APISERVER}/readyz",
        f"{KUBELET}/pods",
        f"{KUBELET}/configz",
    ],
)
def test_nobody_is_refused_by_the_apiserver_and_kubelet(provider: LocalProvider, url: str) -> None:
    # --insecure: nobody has no CA file either; the point is what the server answers.
    answer = as_nobody(
        *curl("--insecure", "--output", "/dev/null", "--write-out", "%{http_code}", url)
    )
    assert answer.stdout == "401", answer.stderr


def test_nobody_cannot_reach_containerd(provider: LocalProvider) -> None:
    socket = provider.paths.containerd_socket
    answer = as_nobody("ctr", "--address", str(socket), "--timeout", "5s", "version")
    assert answer.returncode != 0
    assert "permission denied" in answer.stderr.lower()


def secret_files(provider: LocalProvider) -> list[Path]:
    paths = provider.paths
    files = [
        *paths.pki.glob("*.key"),
        *paths.config.glob("*.kubeconfig"),
        paths.admin_kubeconfig,
        user_kubeconfig_path(),
    ]
    # Every identity's key, both CAs' and the service-account key, six kubeconfigs.
    assert len(files) == len(pki.identities()) + 3 + 6 + 1
    return files


def test_keys_and_kubeconfigs_are_0600_root_s_and_nobody_reads_them(
    provider: LocalProvider,
) -> None:
    for path in secret_files(provider):
        info = path.stat()
        assert (stat.S_IMODE(info.st_mode), info.st_uid) == (0o600, 0), path
        refused = as_nobody("cat", str(path))
        assert refused.returncode != 0, path
        assert refused.stdout == "", path
    for directory in (provider.paths.state, provider.paths.run, provider.paths.pki):
        assert stat.S_IMODE(directory.stat().st_mode) & 0o077 == 0, directory
