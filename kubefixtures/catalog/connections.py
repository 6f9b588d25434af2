"""Typed details of the catalog's services, as a test (or a local process) reaches them.

Passwords and secret keys are ``SecretStr``: masked in ``repr``, ``str`` and dumps, so a
failing test's report, ``--showlocals`` or a log line never shows them. The connection
strings that must carry them (``RedisDetails.url``, ``PostgresDetails.dsn``) are
properties, not fields, for the same reason.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, SecretStr

from kubefixtures.catalog._sources import DEFAULT_VALUES, SERVICES
from kubefixtures.errors import KubefixturesError

if TYPE_CHECKING:
    from kubefixtures.details import Environment, ServiceDetails

__all__ = ["HttpStubDetails", "PostgresDetails", "RedisDetails", "S3Details"]

# ${secret:NAME} of each catalog manifest.
REDIS_PASSWORD = "catalog-redis-password"
POSTGRES_PASSWORD = "catalog-postgres-password"
S3_SECRET_KEY = "catalog-s3-secret-key"
IMPOSTER_PORTS = range(4545, 4550)


class _Details(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    namespace: str
    """The namespace the service runs in (apps in the same namespace reach it by name)."""


def _service(environment: Environment, catalog_name: str) -> ServiceDetails:
    service = SERVICES[catalog_name]
    found = environment.services.get(service)
    if found is None:
        raise KubefixturesError(
            f"environment {environment.name!r} has no {catalog_name} service "
            f"(it has {', '.join(sorted(environment.services)) or 'no services'}); "
            f"add {catalog_name!r} to its catalog(...) services"
        )
    return found


def _secret(environment: Environment, name: str) -> SecretStr:
    try:
        return SecretStr(environment.secrets[name])
    except KeyError:
        raise KubefixturesError(
            f"environment {environment.name!r} has no generated secret {name!r}: "
            "were the catalog's manifests changed?"
        ) from None


def _value(environment: Environment, service: str, key: str) -> str:
    """A value the catalog's manifest was rendered with, read back from the rendered
    objects (an environment attached from a details file has none: the default then)."""
    wanted = {
        ("postgres", "user"): "POSTGRES_USER",
        ("postgres", "database"): "POSTGRES_DB",
        ("s3", "region"): "AWS_DEFAULT_REGION",
    }.get((service, key))
    for obj in environment.objects:
        if obj.get("kind") == "Secret" and (service, key) == ("s3", "access_key"):
            if obj["metadata"]["name"] == "s3-credentials":
                return str(obj.get("stringData", {}).get("access-key"))
            continue
        if obj.get("kind") != "Deployment" or obj["metadata"]["name"] != SERVICES[service]:
            continue
        for container in obj["spec"]["template"]["spec"]["containers"]:
            for variable in container.get("env") or []:
                if variable.get("name") == wanted and "value" in variable:
                    return str(variable["value"])
    return str(DEFAULT_VALUES[service][key])


class RedisDetails(_Details):
    host: str
    port: int
    password: SecretStr

    @property
    def url(self) -> str:
        """``redis://:PASSWORD@host:port/0``, for ``redis.Redis.from_url``."""
        password = quote(self.password.get_secret_value(), safe="")
        return f"redis://:{password}@{self.host}:{self.port}/0"

    @classmethod
    def from_environment(cls, environment: Environment) -> RedisDetails:
        service = _service(environment, "redis")
        return cls(
            namespace=environment.namespace,
            host=service.host,
            port=service.port,
            password=_secret(environment, REDIS_PASSWORD),
        )


class PostgresDetails(_Details):
    host: str
    port: int
    user: str
    password: SecretStr
    database: str

    @property
    def dsn(self) -> str:
        """``postgresql://user:PASSWORD@host:port/database``, for psycopg, SQLAlchemy, ..."""
        user = quote(self.user, safe="")
        password = quote(self.password.get_secret_value(), safe="")
        database = quote(self.database, safe="")
        return f"postgresql://{user}:{password}@{self.host}:{self.port}/{database}"

    @classmethod
    def from_environment(cls, environment: Environment) -> PostgresDetails:
        service = _service(environment, "postgres")
        return cls(
            namespace=environment.namespace,
            host=service.host,
            port=service.port,
            user=_value(environment, "postgres", "user"),
            password=_secret(environment, POSTGRES_PASSWORD),
            database=_value(environment, "postgres", "database"),
        )


class S3Details(_Details):
    endpoint_url: str
    region: str
    access_key: str
    secret_key: SecretStr

    def client_kwargs(self) -> dict[str, str]:
        """Keyword arguments for ``boto3.client("s3", **details.client_kwargs())``."""
        return {
            "endpoint_url": self.endpoint_url,
            "region_name": self.region,
            "aws_access_key_id": self.access_key,
            "aws_secret_access_key": self.secret_key.get_secret_value(),
        }

    @classmethod
    def from_environment(cls, environment: Environment) -> S3Details:
        service = _service(environment, "s3")
        return cls(
            namespace=environment.namespace,
            endpoint_url=service.url or f"http://{service.host}:{service.port}",
            region=_value(environment, "s3", "region"),
            access_key=_value(environment, "s3", "access_key"),
            secret_key=_secret(environment, S3_SECRET_KEY),
        )


class HttpStubDetails(_Details):
    host: str
    admin_url: str
    imposter_ports: dict[int, int]
    """Port an imposter listens on in the cluster -> local port forwarded to it."""

    @classmethod
    def from_environment(cls, environment: Environment) -> HttpStubDetails:
        service = _service(environment, "http_stub")
        admin = service.named_ports.get("http-admin", service.port)
        return cls(
            namespace=environment.namespace,
            host=service.host,
            admin_url=f"http://{service.host}:{admin}",
            imposter_ports={
                port: service.ports[port] for port in IMPOSTER_PORTS if port in service.ports
            },
        )
