"""Busy threads benchmark: what Python threads busy in the test process cost our forwards.

    .venv/bin/python benchmarks/busy_threads.py [--threads 0,4,16] [--requests 300]

Our forwards (both routes) move bytes in one event-loop thread of the process that uses
them, the test process; `kubectl port-forward` runs in a process of its own. Every chunk
our thread moves needs the interpreter's lock (the GIL), so threads busy running Python in
the same process (a load generator, a server under test started in a thread, a thread
pool parsing responses) delay it. This measures that delay: with N threads spinning in
pure Python in this process, the set-up latency of short requests (connect, GET /health,
the whole response; a new connection each) through our forward and our direct route, both
in this process, through our direct route relayed by a child process (``relay="process"``:
only its control side is in this process), and through kubectl's forward, the sides
taking turns request by request so that load on the machine falls on each alike. The
measuring client is a thread of this process too, for every side.

Needs the local cluster (or any cluster whose pod network this machine reaches, for the
direct route). Creates portforward.py's testserver pod behind a Service; the namespace is
deleted at the end. See docs/routes.md, "Busy threads in the test process".
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING

sys.path.insert(0, str(Path(__file__).parent))

from portforward import environment, short_request, start_kubectl

if TYPE_CHECKING:
    from kubefixtures.kube.portforward import Relay, Route


def spin(stop: threading.Event) -> None:
    """Pure Python work until stopped: holds the GIL but for the interpreter's switches."""
    while not stop.is_set():
        sum(i * i for i in range(2_000))


def in_process_forward(
    stack: ExitStack,
    namespace: str,
    route: Route,
    context: str | None,
    relay: Relay = "thread",
) -> int:
    from kubernetes import client, config

    from kubefixtures.kube.portforward import ServicePortForward

    configuration = client.Configuration()
    config.load_kube_config(client_configuration=configuration, context=context)  # type: ignore[no-untyped-call]
    forward = stack.enter_context(
        ServicePortForward(configuration, namespace, "web", "http", route=route, relay=relay)
    )
    return forward.local_port


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default="0,4,16", help="busy thread counts to measure")
    parser.add_argument("--requests", type=int, default=300, help="short requests per side")
    parser.add_argument("--context")
    options = parser.parse_args()
    counts = [int(count) for count in options.threads.split(",")]

    print(f"machine: {platform.node()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"load average at start: {os.getloadavg()}; switch interval {sys.getswitchinterval()} s")
    with environment(options.context) as (namespace, pod), ExitStack() as stack:
        ports = {
            "ours, forward (in this process)": in_process_forward(
                stack, namespace, "forward", options.context
            ),
            "ours, direct (in this process)": in_process_forward(
                stack, namespace, "direct", options.context
            ),
            "ours, direct (process relay)": in_process_forward(
                stack, namespace, "direct", options.context, relay="process"
            ),
        }
        kubectls = start_kubectl(namespace, pod, options.context)
        stack.callback(kubectls.close)
        ports["kubectl port-forward (own process)"] = kubectls.port
        for port in ports.values():  # warm each side up: its first connection sets things up
            short_request(port)

        print(
            f"\nset-up latency, ms (p50 / p99 of {options.requests} short requests per side; "
            "failed: timed out after 10 s, or reset)"
        )
        header = "| busy threads | " + " | ".join(ports) + " |"
        print(header)
        print("|---" * (len(ports) + 1) + "|")
        for count in counts:
            stop = threading.Event()
            spinners = [threading.Thread(target=spin, args=(stop,)) for _ in range(count)]
            for spinner in spinners:
                spinner.start()
            try:
                time.sleep(0.5)
                samples: dict[str, list[float]] = {side: [] for side in ports}
                failures = dict.fromkeys(ports, 0)
                for _ in range(options.requests):
                    for side, port in ports.items():
                        try:
                            samples[side].append(short_request(port) * 1000)
                        except OSError:  # a timeout (10 s) or a reset: counted, not timed
                            failures[side] += 1
            finally:
                stop.set()
                for spinner in spinners:
                    spinner.join()
            cells = []
            for side in ports:
                ordered = sorted(samples[side]) or [float("nan")]
                p50 = statistics.median(ordered)
                p99 = ordered[int(len(ordered) * 0.99)]
                failed = f", {failures[side]} failed" if failures[side] else ""
                cells.append(f"{p50:.2f} / {p99:.2f}{failed}")
            print(f"| {count} | " + " | ".join(cells) + " |", flush=True)
    print(f"load average at end: {os.getloadavg()}; pod {pod}")


if __name__ == "__main__":
    main()
