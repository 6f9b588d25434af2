"""Time to ready of the catalog environment (redis + postgres + s3 + http-stub) with
kubefixtures, against the shell baseline, in the same run; and the images' sizes.

    .venv/bin/python benchmarks/catalog_ready.py [--repeats 5] [--images DIR]

kubefixtures: ``FreshProvisioning.setup()`` of one environment made of the four catalog manifests
(what ``catalog("redis", "postgres", "s3", "http_stub")`` runs): namespace, server-side
apply, watch-based readiness, a port-forward per Service port; then one real request per
service (redis PING, a PostgreSQL query, S3 ListBuckets, Mountebank GET /imposters) counts
as ready.

Shell baseline, the same objects already rendered to YAML (rendering is not timed):
``kubectl create namespace``, ``kubectl apply -f``, ``kubectl wait --for=condition=Available
deployment --all``, one ``kubectl port-forward`` per Service (all its ports) started in
parallel, until each prints its "Forwarding from" lines, then the same four requests.

Runs alternate (kubefixtures first on even repeats); namespaces are deleted after each run,
outside the timing. Prints each run and the medians, then image tarball sizes.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import boto3
import httpx
import psycopg
import redis
import yaml
from kubectl_forward import KubectlForward, find_kubectl

from kubefixtures.catalog import SERVICES, manifests
from kubefixtures.catalog._sources import merged_values
from kubefixtures.catalog.connections import (
    HttpStubDetails,
    PostgresDetails,
    RedisDetails,
    S3Details,
)
from kubefixtures.details import Environment
from kubefixtures.provisioning.base import EnvironmentSpec
from kubefixtures.provisioning.fresh import FreshProvisioning
from kubefixtures.rendering import RenderContext, render_sources
from kubefixtures.session import SessionState
from kubefixtures.settings import Settings

REPO = Path(__file__).resolve().parents[1]
KUBECTL = find_kubectl()
LOCAL_IMAGES = {
    "redis:7": "kubefixtures.local/redis:7.0",
    "postgres:15": "kubefixtures.local/postgres:15",
    "motoserver/moto:5": "kubefixtures.local/moto:5",
    "bbyars/mountebank:2": "kubefixtures.local/mountebank:2",
}
SOURCES = tuple(manifests(service) for service in SERVICES)


def use_every_service(
    redis_url: str, dsn: str, s3: dict[str, str], mountebank: str, deadline: float
) -> None:
    """One real request per service, retried until it works (or the deadline passes)."""
    checks: list[Callable[[], object]] = [
        lambda: redis.Redis.from_url(redis_url, socket_timeout=2).ping(),
        lambda: psycopg.connect(dsn, connect_timeout=2).close(),
        lambda: boto3.client("s3", **s3).list_buckets(),
        lambda: httpx.get(f"{mountebank}/imposters", timeout=2).raise_for_status(),
    ]
    for check in checks:
        while True:
            try:
                check()
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)


# --- kubefixtures ---------------------------------------------------------------------


def run_kubefixtures(state: SessionState) -> float:
    spec = EnvironmentSpec(name="bench-catalog", sources=SOURCES, values=merged_values(None))
    lifecycle = FreshProvisioning(spec, state.view())
    started = time.monotonic()
    try:
        environment: Environment = lifecycle.setup()
        s3 = S3Details.from_environment(environment)
        use_every_service(
            RedisDetails.from_environment(environment).url,
            PostgresDetails.from_environment(environment).dsn,
            s3.client_kwargs(),
            HttpStubDetails.from_environment(environment).admin_url,
            started + 180,
        )
        return time.monotonic() - started
    finally:
        lifecycle.teardown()


# --- shell baseline -------------------------------------------------------------------


def render_for_shell(state: SessionState, directory: Path) -> tuple[Path, dict[str, str]]:
    """The catalog rendered to one YAML file (with local images), plus its secrets."""
    context = RenderContext(
        namespace="unused",
        session_id=state.session_id,
        environment="shell",
        values=merged_values(None),
        secrets=state.secrets,
        image_overrides=LOCAL_IMAGES,
    )
    objects = render_sources(list(SOURCES), context)
    path = directory / "catalog.yaml"
    path.write_text(yaml.safe_dump_all([obj.manifest for obj in objects]))
    return path, {name: state.secrets.get(name) for name in context.used_secrets}


def kubectl(*args: str) -> None:
    subprocess.run([KUBECTL, *args], check=True, capture_output=True, timeout=300)


def run_shell(manifest: Path, generated: dict[str, str]) -> float:
    namespace = f"kf-bench-shell-{secrets.token_hex(3)}"
    forwards: list[KubectlForward] = []
    started = time.monotonic()
    try:
        kubectl("create", "namespace", namespace)
        kubectl("apply", "-n", namespace, "-f", str(manifest))
        kubectl("wait", "-n", namespace, "--for=condition=Available", "deployment", "--all",
                "--timeout=180s")  # fmt: skip
        wanted = {
            "redis": [6379],
            "postgres": [5432],
            "s3": [5000],
            "http-stub": [2525, 4545, 4546, 4547, 4548, 4549],
        }
        started_forwards = {  # all started at once, as a shell script would with `&`
            service: KubectlForward(namespace, f"svc/{service}", ports)
            for service, ports in wanted.items()
        }
        forwards = list(started_forwards.values())
        local = {service: forward.wait() for service, forward in started_forwards.items()}
        password = generated["catalog-redis-password"]
        use_every_service(
            f"redis://:{password}@127.0.0.1:{local['redis'][6379]}/0",
            f"postgresql://kubefixtures:{generated['catalog-postgres-password']}"
            f"@127.0.0.1:{local['postgres'][5432]}/kubefixtures",
            {
                "endpoint_url": f"http://127.0.0.1:{local['s3'][5000]}",
                "region_name": "us-east-1",
                "aws_access_key_id": "kubefixtures",
                "aws_secret_access_key": generated["catalog-s3-secret-key"],
            },
            f"http://127.0.0.1:{local['http-stub'][2525]}",
            started + 180,
        )
        return time.monotonic() - started
    finally:
        for forward in forwards:
            forward.close()
        subprocess.run([KUBECTL, "delete", "namespace", namespace, "--wait=false"],
                       capture_output=True, check=False)  # fmt: skip


# --- images -------------------------------------------------------------------------


def image_sizes(directory: Path) -> None:
    print("\nimage tarballs (uncompressed docker-archive, what is loaded into containerd):")
    for name in ("redis", "postgres", "moto", "mountebank", "shop"):
        tarball = directory / f"{name}.tar"
        if tarball.is_file():
            print(f"  {name:<11} {tarball.stat().st_size / 2**20:8.1f} MiB  {tarball}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--images",
        type=Path,
        default=Path(os.environ.get("KUBEFIXTURES_IMAGES_DIR") or "~/.cache/kubefixtures/images"),
    )
    args = parser.parse_args()
    state = SessionState(Settings(image_overrides=LOCAL_IMAGES))
    ours: list[float] = []
    shell: list[float] = []
    with tempfile.TemporaryDirectory() as scratch:
        manifest, generated = render_for_shell(state, Path(scratch))
        # One unmeasured run of each warms the node (images into the page cache, ...).
        run_kubefixtures(state)
        run_shell(manifest, generated)
        for repeat in range(args.repeats):
            order = ("kubefixtures", "shell") if repeat % 2 == 0 else ("shell", "kubefixtures")
            for which in order:
                if which == "kubefixtures":
                    seconds = run_kubefixtures(state)
                    ours.append(seconds)
                else:
                    seconds = run_shell(manifest, generated)
                    shell.append(seconds)
                print(f"run {repeat + 1} {which:<13} {seconds:6.2f} s", flush=True)
                time.sleep(3)  # let the previous namespace's pods go
    state.close()
    print(f"\nmedian time to ready, redis + postgres + s3 + http-stub ({args.repeats} runs):")
    for label, times in (("kubefixtures", ours), ("shell", shell)):
        median = statistics.median(times)
        print(f"  {label:<13} {median:6.2f} s  (min {min(times):.2f}, max {max(times):.2f})")
    image_sizes(args.images.expanduser())


if __name__ == "__main__":
    main()
