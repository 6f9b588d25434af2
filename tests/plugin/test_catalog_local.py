"""local_service and app_image as users meet them, through pytester; no cluster needed.

The services these tests run are small Python scripts; the fixtures they read placeholders
from are ordinary fixtures returning catalog details models, so secrets can be checked.
"""

from __future__ import annotations

import os

import pytest

pytest_plugins = ["pytester"]

# Seconds an inner session may take before it counts as hung: a bound on a hang, not a
# timing (the grace and the timeouts under test are a second or less).
HANG = 120

SERVER = r"""
import http.server, os, signal, sys, pathlib

marker = pathlib.Path(os.environ["MARKER"])
port = int(sys.argv[1])


def on_term(signum, frame):
    marker.write_text(f"{os.getpid()} got SIGTERM\n")
    if os.environ.get("IGNORE_TERM"):
        return
    sys.exit(0)


signal.signal(signal.SIGTERM, on_term)
print("connecting to", os.environ.get("CACHE_URL"), flush=True)


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/health" else 404)
        self.end_headers()
        self.wfile.write(str(os.getpid()).encode())

    def log_message(self, format, *args):
        print("served", self.path, flush=True)


http.server.HTTPServer(("127.0.0.1", port), Handler).serve_forever()
"""

CONFTEST = """
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr

from kubefixtures.catalog import RedisDetails, local_service

HERE = Path(__file__).parent


@pytest.fixture(scope="session")
def cache():
    return RedisDetails(namespace="ns", host="127.0.0.1", port=6379,
                        password=SecretStr("hunter2-very-secret"))


web = local_service(
    [sys.executable, str(HERE / "server.py"), "{{port}}"],
    env={{"CACHE_URL": "{{cache.url}}", "MARKER": str(HERE / "marker.txt"), {extra_env}}},
    ready="http://127.0.0.1:{{port}}/health",
    stop_timeout={stop_timeout},
    timeout={timeout},
)
"""


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makefile(".py", server=SERVER)
    return pytester


def conftest(pytester: pytest.Pytester, extra_env: str = "", stop_timeout: float = 5.0,
             timeout: float = 15.0) -> None:  # fmt: skip
    pytester.makeconftest(
        CONFTEST.format(extra_env=extra_env, stop_timeout=stop_timeout, timeout=timeout)
    )


def pid_is_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_a_failing_test_shows_the_output_with_secrets_masked(project: pytest.Pytester) -> None:
    conftest(project)
    project.makepyfile(
        test_web="""
        import httpx

        def test_ok(web):
            assert httpx.get(web.url + "/health").status_code == 200

        def test_fails(web, cache):
            httpx.get(web.url + "/missing")
            assert cache.port == 1, "failing on purpose"
        """
    )
    result = project.runpytest_subprocess("-p", "no:cacheprovider", "-l")
    result.assert_outcomes(passed=1, failed=1)
    output = result.stdout.str()
    assert "local_service web output" in output
    assert "connecting to redis://:********@127.0.0.1:6379/0" in output
    assert "served /missing" in output
    assert "hunter2-very-secret" not in output + result.stderr.str()
    # Only the failing test's report carries the section.
    assert output.count("local_service web output") == 1


def test_it_is_stopped_with_sigterm_when_the_session_ends(project: pytest.Pytester) -> None:
    conftest(project)
    project.makepyfile(
        test_web="""
        from pathlib import Path

        def test_pid(web):
            (Path(__file__).parent / "pid.txt").write_text(str(web.pid))
        """
    )
    project.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)
    pid = int((project.path / "pid.txt").read_text())
    assert (project.path / "marker.txt").read_text() == f"{pid} got SIGTERM\n"
    assert pid_is_gone(pid)


def test_one_that_ignores_sigterm_is_killed_after_the_grace(project: pytest.Pytester) -> None:
    conftest(project, extra_env='"IGNORE_TERM": "1"', stop_timeout=0.5)
    project.makepyfile(
        test_web="""
        from pathlib import Path

        def test_pid(web):
            (Path(__file__).parent / "pid.txt").write_text(str(web.pid))
        """
    )
    # A hang (the child never killed) fails on pytester's timeout, whatever the load.
    project.runpytest_subprocess("-p", "no:cacheprovider", timeout=HANG).assert_outcomes(passed=1)
    pid = int((project.path / "pid.txt").read_text())
    assert "got SIGTERM" in (project.path / "marker.txt").read_text()
    assert pid_is_gone(pid)


def test_each_xdist_worker_runs_its_own(project: pytest.Pytester) -> None:
    conftest(project)
    project.makepyfile(
        test_web="""
        import os
        from pathlib import Path

        import httpx
        import pytest

        @pytest.mark.parametrize("n", range(4))
        def test_pid(web, n):
            served_by = httpx.get(web.url + "/health").text
            assert served_by == str(web.pid)
            worker = os.environ["PYTEST_XDIST_WORKER"]
            (Path(__file__).parent / f"{worker}-{n}.txt").write_text(f"{web.pid} {web.port}")
        """
    )
    project.runpytest_subprocess("-p", "no:cacheprovider", "-n", "2").assert_outcomes(passed=4)
    by_worker: dict[str, set[str]] = {}
    for path in project.path.glob("gw*-*.txt"):
        by_worker.setdefault(path.name.split("-")[0], set()).add(path.read_text())
    assert sorted(by_worker) == ["gw0", "gw1"]
    assert all(len(seen) == 1 for seen in by_worker.values())  # one per worker...
    assert len(set.union(*by_worker.values())) == 2  # ...and a different one in each


def test_a_process_that_exits_early_fails_with_its_output(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
        import sys
        from kubefixtures.catalog import local_service

        web = local_service(
            [sys.executable, "-c", "print('cannot bind: port in use'); raise SystemExit(3)"],
            ready="http://127.0.0.1:{port}/health",
        )
        """
    )
    pytester.makepyfile(test_web="def test_x(web): pass")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*local_service web: exited with code 3 before it was ready; its output (from *",
            "cannot bind: port in use",
        ]
    )
    assert "Traceback" not in result.stdout.str()


def test_one_that_never_answers_fails_after_the_timeout(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
        import sys
        from kubefixtures.catalog import local_service

        web = local_service(
            [sys.executable, "-c", "import time; time.sleep(60)"],
            ready="tcp://127.0.0.1:{port}",
            timeout=1,
        )
        """
    )
    pytester.makepyfile(test_web="def test_x(web): pass")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=HANG)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*local_service web: did not answer tcp://127.0.0.1:{port} within 1 s*"]
    )


def test_a_wrong_placeholder_names_the_template_not_the_values(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
        import sys
        import pytest
        from pydantic import SecretStr
        from kubefixtures.catalog import PostgresDetails, local_service

        @pytest.fixture(scope="session")
        def db():
            return PostgresDetails(namespace="ns", host="h", port=1, user="u",
                                   password=SecretStr("pw-very-secret"), database="d")

        web = local_service([sys.executable, "-c", "pass"], env={"URL": "{db.url}"})
        """
    )
    pytester.makepyfile(test_web="def test_x(web): pass")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*local_service web: env[[]URL] '{db.url}': *PostgresDetails* has no attribute 'url'"]
    )
    assert "pw-very-secret" not in result.stdout.str()
    assert "During handling" not in result.stdout.str()


def test_app_image_build_without_docker_is_one_clear_error(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Where an engine runs (make test starts one), the CLI is pointed at a socket nobody serves.
    monkeypatch.setenv("DOCKER_HOST", f"unix://{pytester.path}/no-engine.sock")
    (pytester.path / "app").mkdir()
    (pytester.path / "app" / "Dockerfile").write_text("FROM scratch\n")
    pytester.makeconftest(
        """
        from kubefixtures.catalog import app_image

        web_image = app_image(build="app/")
        """
    )
    pytester.makepyfile(
        test_web="""
        def test_ref(web_image):
            pass
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*app_image(build=*app*): building needs a Docker engine and none answers*"]
    )
    assert "Traceback" not in result.stdout.str()


def test_declaration_errors_are_immediate(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
        from kubefixtures.catalog import local_service

        web = local_service(["app", "--port", "{port"])
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    assert result.ret != 0
    result.stderr.fnmatch_lines(["*local_service(command='{port'): *"])
