"""``pip install kubefixtures`` with no extras brings an environment up on the real cluster:
a clean virtualenv (no system site-packages) without the official ``kubernetes`` client or
httpx, a suite of its own whose environment is applied, waited for and port-forwarded."""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from kubefixtures.session import session_state

ROOT = Path(__file__).resolve().parents[2]
KUBECONFIG = os.environ.get("KUBECONFIG") or str(Path.home() / ".kube" / "config")

CONFTEST = """
from kubefixtures import environment

cache = environment("manifests/")
"""

TESTS = """
import socket
import sys

import pytest


def test_neither_the_official_client_nor_httpx_is_installed():
    with pytest.raises(ImportError):
        import kubernetes  # noqa: F401
    with pytest.raises(ImportError):
        import httpx  # noqa: F401


def test_the_environment_answers_through_its_forward(cache):
    service = cache.services["redis"]
    password = cache.secrets["redis"]
    with socket.create_connection((service.host, service.port), timeout=10) as sock:
        sock.sendall(f"AUTH {password}\\r\\nPING\\r\\n".encode())
        answer = b""
        while b"+PONG" not in answer:
            chunk = sock.recv(4096)
            assert chunk, answer
            answer += chunk
    assert answer.startswith(b"+OK")
    assert "kubernetes" not in sys.modules
"""


def test_an_install_without_extras_runs_an_environment(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    environment = tmp_path / "venv"
    venv.create(environment, with_pip=True, symlinks=True)  # a clean one: no site-packages
    python = environment / "bin" / "python"
    clean = {
        name: value
        for name, value in os.environ.items()
        if name not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")
    }
    installed = subprocess.run(
        [python, "-m", "pip", "install", "-q", str(ROOT)],
        capture_output=True,
        text=True,
        env=clean,
        timeout=600,
    )
    assert installed.returncode == 0, installed.stderr
    listed = subprocess.run(
        [python, "-m", "pip", "list", "--format=freeze"], capture_output=True, text=True
    )
    names = {line.split("==")[0].lower() for line in listed.stdout.splitlines()}
    assert "kubefixtures" in names
    assert not names & {"kubernetes", "httpx", "kopf"}

    suite = tmp_path / "suite"
    (suite / "manifests").mkdir(parents=True)
    (suite / "manifests" / "redis.yaml").write_text(
        (ROOT / "tests/integration/environments/shop/redis.yaml").read_text()
    )
    (suite / "conftest.py").write_text(CONFTEST)
    (suite / "test_minimal.py").write_text(TESTS)
    settings = session_state(request.config).settings
    overrides = ",".join(f"{name}={image}" for name, image in settings.image_overrides.items())
    options = [
        f"--kubefixtures-image-overrides={overrides}",
        f"--kubefixtures-kubeconfig={settings.kubeconfig or KUBECONFIG}",
    ]
    if settings.context:
        options.append(f"--kubefixtures-context={settings.context}")
    ran = subprocess.run(
        [python, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-W", "error", *options],
        cwd=suite,
        capture_output=True,
        text=True,
        env=clean,
        timeout=600,
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "2 passed" in ran.stdout, ran.stdout
    assert sys.prefix != str(environment)
