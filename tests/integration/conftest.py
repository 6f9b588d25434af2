"""Fixtures for the tests that run against a real cluster.

Without a reachable cluster these tests skip with a one-line reason, except under CI
(``CI=true``), where a missing cluster is a failure: CI must never pass by skipping them.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from kubefixtures import KubefixturesError, environment
from kubefixtures.kube import Cluster
from kubefixtures.kube.client import NAMESPACE
from kubefixtures.session import session_state

ENVIRONMENTS = Path(__file__).parent / "environments"
# The manifests are written for public images; this cluster has local builds of them.
LOCAL_IMAGES = {"redis": "kubefixtures.local/redis:7.0"}

# Module scope: torn down when test_environments.py is done, so that other modules (the
# port-forward tests count forwarder threads) do not see them.
shop = environment("environments/shop/", values={"greeting": "hello"}, scope="module")
echo_chart = environment("environments/chart/", values={"message": "from-values"}, scope="module")


@pytest.fixture(scope="session")
def kubefixtures_cluster(request: pytest.FixtureRequest) -> Cluster:
    """The cluster kubefixtures is configured for; skip (or fail under CI) without one."""
    try:
        return session_state(request.config).cluster()
    except KubefixturesError as error:
        reason = f"no Kubernetes cluster to test against: {error}"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI=true but {reason}", pytrace=False)
        pytest.skip(reason)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The public images map to local builds unless the run overrides them already
    (``--kubefixtures-image-overrides`` or the ini key). Done here, before any environment
    starts coming up (prestart begins right after collection)."""
    state = session_state(config)
    overrides = {**LOCAL_IMAGES, **state.settings.image_overrides}
    state.settings = dataclasses.replace(state.settings, image_overrides=overrides)


@pytest.fixture(scope="session", autouse=True)
def _needs_the_cluster(kubefixtures_cluster: Cluster) -> None:
    """Every test here needs the cluster (skipped without one, failed under CI)."""


def namespaces_of(cluster: Cluster, environment_name: str) -> list[dict[str, Any]]:
    """Namespaces labelled as belonging to the environment (whatever the session)."""
    selector = f"kubefixtures.io/environment={environment_name}"
    return list(cluster.list_objects(NAMESPACE, None, label_selector=selector)["items"])


@pytest.fixture
def all_namespaces(kubefixtures_cluster: Cluster) -> Callable[[str], list[str]]:
    """``all_namespaces(name)``: every namespace of an environment, even those being deleted."""
    return lambda name: [
        item["metadata"]["name"] for item in namespaces_of(kubefixtures_cluster, name)
    ]


@pytest.fixture
def live_namespaces(kubefixtures_cluster: Cluster) -> Callable[[str], list[str]]:
    """``live_namespaces(name)``: the namespaces of an environment not being deleted."""

    def live(environment_name: str) -> list[str]:
        return [
            item["metadata"]["name"]
            for item in namespaces_of(kubefixtures_cluster, environment_name)
            if not item["metadata"].get("deletionTimestamp")
        ]

    return live
