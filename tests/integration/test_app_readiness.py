"""``environment(ready=...)`` on the real cluster, through real port-forwards: a pod that is
Ready seconds before its application listens is held back until the application answers
(HTTP, TCP and a callable probe); probes that never succeed fail within the deadline,
naming each Service and its last failure, and leave nothing behind."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from kubefixtures import Environment, environment

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.cluster

ENVIRONMENTS = Path(__file__).parent / "environments"
KUBECONFIG = os.environ.get("KUBECONFIG") or str(Path.home() / ".kube" / "config")
# The application in environments/late-app listens this long after its pod is Ready.
LATE_SECONDS = 6

api_probes: list[tuple[str, bool]] = []  # (namespace, answered) per call of the callable


def api_answers(env: Environment) -> bool:
    """A callable probe with a real client library, bounded by its own timeout."""
    api = env.services["late-api"]
    try:
        answered = httpx.get(f"http://{api.host}:{api.port}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        answered = False
    api_probes.append((env.namespace, answered))
    return answered


late = environment(
    "environments/late-app/",
    values={"delay": LATE_SECONDS},
    scope="module",
    timeout=120,
    ready={"late-web": "http:/health", "late-echo": "tcp", "late-api": api_answers},
)


def test_an_application_that_answers_late_is_waited_for(late: Environment) -> None:
    # Held back past the application's start (the pod was Ready long before).
    assert late.details.ready_seconds >= LATE_SECONDS
    # Every probed Service answers at the first try.
    web = late.services["late-web"]
    assert web.url is not None
    assert httpx.get(f"{web.url}/health", timeout=10).status_code == 200
    with socket.create_connection(late.services["late-echo"].address, timeout=10) as echo:
        echo.sendall(b"ping\n")
        assert echo.recv(5) == b"ping\n"
    # The callable was given the Environment, once the Service's port stayed open (so its
    # HTTP client never wrote into a connection nothing accepted), and answered.
    assert {namespace for namespace, _ in api_probes} == {late.namespace}
    assert api_probes[-1] == (late.namespace, True)


def test_probes_that_never_succeed_fail_in_time_naming_services_and_failures(
    pytester: pytest.Pytester, live_namespaces: Callable[[str], list[str]]
) -> None:
    name = f"never_answers_{os.urandom(3).hex()}"
    deadline = 20
    pytester.makeconftest(
        "from kubefixtures import environment\n"
        f"{name} = environment({str(ENVIRONMENTS / 'never-answers')!r}, timeout={deadline}, "
        "ready={'web': 'http:/missing', 'silent': 'tcp'})\n"
    )
    pytester.makepyfile(f"def test_uses_it({name}):\n    pass\n")
    # In a process of its own, as a user's run: what its failed setup leaves to the garbage
    # collector can never surface as an unraisable exception of this run.
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", f"--kubefixtures-kubeconfig={KUBECONFIG}", timeout=300
    )
    result.assert_outcomes(errors=1)
    text = "\n".join(result.outlines)
    assert f"environment '{name}' timed out after " in text, text
    # Every Service that did not answer, with its last probe failure: the web server has no
    # GET /missing; nothing listens behind `silent`, so the forward closes the connection.
    assert "not answering: web (http:/missing: HTTP 40" in text, text
    assert "silent (tcp: connection " in text, text
    assert "Traceback" not in text
    assert live_namespaces(name) == []  # torn down
