"""Environment controls against kubectl: ``exec`` of ``true`` and ``logs`` of 100k lines.

    .venv/bin/python benchmarks/control.py [--repeats 30] [--log-repeats 7] [--context NAME]

Creates a namespace with two busybox pods: ``shell`` (sleeps) and ``logger`` (prints
100,000 lines of about 55 bytes, then sleeps). In the same run, alternating the order each
repeat, it times:

- exec round trip: ``env.exec("pod/shell", ["true"])`` against ``kubectl exec shell --
  true`` (a new kubectl process each time, as a test that shells out to it pays);
  ours once warm (the first call, which opens the connections, is reported apart);
- logs: ``env.logs("pod/logger")`` against ``kubectl logs logger``, both checked to hold
  the 100,000 lines.

kubectl is ``kubefixtures.cluster.tools.find_tool("kubectl")``: put the one the cluster was
built with first on PATH (``.venv/bin`` of the checkout that ran ``kubefixtures cluster
up``). Prints medians, ratios (ours / kubectl; goal for exec: at most 0.5x), the machine
and its load. The namespace is deleted at the end.
"""

from __future__ import annotations

import argparse
import os
import platform
import secrets
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from kubefixtures.cluster.tools import find_tool
from kubefixtures.details import Environment, EnvironmentDetails
from kubefixtures.kube import Cluster, Tracked, wait_ready
from kubefixtures.kube.client import POD

IMAGE = "kubefixtures.local/busybox:1.35"
LINES = 100_000
LOGGER = (
    f"awk 'BEGIN {{ for (i = 1; i <= {LINES}; i++) "
    'printf "line %06d the quick brown fox jumps over the lazy dog\\n", i }\'; '
    "exec sleep 100000"
)


def pod(name: str, script: str) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "terminationGracePeriodSeconds": 0,
            "containers": [
                {
                    "name": name,
                    "image": IMAGE,
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["sh", "-c", script],
                }
            ],
        },
    }


def timed(call: Callable[[], object]) -> tuple[float, object]:
    started = time.perf_counter()
    result = call()
    return time.perf_counter() - started, result


def median_ms(samples: list[float]) -> str:
    return f"{statistics.median(samples) * 1000:8.1f} ms"


def alternate(
    repeats: int, ours: Callable[[], object], theirs: Callable[[], object]
) -> tuple[list[float], list[float]]:
    """Time both sides ``repeats`` times, swapping which goes first each time."""
    samples: tuple[list[float], list[float]] = ([], [])
    for repeat in range(repeats):
        order = [(0, ours), (1, theirs)]
        for side, call in order if repeat % 2 == 0 else reversed(order):
            samples[side].append(timed(call)[0])
    return samples


def start_pods(cluster: Cluster, namespace: str) -> Environment:
    deadline = time.monotonic() + 120
    cluster.apply_all(
        [
            (POD, pod("shell", "exec sleep 100000"), "shell"),
            (POD, pod("logger", LOGGER), "logger"),
        ],
        namespace,
        deadline,
    )
    wait_ready(
        cluster,
        namespace,
        [Tracked(POD, "shell"), Tracked(POD, "logger")],
        deadline=deadline,
        environment="benchmark",
        started=time.monotonic(),
    )
    details = EnvironmentDetails(
        name="benchmark", namespace=namespace, context=cluster.context, session_id="bench"
    )
    env = Environment(details, [])
    env._bind_controls(lambda: cluster, {})
    # The logger must have written everything before logs are compared.
    last = f"line {LINES:06d} the quick brown fox jumps over the lazy dog\n"
    while env.logs("pod/logger", tail=1) != last:
        time.sleep(0.5)
    return env


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30, help="exec round trips per side")
    parser.add_argument("--log-repeats", type=int, default=7, help="log reads per side")
    parser.add_argument("--context", default=None)
    args = parser.parse_args()

    kubectl = find_tool("kubectl")
    if kubectl is None:
        raise SystemExit("kubectl not found on PATH nor beside this Python")
    version = subprocess.run(
        [str(kubectl), "version", "--client", "-o", "yaml"], capture_output=True, text=True
    ).stdout
    client = next(
        (line.split(":")[1].strip() for line in version.splitlines() if "gitVersion" in line), "?"
    )
    cluster = Cluster.connect(context=args.context)
    kubectl_base = [str(kubectl), *(["--context", cluster.context] if cluster.context else [])]
    namespace = f"kf-bench-control-{secrets.token_hex(3)}"
    cluster.create_namespace(namespace, {"kubefixtures.io/benchmark": "control"})
    try:
        env = start_pods(cluster, namespace)
        first, _ = timed(lambda: env.exec("pod/shell", ["true"], check=True))
        kubectl_exec = [*kubectl_base, "-n", namespace, "exec", "shell", "--", "true"]
        ours, theirs = alternate(
            args.repeats,
            lambda: env.exec("pod/shell", ["true"], check=True),
            lambda: subprocess.run(kubectl_exec, check=True, capture_output=True),
        )
        kubectl_logs = [*kubectl_base, "-n", namespace, "logs", "logger"]

        def ours_logs() -> None:
            assert env.logs("pod/logger").count("\n") == LINES

        def theirs_logs() -> None:
            out = subprocess.run(kubectl_logs, check=True, capture_output=True).stdout
            assert out.count(b"\n") == LINES

        ours_log, theirs_log = alternate(args.log_repeats, ours_logs, theirs_logs)
        size = len(env.logs("pod/logger"))
        env._close_controls()
    finally:
        cluster.delete_namespace(namespace)
        cluster.close()

    load = os.getloadavg()
    print(f"machine: {platform.node()}, {os.cpu_count()} cpus, {platform.platform()}")
    print(f"python {platform.python_version()}, kubectl {client} ({kubectl})")
    print(f"cluster: {cluster.description}")
    print(f"load average after the run: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print()
    print(f"exec of `true`, medians of {args.repeats} (alternating order):")
    print(f"  kubefixtures env.exec   {median_ms(ours)}   (first call, cold: {first * 1e3:.1f} ms)")
    print(f"  kubectl exec            {median_ms(theirs)}")
    ratio = statistics.median(ours) / statistics.median(theirs)
    print(f"  ratio                   {ratio:8.2f}x   (goal: at most 0.5x)")
    print()
    print(f"logs of {LINES:,} lines ({size / 1e6:.1f} MB), medians of {args.log_repeats}:")
    print(f"  kubefixtures env.logs   {median_ms(ours_log)}")
    print(f"  kubectl logs            {median_ms(theirs_log)}")
    ratio = statistics.median(ours_log) / statistics.median(theirs_log)
    print(f"  ratio                   {ratio:8.2f}x")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    main()
