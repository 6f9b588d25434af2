"""Operator figures: reaction time, memory with many sessions, API requests at rest.

    .venv/bin/python benchmarks/operator_gc.py [--samples 10] [--namespaces 500] [--rest 60]
                                            [--renewing 60] [--reaction-at-scale]
                                            [--delete-batch 500] [--cleanup-wait 1800]

Runs the operator as a local process (`kubefixtures operator`, the code the image runs),
narrowed with --selector to a label only this run's namespaces carry, so other sessions on
the cluster are never touched. The operator reaches the API through a counting proxy on
127.0.0.1 (plain HTTP in, the kubeconfig's TLS and credentials out): the apiserver's own
`apiserver_request_total` has no per-client label, the proxy counts exactly this process.

1. Reaction: ``--samples`` sessions whose Lease (6 s) is never renewed, created 1.5 s
   apart; a poller records when each namespace gets its deletionTimestamp and when it is
   gone. The operator judges a Lease by when it saw it renewed (its creation, here), so a
   Lease expires 6 s after it was created. Reported: deletion request after expiry +
   grace (the operator's own latency), and expiry -> gone (what a user sees), medians.
2. Rest: ``--namespaces`` managed namespaces with live Leases (a day long, so nothing is
   renewed or due). After the operator has seen them all: its RSS, the API requests it
   starts per minute (by verb and resource) over ``--rest`` seconds, and its CPU time.
3. Renewals: the same namespaces, each Lease renewed every 20 s (a 60 s lease's cadence)
   for ``--renewing`` seconds: the operator's CPU time and requests while it follows them
   (``--renewing 0`` skips it: at 5,000 sessions that is 250 renewals a second).
4. With ``--reaction-at-scale``: the reaction of 1 again, with the ``--namespaces`` live
   sessions still there (expiry to deletion with a full schedule).

``--schedule-only N`` measures none of that, and needs no cluster: the operator's own part
(its reaper and schedule, in this process) fed the watch events of N sessions and one round
of their renewals; the time per event, and the memory the schedule holds (tracemalloc, in
a second pass). For sizes a shared cluster should not be asked to create and delete.

Reaction times are given as min / median / p90 / max. Everything created is deleted at
the end, and the run waits (``--cleanup-wait``) until it is gone.
"""

from __future__ import annotations

import sys

# Run as a script, this file's directory comes first on sys.path, and this file is named
# like the standard library's `operator`, which argparse, asyncio and friends import.
if sys.path and sys.path[0] and __file__.startswith(sys.path[0].rstrip("/") + "/"):
    del sys.path[0]

import argparse
import asyncio
import collections
import json
import os
import secrets
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from kubefixtures import naming
from kubefixtures.kube import Cluster
from kubefixtures.kube.client import LEASE, NAMESPACE
from kubefixtures.kube.config import load_config
from kubefixtures.leases.policy import LEASE_NAME, format_time

ROOT = Path(__file__).resolve().parents[1]
KUBEFIXTURES = str(ROOT / ".venv" / "bin" / "kubefixtures")
LEASE_SECONDS = 6
GRACE_SECONDS = 3
HOP_HEADERS = {"host", "content-length", "transfer-encoding", "connection", "content-encoding"}


# --- the counting proxy ------------------------------------------------------------------------


def classify(method: str, path: str, query: str) -> str:
    """``VERB resource``, e.g. ``WATCH namespaces``, ``LIST leases``, ``DELETE namespaces``."""
    parts = [part for part in path.split("/") if part]
    core = parts[2:] if parts[:1] == ["api"] else parts[3:]
    if not core:  # /version, /api, /apis, /api/v1, /apis/GROUP/VERSION
        return f"{method} discovery"
    resource = "-"
    if core:
        # /namespaces/NS/leases/NAME -> leases; /namespaces/NAME -> namespaces
        resource = core[2] if core[0] == "namespaces" and len(core) >= 3 else core[0]
    verb = method
    if "watch=true" in query or "watch=1" in query:
        verb = "WATCH"
    elif method == "GET":
        named = (
            (core[0] == "namespaces" and len(core) in (2, 4))
            or (core[0] != "namespaces" and len(core) == 2)
            if core
            else False
        )
        verb = "GET" if named else "LIST"
    return f"{verb} {resource}"


class CountingProxy:
    """Plain HTTP on 127.0.0.1, forwarded to the API server with the kubeconfig's identity."""

    def __init__(self) -> None:
        config = load_config(None, None)
        self.upstream = config.server.rstrip("/")
        self.ssl: ssl.SSLContext | bool = config.ssl_context() if config.secure else False
        self.config = config
        self.counts: collections.Counter[str] = collections.Counter()
        self.lock = threading.Lock()
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        threading.Thread(target=self._serve, daemon=True, name="counting-proxy").start()
        self._ready.wait(10)

    def snapshot(self, reset: bool = False) -> dict[str, int]:
        with self.lock:
            counts = dict(self.counts)
            if reset:
                self.counts.clear()
        return counts

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._start())
        self._ready.set()
        self._loop.run_forever()

    async def _start(self) -> None:
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=self.ssl, limit=0),
            timeout=aiohttp.ClientTimeout(total=None, sock_read=None),
        )
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.forward)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def forward(self, request: web.Request) -> web.StreamResponse:
        with self.lock:
            self.counts[classify(request.method, request.path, request.query_string)] += 1
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
        auth = self.config.authorization()
        if auth:
            headers["Authorization"] = auth
        body = await request.read()
        async with self.session.request(
            request.method, self.upstream + str(request.rel_url), headers=headers, data=body or None
        ) as upstream:
            response = web.StreamResponse(
                status=upstream.status,
                headers={k: v for k, v in upstream.headers.items() if k.lower() not in HOP_HEADERS},
            )
            await response.prepare(request)
            try:
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
                await response.write_eof()
            except (ConnectionResetError, aiohttp.ClientConnectionResetError):
                pass  # the client hung up (a watch it stopped): nothing left to forward
            return response

    def kubeconfig(self, directory: Path) -> Path:
        path = directory / "kubeconfig"
        path.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [
                        {"name": "proxy", "cluster": {"server": f"http://127.0.0.1:{self.port}"}}
                    ],
                    "users": [{"name": "proxy", "user": {}}],
                    "contexts": [
                        {"name": "proxy", "context": {"cluster": "proxy", "user": "proxy"}}
                    ],
                    "current-context": "proxy",
                }
            )
        )
        return path


# --- sessions ----------------------------------------------------------------------------------


def create_session(
    cluster: Cluster, environment: str, duration: int, renewed: datetime, session: str = ""
) -> str:
    """A managed namespace and its Lease, last renewed at ``renewed``, never renewed again."""
    labels = naming.namespace_labels(session or naming.new_session_id(), environment)
    name = naming.namespace_name("kf", environment)
    cluster.create_namespace(name, labels)
    cluster.request(
        "POST",
        LEASE.collection_path(name),
        body={
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": LEASE_NAME, "labels": labels},
            "spec": {
                "holderIdentity": f"bench@{environment}/0",
                "leaseDurationSeconds": duration,
                "renewTime": format_time(renewed, micro=True),
            },
        },
    )
    return name


def renew(cluster: Cluster, name: str) -> None:
    cluster.request(
        "PATCH",
        LEASE.object_path(name, LEASE_NAME),
        body={"spec": {"renewTime": format_time(datetime.now(UTC), micro=True)}},
        content_type="application/merge-patch+json",
    )


def delete_all(cluster: Cluster, environment: str, wait: float, batch: int) -> dict[str, Any]:
    """Delete every namespace of this run, ``batch`` at a time, each batch gone before the
    next is requested (so that other sessions' namespaces on a shared cluster wait behind
    at most one batch in the namespace controller's queue); give up after ``wait`` s."""
    selector = f"{naming.ENVIRONMENT_LABEL}={environment}"
    started = time.monotonic()
    names = [item["metadata"]["name"] for item in cluster.items(NAMESPACE, None, selector)]
    left: set[str] = set()
    with ThreadPoolExecutor(8) as pool:
        for start in range(0, len(names), batch):
            left = set(names[start : start + batch])
            list(pool.map(cluster.delete_namespace, left))
            # GETs of the batch's namespaces, not a LIST of thousands every few seconds.
            while left and time.monotonic() - started < wait:
                time.sleep(5)
                waiting = sorted(left)
                present = pool.map(lambda name: cluster.namespace(name) is not None, waiting)
                left = {name for name, there in zip(waiting, present, strict=True) if there}
            if left:
                break
    elapsed = time.monotonic() - started
    return {
        "deleted": len(names),
        "batch": batch,
        "all_gone_s": round(elapsed, 1) if not left else None,
        "per_second": round(len(names) / elapsed, 1) if not left else None,
        "left_after_wait": len(left),
    }


# --- the operator process ------------------------------------------------------------------------


class OperatorProcess:
    def __init__(self, kubeconfig: Path, selector: str, log: Path) -> None:
        self.log = log.open("w")
        self.process = subprocess.Popen(
            [KUBEFIXTURES, "operator", f"--grace={GRACE_SECONDS}", f"--selector={selector}"],
            env={**os.environ, "KUBECONFIG": str(kubeconfig)},
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmRSS")

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


# --- phases --------------------------------------------------------------------------------------


def reaction(cluster: Cluster, environment: str, samples: int) -> dict[str, Any]:
    prefix = f"reaction-{secrets.token_hex(2)}"  # these sessions only, not those at rest
    selector = f"{naming.ENVIRONMENT_LABEL}={environment},{naming.SESSION_LABEL}={prefix}"
    requested: dict[str, float] = {}
    gone: dict[str, float] = {}
    created: dict[str, float] = {}
    stop = threading.Event()

    seen: set[str] = set()

    def follow() -> None:  # a 0.1 s poll: what a user would see, within 0.1 s
        while not stop.wait(0.1):
            items = cluster.list_objects(NAMESPACE, None, selector)["items"]
            now = time.time()
            present = set()
            for item in items:
                name = item["metadata"]["name"]
                present.add(name)
                if item["metadata"].get("deletionTimestamp") and name not in requested:
                    requested[name] = now
            seen.update(present)
            # Only a namespace once listed can be gone: a list served just after a creation
            # may not hold it yet (at 3,500 namespaces one sample read -9 s that way).
            for name in list(created):
                if name in seen and name not in present and name not in gone:
                    gone[name] = now
                    requested.setdefault(name, now)

    watcher = threading.Thread(target=follow, daemon=True)
    watcher.start()
    for _ in range(samples):
        name = create_session(cluster, environment, LEASE_SECONDS, datetime.now(UTC), prefix)
        created[name] = time.time()
        time.sleep(1.5)
    deadline = time.time() + LEASE_SECONDS + GRACE_SECONDS + 180
    while len(gone) < samples and time.time() < deadline:
        time.sleep(0.5)
    stop.set()
    watcher.join(5)
    expiries = {name: at + LEASE_SECONDS for name, at in created.items()}
    after_grace = [requested[n] - (expiries[n] + GRACE_SECONDS) for n in expiries if n in requested]
    to_gone = [gone[n] - expiries[n] for n in expiries if n in gone]
    return {
        "samples": len(after_grace),
        "deletion_request_after_expiry_plus_grace_s": distribution(after_grace),
        "expiry_to_deletion_request_s": distribution([s + GRACE_SECONDS for s in after_grace]),
        "expiry_to_gone_s": distribution(to_gone),
    }


def distribution(values: list[float]) -> dict[str, float]:
    """min / median / p90 / max, in the unit given."""
    if not values:
        return {}
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
    return {
        "min": round(ordered[0], 3),
        "median": round(statistics.median(ordered), 3),
        "p90": round(p90, 3),
        "max": round(ordered[-1], 3),
    }


def settle(operator: OperatorProcess, quiet: float = 10.0, most: float = 600.0) -> None:
    """Wait until the operator has used no CPU for ``quiet`` seconds (it has taken in every
    event of what was just created), at least 15 s, at most ``most``."""
    started = time.monotonic()
    time.sleep(5)
    last, still_since = operator.cpu_seconds(), time.monotonic()
    while time.monotonic() - started < most:
        time.sleep(1)
        now = operator.cpu_seconds()
        if now - last > 0.05:
            last, still_since = now, time.monotonic()
        elif time.monotonic() - still_since >= quiet and time.monotonic() - started >= 15:
            return


def per_minute(counts: dict[str, int], seconds: float) -> dict[str, float]:
    return {key: round(value * 60 / seconds, 2) for key, value in sorted(counts.items())}


def at_rest(
    cluster: Cluster,
    environment: str,
    operator: OperatorProcess,
    proxy: CountingProxy,
    *,
    count: int,
    seconds: float,
) -> tuple[list[str], dict[str, Any]]:
    created = time.monotonic()
    now = datetime.now(UTC)
    with ThreadPoolExecutor(8) as pool:
        names = list(
            pool.map(lambda _: create_session(cluster, environment, 86400, now), range(count))
        )
    create_seconds = time.monotonic() - created
    print(
        f"   created {count} in {create_seconds:.1f} s ({count / create_seconds:.1f}/s)",
        file=sys.stderr,
    )
    settle(operator)  # every ADDED event delivered and planned
    proxy.snapshot(reset=True)
    cpu = operator.cpu_seconds()
    time.sleep(seconds)
    counts = proxy.snapshot(reset=True)
    return names, {
        "namespaces": len(names),
        "create_seconds": round(create_seconds, 1),
        "created_per_second": round(count / create_seconds, 1),
        "rss_mib": round(operator.rss_mib(), 1),
        "cpu_seconds_per_minute": round((operator.cpu_seconds() - cpu) * 60 / seconds, 3),
        "requests_per_minute": per_minute(counts, seconds),
        "requests_per_minute_total": round(sum(counts.values()) * 60 / seconds, 2),
    }


def renewing(
    cluster: Cluster,
    names: list[str],
    operator: OperatorProcess,
    proxy: CountingProxy,
    seconds: float,
) -> dict[str, Any]:
    cpu = operator.cpu_seconds()
    started = time.monotonic()
    renewals = 0
    with ThreadPoolExecutor(8) as pool:
        while time.monotonic() - started < seconds:
            round_started = time.monotonic()
            list(pool.map(lambda name: renew(cluster, name), names))
            renewals += len(names)
            time.sleep(max(0.0, 20 - (time.monotonic() - round_started)))
    elapsed = time.monotonic() - started
    counts = proxy.snapshot(reset=True)
    return {
        "lease_events_per_second": round(renewals / elapsed, 1),
        "rss_mib": round(operator.rss_mib(), 1),
        "cpu_seconds_per_minute": round((operator.cpu_seconds() - cpu) * 60 / elapsed, 3),
        "requests_per_minute": per_minute(counts, elapsed),
    }


def schedule_only(count: int) -> dict[str, Any]:
    import tracemalloc

    from kubefixtures.clock import SYSTEM_CLOCK
    from kubefixtures.operator.config import OperatorConfig
    from kubefixtures.operator.reaper import Reaper

    def feed(traced: bool) -> dict[str, float]:
        if traced:
            tracemalloc.start()
        reaper = Reaper(None, OperatorConfig(), clock=SYSTEM_CLOCK)  # type: ignore[arg-type]
        now = format_time(datetime.now(UTC), micro=True)
        names = [f"kf-shop-{index:06d}" for index in range(count)]
        started = time.perf_counter()
        for index, name in enumerate(names):
            labels = naming.namespace_labels(f"s{index}", "shop")
            reaper.namespace_event(
                None,
                {
                    "metadata": {
                        "name": name,
                        "uid": f"u{index}",
                        "resourceVersion": "1",
                        "labels": labels,
                        "creationTimestamp": now,
                    }
                },
            )
            spec = {"holderIdentity": f"s{index}@h/1", "leaseDurationSeconds": 60}
            body = {"metadata": {"name": LEASE_NAME, "namespace": name, "labels": labels}}
            reaper.lease_event(None, {**body, "spec": {**spec, "renewTime": now}})
        first = time.perf_counter() - started
        started = time.perf_counter()
        for name in names:
            renewed = format_time(datetime.now(UTC), micro=True)
            body = {"metadata": {"name": LEASE_NAME, "namespace": name}}
            reaper.lease_event("MODIFIED", {**body, "spec": {**spec, "renewTime": renewed}})
        renewals = time.perf_counter() - started
        memory = tracemalloc.get_traced_memory()[0] / 2**20 if traced else 0.0
        if traced:
            tracemalloc.stop()
        return {"first": first, "renewals": renewals, "memory": memory}

    timed, traced = feed(traced=False), feed(traced=True)
    return {
        "sessions": count,
        "first_events_s": round(timed["first"], 3),
        "renewal_event_us": round(timed["renewals"] / count * 1e6, 1),
        "schedule_mib": round(traced["memory"], 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument("--namespaces", type=int, default=500)
    parser.add_argument("--rest", type=float, default=60.0, help="seconds measured at rest")
    parser.add_argument(
        "--renewing", type=float, default=60.0, help="seconds of renewals (0: skip phase 3)"
    )
    parser.add_argument(
        "--delete-batch",
        type=int,
        default=500,
        help="namespaces deleted at a time at the end (each batch gone before the next)",
    )
    parser.add_argument(
        "--cleanup-wait",
        type=float,
        default=1800.0,
        help="seconds to wait at the end for every namespace of the run to be gone",
    )
    parser.add_argument(
        "--reaction-at-scale",
        action="store_true",
        help="measure the reaction again with the --namespaces live sessions in place",
    )
    parser.add_argument(
        "--schedule-only",
        type=int,
        metavar="N",
        help="no cluster: the operator's schedule fed N sessions' events, in this process",
    )
    arguments = parser.parse_args()
    if arguments.schedule_only:
        print(json.dumps(schedule_only(arguments.schedule_only), indent=2))
        return 0

    cluster = Cluster.connect()
    environment = f"kfbench_{secrets.token_hex(3)}"
    selector = f"{naming.ENVIRONMENT_LABEL}={environment}"
    proxy = CountingProxy()
    results: dict[str, Any] = {"environment": environment}
    with tempfile.TemporaryDirectory(prefix="kf-operator-bench-") as scratch:
        operator = OperatorProcess(proxy.kubeconfig(Path(scratch)), selector, Path(scratch) / "log")
        try:
            time.sleep(5)  # started, lists done, watches open
            results["rss_mib_idle_no_sessions"] = round(operator.rss_mib(), 1)
            results["startup_requests"] = proxy.snapshot(reset=True)

            print(
                f"1. reaction: {arguments.samples} sessions, lease {LEASE_SECONDS} s, "
                f"grace {GRACE_SECONDS} s",
                file=sys.stderr,
            )
            results["reaction"] = reaction(cluster, environment, arguments.samples)
            results["reaction_requests"] = proxy.snapshot(reset=True)

            print(f"2. rest: {arguments.namespaces} live sessions", file=sys.stderr)
            names, results["rest"] = at_rest(
                cluster,
                environment,
                operator,
                proxy,
                count=arguments.namespaces,
                seconds=arguments.rest,
            )
            if arguments.renewing > 0:
                print(f"3. renewals: {len(names)} leases renewed every 20 s", file=sys.stderr)
                results["renewals"] = renewing(cluster, names, operator, proxy, arguments.renewing)
            if arguments.reaction_at_scale:
                print(f"4. reaction with {len(names)} live sessions", file=sys.stderr)
                results["reaction_at_scale"] = reaction(cluster, environment, arguments.samples)
            survivors = {
                item["metadata"]["name"]
                for item in cluster.list_objects(NAMESPACE, None, selector)["items"]
                if not item["metadata"].get("deletionTimestamp")
            }
            results["live_sessions_deleted"] = len(set(names) - survivors)
        finally:
            operator.stop()
            print("cleaning up: deleting every namespace of this run", file=sys.stderr)
            results["cleanup"] = delete_all(
                cluster, environment, arguments.cleanup_wait, arguments.delete_batch
            )
            results["operator_log_tail"] = (Path(scratch) / "log").read_text().splitlines()[-3:]
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
