"""Fixtures for the tests that run against a real cluster.

Without a reachable cluster these tests skip with a one-line reason, except under CI
(``CI=true``), where a missing cluster is a failure: CI must never pass by skipping them.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubefixtures import KubefixturesError, environment
from kubefixtures.kube import Cluster
from kubefixtures.session import session_state

ENVIRONMENTS = Path(__file__).parent / "environments"
# The manifests are written for public images; this cluster has local builds of them.
LOCAL_IMAGES = {"redis": "kubefixtures.local/redis:7.0"}

shop = environment("environments/shop/", values={"greeting": "hello"})
echo_chart = environment("environments/chart/", values={"message": "from-values"})


@pytest.fixture(scope="session")
def cluster(request: pytest.FixtureRequest) -> Cluster:
    """The cluster kubefixtures is configured for; skip (or fail under CI) without one."""
    try:
        return session_state(request.config).cluster()
    except KubefixturesError as error:
        reason = f"no Kubernetes cluster to test against: {error}"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI=true but {reason}", pytrace=False)
        pytest.skip(reason)


@pytest.fixture(scope="session", autouse=True)
def _cluster_and_local_images(
    request: pytest.FixtureRequest, cluster: Cluster
) -> Iterator[None]:
    """Every test here needs the cluster; and the public images map to local ones unless the
    run already overrides them (``--kubefixtures-image-overrides`` or the ini key)."""
    state = session_state(request.config)
    before = state.settings
    overrides = {**LOCAL_IMAGES, **before.image_overrides}
    state.settings = dataclasses.replace(before, image_overrides=overrides)
    yield
    state.settings = before


def namespaces_of(cluster: Cluster, environment_name: str) -> list[dict[str, object]]:
    """Namespaces labelled as belonging to the environment (whatever the session)."""
    from kubefixtures.kube.client import NAMESPACE  # noqa: PLC0415

    selector = f"kubefixtures.io/environment={environment_name}"
    return list(cluster.list_objects(NAMESPACE, None, label_selector=selector)["items"])


@pytest.fixture
def live_namespaces(cluster: Cluster) -> object:
    """``live_namespaces(name)``: namespaces of an environment that are not being deleted."""

    def live(environment_name: str) -> list[str]:
        return [
            str(item["metadata"]["name"])  # type: ignore[index]
            for item in namespaces_of(cluster, environment_name)
            if not item["metadata"].get("deletionTimestamp")  # type: ignore[attr-defined]
        ]

    return live
