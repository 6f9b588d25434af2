"""What the sharing tests (xdist, details files, reuse, diagnostics) have in common: a suite
written to a temporary directory, run by a real ``pytest`` process against the cluster."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kubefixtures.kube import Cluster
from kubefixtures.kube.client import NAMESPACE

TOKEN_WEB = Path(__file__).parent / "environments" / "token-web"
BIN = Path(sys.executable).parent  # kubectl and kubefixtures live beside the interpreter

# A test that checks the environment over its forwarded port and records, per worker, the
# namespace and a digest of the generated secret (never the secret itself).
TEST_HEALTH = """
import hashlib
import json
import os
import time
import urllib.request

import pytest


@pytest.mark.parametrize("index", range({count}))
def test_health({name}, index):
    time.sleep({sleep})
    with urllib.request.urlopen({name}.services["web"].url + "/health", timeout=10) as answer:
        assert answer.status == 200
    record = {{
        "worker": os.environ.get("PYTEST_XDIST_WORKER", "main"),
        "pid": os.getpid(),
        "namespace": {name}.namespace,
        "token": hashlib.sha256({name}.secrets["token"].encode()).hexdigest(),
    }}
    with open("records.jsonl", "a") as out:
        out.write(json.dumps(record) + "\\n")
"""


def unique(stem: str) -> str:
    return f"{stem}_{secrets.token_hex(3)}"


def write_suite(
    directory: Path,
    name: str,
    *,
    count: int = 1,
    sleep: float = 0.0,
    values: Mapping[str, Any] | None = None,
    tests: str | None = None,
) -> None:
    """A conftest declaring environment ``name`` (token-web), and its tests."""
    values = {"ready_delay": 0, **(values or {})}
    (directory / "conftest.py").write_text(
        "from kubefixtures import environment\n\n"
        f"{name} = environment({str(TOKEN_WEB)!r}, values={dict(values)!r})\n"
    )
    source = tests if tests is not None else TEST_HEALTH
    (directory / "test_suite.py").write_text(source.format(name=name, count=count, sleep=sleep))


def pytest_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args]


def environ(**extra: str) -> dict[str, str]:
    """The environment of an inner run: this one's, minus what would make it part of this
    run (an outer xdist worker's variables), plus ``extra``."""
    env = dict(os.environ)
    for variable in (
        "PYTEST_ADDOPTS",
        "PYTEST_XDIST_WORKER",
        "PYTEST_XDIST_WORKER_COUNT",
        "PYTEST_XDIST_TESTRUNUID",
        "KUBEFIXTURES_DETAILS",
    ):
        env.pop(variable, None)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return {**env, **extra}


def run_pytest(
    directory: Path, *args: str, timeout: float = 300, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        pytest_command(*args),
        cwd=directory,
        env=dict(env or environ()),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_kubefixtures(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """The `kubefixtures` command; with ``check``, it must succeed."""
    done = subprocess.run(
        [str(BIN / "kubefixtures"), *args],
        env=environ(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if check:
        assert done.returncode == 0, done.stdout + done.stderr
    return done


def records(directory: Path) -> list[dict[str, Any]]:
    path = directory / "records.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def namespaces(cluster: Cluster, environment: str) -> dict[str, bool]:
    """Every namespace of ``environment`` (any session): name -> being deleted."""
    selector = f"kubefixtures.io/environment={environment}"
    items = cluster.list_objects(NAMESPACE, None, label_selector=selector)["items"]
    return {
        item["metadata"]["name"]: bool(item["metadata"].get("deletionTimestamp")) for item in items
    }


def live(cluster: Cluster, environment: str) -> list[str]:
    return sorted(name for name, going in namespaces(cluster, environment).items() if not going)


def delete_all(cluster: Cluster, environment: str) -> None:
    """Clean up after a test: these namespaces were made by kubefixtures sessions."""
    for name in namespaces(cluster, environment):
        cluster.delete_namespace(name)


def output(result: subprocess.CompletedProcess[str]) -> str:
    return result.stdout + result.stderr


def wait_for(condition: Any, timeout: float, what: str, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def start_up(directory: Path, *arguments: str) -> tuple[subprocess.Popen[str], str]:
    """`kubefixtures up ARGUMENTS...` in ``directory``, once it serves its forwards; the
    process and what it printed until then."""
    up = subprocess.Popen(
        [str(BIN / "kubefixtures"), "up", *arguments],
        cwd=directory, env=environ(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    lines: list[str] = []
    assert up.stdout is not None
    for line in up.stdout:
        lines.append(line)
        if line.startswith("serving the port-forwards"):
            break
    return up, "".join(lines)
