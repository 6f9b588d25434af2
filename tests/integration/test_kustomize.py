"""A real kustomize base and overlay (namePrefix, commonLabels, a configMapGenerator merged
from the base, a JSON patch) rendered by kubectl's kustomize, brought up on the cluster and
used; and ``kubefixtures up`` of the same overlay, used through a details file."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
import pytest

from kubefixtures import Environment, environment
from kubefixtures.details import EnvironmentDetails
from kubefixtures.kube import Cluster
from tests.integration.sharing_support import (
    delete_all,
    environ,
    live,
    output,
    run_pytest,
    start_up,
    unique,
)

pytestmark = pytest.mark.cluster

OVERLAY = Path(__file__).parent / "environments" / "kustomize" / "overlays" / "test"

overlay = environment(
    "environments/kustomize/overlays/test/",
    values={"greeting": "hello"},
    scope="module",
    ready={"test-web": "http:/health"},
)


def of_kind(env: Environment, kind: str) -> list[dict[str, object]]:
    return [dict(obj) for obj in env.objects if obj["kind"] == kind]


def test_an_overlay_comes_up_with_its_changes_and_is_usable(overlay: Environment) -> None:
    [configmap] = of_kind(overlay, "ConfigMap")
    [deployment] = of_kind(overlay, "Deployment")
    metadata = configmap["metadata"]
    assert isinstance(metadata, dict)
    assert str(metadata["name"]).startswith("test-web-settings-")  # prefix + content hash
    assert configmap["data"] == {
        "GREETING": "hello",  # placeholders filled after kustomize
        "NAMESPACE": overlay.namespace,
        "MODE": "test",  # merged by the overlay's generator
    }
    assert deployment["spec"]["replicas"] == 2  # type: ignore[index]  # the overlay's patch
    assert deployment["metadata"]["labels"] == {"tier": "test"}  # type: ignore[index]

    web = overlay.services["test-web"]
    assert web.url is not None
    assert httpx.get(f"{web.url}/health", timeout=10).status_code == 200
    live_deployment = overlay.get("deployment", "test-web")
    assert live_deployment["status"]["readyReplicas"] == 2
    # The pods got the generated ConfigMap under its hashed name, placeholders filled.
    logs = overlay.logs("deployment/test-web")
    assert f"settings: hello test {overlay.namespace}" in logs, logs


# Uses the environment `up` brought up, through its details file: ready= probes it again.
ATTACHED_SUITE = """
import httpx

from kubefixtures import environment

{name} = environment(
    {overlay!r}, values={{"greeting": "from-up"}}, ready={{"test-web": "http:/health"}}
)


def test_it({name}):
    assert httpx.get({name}.services["test-web"].url + "/health", timeout=10).status_code == 200
"""


def test_up_brings_an_overlay_up_for_details_file_runs(
    tmp_path: Path, kubefixtures_cluster: Cluster
) -> None:
    name = unique("kustomized")
    details_file = tmp_path / "env.json"
    (tmp_path / "test_suite.py").write_text(ATTACHED_SUITE.format(name=name, overlay=str(OVERLAY)))
    up, printed = start_up(
        tmp_path, f"{OVERLAY}/", "--name", name, "--values", "greeting=from-up",
        "--details-out", str(details_file),
    )  # fmt: skip
    try:
        assert details_file.exists(), printed
        details = EnvironmentDetails.read(details_file)
        assert set(details.services) == {"test-web"}
        assert live(kubefixtures_cluster, name) == [details.namespace]

        result = run_pytest(tmp_path, env=environ(KUBEFIXTURES_DETAILS=str(details_file)))
        assert result.returncode == 0, output(result)
        assert "1 passed" in result.stdout
    finally:
        if up.poll() is None:
            up.send_signal(signal.SIGTERM)
            up.communicate(timeout=60)
        delete_all(kubefixtures_cluster, name)
