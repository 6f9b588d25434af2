"""Credentials other than the admin's client certificate, against the real API server: a
ServiceAccount's token through tokenFile and through an exec credential plugin."""

from __future__ import annotations

import base64
import secrets
import stat
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
import yaml

from kubefixtures.kube import ApiError, Cluster
from kubefixtures.kube.client import NAMESPACE
from kubefixtures.kube.config import load_config


@pytest.fixture(scope="module")
def service_account(kubefixtures_cluster: Cluster) -> Iterator[tuple[str, str]]:
    """``(username, token)`` of a ServiceAccount in a namespace of its own."""
    cluster = kubefixtures_cluster
    namespace = f"kf-creds-{secrets.token_hex(3)}"
    cluster.create_namespace(namespace, {"kubefixtures.io/test": "credentials"})
    try:
        cluster.request(
            "POST",
            f"/api/v1/namespaces/{namespace}/serviceaccounts",
            body={"metadata": {"name": "tester"}},
        )
        review = cluster.request(
            "POST",
            f"/api/v1/namespaces/{namespace}/serviceaccounts/tester/token",
            body={"spec": {"expirationSeconds": 600}},
        )
        yield f"system:serviceaccount:{namespace}:tester", review["status"]["token"]
    finally:
        cluster.delete_namespace(namespace)


def write_kubeconfig(path: Path, cluster: Cluster, user: Mapping[str, object]) -> Path:
    ca = cluster.config.ca_pem
    assert ca, "the local cluster's kubeconfig embeds its CA"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "sa",
                "clusters": [
                    {
                        "name": "sa",
                        "cluster": {
                            "server": cluster.config.server,
                            "certificate-authority-data": base64.b64encode(ca.encode()).decode(),
                        },
                    }
                ],
                "users": [{"name": "sa", "user": user}],
                "contexts": [{"name": "sa", "context": {"cluster": "sa", "user": "sa"}}],
            }
        )
    )
    return path


def who_am_i(cluster: Cluster) -> str:
    review = cluster.request(
        "POST",
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        body={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
    )
    return str(review["status"]["userInfo"]["username"])


def test_a_token_file(
    tmp_path: Path, kubefixtures_cluster: Cluster, service_account: tuple[str, str]
) -> None:
    username, token = service_account
    (tmp_path / "token").write_text(token)
    path = write_kubeconfig(tmp_path / "config", kubefixtures_cluster, {"tokenFile": "token"})
    cluster = Cluster(load_config(str(path)))
    try:
        assert who_am_i(cluster) == username
    finally:
        cluster.close()


def test_an_exec_credential_plugin(
    tmp_path: Path, kubefixtures_cluster: Cluster, service_account: tuple[str, str]
) -> None:
    username, token = service_account
    plugin = tmp_path / "credentials"
    plugin.write_text(
        f"#!{sys.executable}\nimport json\n"
        "print(json.dumps({'apiVersion': 'client.authentication.k8s.io/v1',"
        f" 'kind': 'ExecCredential', 'status': {{'token': {token!r}}}}}))\n"
    )
    plugin.chmod(plugin.stat().st_mode | stat.S_IEXEC)
    user = {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": str(plugin)}}
    path = write_kubeconfig(tmp_path / "config", kubefixtures_cluster, user)
    cluster = Cluster(load_config(str(path)))
    try:
        assert who_am_i(cluster) == username
        # A ServiceAccount without roles may not list namespaces: the API's answer is an
        # ApiError naming the reason, not a connection problem.
        with pytest.raises(ApiError, match="HTTP 403 Forbidden"):
            cluster.list_objects(NAMESPACE, None)
    finally:
        cluster.close()
