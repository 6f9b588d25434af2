"""What sharing an environment between pytest-xdist workers costs, and what it saves.

    .venv/bin/python benchmarks/xdist_attach.py [--repeats 5]

The environment is tests/integration/environments/token-web (an HTTP server, a Secret, a
Service). A conftest hook times the environment fixture's setup on every worker (wall
clock, shared by all processes of the machine); after each run, the state file left in
``--basetemp`` says which worker was the manager.

1. Attach overhead, workers arriving together (``pytest -n 4``, 40 tests): the manager's
   setup time, and for each attached worker how long after the manager had the
   environment it had it too (target: under 100 ms).
2. Attach time, workers arriving late: gw1..gw3 first sleep until the environment is up,
   then set the fixture up: the whole cost of attaching (claim, read, build).
3. Wall time of the 40-test suite without xdist, with ``-n 1`` and with ``-n 4`` (each
   worker's interpreter and pytest start-up included; one environment either way), for
   tests that only call the service and for tests that also do 0.25 s of work of their own.

Prints every measurement and the medians. Namespaces go with each run. (``-P``:
benchmarks/ holds a module named like a standard one.)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TOKEN_WEB = ROOT / "tests" / "integration" / "environments" / "token-web"

CONFTEST = f"""
import json
import os
import time

import pytest

from kubefixtures import environment

web = environment({str(TOKEN_WEB)!r}, values={{"ready_delay": 0}})
LATE = os.environ.get("BENCH_LATE") == "1"


@pytest.fixture(scope="session")
def arrival():
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    if LATE and worker != "gw0":
        time.sleep(float(os.environ["BENCH_LATE_SECONDS"]))


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(fixturedef, request):
    if fixturedef.argname != "web":
        return (yield)
    started = time.time()
    try:
        return (yield)
    finally:
        record = {{
            "worker": os.environ.get("PYTEST_XDIST_WORKER", "main"),
            "start": started,
            "end": time.time(),
        }}
        with open(os.environ["BENCH_RESULT"], "a") as out:
            out.write(json.dumps(record) + "\\n")
"""

TESTS = """
import os
import time
import urllib.request

import pytest


@pytest.mark.parametrize("index", range(40))
def test_health(arrival, web, index):
    with urllib.request.urlopen(web.services["web"].url + "/health", timeout=10) as answer:
        assert answer.status == 200
    time.sleep(float(os.environ["BENCH_WORK"]))  # the test's own work, if any
"""


def run(
    directory: Path, workers: int, *, late: float = 0.0, work: float = 0.0
) -> tuple[float, list[dict[str, Any]], str]:
    """One pytest run (``workers`` 0: without xdist): wall time, fixture timings, manager."""
    result_file = directory / "result.jsonl"
    result_file.unlink(missing_ok=True)
    basetemp = directory / "base"
    env = {
        **os.environ,
        "BENCH_RESULT": str(result_file),
        "BENCH_LATE": "1" if late else "0",
        "BENCH_LATE_SECONDS": str(late),
        "BENCH_WORK": str(work),
    }
    xdist = ["-n", str(workers)] if workers else []
    started = time.monotonic()
    completed = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *xdist,
         f"--basetemp={basetemp}"],
        cwd=directory, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    elapsed = time.monotonic() - started
    if completed.returncode != 0:
        raise SystemExit(f"pytest failed:\n{completed.stdout}\n{completed.stderr}")
    measured = [json.loads(line) for line in result_file.read_text().splitlines()]
    manager = "main"
    for state_file in basetemp.glob("kubefixtures-xdist-*.json"):
        state = json.loads(state_file.read_text())
        manager = next(iter(state["environments"].values()))["manager"]
    return elapsed, measured, manager


def milliseconds(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:.0f} ms (n={len(values)})"


def attach_figures(directory: Path, repeats: int) -> None:
    manager_setup: list[float] = []
    overhead: list[float] = []
    late_attach: list[float] = []
    for repeat in range(repeats):
        _, measured, manager = run(directory, 4)
        by_worker = {record["worker"]: record for record in measured}
        ready = by_worker[manager]["end"]
        manager_setup.append(ready - by_worker[manager]["start"])
        others = {w: r["end"] - ready for w, r in sorted(by_worker.items()) if w != manager}
        overhead += others.values()
        _, measured, late_manager = run(directory, 4, late=8.0)
        late = [r["end"] - r["start"] for r in measured if r["worker"] != late_manager]
        late_attach += late
        print(
            f"repeat {repeat}: manager {manager} set up in {manager_setup[-1]:.2f} s; "
            f"attached {', '.join(f'{w} {1000 * v:+.0f} ms' for w, v in others.items())} "
            f"after it; late arrivals {', '.join(f'{1000 * v:.0f}' for v in late)} ms"
        )
    print(f"manager's setup (median):                        {milliseconds(manager_setup)}")
    print(f"attached worker, after the manager had it (median): {milliseconds(overhead)}")
    print(f"  worst: {1000 * max(overhead):.0f} ms")
    print(f"attached worker arriving late, setup (median):   {milliseconds(late_attach)}")


def wall_figures(directory: Path, repeats: int) -> None:
    for work in (0.0, 0.25):
        walls: dict[int, list[float]] = {0: [], 1: [], 4: []}
        for _ in range(repeats):
            for workers, values in walls.items():
                values.append(run(directory, workers, work=work)[0])
        for workers, values in walls.items():
            mode = f"-n {workers}" if workers else "no xdist"
            print(
                f"40 tests doing {work:.2f} s of work each, {mode}: median "
                f"{statistics.median(values):.2f} s ({', '.join(f'{v:.2f}' for v in values)})"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kubefixtures-bench-") as temporary:
        directory = Path(temporary)
        (directory / "conftest.py").write_text(CONFTEST)
        (directory / "test_health.py").write_text(TESTS)
        attach_figures(directory, arguments.repeats)
        wall_figures(directory, arguments.repeats)


if __name__ == "__main__":
    main()
