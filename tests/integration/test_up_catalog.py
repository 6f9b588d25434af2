"""The catalog from the command line, on the real cluster: ``kubefixtures up --catalog
postgres --values postgres.database=shop``, then a pytest run using the catalog's ready
``postgres`` fixture through ``KUBEFIXTURES_DETAILS`` (psycopg connects and queries), then
``kubefixtures down``."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest

from kubefixtures.details import EnvironmentDetails
from kubefixtures.kube import Cluster
from tests.integration.sharing_support import BIN, environ, output, run_pytest

pytestmark = pytest.mark.cluster

SUITE = """
import psycopg


def test_the_database_answers(postgres):
    assert postgres.database == "shop"
    with psycopg.connect(postgres.dsn, connect_timeout=10) as connection:
        row = connection.execute("select current_database(), 6 * 7").fetchone()
    assert row == ("shop", 42)
"""


def test_up_a_catalog_service_use_it_through_details_then_down(
    tmp_path: Path, kubefixtures_cluster: Cluster
) -> None:
    details_file = tmp_path / "postgres.json"
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["kubefixtures.catalog.fixtures"]\n')
    (tmp_path / "test_catalog_up.py").write_text(SUITE)
    up = subprocess.Popen(
        [
            str(BIN / "kubefixtures"), "up", "--catalog", "postgres",
            "--values", "postgres.database=shop", "--details-out", str(details_file),
            "--image-overrides", "postgres:15=kubefixtures.local/postgres:15",
        ],
        cwd=tmp_path, env=environ(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, start_new_session=True,
    )  # fmt: skip
    namespace = None
    try:
        lines: list[str] = []
        assert up.stdout is not None
        for line in up.stdout:
            lines.append(line)
            if line.startswith("serving the port-forwards"):
                break
        assert details_file.exists(), "".join(lines)
        details = EnvironmentDetails.read(details_file)
        namespace = details.namespace
        assert details.name == "kubefixtures_postgres"
        assert details.values["postgres"] == {"user": "kubefixtures", "database": "shop"}

        result = run_pytest(tmp_path, env=environ(KUBEFIXTURES_DETAILS=str(details_file)))
        assert result.returncode == 0, output(result)
        assert "1 passed" in result.stdout

        up.send_signal(signal.SIGTERM)
        rest, _ = up.communicate(timeout=60)
        assert up.returncode == 0, rest
        down = subprocess.run(
            [str(BIN / "kubefixtures"), "down", str(details_file)],
            env=environ(), capture_output=True, text=True, timeout=180,
        )  # fmt: skip
        assert down.returncode == 0, output(down)
        assert kubefixtures_cluster.namespace(namespace) is None
    finally:
        if up.poll() is None:
            up.kill()
            up.communicate(timeout=30)
        if namespace is not None:
            kubefixtures_cluster.delete_namespace(namespace)
