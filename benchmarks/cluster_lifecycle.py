"""Local cluster figures: warm `up` to a Ready node, `down`, idle resident memory, and the
disk the caches take. Takes the cluster down and up REPEATS times; ends with it up.

    sudo .venv/bin/python benchmarks/cluster_lifecycle.py [REPEATS]

The cold build is measured by emptying the caches first (it takes ~12 min on 2 cores):

    rm -rf ~/.cache/kubefixtures/bin ~/.cache/go-build ~/go/pkg/mod && time make cluster
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

from kubefixtures.cluster.local.layout import Layout
from kubefixtures.cluster.local.provider import COMPONENTS, LocalProvider


def timed(*args: str) -> float:
    started = time.monotonic()
    subprocess.run(
        [sys.executable, "-m", "kubefixtures.cli", "cluster", *args, "--provider", "local"],
        check=True,
        capture_output=True,
    )
    return time.monotonic() - started


def resident_mib(provider: LocalProvider) -> dict[str, float]:
    sizes = {}
    for name in COMPONENTS:
        pid = provider.supervisor.pid(name)
        if pid is None:
            continue
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                sizes[name] = int(line.split()[1]) / 1024
    return sizes


def disk_mib(path: Path) -> float:
    if not path.exists():
        return 0.0
    output = subprocess.run(["du", "-sm", str(path)], capture_output=True, text=True).stdout
    return float(output.split()[0])


def main() -> None:
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    provider = LocalProvider()
    timed("up")
    downs, ups = [], []
    for _ in range(repeats):
        downs.append(timed("down"))
        ups.append(timed("up"))
    time.sleep(30)  # let the fresh cluster settle before reading its memory
    memory = resident_mib(provider)
    paths = Layout.default()
    print(f"local cluster, {repeats} cycles (medians; min-max)")
    print(f"  up to Ready node: {statistics.median(ups):5.1f} s ({min(ups):.1f}-{max(ups):.1f})")
    print(
        f"  down:             {statistics.median(downs):5.1f} s ({min(downs):.1f}-{max(downs):.1f})"
    )
    print(f"  idle RSS:         {sum(memory.values()):5.0f} MiB")
    for name, mib in sorted(memory.items(), key=lambda item: -item[1]):
        print(f"    {name:24s} {mib:5.0f} MiB")
    print("  disk:")
    for label, path in (
        ("built binaries", paths.binaries),
        ("images", paths.images),
        ("Go build cache", Path.home() / ".cache" / "go-build"),
        ("Go module cache", Path.home() / "go" / "pkg" / "mod"),
        ("cluster state", paths.state),
    ):
        print(f"    {label:24s} {disk_mib(path):6.0f} MiB  {path}")


if __name__ == "__main__":
    main()
