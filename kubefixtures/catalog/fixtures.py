"""Ready fixtures for the catalog's services; opt in with one line in a conftest::

    pytest_plugins = ["kubefixtures.catalog.fixtures"]

(or ``-p kubefixtures.catalog.fixtures``). Then tests ask for ``redis`` (RedisDetails),
``postgres`` (PostgresDetails), ``s3`` (S3Details) or ``http_stub`` (HttpStub, a helper
whose imposters are deleted after each test). Each service has its own session-scoped
environment (``kubefixtures_redis``, ...), brought up in the background as soon as the
tests that use it are collected, so several of them come up side by side.

They are opt-in because their names are common: a suite with its own ``redis`` fixture
keeps it, and a suite that never asks for them never contacts a cluster.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from kubefixtures.catalog.connections import (
    HttpStubDetails,
    PostgresDetails,
    RedisDetails,
    S3Details,
)
from kubefixtures.catalog.factory import catalog
from kubefixtures.catalog.stub import HttpStub
from kubefixtures.details import Environment

kubefixtures_redis = catalog("redis")
kubefixtures_postgres = catalog("postgres")
kubefixtures_s3 = catalog("s3")
kubefixtures_http_stub = catalog("http_stub")


@pytest.fixture(scope="session")
def redis(kubefixtures_redis: Environment) -> RedisDetails:
    """A Redis 7 server with a password generated for this session."""
    return RedisDetails.from_environment(kubefixtures_redis)


@pytest.fixture(scope="session")
def postgres(kubefixtures_postgres: Environment) -> PostgresDetails:
    """A PostgreSQL 15 server: user and database ``kubefixtures``, a generated password."""
    return PostgresDetails.from_environment(kubefixtures_postgres)


@pytest.fixture(scope="session")
def s3(kubefixtures_s3: Environment) -> S3Details:
    """An S3 API (moto server) in region us-east-1."""
    return S3Details.from_environment(kubefixtures_s3)


@pytest.fixture
def http_stub(kubefixtures_http_stub: Environment) -> Iterator[HttpStub]:
    """A Mountebank server; the imposters a test creates are deleted after it."""
    stub = HttpStub(HttpStubDetails.from_environment(kubefixtures_http_stub))
    try:
        yield stub
    finally:
        stub.close()
