"""The port forwarder's reads of the apiserver: this checkout's HTTP client against a git
revision's (by default 8430497, the last whose forwarder used httpx), on the real cluster.

    .venv/bin/python benchmarks/forward_reads.py [--baseline REV] [--requests 300] [--repeats 5]

Two figures, checkout against baseline in the same run:

- CPU per read: ``ApiClient.get`` of the ``kubernetes`` Service in ``default``, ``--requests``
  times on one event loop, alternating baseline and checkout each repeat; the process's CPU
  time (the apiserver runs elsewhere) divided by the requests; medians.
- import at the first forward: in a fresh process that has imported the forwarder, the
  time to import what building the ``ApiClient`` imports (the baseline's httpx); medians.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

from kubefixtures.kube.config import ClusterConfig, load_config

ROOT = Path(__file__).resolve().parent.parent
MODULE = "kubefixtures/kube/portforward/_api.py"
PATH = "/api/v1/namespaces/default/services/kubernetes"
HTTPX_REVISION = "8430497"  # the last revision whose forwarder read through httpx


def load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def baseline_module(revision: str, scratch: Path) -> Path:
    source = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{revision}:{MODULE}"], capture_output=True, check=True
    ).stdout
    target = scratch / "baseline_api.py"
    target.write_bytes(source)
    return target


async def cpu_per_read(api_module: ModuleType, config: ClusterConfig, requests: int) -> float:
    endpoint = await api_module.ApiEndpoint.create(config)
    client = api_module.ApiClient(endpoint)
    try:
        await client.get(PATH, what="warm-up")  # the connection and its TLS handshake
        started = time.process_time()
        for _ in range(requests):
            await client.get(PATH, what="Service default/kubernetes")
        return (time.process_time() - started) / requests
    finally:
        await client.aclose()


IMPORT_AT_FIRST_FORWARD = """
import asyncio, sys, time
import kubefixtures.kube.portforward._forwarder, kubefixtures.kube.portforward._wsconn
from kubefixtures.kube.config import ClusterConfig
import importlib.util
spec = importlib.util.spec_from_file_location("api_under_test", {path!r})
module = importlib.util.module_from_spec(spec)
sys.modules["api_under_test"] = module
spec.loader.exec_module(module)
config = ClusterConfig(server="http://127.0.0.1:1", context="t", source="t")
async def build():
    endpoint = await module.ApiEndpoint.create(config)
    started = time.perf_counter()
    client = module.ApiClient(endpoint)
    elapsed = time.perf_counter() - started
    await client.aclose()
    return elapsed
print(asyncio.run(build()))
"""


def import_seconds(path: Path) -> float:
    code = IMPORT_AT_FIRST_FORWARD.format(path=str(path))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", default=HTTPX_REVISION)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--kubeconfig")
    parser.add_argument("--context")
    args = parser.parse_args()
    config = load_config(args.kubeconfig, args.context)
    with tempfile.TemporaryDirectory(prefix="kf-bench-reads-") as scratch_name:
        scratch = Path(scratch_name)
        sides = {
            "baseline": baseline_module(args.baseline, scratch),
            "checkout": ROOT / MODULE,
        }
        modules = {name: load(path, f"api_{name}") for name, path in sides.items()}
        cpu: dict[str, list[float]] = {name: [] for name in sides}
        imports: dict[str, list[float]] = {name: [] for name in sides}
        for _ in range(args.repeats):
            for name, path in sides.items():
                cpu[name].append(asyncio.run(cpu_per_read(modules[name], config, args.requests)))
                imports[name].append(import_seconds(path))
    base_cpu, ours_cpu = (statistics.median(cpu[name]) for name in sides)
    base_import, ours_import = (statistics.median(imports[name]) for name in sides)
    print(f"{args.requests} GETs x {args.repeats} repeats against {config.server}")
    print(f"CPU per read:    baseline ({args.baseline}) {base_cpu * 1e6:7.0f} us")
    print(f"                 checkout            {ours_cpu * 1e6:7.0f} us")
    print(f"                 baseline / checkout {base_cpu / ours_cpu:7.2f}x")
    print(f"first forward's import: baseline {base_import * 1e3:6.1f} ms")
    print(f"                        checkout {ours_import * 1e3:6.1f} ms")


if __name__ == "__main__":
    main()
