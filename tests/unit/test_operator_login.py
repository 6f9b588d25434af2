"""The operator's kopf login handler: kopf's ConnectionInfo from kubefixtures' own loader."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import kopf
import pytest

from kubefixtures.kube.config import load_config
from kubefixtures.operator.login import UnsupportedForOperator, connection_info, login
from tests.unit.test_kube_config import kubeconfig
from tests.unit.transport_support import Pki, make_pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def write(tmp_path: Path, pki: Pki, user: dict[str, object], **cluster: object) -> Path:
    path = kubeconfig(
        tmp_path / "config",
        clusters={
            "main": {
                "server": "https://main:6443",
                "certificate-authority-data": b64(pki.ca),
                **cluster,
            }
        },
        users={"main": user},
    )
    return path


def test_a_token_and_the_ca_data_are_what_kopf_connects_with(tmp_path: Path, pki: Pki) -> None:
    info = connection_info(load_config(str(write(tmp_path, pki, {"token": "s3cret"}))))
    assert info.server == "https://main:6443"
    assert (info.scheme, info.token) == ("Bearer", "s3cret")
    assert info.as_http_headers() == {"Authorization": "Bearer s3cret"}
    assert info.ca_data == pki.ca.read_text()
    assert info.ca_path is None
    assert not info.insecure
    assert (info.certificate_data, info.private_key_data) == (None, None)
    info.as_ssl_context()  # kopf can build its TLS context from it


def test_client_certificate_data_goes_to_kopf_as_data(tmp_path: Path, pki: Pki) -> None:
    user = {
        "client-certificate-data": b64(pki.client_cert),
        "client-key-data": b64(pki.client_key),
    }
    info = connection_info(load_config(str(write(tmp_path, pki, user))))
    assert info.certificate_data == pki.client_cert.read_text()
    assert info.private_key_data == pki.client_key.read_text()
    assert info.as_http_headers() == {}
    info.as_ssl_context()


def test_client_certificate_files_and_a_ca_file_go_to_kopf_as_paths(
    tmp_path: Path, pki: Pki
) -> None:
    user = {"client-certificate": str(pki.client_cert), "client-key": str(pki.client_key)}
    path = kubeconfig(
        tmp_path / "config",
        clusters={"main": {"server": "https://main:6443", "certificate-authority": str(pki.ca)}},
        users={"main": user},
    )
    info = connection_info(load_config(str(path)))
    assert (info.ca_path, info.ca_data) == (str(pki.ca), None)
    assert (info.certificate_path, info.private_key_path) == (
        str(pki.client_cert),
        str(pki.client_key),
    )


def test_basic_auth_insecure_and_the_contexts_namespace(tmp_path: Path, pki: Pki) -> None:
    path = kubeconfig(
        tmp_path / "config",
        clusters={"main": {"server": "https://main:6443", "insecure-skip-tls-verify": True}},
        users={"main": {"username": "alice", "password": "p@ss"}},
    )
    text = path.read_text().replace("user: main", "user: main\n    namespace: team-a")
    path.write_text(text)
    info = connection_info(load_config(str(path)))
    expected = "Basic " + base64.b64encode(b"alice:p@ss").decode()
    assert info.as_http_headers() == {"Authorization": expected}
    assert info.insecure
    assert info.default_namespace == "team-a"


def test_a_proxy_url_goes_to_kopf_with_its_credentials(tmp_path: Path, pki: Pki) -> None:
    config = load_config(
        str(write(tmp_path, pki, {"token": "t"}, **{"proxy-url": "http://bob:p%40ss@proxy:3128"}))
    )
    assert connection_info(config).proxy_url == "http://bob:p%40ss@proxy:3128"


def test_what_kopf_cannot_carry_is_refused_rather_than_dropped(tmp_path: Path, pki: Pki) -> None:
    config = load_config(str(write(tmp_path, pki, {"token": "t", "as": "admin"})))
    with pytest.raises(UnsupportedForOperator, match="impersonation"):
        connection_info(config)
    config = load_config(str(write(tmp_path, pki, {"token": "t"}, **{"tls-server-name": "x"})))
    with pytest.raises(UnsupportedForOperator, match="tls-server-name"):
        connection_info(config)


def test_the_handler_loads_kubeconfig_and_stops_the_operator_on_a_bad_one(
    tmp_path: Path, pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(write(tmp_path, pki, {"token": "from-env"})))
    info = asyncio.run(login())
    assert info.token == "from-env"
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(kopf.PermanentError, match="missing does not exist"):
        asyncio.run(login())


def test_kopf_uses_this_handler_and_none_of_its_piggybacking_logins() -> None:
    from kopf._core.intents import causes, registries

    registry = registries.get_default_registry()
    handlers = list(registry._activities.get_handlers(activity=causes.Activity.AUTHENTICATION))
    assert [handler.fn for handler in handlers] == [login]


def test_the_operator_names_kubeconfig_as_it_reads_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kubefixtures.errors import ClusterError, settings_named
    from kubefixtures.operator.main import SETTING_SOURCES

    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with settings_named(SETTING_SOURCES), pytest.raises(ClusterError) as raised:
        load_config(str(tmp_path / "absent"))
    assert str(raised.value).endswith("absent does not exist (set KUBECONFIG)")
