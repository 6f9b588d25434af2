"""Where the catalog's manifests are, and the values their placeholders need.

Standard library only: conftests import the catalog's factories at collection time.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_VALUES", "SERVICES", "catalog_value_problem", "manifests", "merged_values"]

# Catalog name (as in fixtures and values) -> directory under manifests/ (beside this
# module), which is also the name of its Kubernetes Service.
SERVICES: Mapping[str, str] = {
    "redis": "redis",
    "postgres": "postgres",
    "s3": "s3",
    "http_stub": "http-stub",
}

# Every ${name.key} placeholder of the catalog's manifests, with its default.
DEFAULT_VALUES: Mapping[str, Mapping[str, str]] = {
    "postgres": {"user": "kubefixtures", "database": "kubefixtures"},
    "s3": {"access_key": "kubefixtures", "region": "us-east-1"},
}

_MANIFESTS = Path(__file__).resolve().parent / "manifests"  # in the package, checkout or wheel


def manifests(service: str) -> Path:
    """The directory of a catalog service's manifests (``redis``, ``http_stub``, ...)."""
    if service not in SERVICES:
        raise ValueError(
            f"unknown catalog service {service!r}; the catalog has {', '.join(SERVICES)}"
        )
    directory = _MANIFESTS / SERVICES[service]
    if not directory.is_dir():
        raise FileNotFoundError(
            f"the manifests of catalog service {service!r} are missing ({directory}); "
            "reinstall kubefixtures"
        )
    return directory


def merged_values(values: Mapping[str, Any] | None) -> dict[str, Any]:
    """The catalog's defaults with ``values`` on top; a service's table is merged key by key,
    so ``{"postgres": {"database": "shop"}}`` keeps the default user."""
    merged: dict[str, Any] = {name: dict(table) for name, table in DEFAULT_VALUES.items()}
    for key, value in (values or {}).items():
        if key in merged and isinstance(value, Mapping):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


def catalog_value_problem(service: str, key: str) -> str | None:
    """Why ``service.key`` is not a value of catalog service ``service`` (None: it is)."""
    known = DEFAULT_VALUES.get(service) or {}
    if key in known:
        return None
    if not known:
        return f"catalog service {service} takes no values"
    return f"catalog service {service} has no value {key!r} (it takes {', '.join(known)})"
