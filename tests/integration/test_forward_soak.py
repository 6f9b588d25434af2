"""Real clients through our forward and through `kubectl port-forward`, same pods, same time.

redis-py (a connection pool under churn, short-lived connections, commands slower than
the 0.3 s socket timeout, subscribers coming and going; no retries) and psycopg
(psycopg_pool's ConnectionPool and NullConnectionPool) run against the catalog's Redis and
PostgreSQL through both forwards at once, so that load on this machine hits both alike.
Each side's clients run in a child process of their own, as kubectl's forward does: in the
pytest process, their 15 threads per side would compete for its GIL with our forwarder's
event-loop thread and measure the interpreter, not the forward (on 2 cores under load, 2 to
9 client timeouts through ours where kubectl's had none; see "Busy threads in the test
process" in docs/routes.md).
Failures are counted by kind on each side: ours must show no kind of failure that kubectl's
does not. Timeouts are the exception: with 0.3 s socket timeouts on a busy machine a few
come and go on either side by chance, so ours may have as many as three times kubectl's
plus five before they count.

"Ours" takes the session's route (``--kubefixtures-route``): on a cluster whose pod network
is reachable from here, the default goes straight to the pods (issue 18); run it with
``--kubefixtures-route=forward`` to soak the forward.

Before the fix of issue 13 (a client gone before its pod's FIN took the whole tunnel down)
the Redis soak had over a hundred "Connection closed by server" through ours, none through
kubectl's.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from kubefixtures import Environment
from kubefixtures.catalog import PostgresDetails, RedisDetails, catalog
from kubefixtures.cluster.tools import find_tool
from kubefixtures.kube import Cluster
from kubefixtures.session import session_state
from tests.integration import soak_clients
from tests.integration.soak_clients import Tally

pytestmark = pytest.mark.cluster

SOAK_SECONDS = 20.0  # per service; both forwards are soaked at the same time
TIMEOUT_SLACK = (3, 5)  # ours may time out up to 3x kubectl's count + 5 (see above)

catalog_redis = catalog("redis", scope="module")
catalog_postgres = catalog("postgres", scope="module")


@contextmanager
def kubectl_forward(
    request: pytest.FixtureRequest, cluster: Cluster, namespace: str, service: str, port: int
) -> Iterator[int]:
    """`kubectl port-forward service/NAME :PORT`; yields the local port."""
    # The one `kubefixtures cluster up` puts beside this Python first: the one on PATH
    # may be older than the cluster.
    beside = Path(sys.executable).with_name("kubectl")
    kubectl = beside if beside.exists() else find_tool("kubectl")
    assert kubectl is not None, "kubectl is needed to compare with (`kubefixtures cluster up`)"
    command = [str(kubectl)]
    kubeconfig = session_state(request.config).settings.kubeconfig
    if kubeconfig:
        command += ["--kubeconfig", str(kubeconfig)]
    if cluster.context:
        command += ["--context", cluster.context]
    command += ["-n", namespace, "port-forward", f"service/{service}", f":{port}"]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    ) as process:
        assert process.stdout is not None
        reader: threading.Thread | None = None
        try:
            line = process.stdout.readline()
            match = re.search(r"127\.0\.0\.1:(\d+)", line)
            assert match, f"kubectl port-forward did not start: {line!r}"
            # Keep reading its output ("Handling connection for ...") so that it never blocks.
            reader = threading.Thread(target=process.stdout.read, daemon=True)
            reader.start()
            yield int(match.group(1))
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            if reader is not None:
                reader.join(10)  # it reads to the end before the pipe is closed


def with_port(url: str, port: int) -> str:
    parts = urlsplit(url)
    credentials, _, _ = parts.netloc.rpartition("@")
    netloc = f"{credentials}@127.0.0.1:{port}" if credentials else f"127.0.0.1:{port}"
    return urlunsplit(parts._replace(netloc=netloc))


def soak_in_child(service: str, address: str) -> Tally:
    """soak_clients.py's soak of ``service`` at ``address``, in a child process."""
    command = [sys.executable, soak_clients.__file__, service, str(SOAK_SECONDS), "--json"]
    result = subprocess.run(
        command,
        input=address + "\n",  # on standard input: the password stays off the command line
        capture_output=True,
        text=True,
        timeout=SOAK_SECONDS + 120,
    )
    assert result.returncode == 0, f"the {service} soak failed:\n{result.stderr[-4000:]}"
    counts = json.loads(result.stdout.splitlines()[-1])
    tally = Tally(ok=counts["ok"], examples=counts["examples"])
    tally.failures.update(counts["failures"])
    return tally


def soak_both(service: str, ours: str, kubectls: str) -> None:
    """Soaks both forwards at once; fails on a kind of failure only ours has."""
    with ThreadPoolExecutor(2) as pool:
        sides = {"ours": ours, "kubectl": kubectls}
        futures = {side: pool.submit(soak_in_child, service, url) for side, url in sides.items()}
        tallies = {side: future.result() for side, future in futures.items()}
    report = "\n".join(
        f"{side}: {tally.ok} operations ok; failures: "
        + (", ".join(f"{count} x {kind}" for kind, count in tally.failures.items()) or "none")
        for side, tally in tallies.items()
    )
    print(report)
    ours, theirs = tallies["ours"].failures, tallies["kubectl"].failures
    factor, extra = TIMEOUT_SLACK

    def worse_than_kubectl(kind: str, count: int) -> bool:
        if is_timeout(kind):
            return count > factor * theirs[kind] + extra
        return kind not in theirs

    worse = [kind for kind, count in ours.items() if worse_than_kubectl(kind, count)]
    examples = [tallies["ours"].examples[kind] for kind in worse]
    assert not worse, f"failures through our forward only: {examples}\n{report}"
    for side, tally in tallies.items():
        assert tally.ok > 100, f"the {side} soak did too little to tell\n{report}"


def is_timeout(kind: str) -> bool:
    return kind.startswith(("TimeoutError", "PoolTimeout")) or "timed out" in kind.lower()


def test_redis_clients_fare_no_worse_than_through_kubectl(
    request: pytest.FixtureRequest, kubefixtures_cluster: Cluster, catalog_redis: Environment
) -> None:
    redis = RedisDetails.from_environment(catalog_redis)
    print(f"ours: route {catalog_redis.services['redis'].route} (--kubefixtures-route)")
    with kubectl_forward(request, kubefixtures_cluster, redis.namespace, "redis", 6379) as port:
        soak_both("redis", redis.url, with_port(redis.url, port))


def test_postgres_pools_fare_no_worse_than_through_kubectl(
    request: pytest.FixtureRequest, kubefixtures_cluster: Cluster, catalog_postgres: Environment
) -> None:
    postgres = PostgresDetails.from_environment(catalog_postgres)
    print(f"ours: route {catalog_postgres.services['postgres'].route} (--kubefixtures-route)")
    with kubectl_forward(
        request, kubefixtures_cluster, postgres.namespace, "postgres", 5432
    ) as port:
        soak_both("postgres", postgres.dsn, with_port(postgres.dsn, port))
