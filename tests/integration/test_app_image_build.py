"""``app_image(build=...)`` end to end against the real cluster and a real Docker engine:
``docker load`` of a local base image, ``docker build`` of a context FROM it (with a build
argument that exists only in this run), ``docker save``, the load into the cluster, and a
Deployment that runs the image just built.

Without a Docker engine these tests skip, except under CI (``make test`` starts one with
``hack/docker-engine.sh``), where that is a failure.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import uuid
from pathlib import Path

import httpx
import pytest

from kubefixtures import Environment, KubefixturesError, environment
from kubefixtures.catalog import AppImage, app_image, docker_available
from kubefixtures.catalog.images import _Build, _docker_build

pytestmark = pytest.mark.cluster

IMAGES = Path(
    os.environ.get("KUBEFIXTURES_IMAGES_DIR") or Path.home() / ".cache/kubefixtures/images"
)
TOKEN = uuid.uuid4().hex  # what only an image built in this run can serve
BUILT_REF = "kubefixtures.local/built-app:test"

DOCKERFILE = """
ARG BASE
FROM ${BASE}
ARG TOKEN
RUN mkdir -p /www && echo "built $TOKEN" > /www/index.html
USER 65534:65534
CMD ["httpd", "-f", "-v", "-p", "8080", "-h", "/www"]
"""

MANIFEST = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: built
spec:
  selector:
    matchLabels: {app: built}
  template:
    metadata:
      labels: {app: built}
    spec:
      containers:
        - name: built
          image: ${built_image}
          imagePullPolicy: IfNotPresent
          ports: [{name: http, containerPort: 8080}]
          readinessProbe:
            httpGet: {path: /, port: http}
            periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata:
  name: built
spec:
  selector: {app: built}
  ports: [{name: http, port: 80, targetPort: http}]
"""

_SCRATCH = Path(tempfile.mkdtemp(prefix="kubefixtures-build-test-"))
atexit.register(shutil.rmtree, _SCRATCH, ignore_errors=True)
(_SCRATCH / "context").mkdir()
(_SCRATCH / "context" / "Dockerfile").write_text(DOCKERFILE)
(_SCRATCH / "built.yaml").write_text(MANIFEST)


@pytest.fixture(scope="module", autouse=True)
def docker_engine() -> None:
    """Before the session-scoped image fixture: skip (fail under CI) without an engine."""
    if docker_available():
        return
    reason = "no Docker engine answers (`make docker-engine` starts one)"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"CI=true but {reason}", pytrace=False)
    pytest.skip(reason)


built_image = app_image(
    build=_SCRATCH / "context",
    ref=BUILT_REF,
    base_images=[IMAGES / "busybox.tar"],
    build_args={"BASE": "kubefixtures.local/busybox:1.35", "TOKEN": TOKEN},
    network="host",  # the engine hack/docker-engine.sh starts has no bridge network
    scope="module",
)
built_app = environment(
    _SCRATCH / "built.yaml",
    values={"built_image": built_image.ref},
    requires=["built_image"],
    scope="module",
)


def test_an_image_built_with_docker_runs_in_the_cluster(
    built_image: AppImage, built_app: Environment
) -> None:
    assert built_image.built
    assert built_image.ref == BUILT_REF
    url = built_app.services["built"].url
    assert url is not None
    assert httpx.get(f"{url}/").text.strip() == f"built {TOKEN}"


def test_a_missing_base_image_is_named(tmp_path: Path) -> None:
    build = _Build(dockerfile=None, args={}, base_images=(tmp_path / "nope.tar",), network=None)
    with pytest.raises(
        KubefixturesError, match=r"app_image\(base_images=\[.*nope.tar'\]\): no such"
    ):
        _docker_build(BUILT_REF, _SCRATCH / "context", build)
