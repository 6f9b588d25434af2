"""The service under test next to the catalog, both ways, against the real cluster:

- in the cluster: ``app_image(image=TARBALL)`` loads an image under a tag the cluster has
  never seen, and an environment that ``requires`` it runs it from a ``${placeholder}``;
- as a local process: ``local_service`` runs a small Python web app with ``{redis.url}``
  filled in, waits for its health URL, and stops it.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

import httpx
import pytest

from kubefixtures import Environment
from kubefixtures.catalog import (
    AppImage,
    LocalService,
    RedisDetails,
    app_image,
    catalog,
    local_service,
)
from tests.image_support import retag_archive

pytestmark = pytest.mark.cluster

IMAGES = Path(
    os.environ.get("KUBEFIXTURES_IMAGES_DIR") or Path.home() / ".cache/kubefixtures/images"
)
APP_REF = "kubefixtures.local/catalog-app:test"


def _retagged_testserver(directory: Path) -> Path:
    """A copy of the testserver image tarball whose only tag is APP_REF."""
    source = IMAGES / "testserver.tar"
    target = directory / "catalog-app.tar"
    if not source.is_file():
        return target  # app_image(...) then fails with a clear message naming the file
    return retag_archive(source, APP_REF, target)


APP_MANIFEST = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: app
spec:
  selector:
    matchLabels: {app: app}
  template:
    metadata:
      labels: {app: app}
    spec:
      containers:
        - name: app
          image: ${app_image}
          imagePullPolicy: IfNotPresent
          command: ["testserver", "http", "--port", "8080"]
          ports: [{name: http, containerPort: 8080}]
          readinessProbe:
            httpGet: {path: /health, port: http}
            periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata:
  name: app
spec:
  selector: {app: app}
  ports: [{name: http, port: 80, targetPort: http}]
"""

# Made when the module is imported: app_image reads its tarball's tag at declaration.
_SCRATCH = Path(tempfile.mkdtemp(prefix="kubefixtures-catalog-test-"))
atexit.register(shutil.rmtree, _SCRATCH, ignore_errors=True)
(_SCRATCH / "app.yaml").write_text(APP_MANIFEST)

catalog_app_image = app_image(image=_retagged_testserver(_SCRATCH), ref=APP_REF)
catalog_app = catalog(
    "redis",
    sources=[_SCRATCH / "app.yaml"],
    values={"app_image": catalog_app_image.ref},
    requires=["catalog_app_image"],
    scope="module",  # its port-forwards end with this module
)


def test_app_image_is_loaded_and_runs_next_to_the_catalog(
    catalog_app_image: AppImage, catalog_app: Environment
) -> None:
    assert catalog_app_image.ref == APP_REF
    assert catalog_app_image.archive is not None
    app = catalog_app.services["app"]
    assert app.url is not None
    assert httpx.get(f"{app.url}/health").text.strip() == "ok"
    assert sorted(catalog_app.services) == ["app", "redis"]


APP = r"""
import http.server, os, sys
import redis

store = redis.Redis.from_url(os.environ["REDIS_URL"])
print("shop starting with", os.environ["REDIS_URL"], flush=True)


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/health":
            body = b"ok"
        else:
            body = str(store.incr("visits")).encode()
        self.send_response(200)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):
        print("request", self.path, flush=True)


http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"""


@pytest.fixture(scope="module")
def redis(catalog_app: Environment) -> RedisDetails:
    return RedisDetails.from_environment(catalog_app)


shop = local_service(
    [sys.executable, "-c", APP, "{port}"],
    env={"REDIS_URL": "{redis.url}"},
    ready="http://127.0.0.1:{port}/health",
    scope="module",
)


def test_local_service_uses_the_catalog_redis(shop: LocalService) -> None:
    assert shop.running()
    first = int(httpx.get(f"{shop.url}/visits").text)
    assert int(httpx.get(f"{shop.url}/visits").text) == first + 1
    output = shop.output()
    assert "shop starting with redis://:********@127.0.0.1:" in output
    assert "request /visits" in output
