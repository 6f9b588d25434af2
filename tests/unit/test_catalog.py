"""The service catalog's pure logic: details models and their secrets, values, the
manifests as rendered, placeholder parsing, image references. No cluster."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from kubefixtures.catalog import (
    SERVICES,
    HttpStubDetails,
    PostgresDetails,
    RedisDetails,
    S3Details,
    app_image,
    catalog,
    local_service,
    manifests,
)
from kubefixtures.catalog._sources import merged_values
from kubefixtures.catalog.images import _check_ref, _default_ref, archive_ref
from kubefixtures.catalog.local import _referenced_fixtures, _tail
from kubefixtures.details import Environment, EnvironmentDetails, ServiceDetails
from kubefixtures.errors import KubefixturesError
from kubefixtures.rendering import RenderContext, render_sources
from kubefixtures.secrets import Masker, secret_values

PASSWORD = "p@ss/word:with?odd#chars"
LOCAL_IMAGES = {
    "redis:7": "kubefixtures.local/redis:7.0",
    "postgres:15": "kubefixtures.local/postgres:15",
    "motoserver/moto:5": "kubefixtures.local/moto:5",
    "bbyars/mountebank:2": "kubefixtures.local/mountebank:2",
}


# --- details models -------------------------------------------------------------------


def postgres_details() -> PostgresDetails:
    return PostgresDetails(
        namespace="ns", host="127.0.0.1", port=5432, user="shop owner",
        password=SecretStr(PASSWORD), database="orders",
    )  # fmt: skip


def test_urls_carry_the_password_quoted() -> None:
    redis = RedisDetails(namespace="ns", host="127.0.0.1", port=6379, password=SecretStr(PASSWORD))
    assert redis.url == "redis://:p%40ss%2Fword%3Awith%3Fodd%23chars@127.0.0.1:6379/0"
    assert postgres_details().dsn == (
        "postgresql://shop%20owner:p%40ss%2Fword%3Awith%3Fodd%23chars@127.0.0.1:5432/orders"
    )


@pytest.mark.parametrize(
    "details",
    [
        RedisDetails(namespace="ns", host="h", port=1, password=SecretStr(PASSWORD)),
        postgres_details(),
        S3Details(
            namespace="ns",
            endpoint_url="http://h:1",
            region="us-east-1",
            access_key="kubefixtures",
            secret_key=SecretStr(PASSWORD),
        ),
    ],
    ids=["redis", "postgres", "s3"],
)
def test_secrets_are_never_in_repr_str_or_dumps(details: Any) -> None:
    for shown in (
        repr(details),
        str(details),
        json.dumps(details.model_dump(), default=str),
        details.model_dump_json(),
        f"{details!r} {details}",
    ):
        assert PASSWORD not in shown
        assert "**********" in shown
    assert secret_values(details) == {PASSWORD}


def test_s3_client_kwargs_reveal_the_key_for_boto3_only() -> None:
    s3 = S3Details(
        namespace="ns", endpoint_url="http://127.0.0.1:5000", region="eu-west-1",
        access_key="AK", secret_key=SecretStr(PASSWORD),
    )  # fmt: skip
    assert s3.client_kwargs() == {
        "endpoint_url": "http://127.0.0.1:5000",
        "region_name": "eu-west-1",
        "aws_access_key_id": "AK",
        "aws_secret_access_key": PASSWORD,
    }


def test_details_are_frozen_and_strict() -> None:
    details = postgres_details()
    with pytest.raises(ValueError, match="frozen"):
        details.port = 1  # type: ignore[misc]
    with pytest.raises(ValueError, match="extra"):
        RedisDetails(namespace="n", host="h", port=1, password=SecretStr("x"), url="u")  # type: ignore[call-arg]


# --- values and manifests ------------------------------------------------------------


def test_values_merge_per_service_table() -> None:
    merged = merged_values({"postgres": {"database": "shop"}, "web_image": "x:1"})
    assert merged["postgres"] == {"user": "kubefixtures", "database": "shop"}
    assert merged["s3"] == {"access_key": "kubefixtures", "region": "us-east-1"}
    assert merged["web_image"] == "x:1"
    assert merged_values(None)["postgres"]["user"] == "kubefixtures"


def test_every_service_has_manifests_and_unknown_ones_are_named() -> None:
    for service, directory in SERVICES.items():
        assert manifests(service).name == directory
        assert list(manifests(service).glob("*.yaml"))
    with pytest.raises(ValueError, match="unknown catalog service 'mysql'; the catalog has redis"):
        manifests("mysql")


def render(services: list[str], values: dict[str, Any] | None = None) -> RenderContext:
    context = RenderContext(
        namespace="kf-test-abc123",
        session_id="s1",
        environment="test",
        values=merged_values(values),
        image_overrides=LOCAL_IMAGES,
    )
    objects = render_sources([manifests(service) for service in services], context)
    context.values = {"objects": [obj.manifest for obj in objects]}  # handed to the tests
    return context


def containers(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        container
        for obj in objects
        if obj["kind"] == "Deployment"
        for container in obj["spec"]["template"]["spec"]["containers"]
    ]


def test_manifests_render_with_defaults_use_local_images_and_have_probes() -> None:
    context = render(list(SERVICES))
    objects = context.values["objects"]
    assert {obj["metadata"]["name"] for obj in objects if obj["kind"] == "Service"} == {
        "redis", "postgres", "s3", "http-stub",
    }  # fmt: skip
    for container in containers(objects):
        assert container["image"] in LOCAL_IMAGES.values()
        assert container["imagePullPolicy"] == "IfNotPresent"
        assert "readinessProbe" in container
    assert context.used_secrets == {
        "catalog-redis-password", "catalog-postgres-password", "catalog-s3-secret-key",
    }  # fmt: skip


def test_manifests_are_written_for_public_images() -> None:
    text = "".join(path.read_text() for s in SERVICES for path in manifests(s).glob("*.yaml"))
    for public in LOCAL_IMAGES:
        assert f"image: {public}\n" in text
    assert "image: kubefixtures.local" not in text


def test_details_come_from_the_rendered_environment() -> None:
    objects = render(["postgres", "s3"], {"postgres": {"user": "shop", "database": "orders"}})
    details = EnvironmentDetails(
        name="env",
        namespace="kf-test-abc123",
        session_id="s1",
        services={
            "postgres": ServiceDetails(
                name="postgres", namespace="kf-test-abc123", port=40001, ports={5432: 40001}
            ),
            "s3": ServiceDetails(
                name="s3",
                namespace="kf-test-abc123",
                port=40002,
                ports={5000: 40002},
                url="http://127.0.0.1:40002",
            ),
        },
        secrets={
            "catalog-postgres-password": SecretStr("pg-secret"),
            "catalog-s3-secret-key": SecretStr("s3-secret"),
        },
    )
    environment = Environment(details, objects.values["objects"])
    postgres = PostgresDetails.from_environment(environment)
    assert (postgres.user, postgres.database, postgres.port) == ("shop", "orders", 40001)
    assert postgres.password.get_secret_value() == "pg-secret"
    s3 = S3Details.from_environment(environment)
    assert (s3.endpoint_url, s3.region, s3.access_key) == (
        "http://127.0.0.1:40002", "us-east-1", "kubefixtures",
    )  # fmt: skip
    with pytest.raises(
        KubefixturesError, match=r"environment 'env' has no redis service .* add 'redis'"
    ):
        RedisDetails.from_environment(environment)


def test_http_stub_details_list_the_forwarded_imposter_ports() -> None:
    ports = {2525: 30000, **{port: 31000 + port for port in range(4545, 4550)}}
    service = ServiceDetails(
        name="http-stub", namespace="ns", port=30000, ports=ports,
        named_ports={"http-admin": 30000}, url="http://127.0.0.1:30000",
    )  # fmt: skip
    details = EnvironmentDetails(
        name="env", namespace="ns", session_id="s", services={"http-stub": service}
    )
    stub = HttpStubDetails.from_environment(Environment(details, []))
    assert stub.admin_url == "http://127.0.0.1:30000"
    assert stub.imposter_ports == {port: 31000 + port for port in range(4545, 4550)}


# --- factories: declaration-time checks ----------------------------------------------


def test_catalog_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="unknown service 'mongo'; choose from redis"):
        catalog("mongo")
    with pytest.raises(ValueError, match="a service is named twice"):
        catalog("redis", "redis")
    with pytest.raises(TypeError, match="at least one service or source"):
        catalog()


def test_local_service_declaration_is_checked() -> None:
    with pytest.raises(TypeError, match="a list of arguments, not a string"):
        local_service("uvicorn app:app")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"ready='localhost:8000'\): use http://"):
        local_service(["app"], ready="localhost:8000")
    with pytest.raises(ValueError, match=r"command='\{port'\): expected '}'"):
        local_service(["app", "{port"])
    with pytest.raises(ValueError, match=r"placeholder \{0\} must be \{port\}"):
        local_service(["app", "{0}"])


def test_placeholders_name_fixtures_and_port_is_built_in() -> None:
    templates = {
        "command": ["app", "--port", "{port}", "--db", "{postgres.dsn}", "{{literal}}"],
        "env": {"CACHE": "{redis.url}", "WEB": "{shop.services[web].url}"},
        "ready": "http://127.0.0.1:{port}/health",
    }
    assert _referenced_fixtures(templates) == {"postgres", "redis", "shop"}


def test_masking_and_tails() -> None:
    assert Masker(["abc", "abcdef"], shortest=1)("url redis://:abc@h and abcdef") == (
        "url redis://:********@h and ********"
    )
    text = "".join(f"line {n}\n" for n in range(1000))
    tail = _tail(text, 100)
    assert tail.startswith("[...]\nline ")
    assert tail.endswith("line 999\n")
    assert len(tail) <= 106


# --- app images ------------------------------------------------------------------------


def docker_archive(path: Path, tags: list[str]) -> Path:
    manifest = json.dumps([{"Config": "c.json", "RepoTags": tags, "Layers": []}]).encode()
    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo("manifest.json")
        info.size = len(manifest)
        tar.addfile(info, io.BytesIO(manifest))
    return path


def test_archive_ref_reads_the_first_tag(tmp_path: Path) -> None:
    archive = docker_archive(tmp_path / "a.tar", ["kubefixtures.local/app:1", "app:latest"])
    assert archive_ref(archive) == "kubefixtures.local/app:1"
    untagged = docker_archive(tmp_path / "b.tar", [])
    with pytest.raises(ValueError, match="it has no tag; pass ref='NAME:TAG'"):
        archive_ref(untagged)
    (tmp_path / "c.tar").write_text("not a tar")
    with pytest.raises(ValueError, match="cannot read its tag"):
        archive_ref(tmp_path / "c.tar")


def test_app_image_refs(tmp_path: Path) -> None:
    assert _default_ref(tmp_path / "My Shop_App") == "kubefixtures.local/my-shop_app:dev"
    _check_ref("ghcr.io/me/web:1.2")
    with pytest.raises(ValueError, match="not an image reference with a tag"):
        _check_ref("Web")
    archive = docker_archive(tmp_path / "web.tar", ["kubefixtures.local/web:7"])
    assert app_image(image=str(archive)).ref == "kubefixtures.local/web:7"
    assert app_image(image="ghcr.io/me/web:1.2").ref == "ghcr.io/me/web:1.2"
    (tmp_path / "ctx").mkdir()
    assert app_image(build=tmp_path / "ctx").ref == "kubefixtures.local/ctx:dev"
    with pytest.raises(TypeError, match="exactly one of build=PATH or image=REF"):
        app_image()
    with pytest.raises(ValueError, match="is not a directory"):
        app_image(build=tmp_path / "missing")
    with pytest.raises(TypeError, match="base_images and network go with build=PATH only"):
        app_image(image="ghcr.io/me/web:1.2", network="host")
