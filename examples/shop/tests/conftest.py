"""The shop, tested two ways against real Redis and PostgreSQL on Kubernetes:

- ``local``: the shop runs here as a process (``local_service``), talking to the catalog's
  ``redis`` and ``postgres`` fixtures through their port-forwards;
- ``in-cluster``: the shop's image is loaded into the cluster (``app_image``) and runs in
  one namespace with its own Redis and PostgreSQL (``catalog(..., sources=["k8s/"])``).

Every test that takes ``shop_url`` runs both ways.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from kubefixtures import Environment
from kubefixtures.catalog import LocalService, app_image, catalog, docker_available, local_service

PROJECT = Path(__file__).resolve().parents[1]
IMAGES = Path(
    os.environ.get("KUBEFIXTURES_IMAGES_DIR") or "~/.cache/kubefixtures/images"
).expanduser()
# `make images` builds a Python base image (hack/images, "python") and, for machines without
# Docker, the shop's own image as a tarball ("shop").
PYTHON_BASE = IMAGES / "python.tar"
TARBALL = IMAGES / "shop.tar"

if PYTHON_BASE.is_file() and docker_available():
    # The Dockerfile, built for real (`make test` starts a Docker engine), FROM the local
    # Python image: no registry. The engine has no bridge network, so pip uses the host's.
    shop_image = app_image(
        build=PROJECT,
        ref="shop:dev",
        base_images=[PYTHON_BASE],
        build_args={"PYTHON_IMAGE": "kubefixtures.local/python:3.11"},
        network="host",
    )
elif TARBALL.is_file():
    shop_image = app_image(image=TARBALL)
else:
    shop_image = app_image(build=PROJECT, ref="shop:dev")

shop_in_cluster = catalog(
    "redis",
    "postgres",
    sources=[PROJECT / "k8s"],
    values={"shop_image": shop_image.ref, "postgres": {"database": "shop"}},
    requires=["shop_image"],
)

shop_local = local_service(
    [sys.executable, "-m", "shop", "--port", "{port}"],
    env={"REDIS_URL": "{redis.url}", "DATABASE_URL": "{postgres.dsn}"},
    ready="http://127.0.0.1:{port}/health",
    cwd=PROJECT,
)


@pytest.fixture(params=["local", "in-cluster"])
def shop_url(request: pytest.FixtureRequest) -> str:
    """The shop's base URL, once per way of running it."""
    if request.param == "local":
        local: LocalService = request.getfixturevalue("shop_local")
        return local.url
    environment: Environment = request.getfixturevalue("shop_in_cluster")
    url = environment.services["shop"].url
    assert url is not None
    return url
