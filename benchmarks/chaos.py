"""Chaos: real pytest sessions killed at random points; what they leave, and how soon it goes.

    .venv/bin/python benchmarks/chaos.py [--sessions 20] [--parallel 4] [--seed S]
                                         [--lease 5] [--grace 3] [--modes sigterm,sigkill]

Each session is a real ``pytest`` run of a one-test suite declaring the token-web
environment (its web server turns ready 3 s after it starts), killed at a point drawn at
random: *connecting* (0.2 to 1.5 s after the start, mostly before its namespace exists),
*applying* (as soon as its namespace exists), *waiting* (0.3 to 2.5 s later: pods not ready
yet), *test* (while its test runs) or *teardown* (0 to 0.1 s after its test returned).

- ``sigterm``: SIGTERM to the pytest process alone (as a CI runner's cancel), with no
  operator anywhere: the session must delete its own namespace. Goal: every namespace being
  deleted within 10 s of the signal.
- ``sigkill``: SIGKILL to the session's whole process group (no teardown at all), with the
  operator installed from the Helm chart (image built from this checkout and loaded under a
  tag of its own, so other users of the cluster keep theirs), ``--grace`` short. Goal: no
  namespace left lease + grace + 10 s after the last kill.

Reported per mode: sessions per kill point, namespaces created, the time from the signal to
each namespace's deletion request (min / median / p90 / max) and the namespaces left. Every
namespace carries ``kubefixtures.io/ci-job=<this run>`` (the operator is narrowed to it) and
an environment label of its own session; all are deleted at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import random
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "hack" / "images"))

from imagekit.archive import retag_archive

from kubefixtures import naming
from kubefixtures.kube import Cluster
from kubefixtures.kube.client import NAMESPACE

ROOT = Path(__file__).resolve().parents[1]
TOKEN_WEB = ROOT / "tests" / "integration" / "environments" / "token-web"
CHART = ROOT / "charts" / "kubefixtures-operator"
KUBEFIXTURES = str(ROOT / ".venv" / "bin" / "kubefixtures")
POINTS = ("connecting", "applying", "waiting", "test", "teardown")
SIGTERM_DEADLINE = 10.0

TESTS = """
import os
import pathlib
import time


def test_runs({name}):
    pathlib.Path("running").write_text({name}.namespace)
    time.sleep(float(os.environ["CHAOS_TEST_SECONDS"]))
    pathlib.Path("finished").write_text("")
"""


# --- what is watched ---------------------------------------------------------------------------


@dataclass
class Seen:
    environment: str
    first_seen: float
    deletion_seen: float | None = None


class Monitor:
    """Polls the run's namespaces: when each appears, and when its deletion is requested."""

    def __init__(self, cluster: Cluster, selector: str) -> None:
        self.cluster = cluster
        self.selector = selector
        self.seen: dict[str, Seen] = {}
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True, name="chaos-monitor")
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            with contextlib.suppress(Exception):
                self.poll()

    def poll(self) -> None:
        items = self.cluster.list_objects(NAMESPACE, None, self.selector)["items"]
        now = time.monotonic()
        present = set()
        with self._lock:
            for item in items:
                metadata = item["metadata"]
                name = metadata["name"]
                present.add(name)
                environment = metadata.get("labels", {}).get(naming.ENVIRONMENT_LABEL, "")
                entry = self.seen.setdefault(name, Seen(environment, now))
                if metadata.get("deletionTimestamp") and entry.deletion_seen is None:
                    entry.deletion_seen = now
            for name, entry in self.seen.items():
                if name not in present and entry.deletion_seen is None:
                    entry.deletion_seen = now  # gone between two polls

    def of(self, environment: str) -> list[tuple[str, Seen]]:
        with self._lock:
            return [(n, s) for n, s in self.seen.items() if s.environment == environment]

    def live(self) -> list[str]:
        with self._lock:
            return sorted(n for n, s in self.seen.items() if s.deletion_seen is None)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


# --- sessions ----------------------------------------------------------------------------------


@dataclass
class Session:
    index: int
    point: str
    environment: str
    directory: Path
    signalled_at: float | None = None
    exit_code: int | None = None
    output: str = ""
    namespaces: list[str] = field(default_factory=list)


def write_suite(session: Session) -> None:
    session.directory.mkdir(parents=True)
    values = {"ready_delay": 3}
    (session.directory / "conftest.py").write_text(
        "from kubefixtures import environment\n\n"
        f"{session.environment} = environment({str(TOKEN_WEB)!r}, values={values!r})\n"
    )
    (session.directory / "test_chaos.py").write_text(TESTS.format(name=session.environment))


def wait_until(condition: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


@dataclass(frozen=True)
class Run:
    mode: str  # sigterm or sigkill
    run_id: str
    lease: int
    monitor: Monitor


def run_session(session: Session, run: Run, rng: random.Random) -> None:
    monitor, mode, lease, run_id = run.monitor, run.mode, run.lease, run.run_id
    write_suite(session)
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PYTEST_", "KUBEFIXTURES_DETAILS"))
    }
    env.update(
        CI_JOB_ID=run_id,  # the label the operator is narrowed to
        CHAOS_TEST_SECONDS="60" if session.point == "test" else "0",
    )
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-q",
            f"--kubefixtures-lease-duration={lease}",
        ],
        cwd=session.directory,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    has_namespace = lambda: bool(monitor.of(session.environment))  # noqa: E731
    ready = True
    if session.point == "connecting":
        time.sleep(rng.uniform(0.2, 1.5))
    elif session.point == "applying":
        ready = wait_until(has_namespace, 60)
    elif session.point == "waiting":
        ready = wait_until(has_namespace, 60)
        time.sleep(rng.uniform(0.3, 2.5))
    elif session.point == "test":
        ready = wait_until((session.directory / "running").exists, 90)
        time.sleep(rng.uniform(0.0, 1.0))
    else:  # teardown
        ready = wait_until((session.directory / "finished").exists, 90)
        time.sleep(rng.uniform(0.0, 0.1))
    if not ready or process.poll() is not None:
        session.output = f"(the point was not reached)\n{_drain(process)}"
    if process.poll() is None:
        session.signalled_at = time.monotonic()
        if mode == "sigkill":
            os.killpg(process.pid, signal.SIGKILL)
        else:
            process.send_signal(signal.SIGTERM)
    try:
        out, _ = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        out, _ = process.communicate()
        out = "(still running 30 s after the signal: killed)\n" + out
    session.output += out
    session.exit_code = process.returncode
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # xdist or helpers left behind, if any


def _drain(process: subprocess.Popen[str]) -> str:
    if process.poll() is None:
        return ""
    out, _ = process.communicate()
    return out


# --- the operator from the chart ---------------------------------------------------------------


def tool(name: str) -> str:
    for candidate in (
        shutil.which(name),
        shutil.which(name, path=str(ROOT / ".venv" / "bin")),
        *sorted(str(p) for p in Path.home().glob(f".cache/kubefixtures/bin/{name}-*/{name}")),
    ):
        if candidate:
            return candidate
    raise SystemExit(f"chaos: {name} is needed (not on PATH, nor in .venv/bin)")


def install_operator(
    scratch: Path, run_id: str, grace: float, selector: str
) -> tuple[str, str, str]:
    """Build the operator image from this checkout, load it as ``operator:chaos-<digest>``,
    and install the chart narrowed to ``selector``. Returns (release, namespace, image)."""
    images = scratch / "images"
    subprocess.run(
        [sys.executable, str(ROOT / "hack/images/build.py"), "--out", str(images), "operator"],
        check=True,
        capture_output=True,
    )
    archive = images / "operator.tar"
    tag = "chaos-" + hashlib.sha256(archive.read_bytes()).hexdigest()[:12]
    loaded = retag_archive(archive, f"kubefixtures.local/operator:{tag}", scratch / "operator.tar")
    image = f"kubefixtures.local/operator:{tag}"
    subprocess.run(
        [KUBEFIXTURES, "cluster", "load-image", str(loaded)], check=True, capture_output=True
    )
    release = f"kfchaos-{run_id[-6:]}"
    namespace = f"{release}-system"
    subprocess.run(
        [
            tool("helm"),
            "install",
            release,
            str(CHART),
            "-n",
            namespace,
            "--create-namespace",
            f"--set=image.tag={tag}",
            f"--set=grace={grace:g}",
            f"--set=selector={selector}",
            "--wait",
            "--timeout=120s",
        ],
        check=True,
        capture_output=True,
    )
    return release, namespace, image


def uninstall_operator(cluster: Cluster, release: str, namespace: str, image: str) -> None:
    """Uninstall the chart (waiting for its pod to go), then remove the run's image tag
    from the cluster's runtime, so that chaos runs do not pile up images in containerd."""
    subprocess.run(
        [tool("helm"), "uninstall", release, "-n", namespace, "--wait"], capture_output=True
    )
    with contextlib.suppress(Exception):
        cluster.delete_namespace(namespace)
    removed = subprocess.run(
        [KUBEFIXTURES, "cluster", "remove-image", image], capture_output=True, text=True
    )
    if removed.returncode != 0:
        print(f"chaos: could not remove {image}: {removed.stderr.strip()}", file=sys.stderr)


# --- one mode ----------------------------------------------------------------------------------


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(round(fraction * (len(ordered) - 1)), len(ordered) - 1)]


def distribution(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {
        "min": round(min(values), 2),
        "median": round(statistics.median(values), 2),
        "p90": round(percentile(values, 0.9), 2),
        "max": round(max(values), 2),
    }


def run_mode(
    mode: str, arguments: argparse.Namespace, cluster: Cluster, scratch: Path, rng: random.Random
) -> dict[str, Any]:
    run_id = f"chaos{secrets.token_hex(3)}"
    selector = f"{naming.MANAGED_BY_LABEL}={naming.MANAGED_BY_VALUE},{naming.CI_JOB_LABEL}={run_id}"
    monitor = Monitor(cluster, selector)
    operator: tuple[str, str, str] | None = None
    sessions = [
        Session(
            index=index,
            point=rng.choice(POINTS),
            environment=f"{run_id}_{index}",
            directory=scratch / mode / f"s{index}",
        )
        for index in range(arguments.sessions)
    ]
    try:
        if mode == "sigkill":
            print(f"chaos: installing the operator (grace {arguments.grace:g} s)", file=sys.stderr)
            operator = install_operator(
                scratch, run_id, arguments.grace, f"{naming.CI_JOB_LABEL}={run_id}"
            )
        print(
            f"chaos: {mode}: {len(sessions)} sessions, {arguments.parallel} at a time",
            file=sys.stderr,
        )
        seeds = [rng.random() for _ in sessions]
        run = Run(mode, run_id, arguments.lease, monitor)
        with ThreadPoolExecutor(arguments.parallel) as pool:
            list(
                pool.map(
                    lambda pair: run_session(pair[0], run, random.Random(pair[1])),
                    zip(sessions, seeds, strict=True),
                )
            )
        last_signal = max((s.signalled_at or 0.0) for s in sessions)
        settle = SIGTERM_DEADLINE if mode == "sigterm" else arguments.lease + arguments.grace + 10
        time.sleep(max(0.0, last_signal + settle - time.monotonic()))
        monitor.poll()
        left = monitor.live()
    finally:
        monitor.stop()
        if operator is not None:
            uninstall_operator(cluster, *operator)
        for name in list(monitor.seen):
            with contextlib.suppress(Exception):
                cluster.delete_namespace(name)
    delays: list[float] = []
    by_point: dict[str, dict[str, Any]] = {}
    late: list[str] = []
    for session in sessions:
        seen = monitor.of(session.environment)
        session.namespaces = [name for name, _ in seen]
        stats = by_point.setdefault(session.point, {"sessions": 0, "namespaces": 0, "exit": []})
        stats["sessions"] += 1
        stats["namespaces"] += len(seen)
        stats["exit"].append(session.exit_code)
        for name, entry in seen:
            if entry.deletion_seen is None or session.signalled_at is None:
                continue
            delay = max(entry.deletion_seen - session.signalled_at, 0.0)
            delays.append(delay)
            if mode == "sigterm" and delay > SIGTERM_DEADLINE:
                late.append(f"{name} ({session.point}): {delay:.1f} s")
    return {
        "mode": mode,
        "sessions": len(sessions),
        "by_point": by_point,
        "namespaces": len(monitor.seen),
        "signal_to_deletion_request_s": distribution(delays),
        "left_after_settling": left,
        "late": late,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=20, help="sessions per mode")
    parser.add_argument("--parallel", type=int, default=4, help="sessions at a time")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--lease", type=int, default=5, help="the sessions' lease, seconds")
    parser.add_argument("--grace", type=float, default=3.0, help="the operator's grace")
    parser.add_argument("--modes", default="sigterm,sigkill")
    arguments = parser.parse_args()
    seed = arguments.seed if arguments.seed is not None else secrets.randbelow(10**6)
    rng = random.Random(seed)
    cluster = Cluster.connect()
    results: dict[str, Any] = {"seed": seed, "lease_s": arguments.lease, "grace_s": arguments.grace}
    with tempfile.TemporaryDirectory(prefix="kf-chaos-") as scratch:
        for mode in arguments.modes.split(","):
            results[mode] = run_mode(mode.strip(), arguments, cluster, Path(scratch), rng)
    cluster.close()
    print(json.dumps(results, indent=2))
    failed = any(
        results[m.strip()]["left_after_settling"] or results[m.strip()]["late"]
        for m in arguments.modes.split(",")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
