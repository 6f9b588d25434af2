"""``local_service(...)``: the service under test as a local process, next to services in the
cluster::

    # conftest.py
    from kubefixtures.catalog import local_service

    web = local_service(
        ["uvicorn", "shop.app:app", "--port", "{port}"],
        env={"REDIS_URL": "{redis.url}", "DATABASE_URL": "{postgres.dsn}"},
        ready="http://127.0.0.1:{port}/health",
    )

``{port}`` is a free local port picked for the process; ``{NAME.attr}`` is an attribute of
the fixture ``NAME`` (``{redis.url}``, ``{shop.services[web].url}``), which is set up first;
``{{`` and ``}}`` are literal braces. The fixture's value is a ``LocalService``. The
process's output goes to a file; the end of it is attached to the report of every failing
test that used the service, with the secrets of the fixtures it was given masked. It is
stopped with SIGTERM, then SIGKILL after ``stop_timeout`` seconds. Under xdist, each worker
runs its own (the fixture is per process, and so is its free port).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import string
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from kubefixtures.declarations import caller_directory
from kubefixtures.factories import Scope
from kubefixtures.reporting import add_report_source
from kubefixtures.secrets import Masker

__all__ = ["LocalService", "local_service", "report_sections"]

_OUTPUT_TAIL_CHARS = 20_000
_running: dict[str, LocalService] = {}  # fixture name -> service, for failing reports
_running_lock = threading.Lock()


@dataclass
class LocalService:
    """A running local process (the value of a ``local_service`` fixture)."""

    name: str
    port: int
    url: str
    """``http://127.0.0.1:PORT``."""
    pid: int
    log: Path
    """The file its stdout and stderr go to."""
    process: subprocess.Popen[bytes] = field(repr=False)
    masked: tuple[str, ...] = field(default=(), repr=False)

    def output(self) -> str:
        """Everything it printed so far, secrets masked."""
        try:
            text = self.log.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        # Every value: these are whole passwords and keys, however short.
        return Masker(self.masked, shortest=1)(text)

    def running(self) -> bool:
        return self.process.poll() is None


def local_service(
    command: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    ready: str | None = None,
    name: str | None = None,
    cwd: str | os.PathLike[str] | None = None,
    scope: Scope = "session",
    timeout: float = 30.0,
    stop_timeout: float = 5.0,
) -> Any:  # pytest's type for a fixture definition is private
    """A fixture factory: run ``command`` (placeholders filled) until the fixture's scope ends.

    ``ready`` is ``http://...`` (answered with a status below 400) or ``tcp://host:port``
    (a connection is accepted); without it the process only has to stay up for a moment.
    ``env`` is added to this process's environment. ``cwd`` is relative to the calling file.
    """
    if not command or isinstance(command, str):
        raise TypeError("local_service(command=...) takes a list of arguments, not a string")
    templates = {"command": list(command), "env": dict(env or {}), "ready": ready}
    fixtures = sorted(_referenced_fixtures(templates))
    if ready is not None and not ready.startswith(("http://", "https://", "tcp://")):
        raise ValueError(
            f"local_service(ready={ready!r}): use http://..., https://... or tcp://..."
        )
    if not timeout > 0 or not stop_timeout > 0:
        raise ValueError("local_service(): timeout and stop_timeout must be more than 0 seconds")
    base = caller_directory()
    workdir = (base / cwd) if cwd is not None else None

    def fixture(request: pytest.FixtureRequest) -> Iterator[LocalService]:
        fixture_name = request.fixturename or name or "local_service"
        values = {root: request.getfixturevalue(root) for root in fixtures}
        from kubefixtures.secrets import secret_values

        secrets = tuple(sorted(secret_values(*values.values())))
        port = _free_port()
        filled = _fill(templates, {**values, "port": port}, fixture_name)
        factory: pytest.TempPathFactory = request.getfixturevalue("tmp_path_factory")
        log = factory.mktemp(f"local-{fixture_name}", numbered=True) / "output.log"
        service = _start(fixture_name, filled, port=port, workdir=workdir, log=log, secrets=secrets)
        try:
            _wait_ready(service, filled["ready"], timeout, ready)
        except BaseException:
            _stop(service, stop_timeout)
            raise
        with _running_lock:
            _running[fixture_name] = service
        add_report_source(report_sections)  # its output in a failing test's report
        try:
            yield service
        finally:
            with _running_lock:
                _running.pop(fixture_name, None)
            _stop(service, stop_timeout)

    fixture.__name__ = name or "local_service"
    fixture.__doc__ = f"local process {' '.join(command)}"
    return pytest.fixture(scope=scope, name=name)(fixture)


def _referenced_fixtures(templates: Mapping[str, Any]) -> set[str]:
    """Fixture names that placeholders refer to; raises ValueError on bad syntax."""
    roots: set[str] = set()
    formatter = string.Formatter()

    def scan(where: str, text: str) -> None:
        try:
            fields = [parsed[1] for parsed in formatter.parse(text) if parsed[1] is not None]
        except ValueError as error:
            raise ValueError(f"local_service({where}={text!r}): {error}") from None
        for field_name in fields:
            root = field_name.split(".", 1)[0].split("[", 1)[0]
            if not root.isidentifier():
                raise ValueError(
                    f"local_service({where}={text!r}): placeholder {{{field_name}}} must be "
                    "{port} or {FIXTURE.attribute}"
                )
            if root != "port":
                roots.add(root)

    for argument in templates["command"]:
        scan("command", argument)
    for key, value in templates["env"].items():
        scan(f"env[{key}]", value)
    if templates["ready"] is not None:
        scan("ready", templates["ready"])
    return roots


def _fill(templates: Mapping[str, Any], values: Mapping[str, Any], name: str) -> dict[str, Any]:
    formatter = string.Formatter()

    def fill(where: str, text: str) -> str:
        try:
            return formatter.vformat(text, (), values)
        except (AttributeError, KeyError, IndexError, TypeError, ValueError) as error:
            problem = str(error)
        # The template, never the filled text (it may hold a password); outside the except
        # block, so that pytest shows no chained traceback either.
        pytest.fail(f"local_service {name}: {where} {text!r}: {problem}", pytrace=False)

    return {
        "command": [fill("command", argument) for argument in templates["command"]],
        "env": {key: fill(f"env[{key}]", value) for key, value in templates["env"].items()},
        "ready": fill("ready", templates["ready"]) if templates["ready"] is not None else None,
    }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _start(
    name: str,
    filled: Mapping[str, Any],
    *,
    port: int,
    workdir: Path | None,
    log: Path,
    secrets: tuple[str, ...],
) -> LocalService:
    with log.open("wb") as output:
        try:
            process = subprocess.Popen(
                filled["command"],
                cwd=workdir,
                env={**os.environ, **filled["env"]},
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                # Its own process group: stopping it stops what it started (reloaders,
                # workers), and a Ctrl-C at the terminal reaches pytest only.
                start_new_session=True,
            )
        except OSError as error:
            pytest.fail(
                f"local_service {name}: cannot start {filled['command'][0]!r}: {error.strerror}",
                pytrace=False,
            )
    return LocalService(
        name=name,
        port=port,
        url=f"http://127.0.0.1:{port}",
        pid=process.pid,
        log=log,
        process=process,
        masked=secrets,
    )


def _wait_ready(
    service: LocalService, ready: str | None, timeout: float, template: str | None
) -> None:
    deadline = time.monotonic() + timeout
    settle = time.monotonic() + 0.5
    while True:
        code = service.process.poll()
        if code is not None:
            _give_up(service, f"exited with code {code} before it was ready")
        if ready is None:
            if time.monotonic() >= settle:
                return
        elif _answers(ready):
            return
        if time.monotonic() >= deadline:
            _give_up(service, f"did not answer {template} within {timeout:g} s")
        time.sleep(0.1)


def _answers(ready: str) -> bool:
    if ready.startswith("tcp://"):
        host, _, port = ready.removeprefix("tcp://").rstrip("/").rpartition(":")
        try:
            with socket.create_connection((host, int(port)), timeout=1):
                return True
        except OSError:
            return False
    import urllib.error
    import urllib.request

    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # a local process
    try:
        with direct.open(ready, timeout=1.0):
            return True
    except (urllib.error.URLError, OSError, ValueError):
        return False  # an HTTPError (an answer of 400 or more) too: not ready yet


def _give_up(service: LocalService, why: str) -> None:
    tail = _tail(service.output(), 3000)
    pytest.fail(
        f"local_service {service.name}: {why}; its output (from {service.log}):\n{tail}",
        pytrace=False,
    )


def _stop(service: LocalService, stop_timeout: float) -> None:
    """SIGTERM to its process group, then SIGKILL if it is still there after the grace."""
    process = service.process
    if process.poll() is None:
        _signal_group(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=stop_timeout)
        except subprocess.TimeoutExpired:
            _signal_group(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
    # Children that outlived it (it exited, they did not) go too.
    _signal_group(process.pid, signal.SIGKILL)


def _signal_group(pid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # already gone
        os.killpg(pid, signum)


def _tail(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text[-limit:]
    return "[...]\n" + cut[cut.find("\n") + 1 :]


def report_sections(fixture_names: Sequence[str]) -> list[tuple[str, str]]:
    """(title, text) of the output of each running local service among ``fixture_names``,
    for the report of a failing test."""
    with _running_lock:
        services = [_running[name] for name in fixture_names if name in _running]
    return [
        (f"local_service {service.name} output", _tail(service.output(), _OUTPUT_TAIL_CHARS))
        for service in services
    ]
