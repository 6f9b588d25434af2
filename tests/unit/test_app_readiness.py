"""``environment(ready=...)`` probes against local servers (no cluster): what a probe
spec may be, which Services and ports it may name, and when a probe counts as answered.

A server that accepts and closes at once stands for a port-forward to a pod port nobody
listens on; tests/integration/test_app_readiness.py probes through real forwards."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from kubefixtures.details import Environment, EnvironmentDetails, ServiceDetails
from kubefixtures.errors import KubefixturesError, NotReadyError
from kubefixtures.readiness.app import (
    CallableProbe,
    HttpProbe,
    TcpProbe,
    check_targets,
    parse,
    wait_answering,
)


def test_probe_specs_are_parsed() -> None:
    def check(env: Environment) -> bool:
        return True

    probes = parse(
        {
            "web": "http:/healthz?full=1",
            "api": "http:metrics/ready",
            "alt": "http:8080/",
            "redis": "tcp",
            "pg": "tcp:5432",
            "db": check,
        }
    )
    assert probes == {
        "web": HttpProbe("/healthz?full=1"),
        "api": HttpProbe("/ready", "metrics"),
        "alt": HttpProbe("/", "8080"),
        "redis": TcpProbe(),
        "pg": TcpProbe("5432"),
        "db": CallableProbe(check),
    }
    assert str(probes["api"]) == "http:metrics/ready"
    assert str(probes["db"]).endswith("check()")


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ("http:healthz", "not a probe"),
        ("https:/healthz", "not a probe"),
        ("http:/a b", "not a probe"),
        ("tcp:", "not a probe"),
        ("tcp:Web", "not a probe"),
        ("tcp:70000", "port 70000 is out of range (1-65535)"),
        ("http:0/", "port 0 is out of range"),
        (5432, "not a probe"),
    ],
)
def test_a_bad_probe_is_one_line_naming_the_service(spec: object, problem: str) -> None:
    with pytest.raises(ValueError) as caught:  # noqa: PT011 - the message is checked below
        parse({"web": spec})
    message = str(caught.value)
    assert message.startswith(f"environment(ready={{'web': {spec!r}}}): ")
    assert problem in message
    assert "\n" not in message


def test_ready_must_be_a_mapping() -> None:
    with pytest.raises(TypeError, match="takes a mapping of Service names to probes"):
        parse(["web"])  # type: ignore[arg-type]


SERVICES: dict[str, dict[int, str | None]] = {
    "web": {80: "http", 9090: "metrics"},
    "redis": {6379: None},
}


def test_targets_must_be_forwarded_services_and_their_ports() -> None:
    check_targets("shop", parse({"web": "http:metrics/", "redis": "tcp:6379"}), SERVICES)
    with pytest.raises(KubefixturesError) as caught:
        check_targets("shop", parse({"wbe": "http:/"}), SERVICES)
    assert str(caught.value) == (
        "environment 'shop': ready={'wbe': 'http:/'}: no forwarded Service 'wbe' among its "
        "objects (its Services: redis, web)"
    )
    with pytest.raises(KubefixturesError) as caught:
        check_targets("shop", parse({"web": "tcp:grpc"}), SERVICES)
    assert str(caught.value) == (
        "environment 'shop': ready={'web': 'tcp:grpc'}: Service 'web' has no TCP port grpc "
        "(its ports: 80 (http), 9090 (metrics))"
    )


# --- probing local servers ------------------------------------------------------------------


def environment(**ports: int | tuple[int, str]) -> Environment:
    services = {}
    for name, port in ports.items():
        local, url = port if isinstance(port, tuple) else (port, None)
        services[name] = ServiceDetails(
            name=name, namespace="kf-t-1", port=local, ports={80: local}, url=url
        )
    return Environment(
        EnvironmentDetails(name="shop", namespace="kf-t-1", session_id="s", services=services),
        [],
    )


@contextlib.contextmanager
def listener(on_accept: Callable[[socket.socket], None]) -> Iterator[int]:
    """A TCP server on 127.0.0.1 calling ``on_accept`` for each connection."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.05)
        while not stop.is_set():
            try:
                connection, _ = server.accept()
            except TimeoutError:
                continue
            on_accept(connection)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        server.close()


def closes_at_once(connection: socket.socket) -> None:
    connection.close()


def test_tcp_a_server_that_waits_for_its_client_answers() -> None:
    held: list[socket.socket] = []
    with listener(held.append) as port:
        wait_answering(
            environment(redis=port),
            parse({"redis": "tcp"}),
            deadline=time.monotonic() + 5,
            started=time.monotonic(),
        )
    for connection in held:
        connection.close()


def test_tcp_a_server_that_speaks_first_answers_without_waiting_the_window() -> None:
    def greet(connection: socket.socket) -> None:
        connection.sendall(b"220 ready\r\n")
        connection.close()

    with listener(greet) as port:
        before = time.monotonic()
        wait_answering(
            environment(smtp=port),
            parse({"smtp": "tcp"}),
            deadline=time.monotonic() + 5,
            started=time.monotonic(),
        )
    assert time.monotonic() - before < 0.4  # the first byte, not the 0.5 s window


def test_tcp_a_connection_closed_at_once_is_not_an_answer() -> None:
    with listener(closes_at_once) as port, pytest.raises(NotReadyError) as caught:
        wait_answering(
            environment(redis=port),
            parse({"redis": "tcp"}),
            deadline=time.monotonic() + 0.5,
            started=time.monotonic(),
        )
    assert str(caught.value).startswith("environment 'shop' timed out after ")
    assert str(caught.value).endswith(
        "in namespace kf-t-1: not answering: redis (tcp: connection closed right after it "
        "was opened (nothing listening?))"
    )


class Handler(BaseHTTPRequestHandler):
    answers: list[int] = []  # noqa: RUF012 - the test's script of statuses, shared on purpose
    paths: list[str] = []  # noqa: RUF012

    def do_GET(self) -> None:
        self.paths.append(self.path)
        status = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def http_server(*answers: int) -> Iterator[int]:
    Handler.answers = list(answers)
    Handler.paths = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_http_is_retried_until_a_2xx() -> None:
    with http_server(503, 503, 204) as port:
        wait_answering(
            environment(web=(port, f"http://127.0.0.1:{port}")),
            parse({"web": "http:/healthz"}),
            deadline=time.monotonic() + 5,
            started=time.monotonic(),
        )
    assert Handler.paths == ["/healthz"] * 3


def test_http_times_out_naming_the_service_and_the_last_status() -> None:
    with http_server(503) as port, pytest.raises(NotReadyError) as caught:
        wait_answering(
            environment(web=port, redis=port),
            parse({"web": "http:/healthz"}),
            deadline=time.monotonic() + 2,
            started=time.monotonic(),
        )
    assert str(caught.value).endswith(
        "not answering: web (http:/healthz: HTTP 503 Service Unavailable)"
    )


def test_http_on_a_connection_closed_at_once() -> None:
    with listener(closes_at_once) as port, pytest.raises(NotReadyError) as caught:
        wait_answering(
            environment(web=port),
            parse({"web": "http:/"}),
            deadline=time.monotonic() + 0.5,
            started=time.monotonic(),
        )
    # Nothing is sent into a connection that did not stay open (see _settled).
    assert str(caught.value).endswith(
        "web (http:/: connection closed right after it was opened (nothing listening?))"
    )


def test_a_callable_gets_the_environment_and_is_retried_until_truthy() -> None:
    seen: list[Environment] = []

    def third_time_lucky(env: Environment) -> int:
        seen.append(env)
        if len(seen) == 1:
            raise ConnectionError("not yet")
        return len(seen) - 2

    env = environment()
    wait_answering(
        env,
        parse({"db": third_time_lucky}),
        deadline=time.monotonic() + 5,
        started=time.monotonic(),
    )
    assert seen == [env, env, env]


def test_a_callable_failure_is_named_one_line_and_masked() -> None:
    def check_db(env: Environment) -> None:
        raise RuntimeError("cannot log in to\npostgres://app:s3cr3t-value@db")

    with pytest.raises(NotReadyError) as caught:
        wait_answering(
            environment(),
            parse({"db": check_db}),
            deadline=time.monotonic() + 0.3,
            started=time.monotonic(),
            mask=lambda text: text.replace("s3cr3t-value", "******"),
        )
    assert str(caught.value).endswith(
        "not answering: db (test_a_callable_failure_is_named_one_line_and_masked.<locals>."
        "check_db(): test_a_callable_failure_is_named_one_line_and_masked.<locals>.check_db() "
        "raised RuntimeError: cannot log in to postgres://app:******@db)"
    )


def test_a_falsy_callable_says_what_it_returned() -> None:
    with pytest.raises(NotReadyError, match=r"returned False\)$"):
        wait_answering(
            environment(),
            parse({"db": lambda env: False}),
            deadline=time.monotonic() + 0.3,
            started=time.monotonic(),
        )


def test_a_callable_that_hangs_does_not_hold_the_deadline() -> None:
    release = threading.Event()
    before = time.monotonic()
    with pytest.raises(NotReadyError, match="not probed yet"):
        wait_answering(
            environment(),
            parse({"db": lambda env: release.wait(30)}),
            deadline=time.monotonic() + 0.3,
            started=time.monotonic(),
        )
    assert time.monotonic() - before < 5
    release.set()


def test_cancelling_ends_the_wait() -> None:
    cancelled = threading.Event()
    cancelled.set()
    with pytest.raises(NotReadyError, match="was cancelled while waiting for db to answer"):
        wait_answering(
            environment(),
            parse({"db": lambda env: False}),
            deadline=time.monotonic() + 30,
            started=time.monotonic(),
            cancelled=cancelled,
        )


def test_a_callable_waits_until_the_services_ports_stay_open() -> None:
    calls: list[Environment] = []
    with listener(closes_at_once) as port, pytest.raises(NotReadyError) as caught:
        wait_answering(
            environment(db=port),
            parse({"db": calls.append}),
            deadline=time.monotonic() + 0.5,
            started=time.monotonic(),
        )
    assert calls == []  # a client would have written into a connection nobody accepted
    assert str(caught.value).endswith(
        f"db (list.append(): local port {port}: connection closed right after it was opened "
        "(nothing listening?))"
    )
