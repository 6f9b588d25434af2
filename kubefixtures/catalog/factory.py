"""``catalog(...)``: an environment made of catalog services, optionally with your own
manifests next to them::

    # conftest.py
    from kubefixtures.catalog import catalog

    backing = catalog("redis", "postgres", values={"postgres": {"database": "shop"}})

The fixture's value is an ``Environment``; the typed details of each service come from
``RedisDetails.from_environment(backing)`` and friends. It is an ordinary
``kubefixtures.environment`` fixture, so it is brought up in the background as soon as
the tests are collected, shared by xdist workers the same way, and torn down the same way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from kubefixtures.catalog._sources import SERVICES, manifests, merged_values
from kubefixtures.declarations import caller_directory
from kubefixtures.factories import Scope, environment

__all__ = ["catalog"]


def catalog(
    *services: str,
    name: str | None = None,
    sources: Sequence[str | Path] = (),
    values: Mapping[str, Any] | None = None,
    scope: Scope = "session",
    timeout: float | None = None,
    requires: Sequence[str] = (),
) -> Any:  # pytest's type for a fixture definition is private
    """A fixture factory: one namespace with the given catalog ``services`` (``redis``,
    ``postgres``, ``s3``, ``http_stub``) plus your own ``sources`` (relative paths are
    relative to the calling file), brought up together.

    ``values`` fill the placeholders of your sources and override the catalog's defaults
    (``{"postgres": {"user": ..., "database": ...}, "s3": {"region": ...}}``); ``requires``
    names fixtures to set up first, such as an ``app_image`` your manifests run.
    """
    unknown = [service for service in services if service not in SERVICES]
    if unknown:
        raise ValueError(
            f"catalog(): unknown service {unknown[0]!r}; choose from {', '.join(SERVICES)}"
        )
    if len(set(services)) != len(services):
        raise ValueError(f"catalog(): a service is named twice in {services!r}")
    if not services and not sources:
        raise TypeError("catalog() needs at least one service or source")
    base = caller_directory()
    own = [path if path.is_absolute() else base / path for path in map(Path, sources)]
    return environment(
        *(manifests(service) for service in services),
        *own,
        name=name,
        values=merged_values(values),
        scope=scope,
        timeout=timeout,
        requires=requires,
    )
