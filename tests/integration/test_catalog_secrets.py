"""Generated passwords: random per session, and in no log or report.

Two real pytest sessions (subprocesses) use the catalog's redis and postgres and fail on
purpose, with every verbosity that could leak a value (``-l`` shows locals, ``-rA`` every
report, ``--log-level DEBUG`` every log record, live logging on). Each writes its passwords
to a file for us; neither password may appear in what pytest printed, and the two
sessions' passwords must differ.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from kubefixtures.session import session_state

# Read now: pytester points HOME at its temporary directory while a test runs.
KUBECONFIG = os.environ.get("KUBECONFIG") or str(Path.home() / ".kube" / "config")

pytestmark = pytest.mark.cluster
pytest_plugins = ["pytester"]

CONFTEST = """
pytest_plugins = ["kubefixtures.catalog.fixtures"]
"""

TESTS = """
import json, logging, os, pathlib

import psycopg
import redis as redis_client


def test_uses_the_services_then_fails(redis, postgres):
    pathlib.Path(os.environ["SECRETS_OUT"]).write_text(json.dumps({
        "redis": redis.password.get_secret_value(),
        "postgres": postgres.password.get_secret_value(),
    }))
    assert redis_client.Redis.from_url(redis.url).ping()
    with psycopg.connect(postgres.dsn) as connection:
        connection.execute("SELECT 1")
    logging.getLogger("shop").info("details: %r %r", redis, postgres)
    print("details:", redis, postgres)
    details = (redis, postgres)
    assert details == "something else", "failing on purpose"
"""


def run_failing_session(pytester: pytest.Pytester, options: list[str], out: Path) -> str:
    os.environ["SECRETS_OUT"] = str(out)
    try:
        result = pytester.runpytest_subprocess(
            "-p", "no:cacheprovider", "-l", "-rA", "-vv",
            "--log-level=DEBUG", "-o", "log_cli=true", "-o", "log_cli_level=DEBUG",
            *options,
            timeout=600,
        )  # fmt: skip
    finally:
        del os.environ["SECRETS_OUT"]
    result.assert_outcomes(failed=1)
    return "\n".join(result.outlines + result.errlines)


def test_passwords_are_random_per_session_and_never_printed(
    pytester: pytest.Pytester, request: pytest.FixtureRequest
) -> None:
    settings = session_state(request.config).settings
    overrides = ",".join(f"{name}={image}" for name, image in settings.image_overrides.items())
    options = [
        f"--kubefixtures-image-overrides={overrides}",
        f"--kubefixtures-kubeconfig={settings.kubeconfig or KUBECONFIG}",
    ]
    if settings.context:
        options.append(f"--kubefixtures-context={settings.context}")
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_shop=TESTS)
    outputs, passwords = [], []
    for run in (1, 2):
        out = pytester.path / f"secrets-{run}.json"
        outputs.append(run_failing_session(pytester, options, out))
        passwords.append(json.loads(out.read_text()))
    for output, secrets in zip(outputs, passwords, strict=True):
        assert "failing on purpose" in output
        assert "RedisDetails(" in output  # the details were shown (masked)
        assert "**********" in output
        for name, secret in secrets.items():
            assert len(secret) >= 20, name
            assert secret not in output, f"the {name} password is in the report"
    assert passwords[0]["redis"] != passwords[1]["redis"]
    assert passwords[0]["postgres"] != passwords[1]["postgres"]
    assert passwords[0]["redis"] != passwords[0]["postgres"]
