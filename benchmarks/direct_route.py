"""Direct route benchmark: our 127.0.0.1 splice, the Service's ClusterIP, socat, the pod itself.

    .venv/bin/python benchmarks/direct_route.py [--repeats 3] [--context NAME]

Needs a pod network reachable from this machine (the local cluster's host, a runner
inside the cluster). Creates portforward.py's testserver pod behind a Service and measures,
in the same run and alternating the order each repeat, with portforward.py's three phases:

- throughput: one 100 MiB download through one connection;
- set-up latency: 1,000 sequential short requests, a new connection each (p50, p99);
- requests/s: 16 concurrent clients, a new connection per request.

Sides: kubefixtures' direct route (``route="direct"``: a 127.0.0.1 listener spliced to the
pod's IP), the same with ``address="service"`` (the tests get the Service's ClusterIP and
port, which kube-proxy routes: nothing of ours in between), kubefixtures' forward through
the apiserver (the SPDY tunnel), socat relaying 127.0.0.1 to the pod's IP (a native relay
nobody here wrote, forking a process per connection: what any userland relay costs; left
out with a message when socat is not installed), and the pod's IP itself (the floor: no
forwarder at all). Goal: within 1.2x of the pod. Our forwarders run in processes of their
own, the clients in this one. Prints the machine's load, medians over the repeats and each
side's median per-repeat ratio to the pod.

Before those, the same set-up latency and throughput with the sides taking turns request
by request (``--turns``, 1,000 short requests and 5 downloads per side): on a machine
shared with other work, a burst of load lasting seconds falls on one side's whole phase,
but on every side alike there. The phases' set-up latency is skewed anyway: every
connection to the pod's IP leaves this host a TIME_WAIT for 60 s, and after a concurrent
phase's thousands connect() spends milliseconds finding a free local port towards the pod,
whichever side measures next.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import portforward  # the sibling benchmark: its pod, phases and table
from portforward import (
    Forwarder,
    download,
    kubectl,
    measure_all,
    median_table,
    short_request,
)

POD_DIRECTLY = "the pod's IP"
SOCAT = "socat (relay)"
DOWNLOAD_TURNS = 5


def pod_ip(namespace: str, pod: str, context: str | None) -> str:
    return kubectl(
        "-n", namespace, "get", "pod", pod, "-o", "jsonpath={.status.podIP}", context=context
    ).strip()


def start_socat(address: str, port: int = 8080) -> Forwarder:
    """socat relaying a free 127.0.0.1 port to ``address:port``, a process per connection."""
    socat = shutil.which("socat")
    assert socat is not None
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        local = probe.getsockname()[1]
    listen = f"TCP-LISTEN:{local},bind=127.0.0.1,reuseaddr,fork,backlog=512"
    process = subprocess.Popen(
        # -b: 256 KiB per read and write, as our splice's copy buffer (socat's default 8 KiB
        # would cap its bulk rate at the cost of its system calls, not of relaying).
        [socat, "-b", str(256 * 1024), listen, f"TCP:{address}:{port},nodelay"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", local), timeout=1).close()
            return Forwarder(SOCAT, local, process)
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                raise SystemExit("socat did not start listening") from None
            time.sleep(0.05)


def in_turns(
    starters: dict[str, Callable[[], Forwarder]], requests: int
) -> dict[str, tuple[float, float, float]]:
    """(p50 ms, p99 ms, MiB/s) per side, the sides taking turns request by request (and
    download by download), each round starting with the next side."""
    forwarders = {name: start() for name, start in starters.items()}
    names = list(forwarders)
    latencies: dict[str, list[float]] = {name: [] for name in names}
    rates: dict[str, list[float]] = {name: [] for name in names}
    buffer = memoryview(bytearray(65536))

    def rotated(turn: int) -> list[str]:
        first = turn % len(names)
        return names[first:] + names[:first]

    try:
        for turn in range(requests):
            for name in rotated(turn):
                side = forwarders[name]
                latencies[name].append(short_request(side.port, buffer, side.host))
        for turn in range(DOWNLOAD_TURNS):
            for name in rotated(turn):
                rates[name].append(download(forwarders[name].port, forwarders[name].host))
    finally:
        for forwarder in forwarders.values():
            forwarder.close()
    figures = {}
    for name in names:
        samples = sorted(latencies[name])
        p50 = samples[len(samples) // 2] * 1000
        p99 = samples[int(len(samples) * 0.99)] * 1000
        figures[name] = (p50, p99, statistics.median(rates[name]))
    return figures


def turns_table(figures: dict[str, tuple[float, float, float]], baseline: str) -> str:
    base = figures[baseline]
    rows = [
        ("set-up latency p50 (ms)", 0),
        ("set-up latency p99 (ms)", 1),
        ("throughput (MiB/s)", 2),
    ]
    width = max(len(name) for name in figures) + 2
    lines = [f"{'':30}" + "".join(f"{name:>{width}}" for name in figures)]
    for label, index in rows:
        cells = []
        for name, values in figures.items():
            ratio = "" if name == baseline else f" ({values[index] / base[index]:.2f}x)"
            cells.append(
                f"{values[index]:.2f}{ratio}" if index < 2 else f"{values[index]:.0f}{ratio}"
            )
        lines.append(f"{label:30}" + "".join(f"{cell:>{width}}" for cell in cells))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--context")
    parser.add_argument(
        "--turns", type=int, default=1000, help="short requests per side taking turns (0: none)"
    )
    options = parser.parse_args()

    print(f"machine: {platform.node()}, {os.cpu_count()} cores, {platform.platform()}")
    print(f"Python {platform.python_version()}; load average at start {os.getloadavg()}")
    print(kubectl("version", context=options.context).strip().replace("\n", "; "))
    with portforward.environment(options.context) as (namespace, pod):
        address = pod_ip(namespace, pod, options.context)
        start = partial(portforward.start_kubefixtures, namespace, pod, "spdy", options.context)
        starters: dict[str, Callable[[], Forwarder]] = {
            "kubefixtures (direct)": partial(start, "direct"),
            "kubefixtures (service)": partial(start, "direct", address="service"),
            "kubefixtures (spdy)": partial(start, "forward"),
        }
        if shutil.which("socat"):
            starters[SOCAT] = partial(start_socat, address)
        else:
            print("socat is not installed: its side is left out (apt-get install socat)")
        starters[POD_DIRECTLY] = lambda: Forwarder(POD_DIRECTLY, 8080, None, host=address)
        # Taking turns first: every connection to the pod's IP from this host leaves a
        # TIME_WAIT for 60 s, and after the concurrent phase's thousands connect() spends
        # milliseconds finding a free port towards the pod (measured: 4 ms at the median
        # with 15,000 of them), whichever side connects.
        turns = in_turns(starters, options.turns) if options.turns else None
        print(f"load average after taking turns {os.getloadavg()}", flush=True)
        results = measure_all(starters, options.repeats)
    print(f"load average at end {os.getloadavg()}")
    print(
        f"\nmedians over {options.repeats} repeats (pod {pod} at {address}); in parentheses"
        " the median of the per-repeat ratios to the pod's IP:"
    )
    print(median_table(results, POD_DIRECTLY))
    if turns is not None:
        print(
            f"\ntaking turns: {options.turns} short requests and {DOWNLOAD_TURNS} downloads"
            " per side; in parentheses the ratio to the pod's IP:"
        )
        print(turns_table(turns, POD_DIRECTLY))


if __name__ == "__main__":
    main()
