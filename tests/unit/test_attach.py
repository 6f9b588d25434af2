"""Details files as KUBEFIXTURES_DETAILS reads them: one-line errors, and ports that move."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest

from kubefixtures.details import EnvironmentDetails, ServiceDetails
from kubefixtures.errors import KubefixturesError
from kubefixtures.provisioning.attached import _moved, find_details, serving


def write(path: Path, **fields: object) -> Path:
    details = {"version": 1, "name": "shop", "namespace": "kf-shop-x", "session_id": "s"}
    details.update(fields)
    path.write_text(json.dumps({key: value for key, value in details.items() if value is not None}))
    return path


def one_line(error: pytest.ExceptionInfo[KubefixturesError]) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


def test_the_environment_is_found_among_several_files(tmp_path: Path) -> None:
    shop = write(tmp_path / "shop.json")
    cache = write(tmp_path / "cache.json", name="cache", namespace="kf-cache-y")
    path, details = find_details(f"{shop}{os.pathsep}{cache}", "cache")
    assert path == cache
    assert details.namespace == "kf-cache-y"


def test_a_missing_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(KubefixturesError) as error:
        find_details(str(tmp_path / "nope.json"), "shop")
    assert one_line(error).startswith(f"{tmp_path / 'nope.json'}: cannot read the details file")


def test_a_wrong_version_is_one_line(tmp_path: Path) -> None:
    path = write(tmp_path / "shop.json", version=2)
    with pytest.raises(KubefixturesError) as error:
        find_details(str(path), "shop")
    assert one_line(error) == (
        f"{path}: details field version: version 2 is not 1 (written by another kubefixtures "
        "release?)"
    )


def test_a_file_without_an_environment_name_is_one_line(tmp_path: Path) -> None:
    path = write(tmp_path / "shop.json", name=None)
    with pytest.raises(KubefixturesError) as error:
        find_details(str(path), "shop")
    assert one_line(error) == f"{path}: details field name: Field required"


def test_an_environment_in_no_file_is_one_line_naming_what_there_is(tmp_path: Path) -> None:
    path = write(tmp_path / "shop.json")
    with pytest.raises(KubefixturesError) as error:
        find_details(str(path), "cache")
    message = one_line(error)
    assert message.startswith(f"KUBEFIXTURES_DETAILS={path}: no environment named 'cache'")
    assert "(the file(s) hold 'shop')" in message


def test_serving_tells_a_listening_port_from_a_closed_one() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert serving(port)
    assert not serving(port)


def test_a_service_forwarded_again_gets_its_new_ports_everywhere() -> None:
    service = ServiceDetails(
        name="web",
        namespace="ns",
        port=30001,
        ports={80: 30001, 9090: 30002},
        named_ports={"http": 30001, "metrics": 30002},
        url="http://127.0.0.1:30001",
    )
    moved = _moved(service, {80: 40001, 9090: 30002}, "127.0.0.1")
    assert moved.port == 40001
    assert moved.ports == {80: 40001, 9090: 30002}
    assert moved.named_ports == {"http": 40001, "metrics": 30002}
    assert moved.url == "http://127.0.0.1:40001"


def test_a_service_recorded_at_its_cluster_ip_forwarded_again_is_on_127_0_0_1() -> None:
    service = ServiceDetails(
        name="web",
        namespace="ns",
        host="10.96.0.7",
        port=80,
        ports={80: 80, 9090: 9090},
        named_ports={"http": 80, "metrics": 9090},
        url="http://10.96.0.7:80",
        route="service",
    )
    moved = _moved(service, {80: 40001, 9090: 40002}, "127.0.0.1")
    assert (moved.host, moved.port, moved.url) == ("127.0.0.1", 40001, "http://127.0.0.1:40001")
    assert moved.named_ports == {"http": 40001, "metrics": 40002}


def test_details_written_by_up_are_read_back(tmp_path: Path) -> None:
    details = EnvironmentDetails(
        name="shop", namespace="kf-shop-x", session_id="s", secrets={"db": "s3cret-value"}
    )
    details.write(tmp_path / "shop.json")
    _, read = find_details(str(tmp_path / "shop.json"), "shop")
    assert read.secrets["db"].get_secret_value() == "s3cret-value"


def test_ready_probes_name_services_and_ports_of_the_details_before_connecting(
    tmp_path: Path,
) -> None:
    from kubefixtures.provisioning.attached import AttachedProvisioning
    from kubefixtures.provisioning.base import EnvironmentSpec, SessionView
    from kubefixtures.readiness.app import parse
    from kubefixtures.rendering import Secrets
    from kubefixtures.settings import Settings

    web = {"name": "web", "namespace": "kf-shop-x", "port": 4001, "ports": {"80": 4001}}
    web["named_ports"] = {"http": 4001}
    path = write(tmp_path / "shop.json", services={"web": web})

    def never(context: str | None) -> object:
        raise AssertionError("connected before checking ready=")

    session = SessionView(
        settings=Settings(),
        session_id="s",
        cluster=never,  # type: ignore[arg-type]
        secrets=Secrets,
        reporter=None,  # type: ignore[arg-type]
    )
    for probe, problem in [
        ({"api": "tcp"}, "no forwarded Service 'api' among its objects (its Services: web)"),
        ({"web": "tcp:metrics"}, "Service 'web' has no TCP port metrics (its ports: 80 (http))"),
    ]:
        spec = EnvironmentSpec(name="shop", sources=(), ready=parse(probe))
        with pytest.raises(KubefixturesError) as error:
            AttachedProvisioning(spec, session, str(path)).setup()
        assert one_line(error).endswith(problem)
