"""The catalog's services against the real cluster, each from its real client library.

The fixtures here are the ready ones of kubefixtures.catalog.fixtures, made module-scoped
so that their environments (and port-forwards) end with this module rather than run
through the rest of the suite; the ready fixtures themselves (session-scoped, opted into
with ``pytest_plugins``) are used by test_catalog_secrets.py and examples/shop. The public
images in the catalog's manifests run as the local builds (the ini key in pyproject.toml).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import boto3
import httpx
import psycopg
import pytest
import redis as redis_client

from kubefixtures import Environment
from kubefixtures.catalog import (
    HttpStub,
    HttpStubDetails,
    PostgresDetails,
    RedisDetails,
    S3Details,
    catalog,
)

pytestmark = pytest.mark.cluster

catalog_redis = catalog("redis", scope="module")
catalog_postgres = catalog("postgres", scope="module")
catalog_s3 = catalog("s3", scope="module")
catalog_http_stub = catalog("http_stub", scope="module")


@pytest.fixture(scope="module")
def redis(catalog_redis: Environment) -> RedisDetails:
    return RedisDetails.from_environment(catalog_redis)


@pytest.fixture(scope="module")
def postgres(catalog_postgres: Environment) -> PostgresDetails:
    return PostgresDetails.from_environment(catalog_postgres)


@pytest.fixture(scope="module")
def s3(catalog_s3: Environment) -> S3Details:
    return S3Details.from_environment(catalog_s3)


@pytest.fixture
def http_stub(catalog_http_stub: Environment) -> Iterator[HttpStub]:
    stub = HttpStub(HttpStubDetails.from_environment(catalog_http_stub))
    yield stub
    stub.close()


def test_redis_from_redis_py(redis: RedisDetails) -> None:
    client = redis_client.Redis.from_url(redis.url)
    key = f"cart:{uuid.uuid4()}"
    client.set(key, "3 apples")
    assert client.get(key) == b"3 apples"
    # The password is really checked.
    anonymous = redis_client.Redis(host=redis.host, port=redis.port)
    with pytest.raises(redis_client.AuthenticationError):
        anonymous.ping()
    assert redis.password.get_secret_value() not in repr(redis)


def test_postgres_from_psycopg(postgres: PostgresDetails) -> None:
    assert (postgres.user, postgres.database) == ("kubefixtures", "kubefixtures")
    table = f"orders_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres.dsn) as connection:
        connection.execute(f"CREATE TABLE {table} (id serial PRIMARY KEY, item text)")
        connection.execute(f"INSERT INTO {table} (item) VALUES (%s)", ("book",))
        assert connection.execute(f"SELECT item FROM {table}").fetchall() == [("book",)]
        version = connection.execute("SHOW server_version").fetchone()
        assert version is not None
        assert str(version[0]).startswith("15.")
    wrong = postgres.dsn.replace(postgres.password.get_secret_value(), "wrong")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(wrong, connect_timeout=5).close()
    assert postgres.password.get_secret_value() not in repr(postgres)


def test_s3_from_boto3(s3: S3Details) -> None:
    client = boto3.client("s3", **s3.client_kwargs())
    bucket = f"photos-{uuid.uuid4().hex[:8]}"
    client.create_bucket(Bucket=bucket)
    client.put_object(Bucket=bucket, Key="cat.txt", Body=b"meow")
    assert client.get_object(Bucket=bucket, Key="cat.txt")["Body"].read() == b"meow"
    assert bucket in [b["Name"] for b in client.list_buckets()["Buckets"]]
    assert s3.region == "us-east-1"
    assert s3.secret_key.get_secret_value() not in repr(s3)


def test_http_stub_imposter_from_httpx(http_stub: HttpStub) -> None:
    imposter = http_stub.create(
        [
            {
                "predicates": [{"equals": {"method": "GET", "path": "/price"}}],
                "responses": [{"is": {"statusCode": 200, "body": "42"}}],
            }
        ],
        default_response={"statusCode": 404},
    )
    assert imposter.port in range(4545, 4550)
    assert httpx.get(f"{imposter.url}/price").text == "42"
    assert httpx.get(f"{imposter.url}/other").status_code == 404
    paths = [request["path"] for request in imposter.requests()]
    assert paths == ["/price", "/other"]
    second = http_stub.create([{"responses": [{"is": {"body": "second"}}]}])
    assert second.port != imposter.port
    assert httpx.get(second.url).text == "second"
    http_stub.delete(second)
    assert second.port not in [i["port"] for i in http_stub.imposters()]


def test_http_stub_deletes_its_imposters_after_each_test(http_stub: HttpStub) -> None:
    # The previous test's imposters are gone: this one starts from an empty stub server.
    assert http_stub.imposters() == []
