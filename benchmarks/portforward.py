"""Port-forward benchmark: kubefixtures' forwarder against `kubectl port-forward`.

    .venv/bin/python benchmarks/portforward.py [--repeats 3] [--context NAME]

Creates a namespace with one testserver pod (HTTP on 8080) behind a Service, forwards it
with kubefixtures (SPDY tunnel, and the v4 WebSocket transport) and with kubectl to the
same pod, and measures in the same run, alternating the order each repeat:

- throughput: one 100 MiB download (GET /bytes) through one connection;
- set-up latency: 1,000 sequential short requests, a new connection each (p50, p99);
- requests/s: 16 concurrent clients, a new connection per request, for a fixed time.

Every forwarder runs in its own process (ours via `--serve`), and the clients in this
one, so neither side shares a GIL with its load generator. Prints medians over repeats
and each forwarder's ratio to kubectl. The namespace is deleted at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import re
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
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, cast

from kubectl_forward import kubectl, start_kubectl_forward, stop

if TYPE_CHECKING:
    from kubefixtures.kube.portforward import Address, Route, Transport

IMAGE = "kubefixtures.local/testserver:0.1"
DOWNLOAD = 100 * 1024 * 1024
SEQUENTIAL = 1000
CONCURRENCY = 16
CONCURRENT_SECONDS = 5.0
REQUEST_TIMEOUT = 10.0  # a request that takes longer counts as failed: the forward hung


def manifest(namespace: str) -> str:
    return f"""
apiVersion: v1
kind: Namespace
metadata:
  name: {namespace}
  labels: {{kubefixtures.io/benchmark: portforward}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: {namespace}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers:
      - name: web
        image: {IMAGE}
        imagePullPolicy: IfNotPresent
        command: [testserver, http, --port, "8080"]
        ports: [{{name: http, containerPort: 8080}}]
        readinessProbe: {{httpGet: {{path: /health, port: http}}, periodSeconds: 1}}
---
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: {namespace}}}
spec:
  selector: {{app: web}}
  ports: [{{name: http, port: 80, targetPort: http}}]
"""


# -- forwarders under test, each in its own process -------------------------------------


@dataclass
class Forwarder:
    name: str
    port: int
    process: subprocess.Popen[str] | None  # None: nothing to stop (the pod's own address)
    host: str = "127.0.0.1"

    def close(self) -> None:
        if self.process is not None:
            stop(self.process)


def start_kubefixtures(
    namespace: str,
    pod: str,
    transport: str,
    context: str | None,
    route: str = "forward",
    *,
    address: str = "local",
) -> Forwarder:
    command = [sys.executable, __file__, "--serve", namespace, "--transport", transport]
    command += ["--route", route, "--address", address]
    if context:
        command += ["--context", context]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.startswith("PORT "):
        process.kill()
        raise SystemExit(f"kubefixtures forwarder did not start: {line!r}")
    _, port, _, served_pod, _, host, chosen = line.split()
    if chosen != "service" and served_pod != pod:  # at a ClusterIP kube-proxy chooses
        process.kill()
        raise SystemExit(f"kubefixtures forwards to {served_pod}, kubectl to {pod}")
    name = f"kubefixtures ({transport})" if chosen == "forward" else f"kubefixtures ({chosen})"
    return Forwarder(name, int(port), process, host=host)


def start_kubectl(namespace: str, pod: str, context: str | None) -> Forwarder:
    forward = start_kubectl_forward(namespace, f"pod/{pod}", [8080], context)
    return Forwarder("kubectl port-forward", forward.port, forward.process)


def serve(
    namespace: str,
    service: str,
    transport: str,
    context: str | None,
    route: str = "forward",
    *,
    address: str = "local",
) -> None:
    """`--serve`: run our forwarder until terminated (the benchmark's child process)."""
    from kubernetes import client, config

    from kubefixtures.kube.portforward import ServicePortForward

    configuration = client.Configuration()
    config.load_kube_config(client_configuration=configuration, context=context)  # type: ignore[no-untyped-call]
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    mode = cast("Transport", transport)
    with ServicePortForward(
        configuration,
        namespace,
        service,
        "http",
        transport=mode,
        route=cast("Route", route),
        address=cast("Address", address),
    ) as forward:
        print(
            f"PORT {forward.local_port} POD {forward.pod} HOST {forward.host} {forward.route}",
            flush=True,
        )
        stop.wait()


# -- measurements ---------------------------------------------------------------------------


def read_response(sock: socket.socket, buffer: memoryview) -> tuple[bytes, int]:
    """Reads one HTTP response with a Content-Length; returns (head, body size).

    It does not wait for the close: the kubelet's runtime holds a forwarded connection
    open for about a second after the pod closes it unless the client half-closed, with
    kubectl as with us, which would swamp every figure here.
    """
    received = 0
    while (end := bytes(buffer[:received]).find(b"\r\n\r\n")) < 0:
        count = sock.recv_into(buffer[received:])
        if not count:
            raise SystemExit("connection closed before the response head")
        received += count
    head = bytes(buffer[:end])
    match = re.search(rb"(?i)content-length:\s*(\d+)", head)
    if not match:
        raise SystemExit(f"response without Content-Length: {head[:80]!r}")
    body = received - end - 4
    wanted = int(match.group(1))
    while body < wanted:
        count = sock.recv_into(buffer)
        if not count:
            raise SystemExit(f"response ended after {body} of {wanted} bytes")
        body += count
    return head, body


def download(port: int, host: str = "127.0.0.1") -> float:
    """MiB/s of one 100 MiB response through one connection."""
    buffer = memoryview(bytearray(1 << 20))
    with socket.create_connection((host, port), timeout=60) as sock:
        started = time.perf_counter()
        sock.sendall(f"GET /bytes?n={DOWNLOAD} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        _, body = read_response(sock, buffer)
        elapsed = time.perf_counter() - started
    assert body == DOWNLOAD
    return DOWNLOAD / (1 << 20) / elapsed


def short_request(port: int, buffer: memoryview | None = None, host: str = "127.0.0.1") -> float:
    """Seconds for connect + GET /health + the whole response."""
    started = time.perf_counter()
    with socket.create_connection((host, port), timeout=REQUEST_TIMEOUT) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        head, _ = read_response(sock, buffer or memoryview(bytearray(65536)))
    if not head.startswith(b"HTTP/1.1 200"):
        raise SystemExit(f"short request through port {port} failed: {head[:80]!r}")
    return time.perf_counter() - started


def latencies(port: int, host: str = "127.0.0.1") -> tuple[float, float]:
    buffer = memoryview(bytearray(65536))
    samples = sorted(short_request(port, buffer, host) for _ in range(SEQUENTIAL))
    return samples[len(samples) // 2] * 1000, samples[int(len(samples) * 0.99)] * 1000


async def _client(port: int, deadline: float, counts: list[int], host: str) -> None:
    while time.perf_counter() < deadline:
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT):
                reader, writer = await asyncio.open_connection(host, port)
                try:
                    writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
                    head = await reader.readuntil(b"\r\n\r\n")
                    match = re.search(rb"(?i)content-length:\s*(\d+)", head)
                    await reader.readexactly(int(match.group(1)) if match else 0)
                finally:
                    writer.close()
        except (TimeoutError, OSError, asyncio.IncompleteReadError):
            counts[1] += 1
            continue
        counts[0 if head.startswith(b"HTTP/1.1 200") else 1] += 1


def requests_per_second(port: int, host: str = "127.0.0.1") -> float:
    async def run() -> list[int]:
        counts = [0, 0]
        deadline = time.perf_counter() + CONCURRENT_SECONDS
        await asyncio.gather(*(_client(port, deadline, counts, host) for _ in range(CONCURRENCY)))
        return counts

    started = time.perf_counter()
    ok, failed = asyncio.run(run())
    if failed:
        raise Failed(f"{failed} of {ok + failed} concurrent requests failed or timed out")
    return ok / (time.perf_counter() - started)


@dataclass
class Results:
    """One entry per repeat; None where the forwarder failed in that repeat."""

    throughput: list[float | None] = field(default_factory=list)
    p50: list[float | None] = field(default_factory=list)
    p99: list[float | None] = field(default_factory=list)
    rps: list[float | None] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


class Failed(Exception):
    """A forwarder failed or hung during a measurement."""


def measure(forwarder: Forwarder, results: Results) -> bool:
    """Measures the three phases, each on its own: a forwarder that fails one (kubectl
    often hangs under concurrency) still has the others compared. False if any failed
    (the forwarder is then restarted)."""
    host = forwarder.host
    phases: list[tuple[list[list[float | None]], Callable[[int], tuple[float, ...]]]] = [
        ([results.throughput], lambda port: (download(port, host),)),
        ([results.p50, results.p99], lambda port: latencies(port, host)),
        ([results.rps], lambda port: (requests_per_second(port, host),)),
    ]
    shown, healthy = [], True
    try:
        for _ in range(20):  # warm up: tunnels, TLS session, the pod's server
            short_request(forwarder.port, host=host)
    except (Failed, OSError, SystemExit) as error:
        healthy = False
        results.failures.append(f"warm-up: {error}")
    for series, phase in phases:
        try:
            if not healthy:
                raise Failed("skipped after an earlier failure")
            values: tuple[float | None, ...] = phase(forwarder.port)
        except (Failed, OSError, SystemExit) as error:
            healthy = False
            results.failures.append(str(error))
            values = (None,) * len(series)
            shown.append(f"FAILED ({error})")
        else:
            shown.append(" ".join(f"{value:.2f}" for value in values if value is not None))
        for target, value in zip(series, values, strict=True):
            target.append(value)
    print(
        f"  {forwarder.name:26} MiB/s {shown[0]}  p50/p99 ms {shown[1]}  req/s {shown[2]}",
        flush=True,
    )
    return healthy


def measure_all(starters: dict[str, Callable[[], Forwarder]], repeats: int) -> dict[str, Results]:
    """Starts every forwarder, measures each `repeats` times, alternating the order."""
    forwarders = {name: start() for name, start in starters.items()}
    try:
        results = {name: Results() for name in forwarders}
        order = list(forwarders)
        for repeat in range(repeats):
            print(f"repeat {repeat + 1}/{repeats}", flush=True)
            for name in order if repeat % 2 == 0 else reversed(order):
                if not measure(forwarders[name], results[name]):
                    # As a user would: restart the broken forward and go on.
                    forwarders[name].close()
                    forwarders[name] = starters[name]()
    finally:
        for forwarder in forwarders.values():
            forwarder.close()
    return results


@contextmanager
def environment(context: str | None) -> Iterator[tuple[str, str]]:
    namespace = f"kf-bench-pf-{secrets.token_hex(3)}"
    kubectl("apply", "-f", "-", context=context, stdin=manifest(namespace))
    try:
        kubectl(
            "-n", namespace, "rollout", "status", "deploy/web", "--timeout=180s", context=context
        )
        pod = kubectl(
            "-n",
            namespace,
            "get",
            "pods",
            "-l",
            "app=web",
            "-o",
            "jsonpath={.items[0].metadata.name}",
            context=context,
        ).strip()
        yield namespace, pod
    finally:
        try:
            kubectl("delete", "namespace", namespace, "--wait=false", context=context)
        except SystemExit as error:
            print(f"could not delete namespace {namespace}: {error}", file=sys.stderr)


def median_table(results: dict[str, Results], baseline: str) -> str:
    base = results[baseline]
    rows = [
        ("throughput, 100 MiB (MiB/s)", "throughput"),
        ("set-up latency p50 (ms)", "p50"),
        ("set-up latency p99 (ms)", "p99"),
        (f"requests/s, {CONCURRENCY} clients", "rps"),
    ]
    names = list(results)
    width = max(len(n) for n in names) + 2
    lines = [f"{'':30}" + "".join(f"{n:>{width}}" for n in names)]
    for label, attribute in rows:
        cells = []
        references: list[float | None] = getattr(base, attribute)
        for name in names:
            series: list[float | None] = getattr(results[name], attribute)
            values = [v for v in series if v is not None]
            if not values:
                cells.append("-")
                continue
            value = statistics.median(values)
            # Load on a shared machine drifts between repeats: compare within each repeat.
            paired = [v / r for v, r in zip(series, references, strict=True) if v is not None and r]
            ratio = f" ({statistics.median(paired):.2f}x)" if name != baseline and paired else ""
            cells.append(
                f"{value:.2f}{ratio}" if attribute in ("p50", "p99") else f"{value:.0f}{ratio}"
            )
        lines.append(f"{label:30}" + "".join(f"{c:>{width}}" for c in cells))
    lines.append(
        f"{'failed measurements':30}"
        + "".join(f"{len(results[n].failures):>{width}}" for n in names)
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--context")
    parser.add_argument("--transports", default="spdy,v4", help="our transports to measure")
    parser.add_argument("--serve", metavar="NAMESPACE", help=argparse.SUPPRESS)
    parser.add_argument("--transport", default="spdy", help=argparse.SUPPRESS)
    parser.add_argument("--route", default="forward", help=argparse.SUPPRESS)
    parser.add_argument("--address", default="local", help=argparse.SUPPRESS)
    parser.add_argument("--service", default="web", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.serve:
        serve(
            options.serve,
            options.service,
            options.transport,
            options.context,
            options.route,
            address=options.address,
        )
        return

    machine = f"{platform.node()}, {os.cpu_count()} cores, {platform.platform()}"
    print(f"machine: {machine}, Python {platform.python_version()}")
    print(kubectl("version", context=options.context).strip().replace("\n", "; "))
    with environment(options.context) as (namespace, pod):
        starters: dict[str, Callable[[], Forwarder]] = {
            f"kubefixtures ({t})": partial(start_kubefixtures, namespace, pod, t, options.context)
            for t in options.transports.split(",")
        }
        starters["kubectl port-forward"] = lambda: start_kubectl(namespace, pod, options.context)
        results = measure_all(starters, options.repeats)
    print(
        f"\nmedians over {options.repeats} repeats (pod {pod}); in parentheses the median of the"
        " per-repeat ratios to kubectl, over the repeats where both succeeded:"
    )
    print(median_table(results, "kubectl port-forward"))


if __name__ == "__main__":
    main()
