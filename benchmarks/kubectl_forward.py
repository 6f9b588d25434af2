"""The benchmarks' one way to run `kubectl` and `kubectl port-forward` (and learn its ports).

    from kubectl_forward import KubectlForward, kubectl, start_kubectl_forward, stop

kubectl prints ``Forwarding from 127.0.0.1:LOCAL -> REMOTE`` per port once it listens, then
``Handling connection for REMOTE`` for every connection. Those later lines are read and
dropped in a thread: left in a pipe nobody reads, they fill it after about 2,000
connections and kubectl blocks writing the next one, which a benchmark would count
against kubectl.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path
from typing import IO

__all__ = ["KubectlForward", "find_kubectl", "kubectl", "start_kubectl_forward", "stop"]

_PREFIX = "Forwarding from 127.0.0.1:"


def find_kubectl() -> str:
    """The kubectl `kubefixtures cluster up` links beside this Python first (the one on PATH
    may be older than the cluster), else the one on PATH."""
    from kubefixtures.cluster.tools import find_tool

    beside = Path(sys.executable).with_name("kubectl")
    found = beside if beside.exists() else find_tool("kubectl")
    if found is None:
        raise SystemExit("kubectl not found (on PATH or next to this Python)")
    return str(found)


def kubectl(*args: str, context: str | None = None, stdin: str | None = None) -> str:
    """Its output; SystemExit with its error when it fails."""
    command = [find_kubectl(), *(["--context", context] if context else []), *args]
    done = subprocess.run(command, input=stdin, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"kubectl {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def stop(process: subprocess.Popen[str]) -> None:
    """SIGTERM, then SIGKILL after 10 s."""
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class KubectlForward:
    """``kubectl port-forward TARGET :PORT...`` (``svc/NAME`` or ``pod/NAME``), started at
    once; ``wait()`` for its local ports (so that several can start in parallel)."""

    def __init__(
        self, namespace: str, target: str, ports: list[int], context: str | None = None
    ) -> None:
        self.target = target
        self.wanted = ports
        self.ports: dict[int, int] = {}  # remote -> local, as kubectl prints them
        command = [find_kubectl(), *(["--context", context] if context else [])]
        command += ["-n", namespace, "port-forward", target, *(f":{port}" for port in ports)]
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )

    def wait(self) -> dict[int, int]:
        """Its local port per remote port, once it listens on all; SystemExit with what
        kubectl said when it exits first."""
        assert self.process.stdout is not None
        said: list[str] = []
        while len(self.ports) < len(self.wanted):
            line = self.process.stdout.readline()
            if not line:
                self.close()
                raise SystemExit(
                    f"kubectl port-forward {self.target} did not start: {''.join(said)!r}"
                )
            said.append(line)
            if line.startswith(_PREFIX):
                local, _, remote = line.removeprefix(_PREFIX).partition(" -> ")
                self.ports[int(remote)] = int(local)
        threading.Thread(
            target=_drain, args=(self.process.stdout,), daemon=True, name="kubectl-output"
        ).start()
        return self.ports

    @property
    def port(self) -> int:
        """The local port, when one port is forwarded."""
        (port,) = self.ports.values()
        return port

    def close(self) -> None:
        stop(self.process)


def start_kubectl_forward(
    namespace: str, target: str, ports: list[int], context: str | None = None
) -> KubectlForward:
    """A `KubectlForward` that listens already."""
    forward = KubectlForward(namespace, target, ports, context)
    forward.wait()
    return forward


def _drain(stream: IO[str]) -> None:
    for _ in stream:
        pass
