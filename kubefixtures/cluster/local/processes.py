"""Host processes of the local cluster: start detached, wait until healthy, stop for good.

Each component runs in its own session (so it outlives `kubefixtures cluster up`), logs
to one file under the state directory and leaves a pid file under the runtime directory.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from kubefixtures.cluster.base import ClusterError
from kubefixtures.cluster.local.layout import Layout

HealthCheck = Callable[[], bool]
LOG_TAIL_LINES = 12


@dataclass
class Component:
    name: str
    argv: Sequence[str]
    healthy: HealthCheck
    env: dict[str, str] = field(default_factory=dict)
    startup_timeout: float = 90.0


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return "    (no log written)"
    return "\n".join(f"    {line[:300]}" for line in text.strip().splitlines()[-lines:])


def http_ok(url: str, context: ssl.SSLContext | None = None, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as response:
            return bool(200 <= response.status < 300)
    except (urllib.error.URLError, OSError, ssl.SSLError):
        return False


def insecure_tls() -> ssl.SSLContext:
    """For the /healthz of components that serve a self-signed certificate on loopback."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def client_tls(ca: Path, cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca))
    context.load_cert_chain(str(cert), str(key))
    return context


class Supervisor:
    """Starts and stops the components of one cluster, by their pid files."""

    def __init__(self, paths: Layout) -> None:
        self.paths = paths

    def pid_file(self, name: str) -> Path:
        return self.paths.pids / f"{name}.pid"

    def log_file(self, name: str) -> Path:
        return self.paths.logs / f"{name}.log"

    def start(self, component: Component) -> int:
        """Spawn a component detached from us (its own session, no Popen object that
        would insist on being waited for) and return its pid."""
        self.paths.pids.mkdir(parents=True, exist_ok=True)
        self.paths.logs.mkdir(parents=True, exist_ok=True)
        log = self.log_file(component.name)
        executable = shutil.which(component.argv[0])
        if executable is None:
            raise ClusterError(f"could not start {component.name}: {component.argv[0]} not found")
        try:
            pid = os.posix_spawn(
                executable,
                list(component.argv),
                {**os.environ, **component.env},
                file_actions=[
                    (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                    (
                        os.POSIX_SPAWN_OPEN,
                        1,
                        str(log),
                        os.O_WRONLY | os.O_CREAT | os.O_APPEND,
                        0o600,
                    ),
                    (os.POSIX_SPAWN_DUP2, 1, 2),
                ],
                setsid=True,
            )
        except OSError as error:
            raise ClusterError(f"could not start {component.name}: {error}") from error
        self.pid_file(component.name).write_text(f"{pid}\n")
        return pid

    def wait_healthy(self, component: Component, pid: int) -> None:
        deadline = time.monotonic() + component.startup_timeout
        delay = 0.05
        log = self.log_file(component.name)
        while time.monotonic() < deadline:
            if component.healthy():
                return
            exit_code = exited(pid)
            if exit_code is not None:
                raise ClusterError(
                    f"{component.name} exited with code {exit_code} while starting; "
                    f"log: {log}\n{log_tail(log)}"
                )
            time.sleep(delay)
            delay = min(delay * 1.5, 0.5)
        raise ClusterError(
            f"{component.name} did not become healthy within {component.startup_timeout:.0f} s; "
            f"log: {log}\n{log_tail(log)}"
        )

    def start_all(self, components: Sequence[Component]) -> None:
        """Start components together and wait until every one is healthy."""
        started = [(component, self.start(component)) for component in components]
        for component, pid in started:
            self.wait_healthy(component, pid)

    def pid(self, name: str) -> int | None:
        """The pid of a running component of ours, or None. A pid file whose process
        is gone or is someone else's (the pid was reused) counts as not running."""
        try:
            pid = int(self.pid_file(name).read_text().strip())
            command_line = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (FileNotFoundError, ValueError, ProcessLookupError):
            return None
        return pid if name.encode() in command_line else None

    def running(self, names: Sequence[str]) -> list[str]:
        return [name for name in names if self.pid(name) is not None]

    def stop(self, name: str, timeout: float = 10.0) -> None:
        pid = self.pid(name)
        if pid is not None:
            terminate(pid, timeout)
        self.pid_file(name).unlink(missing_ok=True)


def exited(pid: int) -> int | None:
    """The exit code of a child of ours that has ended (reaping it), else None."""
    try:
        waited, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return None if alive(pid) else -1
    return os.waitstatus_to_exitcode(status) if waited else None


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError, ProcessLookupError):
        return False
    return state != "Z"


def terminate(pid: int, timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if it lingers past the timeout."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while alive(pid) and time.monotonic() < deadline:
        exited(pid)
        time.sleep(0.05)
    if alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        while alive(pid) and time.monotonic() < deadline + 5:
            time.sleep(0.05)


def pids_matching(fragment: str) -> list[int]:
    """Processes whose command line contains the fragment (used for containerd shims,
    which carry our containerd's socket path in their arguments)."""
    found = []
    needle = fragment.encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if needle in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return [pid for pid in found if pid != os.getpid()]
