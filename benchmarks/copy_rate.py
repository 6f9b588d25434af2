"""How fast the cluster brings copies of an environment up: N copies started at once, and
where each copy's time goes.

    .venv/bin/python benchmarks/copy_rate.py [--copies 1,2,4,8] [--repeats 2] [--context NAME]

The environment is tests/integration/environments/shop (redis + an HTTP server, two pods),
applied as benchmarks/environment_ready.py's floor applies it: one process already
connected, every object of a copy at once, N copies side by side (one thread each). A
watch on every pod of the cluster notes, as its events arrive here, when each of the
copies' pods was:

- created (the Deployment controller made it: namespace, apply, ReplicaSet),
- scheduled (``spec.nodeName`` set),
- given an IP (the kubelet made its sandbox: runtime and CNI),
- running (``state.running`` on every container: image and container start),
- Ready (the readiness probes passed: on the shop's pods ``periodSeconds: 1``, so up to a
  second after the container started).

Prints, per N: the time until all N copies were ready, the copies per second, and the
median of each step over the copies' pods (from creating the copy's namespace). Every
namespace is deleted, and waited for, before the next N, and at the end. No pytest, no
forwards: this is the cluster's rate, the bound of a pool that refills while tests run.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import threading
import time
from typing import Any

import yaml
from environment_ready import ANSWER_DEADLINE, delete_namespace, rendered_manifests

from kubefixtures.kube import Cluster
from kubefixtures.kube.client import POD

STEPS = ("created", "scheduled", "ip", "running", "ready")


class PodWatch:
    """Every pod event of the cluster, the moment it arrives, for the namespaces we made."""

    def __init__(self, cluster: Cluster, prefix: str) -> None:
        self.cluster = cluster
        self.prefix = prefix
        self.seen: dict[tuple[str, str], dict[str, float]] = {}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        version = cluster.list_objects(POD, None)["metadata"]["resourceVersion"]
        self.thread = threading.Thread(target=self._run, args=(version,), daemon=True)
        self.thread.start()

    def _run(self, version: str) -> None:
        while not self.stop.is_set():
            stream = self.cluster.watch(POD, None, version, 30)
            for event in stream:
                pod = event["object"]
                metadata = pod["metadata"]
                version = metadata["resourceVersion"]
                if metadata["namespace"].startswith(self.prefix):
                    self._note(metadata["namespace"], metadata["name"], pod)
                if self.stop.is_set():
                    stream.close()
                    return

    def _note(self, namespace: str, name: str, pod: dict[str, Any]) -> None:
        now = time.monotonic()
        spec, status = pod.get("spec") or {}, pod.get("status") or {}
        containers = status.get("containerStatuses") or []
        reached = {
            "created": True,
            "scheduled": bool(spec.get("nodeName")),
            "ip": bool(status.get("podIP")),
            "running": bool(containers)
            and all("running" in (c.get("state") or {}) for c in containers),
            "ready": any(
                c.get("type") == "Ready" and c.get("status") == "True"
                for c in status.get("conditions") or []
            ),
        }
        with self.lock:
            steps = self.seen.setdefault((namespace, name), {})
            for step, done in reached.items():
                if done:
                    steps.setdefault(step, now)


def bring_up(cluster: Cluster, namespace: str, started: dict[str, float]) -> None:
    documents = [d for d in yaml.safe_load_all(rendered_manifests(namespace, "rate")) if d]
    resources = cluster.resolve([(d["apiVersion"], d["kind"], "rate") for d in documents])
    started[namespace] = time.monotonic()
    cluster.create_namespace(namespace, {"kubefixtures.io/test": "benchmark-copy-rate"})
    items = [(resource, doc, "rate") for resource, doc in zip(resources, documents, strict=True)]
    cluster.apply_all(items, namespace, time.monotonic() + ANSWER_DEADLINE)


def measure(cluster: Cluster, copies: int, context: str | None) -> dict[str, Any]:
    prefix = f"kf-bench-rate-{secrets.token_hex(2)}-"
    watch = PodWatch(cluster, prefix)
    namespaces = [f"{prefix}{index}" for index in range(copies)]
    started: dict[str, float] = {}
    threads = [
        threading.Thread(target=bring_up, args=(cluster, namespace, started))
        for namespace in namespaces
    ]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            thread.join()
        while True:
            with watch.lock:
                ready = [steps for steps in watch.seen.values() if "ready" in steps]
            if len(ready) >= 2 * copies:
                break
            if time.monotonic() - began > ANSWER_DEADLINE:
                raise SystemExit(f"{copies} copies: not ready after {ANSWER_DEADLINE} s")
            time.sleep(0.02)
        span = max(steps["ready"] for steps in ready) - began
        steps_by_name: dict[str, list[float]] = {step: [] for step in STEPS}
        with watch.lock:
            for (namespace, _), steps in watch.seen.items():
                previous = started[namespace]
                for step in STEPS:
                    steps_by_name[step].append(steps.get(step, previous) - previous)
                    previous = steps.get(step, previous)
    finally:
        watch.stop.set()
        for namespace in namespaces:
            delete_namespace(context, namespace)
    return {"span": span, "steps": {k: statistics.median(v) for k, v in steps_by_name.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--copies", default="1,2,4,8")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--context", default=None)
    args = parser.parse_args()
    cluster = Cluster.connect(context=args.context)
    print(f"start: load average {os.getloadavg()} ({os.cpu_count()} CPUs)")
    try:
        measure(cluster, 1, args.context)  # warm-up (caches, images)
        for repeat in range(args.repeats):
            for copies in (int(n) for n in args.copies.split(",")):
                result = measure(cluster, copies, args.context)
                steps = ", ".join(f"{k} +{v:.2f}" for k, v in result["steps"].items())
                print(
                    f"repeat {repeat + 1}: {copies} cop{'y' if copies == 1 else 'ies'} at once: "
                    f"all ready in {result['span']:.2f} s, {copies / result['span']:.2f} copies/s"
                    f"; per pod, median s after the previous step: {steps} "
                    f"(load {os.getloadavg()[0]:.2f})"
                )
    finally:
        cluster.close()
    print(f"end: load average {os.getloadavg()}")


if __name__ == "__main__":
    main()
