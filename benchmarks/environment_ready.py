"""Time from session start to a ready environment: kubefixtures against a kubectl baseline.

    .venv/bin/python benchmarks/environment_ready.py [--repeats 5] [--context NAME]

The environment is tests/integration/environments/shop (redis + an HTTP server, six
objects). Every side runs on the same cluster in the same run, taking turns at going first:

- kubefixtures: spawn ``pytest`` on a one-test suite whose conftest declares the
  environment; the test sends redis AUTH+PING and GET /health through the forwarded ports
  (plain sockets) and records the time. Reported from pytest's session start (the
  conftest's pytest_sessionstart) and from spawning the process (which adds the
  interpreter's and pytest's own start-up).
- baseline, the usual shell steps: ``kubectl create namespace``, ``kubectl apply -f``
  (manifests rendered beforehand, untimed: the shell gets templating for free), ``kubectl
  wait --for=condition=Available deployment --all``, one ``kubectl port-forward`` per
  Service, then the same checks, retried every 10 ms until both answer.
- floor, the cluster's own part: from creating the namespace to every pod Ready, for a
  process already connected that applies everything at once and watches. No tool can do
  better on this cluster; what each side spends beyond it is that side's own overhead.

Prints each measurement, the medians and the ratio (target: kubefixtures <= 0.6x baseline).
Every namespace is deleted, and waited for, before the next measurement.
"""

from __future__ import annotations

import argparse
import inspect
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from kubectl_forward import find_kubectl, start_kubectl_forward

from kubefixtures.kube import Cluster
from kubefixtures.kube.client import POD

ROOT = Path(__file__).resolve().parent.parent
SHOP = ROOT / "tests" / "integration" / "environments" / "shop"
KUBECTL = find_kubectl()
OVERRIDES = "redis=kubefixtures.local/redis:7.0"
ANSWER_DEADLINE = 120.0

CONFTEST = f"""
import os
import time

from kubefixtures import environment

shop = environment({str(SHOP)!r}, values={{"greeting": "benchmark"}})


def pytest_sessionstart(session):
    with open(os.environ["BENCH_RESULT"] + ".start", "w") as out:
        out.write(f"{{time.time()}} {{time.process_time()}}")
"""


# The services are checked over plain sockets, on both sides: a client library imported by
# the test module would be charged to kubefixtures only (the baseline's is loaded untimed).
def redis_answers(port: int, password: str) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=2) as connection:
        connection.sendall(f"AUTH {password}\r\nPING\r\n".encode())
        reply = b""
        while b"PONG" not in reply:
            chunk = connection.recv(256)
            if not chunk:
                return False
            reply += chunk
        return reply.startswith(b"+OK")


def http_answers(port: int, path: str) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=2) as connection:
        request = f"GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"
        connection.sendall(request.encode())
        return connection.recv(64).startswith(b"HTTP/1.1 200")


TEST = (
    "import os\nimport resource\nimport socket\nimport time\n\n"
    + inspect.getsource(redis_answers)
    + inspect.getsource(http_answers)
    + """

def test_answers(shop):
    assert redis_answers(shop.services["redis"].port, shop.secrets["redis"])
    assert http_answers(shop.services["web"].port, "/health")
    usage = resource.getrusage(resource.RUSAGE_SELF)
    with open(os.environ["BENCH_RESULT"], "w") as out:
        out.write(f"{time.time()} {shop.details.ready_seconds} {shop.namespace} "
                  f"{usage.ru_utime + usage.ru_stime} {time.process_time()}")
"""
)


def kubectl(*args: str, context: str | None) -> list[str]:
    return [str(KUBECTL), *(["--context", context] if context else []), *args]


def pytest_run(suite: Path, context: str | None, *options: str) -> tuple[list[str], dict[str, str]]:
    """The command and environment that run ``suite`` with pytest (its tests write their
    times to ``result.txt`` beside them, the conftest its session start)."""
    command = [
        sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(suite),
        f"--kubefixtures-image-overrides={OVERRIDES}",
        *([f"--kubefixtures-context={context}"] if context else []), *options,
    ]  # fmt: skip
    # As users run it: with Python's bytecode cache (some sandboxes and CI images set
    # PYTHONDONTWRITEBYTECODE, which makes every run compile pytest plugins from source).
    env = {**os.environ, "BENCH_RESULT": str(suite / "result.txt")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return command, env


@dataclass(frozen=True)
class Run:
    """One pytest run of a suite, until both services answered."""

    from_spawn: float  # seconds from spawning pytest
    from_session: float  # seconds from pytest's session start (the conftest's hook)
    ready_seconds: float  # the fixture's own setup-to-ready seconds
    namespace: str
    cpu: float  # CPU seconds (user + system) the pytest process had spent, since spawned
    cpu_in_session: float  # of which since the session started (all threads)


def run_kubefixtures(
    suite: Path, context: str | None, *options: str, show: tuple[str, ...] = ()
) -> Run:
    """Run ``suite`` with pytest until both services answer (``options``: more pytest
    options, such as benchmarks/pool.py's; the output's lines that contain one of ``show``
    are printed)."""
    result = suite / "result.txt"
    result.unlink(missing_ok=True)
    command, env = pytest_run(suite, context, *options)
    started = time.time()
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"kubefixtures run failed:\n{done.stdout}\n{done.stderr}")
    for line in done.stdout.splitlines():
        if any(wanted in line for wanted in show):
            print(f"  {line}")
    answered, ready_seconds, namespace, cpu, cpu_now = result.read_text().split()
    session_started, cpu_at_start = session_start_stamp(result)
    return Run(
        from_spawn=float(answered) - started,
        from_session=float(answered) - session_started,
        ready_seconds=float(ready_seconds),
        namespace=namespace,
        cpu=float(cpu),
        cpu_in_session=float(cpu_now) - cpu_at_start,
    )


def session_start_stamp(result: Path) -> tuple[float, float]:
    """When pytest's session started (epoch seconds) and the process's CPU seconds then, as
    the conftest wrote them beside ``result``."""
    wall, cpu = Path(f"{result}.start").read_text().split()
    return float(wall), float(cpu)


def rendered_manifests(namespace: str, password: str) -> str:
    """The shop manifests as the shell baseline applies them (placeholders filled)."""
    text = "\n---\n".join(path.read_text() for path in sorted(SHOP.glob("*.yaml")))
    text = text.replace("${secret:redis}", password).replace("${greeting}", "benchmark")
    text = text.replace("${namespace}", namespace).replace("$${", "${")
    documents = [doc for doc in yaml.safe_load_all(text) if doc]
    for doc in documents:
        for container in (
            doc.get("spec", {}).get("template", {}).get("spec", {}).get("containers", [])
        ):
            if container["image"].startswith("redis"):
                container["image"] = "kubefixtures.local/redis:7.0"
                container["imagePullPolicy"] = "IfNotPresent"
    return yaml.safe_dump_all(documents)


def run_baseline(workdir: Path, context: str | None) -> tuple[float, str]:
    namespace = f"kf-bench-shell-{secrets.token_hex(3)}"
    password = secrets.token_hex(12)
    manifests = workdir / f"{namespace}.yaml"
    manifests.write_text(rendered_manifests(namespace, password))
    started = time.time()
    for args in (
        ("create", "namespace", namespace),
        ("apply", "-n", namespace, "-f", str(manifests)),
        (
            "wait",
            "-n",
            namespace,
            "--for=condition=Available",
            "deployment",
            "--all",
            "--timeout=120s",
        ),
    ):
        subprocess.run(kubectl(*args, context=context), check=True, capture_output=True)
    redis_forward = start_kubectl_forward(namespace, "svc/redis", [6379], context)
    web_forward = start_kubectl_forward(namespace, "svc/web", [80], context)
    redis_port, web_port = redis_forward.port, web_forward.port
    try:
        while True:
            try:
                if redis_answers(redis_port, password) and http_answers(web_port, "/health"):
                    break
            except OSError:
                pass
            if time.time() - started > ANSWER_DEADLINE:
                raise SystemExit("baseline: the services never answered")
            time.sleep(0.01)
        elapsed = time.time() - started
    finally:
        for forward in (redis_forward, web_forward):
            forward.close()
    return elapsed, namespace


def run_floor(cluster: Cluster, context: str | None) -> tuple[float, str]:
    """The cluster's own part: from creating the namespace to every pod Ready, for a process
    that is already connected, applies every object at once and watches. No tool can be
    faster than this on the same cluster; it includes no port-forwarding."""
    namespace = f"kf-bench-floor-{secrets.token_hex(3)}"
    documents = [d for d in yaml.safe_load_all(rendered_manifests(namespace, "floor")) if d]
    resources = cluster.resolve([(d["apiVersion"], d["kind"], "floor") for d in documents])
    pods = sum(int(d["spec"].get("replicas", 1)) for d in documents if d["kind"] == "Deployment")
    started = time.time()
    cluster.create_namespace(namespace, {"kubefixtures.io/test": "benchmark-floor"})
    items = [(resource, doc, "floor") for resource, doc in zip(resources, documents, strict=True)]
    cluster.apply_all(items, namespace, time.monotonic() + ANSWER_DEADLINE)
    listing = cluster.list_objects(POD, namespace)
    ready = {pod["metadata"]["name"] for pod in listing["items"] if _ready(pod)}
    version = listing["metadata"]["resourceVersion"]
    while len(ready) < pods:
        stream = cluster.watch(POD, namespace, version, int(ANSWER_DEADLINE))
        for event in stream:
            pod = event["object"]
            version = pod["metadata"]["resourceVersion"]
            if _ready(pod):
                ready.add(pod["metadata"]["name"])
            if len(ready) >= pods:
                stream.close()
                break
        if time.time() - started > ANSWER_DEADLINE:
            raise SystemExit("floor: the pods never became ready")
    return time.time() - started, namespace


def _ready(pod: dict[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def delete_namespace(context: str | None, name: str) -> None:
    """Delete ``name`` and return once it and its pods are gone: the next measurement starts
    on a quiet node, whichever side it is (a kubelet still tearing pods down slows every pod
    being started, and the side that creates its pods sooner after a deletion pays more)."""
    subprocess.run(
        kubectl("delete", "namespace", "--ignore-not-found", "--timeout=120s", name,
                context=context),
        check=False,
        capture_output=True,
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--context", default=None)
    args = parser.parse_args()
    spawn: list[float] = []
    session: list[float] = []
    fixture: list[float] = []
    baseline: list[float] = []
    floor: list[float] = []
    cluster = Cluster.connect(context=args.context)
    with tempfile.TemporaryDirectory(prefix="kf-bench-ready-") as scratch:
        workdir = Path(scratch)
        suite = workdir / "suite"
        suite.mkdir()
        (suite / "conftest.py").write_text(CONFTEST)
        (suite / "test_shop.py").write_text(TEST)
        # Warm-up: page cache, images, API caches.
        delete_namespace(args.context, run_kubefixtures(suite, args.context).namespace)
        sides = ("kubefixtures", "baseline", "floor")
        for repeat in range(args.repeats):
            shift = repeat % len(sides)  # each side goes first, second and last in turn
            for side in sides[shift:] + sides[:shift]:
                if side == "kubefixtures":
                    run = run_kubefixtures(suite, args.context)
                    from_spawn, from_session, ready = (
                        run.from_spawn,
                        run.from_session,
                        run.ready_seconds,
                    )
                    delete_namespace(args.context, run.namespace)
                    spawn.append(from_spawn)
                    session.append(from_session)
                    fixture.append(ready)
                    print(
                        f"repeat {repeat + 1}: kubefixtures {from_session:.2f} s from session "
                        f"start ({from_spawn:.2f} s from spawning pytest; fixture {ready:.2f} s)"
                    )
                elif side == "baseline":
                    seconds, namespace = run_baseline(workdir, args.context)
                    baseline.append(seconds)
                    delete_namespace(args.context, namespace)
                    print(f"repeat {repeat + 1}: baseline     {seconds:.2f} s")
                else:
                    seconds, namespace = run_floor(cluster, args.context)
                    floor.append(seconds)
                    delete_namespace(args.context, namespace)
                    print(f"repeat {repeat + 1}: floor        {seconds:.2f} s (pods Ready)")
    cluster.close()
    median = statistics.median
    print(
        f"\nmedians over {args.repeats} repeats: baseline {median(baseline):.2f} s; "
        f"kubefixtures {median(session):.2f} s from session start "
        f"(ratio {median(session) / median(baseline):.2f}x, target <= 0.6x), "
        f"{median(spawn):.2f} s from spawning pytest "
        f"(ratio {median(spawn) / median(baseline):.2f}x), fixture setup {median(fixture):.2f} s"
    )
    print(
        f"the cluster's own part (floor) {median(floor):.2f} s: beyond it, kubefixtures adds "
        f"{median(session) - median(floor):.2f} s and the baseline "
        f"{median(baseline) - median(floor):.2f} s; the floor alone is "
        f"{median(floor) / median(baseline):.2f}x the baseline"
    )


if __name__ == "__main__":
    main()
