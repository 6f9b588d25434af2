"""Details models: JSON round trip, versions, secrets that never print, file mode 0600."""

from __future__ import annotations

import json
import stat
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydantic import SecretStr

from kubefixtures.details import Environment, EnvironmentDetails, ObjectRef, ServiceDetails
from kubefixtures.errors import KubefixturesError
from kubefixtures.provisioning.base import combined_route, ports_to_serve_locally, service_details

SECRET = "s3cr3tValueThatMustNotLeak"


def details() -> EnvironmentDetails:
    return EnvironmentDetails(
        name="shop",
        namespace="kf-shop-abc123",
        context="kubefixtures-local",
        session_id="s1",
        services={
            "redis": ServiceDetails(
                name="redis", namespace="kf-shop-abc123", port=40001, ports={6379: 40001}
            )
        },
        objects=[ObjectRef(api_version="v1", kind="Service", name="redis")],
        secrets={"redis": SecretStr(SECRET)},
        ready_seconds=2.5,
    )


def test_secrets_never_print() -> None:
    value = details()
    for text in (repr(value), str(value), value.to_json(), value.model_dump_json()):
        assert SECRET not in text
    environment = Environment(value, [])
    assert SECRET not in repr(environment)
    assert environment.secrets["redis"] == SECRET


def test_details_file_round_trip_is_private(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "details.json"
    details().write(target)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    raw = json.loads(target.read_text())
    assert raw["version"] == 1
    assert raw["secrets"] == {"redis": SECRET}
    assert raw["services"]["redis"]["ports"] == {"6379": 40001}
    again = EnvironmentDetails.read(target)
    assert again == details().model_copy(update={"created_at": again.created_at})
    assert again.services["redis"].ports == {6379: 40001}
    assert [path.name for path in target.parent.iterdir()] == ["details.json"]


def test_reading_another_version_names_file_and_field(tmp_path: Path) -> None:
    target = tmp_path / "details.json"
    raw = json.loads(details().to_json(reveal_secrets=True))
    raw["version"] = 2
    target.write_text(json.dumps(raw))
    with pytest.raises(KubefixturesError) as caught:
        EnvironmentDetails.read(target)
    assert str(caught.value) == (
        f"{target}: details field version: version 2 is not 1 "
        "(written by another kubefixtures release?)"
    )


def test_reading_a_broken_file(tmp_path: Path) -> None:
    target = tmp_path / "details.json"
    target.write_text('{"version": 1, "name": "x"}')
    with pytest.raises(KubefixturesError, match="details field namespace: Field required"):
        EnvironmentDetails.read(target)
    with pytest.raises(KubefixturesError, match="cannot read the details file"):
        EnvironmentDetails.read(tmp_path / "missing.json")


def test_environment_exposes_namespace_services_and_objects() -> None:
    environment = Environment(details(), [{"kind": "Service"}])
    assert environment.namespace == "kf-shop-abc123"
    assert environment.context == "kubefixtures-local"
    assert environment.services["redis"].address == ("127.0.0.1", 40001)
    assert environment.objects == ({"kind": "Service"},)
    assert environment.details.ready_seconds == 2.5


def test_service_details_from_a_service_manifest() -> None:
    service = {
        "metadata": {"name": "web"},
        "spec": {
            "ports": [
                {"name": "metrics", "port": 9090},
                {"name": "dns", "port": 53, "protocol": "UDP"},
                {"name": "http-api", "port": 80},
            ]
        },
    }
    result = service_details(service, "ns", {9090: 41000, 80: 41001})
    assert result.port == 41000
    assert result.ports == {9090: 41000, 80: 41001}
    assert result.named_ports == {"metrics": 41000, "http-api": 41001}
    assert result.url == "http://127.0.0.1:41001"


def test_service_details_at_the_cluster_ip() -> None:
    service = {"metadata": {"name": "web"}, "spec": {"ports": [{"name": "http", "port": 80}]}}
    result = service_details(service, "ns", {80: 80}, {80: "service"}, host="10.96.0.7")
    assert (result.host, result.port, result.route) == ("10.96.0.7", 80, "service")
    assert result.url == "http://10.96.0.7:80"
    assert result.address == ("10.96.0.7", 80)


def test_a_services_route_from_its_ports_routes() -> None:
    assert combined_route(["service", "service"]) == "service"
    assert combined_route(["direct"]) == "direct"
    assert combined_route(["forward", "direct"]) == "mixed"
    assert combined_route([]) == "forward"


def test_ports_at_the_cluster_ip_move_to_127_0_0_1_when_another_port_is_there() -> None:
    @dataclass
    class Forward:
        route: str
        host: str = "127.0.0.1"
        local_port: int = 0

        def start(self) -> None: ...

        def stop(self) -> None: ...

    at_service = Forward("service", "10.96.0.7", 80)
    assert ports_to_serve_locally({80: at_service, 9090: Forward("service")}, 2) == []
    assert ports_to_serve_locally({80: at_service, 9090: Forward("direct")}, 2) == [80]
    assert ports_to_serve_locally({80: Forward("forward")}, 1) == []
    # A details file's Service forwarded again in part: its other port is on 127.0.0.1.
    assert ports_to_serve_locally({80: at_service}, 2) == [80]


def test_https_url_from_app_protocol() -> None:
    ports = [{"port": 443, "appProtocol": "https"}]
    service = {"metadata": {"name": "s"}, "spec": {"ports": ports}}
    assert service_details(service, "ns", {443: 5000}).url == "https://127.0.0.1:5000"


def test_a_details_file_that_is_not_utf8_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "details.json"
    path.write_bytes(b'{\n  "name": "caf\xe9"\n}\n')
    with pytest.raises(KubefixturesError) as caught:
        EnvironmentDetails.read(path)
    assert str(caught.value) == f"{path}: the details file is not UTF-8 text (line 2)"


def test_a_deeply_nested_details_file_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "details.json"
    path.write_text("[" * 5000)
    with pytest.raises(KubefixturesError, match=r"details\.json: details field \(file\): "):
        EnvironmentDetails.read(path)
