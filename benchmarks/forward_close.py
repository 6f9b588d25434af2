"""How long a client's close takes to reach the server, through a forward and directly.

    .venv/bin/python benchmarks/forward_close.py [--samples 40] [--context NAME]

Creates a namespace with one Redis pod, then, in the same run and interleaved sample by
sample, opens a connection to it through kubefixtures' forward, through `kubectl
port-forward` and directly to the pod's IP, asks Redis for the connection's id, closes the
socket, and times how long until Redis no longer lists that id (`CLIENT LIST ID n`, polled
every 2 ms over a direct connection). Two ways of closing: a plain close (what redis-py's
`close()` does) and `QUIT` then close. Prints medians and 90th percentiles per side, the
machine and its load. The namespace is deleted at the end.

The direct side is the floor. Through any port-forward the container runtime's side of the
forward (containerd's, CRI-O's alike) waits up to one second for the pod's side of a
connection to end after the client's side ended, before it closes its connection to the
server; a server that closes on its own (after QUIT, or postgres after the Terminate
message every libpq and psycopg client sends on close) ends it at once.
"""

from __future__ import annotations

import argparse
import os
import platform
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from kubectl_forward import kubectl, start_kubectl_forward, stop

if TYPE_CHECKING:
    from kubefixtures.kube.portforward import Route

IMAGE = "kubefixtures.local/redis:7.0"
POLL_INTERVAL = 0.002
GIVE_UP_AFTER = 10.0


def manifest(namespace: str) -> str:
    return f"""
apiVersion: v1
kind: Namespace
metadata:
  name: {namespace}
  labels: {{kubefixtures.io/benchmark: forward-close}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: redis, namespace: {namespace}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: redis}}}}
  template:
    metadata: {{labels: {{app: redis}}}}
    spec:
      containers:
      - name: redis
        image: {IMAGE}
        imagePullPolicy: IfNotPresent
        command: [redis-server, --bind, 0.0.0.0, --protected-mode, "no", --save, ""]
        ports: [{{name: redis, containerPort: 6379}}]
        readinessProbe: {{tcpSocket: {{port: redis}}, periodSeconds: 1}}
---
apiVersion: v1
kind: Service
metadata: {{name: redis, namespace: {namespace}}}
spec:
  selector: {{app: redis}}
  ports: [{{name: redis, port: 6379, targetPort: redis}}]
"""


@contextmanager
def environment(context: str | None) -> Iterator[tuple[str, str, str]]:
    """(namespace, pod name, pod IP) of a ready Redis."""
    namespace = f"kf-bench-close-{secrets.token_hex(3)}"
    kubectl("apply", "-f", "-", context=context, stdin=manifest(namespace))
    try:
        kubectl(
            "-n", namespace, "rollout", "status", "deploy/redis", "--timeout=180s", context=context
        )
        pod, ip = kubectl(
            "-n",
            namespace,
            "get",
            "pods",
            "-l",
            "app=redis",
            "-o",
            "jsonpath={.items[0].metadata.name} {.items[0].status.podIP}",
            context=context,
        ).split()
        yield namespace, pod, ip
    finally:
        try:
            kubectl("delete", "namespace", namespace, "--wait=false", context=context)
        except SystemExit as error:
            print(f"could not delete namespace {namespace}: {error}", file=sys.stderr)


# -- the sides --------------------------------------------------------------------------


@dataclass
class Side:
    name: str
    address: tuple[str, int]
    process: subprocess.Popen[str] | None = None

    def close(self) -> None:
        if self.process is not None:
            stop(self.process)


def start_ours(namespace: str, pod: str, context: str | None, route: str = "forward") -> Side:
    command = [sys.executable, __file__, "--serve", namespace, "--route", route]
    if context:
        command += ["--context", context]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    line = process.stdout.readline().split()
    if len(line) != 4 or line[0] != "PORT":
        process.kill()
        raise SystemExit(f"kubefixtures forwarder did not start: {line!r}")
    if line[3] != pod:
        process.kill()
        raise SystemExit(f"kubefixtures forwards to {line[3]}, kubectl to {pod}")
    name = "kubefixtures" if route == "forward" else f"kubefixtures ({route})"
    return Side(name, ("127.0.0.1", int(line[1])), process)


def start_kubectl(namespace: str, pod: str, context: str | None) -> Side:
    forward = start_kubectl_forward(namespace, f"pod/{pod}", [6379], context)
    return Side("kubectl port-forward", ("127.0.0.1", forward.port), forward.process)


def serve(namespace: str, context: str | None, route: str) -> None:
    """`--serve`: our forward in its own process until terminated."""
    from kubefixtures.kube.config import load_config
    from kubefixtures.kube.portforward import ServicePortForward

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with ServicePortForward(
        load_config(context=context), namespace, "redis", "redis", route=cast("Route", route)
    ) as forward:
        print(f"PORT {forward.local_port} POD {forward.pod}", flush=True)
        stop.wait()


# -- measuring --------------------------------------------------------------------------


def command(sock: socket.socket, *words: str) -> bytes:
    """Sends one command; returns its reply's first line and, for a bulk string, its body."""
    payload = f"*{len(words)}\r\n" + "".join(f"${len(w)}\r\n{w}\r\n" for w in words)
    sock.sendall(payload.encode())
    reply = b""
    while b"\r\n" not in reply:
        chunk = sock.recv(65536)
        if not chunk:
            raise SystemExit("Redis closed the connection")
        reply += chunk
    head, _, rest = reply.partition(b"\r\n")
    if head.startswith(b"$") and int(head[1:]) >= 0:
        wanted = int(head[1:]) + 2
        while len(rest) < wanted:
            rest += sock.recv(65536)
        return rest[: wanted - 2]
    return head


def time_to_gone(side: Side, observer: socket.socket, quit_first: bool) -> float:
    client = socket.create_connection(side.address, timeout=GIVE_UP_AFTER)
    client_id = command(client, "CLIENT", "ID").decode().lstrip(":")
    if quit_first:
        command(client, "QUIT")
    closed = time.perf_counter()
    client.close()
    while command(observer, "CLIENT", "LIST", "ID", client_id):
        if time.perf_counter() - closed > GIVE_UP_AFTER:
            raise SystemExit(f"{side.name}: client {client_id} still listed after 10 s")
        time.sleep(POLL_INTERVAL)
    return time.perf_counter() - closed


def summary(samples: list[float]) -> str:
    ordered = sorted(samples)
    p90 = ordered[int(len(ordered) * 0.9)]
    return f"median {statistics.median(ordered) * 1000:7.1f} ms   p90 {p90 * 1000:7.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=40)
    parser.add_argument("--context")
    parser.add_argument(
        "--direct-route",
        action="store_true",
        help="also measure our direct route (needs the pod network reachable from here)",
    )
    parser.add_argument("--serve", metavar="NAMESPACE", help=argparse.SUPPRESS)
    parser.add_argument("--route", default="forward", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.serve:
        serve(options.serve, options.context, options.route)
        return

    print(f"machine: {platform.node()}, {os.cpu_count()} cores, {platform.platform()}")
    print(f"Python {platform.python_version()}; load average at start {os.getloadavg()}")
    with environment(options.context) as (namespace, pod, ip):
        starters: list[Callable[[], Side]] = [
            lambda: start_ours(namespace, pod, options.context),
            lambda: start_kubectl(namespace, pod, options.context),
            lambda: Side("direct to the pod IP", (ip, 6379)),
        ]
        if options.direct_route:
            starters.insert(1, lambda: start_ours(namespace, pod, options.context, "direct"))
        sides = [start() for start in starters]
        results: dict[tuple[str, bool], list[float]] = {}
        try:
            with socket.create_connection((ip, 6379), timeout=GIVE_UP_AFTER) as observer:
                for side in sides:  # warm up: tunnels, the pod's server
                    time_to_gone(side, observer, quit_first=True)
                for sample in range(options.samples):
                    # Interleaved, so that load drifting over the run hits every side alike.
                    for side in sides if sample % 2 == 0 else reversed(sides):
                        for quit_first in (False, True):
                            elapsed = time_to_gone(side, observer, quit_first)
                            results.setdefault((side.name, quit_first), []).append(elapsed)
        finally:
            for side in sides:
                side.close()
    print(f"load average at end {os.getloadavg()}; pod {pod}; {options.samples} samples each")
    print("from the client's close to the server no longer listing the client:")
    for quit_first in (False, True):
        print("  QUIT, then close:" if quit_first else "  plain close:")
        for side in sides:
            print(f"    {side.name:22} {summary(results[side.name, quit_first])}")


if __name__ == "__main__":
    main()
