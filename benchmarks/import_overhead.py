"""What the installed plugin costs a suite that uses no kubefixtures fixture.

    .venv/bin/python benchmarks/import_overhead.py [--repeats 15] [--tests 200]

Writes a suite of plain tests (20 modules, no kubefixtures anywhere), then times
``pytest --collect-only -q`` on it with the plugin (as installed, through its entry point)
and without it (``-p no:kubefixtures``), alternating, and prints the medians and their
difference (target: under 100 ms). Also reports the plugin's own import time, in-process.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODULES = 20


def write_suite(root: Path, tests: int) -> None:
    per_module = max(1, tests // MODULES)
    for module in range(MODULES):
        body = "\n\n".join(
            f"def test_{module}_{index}():\n    assert {index} + 1 == {index + 1}"
            for index in range(per_module)
        )
        (root / f"test_plain_{module}.py").write_text(body + "\n")


def collect(root: Path, *extra: str) -> float:
    command = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"]
    started = time.perf_counter()
    subprocess.run([*command, *extra, str(root)], cwd=root, capture_output=True, check=True)
    return time.perf_counter() - started


def plugin_import_seconds() -> float:
    code = (
        "import time, pytest; t = time.perf_counter(); import kubefixtures.plugin; "
        "print(time.perf_counter() - t)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--tests", type=int, default=200)
    args = parser.parse_args()
    with_plugin: list[float] = []
    without: list[float] = []
    with tempfile.TemporaryDirectory(prefix="kf-bench-import-") as scratch:
        root = Path(scratch)
        write_suite(root, args.tests)
        collect(root)  # warm the page cache and the bytecode caches
        collect(root, "-p", "no:kubefixtures")
        for repeat in range(args.repeats):
            runs = [(with_plugin, ()), (without, ("-p", "no:kubefixtures"))]
            for samples, extra in runs if repeat % 2 == 0 else runs[::-1]:
                samples.append(collect(root, *extra))
    imports = statistics.median(plugin_import_seconds() for _ in range(5))
    on, off = statistics.median(with_plugin), statistics.median(without)
    print(f"pytest --collect-only of {args.tests} plain tests, median of {args.repeats}:")
    print(f"  with kubefixtures:   {on * 1000:7.1f} ms")
    print(f"  -p no:kubefixtures:  {off * 1000:7.1f} ms")
    print(f"  overhead:            {(on - off) * 1000:7.1f} ms (target < 100 ms)")
    print(f"  import kubefixtures.plugin (after pytest): {imports * 1000:.1f} ms")


if __name__ == "__main__":
    main()
