"""The service catalog: ready services on Kubernetes (redis, postgres, S3, an HTTP stub) and
the service under test next to them (``app_image``, ``local_service``).

- ``catalog("redis", "postgres", sources=[...])``: an environment fixture of catalog services
  plus your own manifests; typed details with ``RedisDetails.from_environment(env)``.
- ``pytest_plugins = ["kubefixtures.catalog.fixtures"]``: ready fixtures ``redis``,
  ``postgres``, ``s3``, ``http_stub``.
- ``app_image(build=PATH | image=REF)``: the service under test's image, in the cluster.
- ``local_service([...], env=..., ready=...)``: the service under test as a local process.

The pydantic models are imported on first access, like the package's own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kubefixtures.catalog._sources import SERVICES, manifests
from kubefixtures.catalog.factory import catalog
from kubefixtures.catalog.images import AppImage, app_image, docker_available
from kubefixtures.catalog.local import LocalService, local_service

if TYPE_CHECKING:
    from kubefixtures.catalog.connections import (
        HttpStubDetails,
        PostgresDetails,
        RedisDetails,
        S3Details,
    )
    from kubefixtures.catalog.stub import HttpStub, Imposter

__all__ = [
    "SERVICES",
    "AppImage",
    "HttpStub",
    "HttpStubDetails",
    "Imposter",
    "LocalService",
    "PostgresDetails",
    "RedisDetails",
    "S3Details",
    "app_image",
    "catalog",
    "docker_available",
    "local_service",
    "manifests",
]

_LAZY = {
    "HttpStubDetails": "kubefixtures.catalog.connections",
    "PostgresDetails": "kubefixtures.catalog.connections",
    "RedisDetails": "kubefixtures.catalog.connections",
    "S3Details": "kubefixtures.catalog.connections",
    "HttpStub": "kubefixtures.catalog.stub",
    "Imposter": "kubefixtures.catalog.stub",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'kubefixtures.catalog' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
