"""Direct route benchmark: our 127.0.0.1 splice to the pod's IP, our forward, the pod itself.

    .venv/bin/python benchmarks/direct_route.py [--repeats 3] [--context NAME]

Needs a pod network reachable from this machine (the local cluster's host, a runner
inside the cluster). Creates portforward.py's testserver pod behind a Service and measures,
in the same run and alternating the order each repeat, with portforward.py's three phases:

- throughput: one 100 MiB download through one connection;
- set-up latency: 1,000 sequential short requests, a new connection each (p50, p99);
- requests/s: 16 concurrent clients, a new connection per request.

Sides: kubefixtures' direct route (``route="direct"``: a 127.0.0.1 listener spliced to the
pod's IP), kubefixtures' forward through the apiserver (the SPDY tunnel), and the pod's IP
itself (the floor: no forwarder at all). Goal: the direct route within 1.2x of the pod.
Our forwarders run in processes of their own, the clients in this one. Prints the machine's
load, medians over the repeats and each side's median per-repeat ratio to the pod.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import portforward  # the sibling benchmark: its pod, phases and table
from portforward import Forwarder, kubectl, measure_all, median_table

POD_DIRECTLY = "the pod's IP"


def pod_ip(namespace: str, pod: str, context: str | None) -> str:
    return kubectl(
        "-n", namespace, "get", "pod", pod, "-o", "jsonpath={.status.podIP}", context=context
    ).strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--context")
    options = parser.parse_args()

    print(f"machine: {platform.node()}, {os.cpu_count()} cores, {platform.platform()}")
    print(f"Python {platform.python_version()}; load average at start {os.getloadavg()}")
    print(kubectl("version", context=options.context).strip().replace("\n", "; "))
    with portforward.environment(options.context) as (namespace, pod):
        address = pod_ip(namespace, pod, options.context)
        start = partial(portforward.start_kubefixtures, namespace, pod, "spdy", options.context)
        starters: dict[str, Callable[[], Forwarder]] = {
            "kubefixtures (direct)": partial(start, "direct"),
            "kubefixtures (spdy)": partial(start, "forward"),
            POD_DIRECTLY: lambda: Forwarder(POD_DIRECTLY, 8080, None, host=address),
        }
        results = measure_all(starters, options.repeats)
    print(f"load average at end {os.getloadavg()}")
    print(
        f"\nmedians over {options.repeats} repeats (pod {pod} at {address}); in parentheses"
        " the median of the per-repeat ratios to the pod's IP:"
    )
    print(median_table(results, POD_DIRECTLY))


if __name__ == "__main__":
    main()
