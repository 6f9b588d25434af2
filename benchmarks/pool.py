"""Pooled environments (``--kubefixtures-pool``): time to a ready environment with a warm
spare, and a suite of function-scoped environments, against the same without a pool.

    .venv/bin/python benchmarks/pool.py [--repeats 5] [--suite-repeats 2] [--tests 50]
                                        [--pool 6] [--floor-repeats 5] [--context NAME]
                                        [--relays thread,process] [--skip-suite]

Same environment as benchmarks/environment_ready.py (tests/integration/environments/shop:
redis + an HTTP server), same cluster, same run; its helpers do the measuring.

1. Session start to a ready, forwarded environment, three sides taking turns at going first:
   - pool: ``pytest --kubefixtures-pool=1`` on the one-test suite while a ready spare waits
     (the previous pool run left it: a session with a pool waits, at its end, for the copy
     it started to replace the one it claimed);
   - kubefixtures without a pool (the same suite, the same run otherwise);
   - the kubectl baseline (create namespace, apply, wait, port-forward).
   Goal: the pool at most 0.2 s from pytest's session start. With ``--relays
   thread,process`` the sides are the pool with each ``--kubefixtures-relay`` instead (the
   direct route's relay in the test process against the one in a process of its own).
2. A suite of ``--tests`` tests using a function-scoped environment (a fresh namespace per
   test), each checking both services over the forwarded ports: with the pool warm
   (``--pool`` spares ready before it starts) against without, and against the same tests
   without an environment (pytest's own cost). Measured from pytest's session start to the
   end of the last test (the session's end then waits for the copies under way); the
   environment's overhead per test is the difference from the suite without an
   environment, divided by the number of tests. Goal: at most 0.3 s per test.
3. Where part 1's time goes (no cluster needed): a pytest run holds one interpreter lock, so
   whatever CPU it needs after session start is wall time. Measured in fresh pytest
   processes: a suite without an environment (pytest's own share from session start to its
   test's end, and from spawn), and kubefixtures' imports on a first environment's path,
   timed inside a test (its own modules; pydantic and the models built with it). Part 1's
   pool side also reports its CPU seconds since session start, and what the pool adds to a
   pytest run from spawn to answer.

Every namespace is deleted, and waited for, before the next measurement (the pool's spares
excepted: they are what the pool side measures); everything is deleted at the end. Prints
each measurement, the medians, the ratios and the machine's load.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from environment_ready import (
    CONFTEST,
    TEST,
    delete_namespace,
    pytest_run,
    run_baseline,
    run_kubefixtures,
    session_start_stamp,
)

from kubefixtures.kube import Cluster
from kubefixtures.kube.client import NAMESPACE

SUITE_TEST = (
    TEST.split("\n\ndef test_answers")[0]
    + """

import pytest


@pytest.mark.parametrize("index", range({tests}))
def test_answers(shop, index):
    assert redis_answers(shop.services["redis"].port, shop.secrets["redis"])
    assert http_answers(shop.services["web"].port, "/health")
    with open(os.environ["BENCH_RESULT"], "w") as out:
        out.write(str(time.time()))
"""
)

EMPTY_TEST = """
import os
import time

import pytest


@pytest.mark.parametrize("index", range({tests}))
def test_answers(index):
    with open(os.environ["BENCH_RESULT"], "w") as out:
        out.write(str(time.time()))
"""


# What a session says when its pool was short of spares (a copy that never became one, a
# claim that found none): shown with the measurement, never hidden.
POOL_TROUBLE = ("never became", "no ready spare", "ran dry", "not refilling", "not claiming")


def write_session_suite(directory: Path, name: str) -> None:
    directory.mkdir()
    conftest = CONFTEST.replace("\nshop = environment(", f"\n{name} = environment(")
    (directory / "conftest.py").write_text(conftest)
    (directory / "test_shop.py").write_text(TEST.replace("shop", name))


def write_function_suite(directory: Path, name: str, tests: int, *, environment: bool) -> None:
    directory.mkdir()
    conftest = CONFTEST.replace("\nshop = environment(", f"\n{name} = environment(").replace(
        "})\n", '}, scope="function")\n', 1
    )
    if not environment:  # the session start hook alone
        conftest = "\n".join(
            line for line in conftest.splitlines() if not line.startswith(f"{name} = ")
        )
    (directory / "conftest.py").write_text(conftest)
    body = SUITE_TEST if environment else EMPTY_TEST
    (directory / "test_suite.py").write_text(
        body.replace("shop", name).replace("{tests}", str(tests))
    )


# Part 3: what a pytest process costs from session start without an environment, and what
# kubefixtures' imports cost in it (the bytecode cache warm, as in part 1).
BARE_CONFTEST = """
import os
import time


def pytest_sessionstart(session):
    with open(os.environ["BENCH_RESULT"] + ".start", "w") as out:
        out.write(f"{time.time()} {time.process_time()}")
"""

BARE_TEST = """
import importlib
import os
import time


def test_nothing():
    with open(os.environ["BENCH_RESULT"], "w") as out:
        out.write(f"{time.time()} {time.process_time()}")
"""

IMPORTS_TEST = """
import importlib
import os
import time

from kubefixtures import factories


def test_imports():
    started = time.process_time()
    for name in factories._PRELOADED:
        importlib.import_module(name)
    preloaded = time.process_time()
    for name in factories._MODELS:
        importlib.import_module(name)
    with open(os.environ["BENCH_RESULT"], "w") as out:
        out.write(f"{preloaded - started} {time.process_time() - preloaded}")
"""


def cpu_floor(workdir: Path, repeats: int) -> dict[str, list[float]]:
    """Part 3, in fresh pytest processes: an environment-less suite's wall and CPU seconds
    from session start to its test's end (pytest's own share), and the CPU seconds of
    kubefixtures' imports on a first environment's path (its own modules, then pydantic and
    the models built with it), measured inside a test."""
    times: dict[str, list[float]] = {}
    bare, imports = workdir / "bare", workdir / "imports"
    for directory, test in ((bare, BARE_TEST), (imports, IMPORTS_TEST)):
        directory.mkdir()
        (directory / "conftest.py").write_text(BARE_CONFTEST)
        (directory / "test_it.py").write_text(test)
    for _ in range(repeats + 1):  # the first run of each writes the bytecode caches
        for directory in (bare, imports):
            result = directory / "result.txt"
            command, env = pytest_run(directory, None)
            started = time.time()
            done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise SystemExit(f"floor run failed:\n{done.stdout[-4000:]}")
            first, second = (float(value) for value in result.read_text().split())
            if directory is bare:
                session_wall, session_cpu = session_start_stamp(result)
                times.setdefault("spawn to end", []).append(first - started)
                times.setdefault("session to end", []).append(first - session_wall)
                times.setdefault("session cpu", []).append(second - session_cpu)
            else:
                times.setdefault("own modules", []).append(first)
                times.setdefault("pydantic and models", []).append(second)
    # The first run of each wrote the bytecode caches: not counted.
    return {side: values[1:] for side, values in times.items()}


def run_suite(directory: Path, context: str | None, *options: str) -> tuple[float, float]:
    """Seconds from pytest's session start to the end of the last test, and from spawning
    pytest to its exit."""
    result = directory / "result.txt"
    command, env = pytest_run(directory, context, *options)
    started = time.time()
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    exited = time.time() - started
    if done.returncode != 0:
        raise SystemExit(f"suite run failed:\n{done.stdout[-4000:]}\n{done.stderr[-2000:]}")
    for line in done.stdout.splitlines():
        if any(wanted in line for wanted in POOL_TROUBLE):
            print(f"  {line}")
    span = float(result.read_text()) - session_start_stamp(result)[0]
    return span, exited


def settle(cluster: Cluster, name: str, *, keep_spares: bool) -> int:
    """Delete every namespace of ``name`` but the pool's members, and wait until they are
    gone (those being deleted already included). Returns how many namespaces are left."""
    deadline = time.monotonic() + 300
    selector = f"kubefixtures.io/environment={name}"
    while time.monotonic() < deadline:
        items = cluster.items(NAMESPACE, None, selector)
        others = [
            item["metadata"]
            for item in items
            if not (
                keep_spares and "kubefixtures.io/pool" in (item["metadata"].get("labels") or {})
            )
        ]
        if not others:
            return len(items)
        for metadata in others:
            if not metadata.get("deletionTimestamp"):
                cluster.delete_namespace(metadata["name"])
        time.sleep(0.2)
    raise SystemExit(f"namespaces of {name} still there after 300 s")


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f}, {five:.2f}, {fifteen:.2f} ({os.cpu_count()} CPUs)"


def session_start(
    cluster: Cluster,
    workdir: Path,
    name: str,
    repeats: int,
    context: str | None,
    *,
    relays: tuple[str, ...] = (),
) -> dict[str, list[float]]:
    """Part 1: seconds from pytest's session start to a ready, forwarded environment. With
    ``relays``, the sides are the pool with each ``--kubefixtures-relay`` instead."""
    times: dict[str, list[float]] = {
        "pool": [], "pool fixture": [], "pool cpu": [], "pool session cpu": [], "pool spawn": [],
        "no pool": [],
        "kubectl": [],
    }  # fmt: skip
    suite = workdir / "single"
    write_session_suite(suite, name)
    one = "--kubefixtures-pool=1"
    run_kubefixtures(suite, context, one)  # warm-up (caches, images), and the first spare
    settle(cluster, name, keep_spares=True)
    dry = 0  # pool runs that left no spare for the next one
    sides = tuple(f"relay {relay}" for relay in relays) or ("pool", "no pool", "kubectl")
    for repeat in range(repeats):
        shift = repeat % len(sides)  # each side goes first, second and last in turn
        for side in sides[shift:] + sides[:shift]:
            if side == "kubectl":
                seconds, namespace = run_baseline(workdir, context)
                delete_namespace(context, namespace)
                note = ""
            else:
                options: tuple[str, ...] = (one,) if side == "pool" else ()
                if side.startswith("relay "):
                    options = (one, f"--kubefixtures-relay={side.removeprefix('relay ')}")
                run = run_kubefixtures(suite, context, *options, show=POOL_TROUBLE)
                seconds = run.from_session
                left = settle(cluster, name, keep_spares=True)
                note = (
                    f" (fixture {run.ready_seconds:.3f} s; pytest's CPU {run.cpu:.3f} s, "
                    f"{run.cpu_in_session:.3f} s of it since session start; {left} spare(s) left)"
                )
                if side == "pool":
                    times["pool fixture"].append(run.ready_seconds)
                    times["pool cpu"].append(run.cpu)
                    times["pool session cpu"].append(run.cpu_in_session)
                    times["pool spawn"].append(run.from_spawn)
                    if not left:
                        dry += 1
                        note += " THE POOL RAN DRY: the next pool run finds no spare"
            times.setdefault(side, []).append(seconds)
            print(f"repeat {repeat + 1}: {side:<8} {seconds:.3f} s from session start{note}")
    settle(cluster, name, keep_spares=False)
    print(f"pool runs that left no spare for the next: {dry} of {repeats}")
    return times


def function_suites(
    cluster: Cluster, workdir: Path, name: str, args: argparse.Namespace
) -> dict[str, list[float]]:
    """Part 2: seconds from pytest's session start to the end of the last test, per side
    (and ``<side> exit``: from spawning pytest to its exit)."""
    suites = {"pool": workdir / "pool", "no pool": workdir / "plain", "none": workdir / "empty"}
    for side, directory in suites.items():
        write_function_suite(directory, name, args.tests, environment=side != "none")
    pool = f"--kubefixtures-pool={args.pool}"
    run_suite(suites["pool"], args.context, pool)  # warm-up; leaves the spares ready
    settle(cluster, name, keep_spares=True)
    times: dict[str, list[float]] = {}
    order = tuple(side for side in suites if side in args.suite_sides.split(","))
    for repeat in range(args.suite_repeats):
        shift = repeat % len(order)
        for side in order[shift:] + order[:shift]:
            options = (pool,) if side == "pool" else ()
            span, exited = run_suite(suites[side], args.context, *options)
            left = settle(cluster, name, keep_spares=True)
            times.setdefault(side, []).append(span)
            times.setdefault(f"{side} exit", []).append(exited)
            print(
                f"suite repeat {repeat + 1}: {side:<8} {span:.2f} s from session start to the "
                f"last test ({exited:.2f} s from spawn to exit; {left} spares left)"
            )
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--suite-repeats", type=int, default=2)
    parser.add_argument("--tests", type=int, default=50)
    parser.add_argument("--pool", type=int, default=6)
    parser.add_argument("--context", default=None)
    parser.add_argument("--skip-suite", action="store_true", help="part 1 only")
    parser.add_argument("--skip-part1", action="store_true", help="part 2 (the suite) only")
    parser.add_argument(
        "--floor-repeats", type=int, default=5, help="part 3's runs per side (0: skip it)"
    )
    parser.add_argument(
        "--relays",
        default="",
        help="part 1's sides: the pool with each of these --kubefixtures-relay values, "
        "comma-separated (thread,process), instead of pool, no pool and kubectl",
    )
    parser.add_argument(
        "--suite-sides",
        default="pool,no pool,none",
        help="part 2's sides, comma-separated (default: pool,no pool,none)",
    )
    args = parser.parse_args()
    tag = secrets.token_hex(3)
    single, many = f"pool_bench_{tag}", f"pool_suite_{tag}"
    cluster = Cluster.connect(context=args.context)
    print(f"start: {load()}")
    try:
        with tempfile.TemporaryDirectory(prefix="kf-bench-pool-") as scratch:
            ready = (
                {}
                if args.skip_part1
                else session_start(
                    cluster,
                    Path(scratch),
                    single,
                    args.repeats,
                    args.context,
                    relays=tuple(relay for relay in args.relays.split(",") if relay),
                )
            )
            print(f"after part 1: {load()}")
            suite = {} if args.skip_suite else function_suites(cluster, Path(scratch), many, args)
            floor = cpu_floor(Path(scratch), args.floor_repeats) if args.floor_repeats else {}
    finally:
        settle(cluster, single, keep_spares=False)
        settle(cluster, many, keep_spares=False)
        cluster.close()
    median = statistics.median
    print(f"\nend: {load()}")
    relayed = {side: median(ready[side]) for side in ready if side.startswith("relay ")}
    if relayed:
        print(
            f"medians over {args.repeats} repeats, session start to both services answering "
            "with a warm spare: "
            + ", ".join(f"{side} {seconds:.3f} s" for side, seconds in relayed.items())
        )
    elif ready:
        pool, plain, kubectl = (median(ready[side]) for side in ("pool", "no pool", "kubectl"))
        print(
            f"medians over {args.repeats} repeats, session start to a ready forwarded environment: "
            f"pool {pool:.3f} s (fixture {median(ready['pool fixture']):.3f} s, pytest's CPU by "
            f"then {median(ready['pool cpu']):.3f} s, {median(ready['pool session cpu']):.3f} s "
            f"of it since session start; {median(ready['pool spawn']):.3f} s from spawning "
            f"pytest; goal <= 0.2 s), "
            f"no pool {plain:.3f} s, kubectl baseline {kubectl:.3f} s; ratios: pool/kubectl "
            f"{pool / kubectl:.2f}x, pool/no pool {pool / plain:.2f}x, no pool/kubectl "
            f"{plain / kubectl:.2f}x"
        )
    if suite:
        empty = median(suite["none"]) if "none" in suite else 0.0
        overhead = {
            side: (median(suite[side]) - empty) / args.tests
            for side in ("pool", "no pool")
            if side in suite
        }
        print(
            f"medians over {args.suite_repeats} repeats, {args.tests} tests with a function-"
            f"scoped environment, no environment {empty:.2f} s (0 when not measured):"
        )
        for side, seconds in overhead.items():
            spares = f" ({args.pool} spares)" if side == "pool" else ""
            print(
                f"  {side}{spares}: {median(suite[side]):.2f} s to the last test, "
                f"{median(suite[side + ' exit']):.2f} s from spawn to exit; environment "
                f"overhead per test {seconds:.3f} s (goal <= 0.3 s)"
            )
        if len(overhead) == 2:
            print(f"  ratio pool / no pool: {overhead['pool'] / overhead['no pool']:.2f}x")
    if floor:
        bare_cpu, own, models = (
            median(floor[side]) for side in ("session cpu", "own modules", "pydantic and models")
        )
        print(
            f"medians over {args.floor_repeats} runs, without a cluster: a suite without an "
            f"environment, session start to its test's end {median(floor['session to end']):.3f} s "
            f"({bare_cpu:.3f} s CPU; {median(floor['spawn to end']):.3f} s from spawning pytest); "
            f"kubefixtures' imports on a first environment's path, in a test: its own modules "
            f"{own:.3f} s CPU, pydantic and the models {models:.3f} s CPU"
        )
        print(
            f"  pytest's own share after session start plus those imports: "
            f"{bare_cpu + own + models:.3f} s of CPU on one interpreter (goal 0.2 s of wall time)"
        )
        if ready.get("pool spawn"):  # part 1 measured the pool side
            added = median(ready["pool spawn"]) - median(floor["spawn to end"])
            print(
                f"  with a warm spare, kubefixtures adds {added:.3f} s to a pytest run from spawn "
                f"to answer (pool's {median(ready['pool spawn']):.3f} s against the bare suite's)"
            )


if __name__ == "__main__":
    main()
