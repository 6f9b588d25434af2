"""`kubefixtures up | down | diagnose`: environments outside a pytest run.

``up`` brings an environment up as a fixture would, writes its details file (0600: it holds
the generated secrets) and serves the port-forwards until SIGINT or SIGTERM, renewing the
namespace's Lease meanwhile; it then leaves the environment up, protected by keep-until
for ``--keep-for`` seconds, for ``KUBEFIXTURES_DETAILS=FILE pytest`` runs to use (they
forward again what is no longer forwarded). ``down FILE`` deletes it. ``diagnose NS``
writes a bundle of a namespace's objects, logs and events, for CI artifacts.
"""

from __future__ import annotations

import argparse
import re
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from kubefixtures.cli.options import add_cluster_options, count, namespace_prefix, seconds
from kubefixtures.errors import KubefixturesError
from kubefixtures.settings import ADDRESSES, RELAYS, ROUTES, Settings

if TYPE_CHECKING:
    from kubefixtures.provisioning.base import EnvironmentSpec

__all__ = ["add_source_arguments", "register", "spec_of"]


def _pair(text: str) -> tuple[str, str]:
    name, equals, value = text.partition("=")
    if not equals or not name.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not a NAME=VALUE pair")
    return name.strip(), value


def add_source_arguments(parser: argparse.ArgumentParser) -> None:
    """SOURCE..., --catalog, --values, --values-file: an environment as ``up`` and
    ``pool create`` take it (``spec_of`` reads them)."""
    parser.add_argument("sources", nargs="*", type=Path, metavar="SOURCE")
    parser.add_argument(
        "--catalog",
        nargs="+",
        action="extend",
        default=[],
        metavar="SERVICE",
        help="catalog services to bring up with the sources, as catalog(...) does "
        "(redis, postgres, s3, http_stub: docs/catalog)",
    )
    parser.add_argument(
        "--values",
        nargs="+",
        type=_pair,
        action="extend",
        default=[],
        metavar="NAME=VALUE",
        help="placeholder values (strings), as environment(values=...) gives them; a dotted "
        "NAME is nested (postgres.database=shop gives ${postgres.database})",
    )
    parser.add_argument(
        "--values-file",
        dest="values_files",
        type=Path,
        action="append",
        default=[],
        metavar="FILE",
        help="a YAML file of values (repeatable, merged in order, under --values), as "
        "environment(values_files=...) gives them",
    )


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    up = commands.add_parser(
        "up",
        help="bring an environment up, write its details file, serve it until interrupted",
        description="Bring SOURCE... (and --catalog services) up in a new namespace as an "
        "environment fixture would, write its details (0600, secrets included) and serve its "
        "port-forwards until Ctrl-C or SIGTERM. The environment then stays up for --keep-for "
        "seconds; KUBEFIXTURES_DETAILS=FILE pytest uses it, `kubefixtures down FILE` "
        "deletes it.",
    )
    add_source_arguments(up)
    up.add_argument(
        "--name",
        help="the environment's name: the fixture name that will use it (default: "
        "kubefixtures_SERVICE for one --catalog service, as kubefixtures.catalog.fixtures "
        "names it; else the first source's name)",
    )
    up.add_argument(
        "--details-out",
        type=Path,
        metavar="FILE",
        help="where to write the details (default: ./NAME.kubefixtures.json)",
    )
    up.add_argument(
        "--image-overrides",
        action="append",
        default=[],
        metavar="NAME=IMAGE",
        help="as --kubefixtures-image-overrides (repeatable)",
    )
    default = Settings()  # the defaults of the --kubefixtures-* options
    up.add_argument(
        "--namespace-prefix",
        type=namespace_prefix,
        default=default.namespace_prefix,
        metavar="PREFIX",
    )
    up.add_argument("--ready-timeout", type=seconds, default=default.ready_timeout, metavar="S")
    up.add_argument(
        "--keep-for",
        type=seconds,
        default=default.keep_for,
        metavar="S",
        help="seconds the environment is kept from the operator and `kubefixtures gc` "
        "after this command ends (default: %(default).0f)",
    )
    up.add_argument("--lease-duration", type=seconds, default=default.lease_duration, metavar="S")
    up.add_argument(
        "--route",
        choices=ROUTES,
        default=default.route,
        help="as --kubefixtures-route: how the served 127.0.0.1 ports reach the pods "
        "(default: %(default)s)",
    )
    up.add_argument(
        "--direct-address",
        choices=ADDRESSES,
        default=default.direct_address,
        help="as --kubefixtures-direct-address: serve a Service on the direct route on "
        "127.0.0.1 (local) or at its ClusterIP when it answers from here (service; the "
        "details file then holds the ClusterIP, which outlives this command) "
        "(default: %(default)s)",
    )
    up.add_argument(
        "--relay",
        choices=RELAYS,
        default=default.relay,
        help="as --kubefixtures-relay: what moves the bytes of the direct route's 127.0.0.1 "
        "ports: this command's event-loop thread, or a child process (default: %(default)s)",
    )
    add_cluster_options(up)
    up.set_defaults(handler=run_up)

    down = commands.add_parser(
        "down",
        help="delete the environment a details file describes, and the file",
        description="Delete the namespace of the environment in FILE (only if it is the "
        "namespace kubefixtures created for it), wait until it is gone, remove FILE.",
    )
    down.add_argument("file", type=Path, metavar="FILE")
    down.add_argument("--no-wait", action="store_true", help="do not wait for the deletion")
    down.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config)")
    down.add_argument("--context", help="kubeconfig context (default: the one FILE names)")
    down.set_defaults(handler=run_down)

    diagnose = commands.add_parser(
        "diagnose",
        help="write a namespace's objects, describe text, logs and events to a directory",
        description="Write a bundle for CI artifacts: objects/ (YAML per kind, Secrets "
        "masked), describe.txt, logs/POD/CONTAINER[.previous].log, events.txt, summary.txt. "
        "Secret values of the namespace (and of --details FILE) are masked everywhere.",
    )
    diagnose.add_argument("namespace", metavar="NAMESPACE")
    diagnose.add_argument("--out", type=Path, required=True, metavar="DIR")
    diagnose.add_argument(
        "--details", type=Path, metavar="FILE", help="a details file whose secrets to mask too"
    )
    diagnose.add_argument(
        "--log-lines", type=count, default=None, metavar="N", help="last N lines (default: all)"
    )
    add_cluster_options(diagnose)
    diagnose.set_defaults(handler=run_diagnose)


def _nested_values(pairs: list[tuple[str, str]], services: list[str]) -> dict[str, Any]:
    """``--values`` pairs as environment(values=...) takes them: a dotted name is nested
    (``postgres.database=shop`` -> ``{"postgres": {"database": "shop"}}``). A value of a
    ``--catalog`` service must be one the service takes."""
    from kubefixtures.catalog._sources import catalog_value_problem

    values: dict[str, Any] = {}
    for name, value in pairs:
        parts = name.split(".")
        if not all(parts):
            raise KubefixturesError(f"--values {name}={value}: {name!r} has an empty part")
        if parts[0] in services:
            problem = catalog_value_problem(parts[0], ".".join(parts[1:]))
            if problem:
                raise KubefixturesError(f"--values {name}={value}: {problem}")
        table = values
        for depth, part in enumerate(parts[:-1]):
            inner = table.setdefault(part, {})
            if not isinstance(inner, dict):
                given = ".".join(parts[: depth + 1])
                raise KubefixturesError(
                    f"--values {name}={value}: {given} is given a value of its own already"
                )
            table = inner
        if isinstance(table.get(parts[-1]), dict):
            raise KubefixturesError(f"--values {name}={value}: {name} has nested values already")
        table[parts[-1]] = value
    return values


def _default_name(source: Path) -> str:
    stem = source.resolve().name
    stem = stem.removesuffix(".yaml").removesuffix(".yml")
    name = re.sub(r"\W+", "_", stem).strip("_")
    return name if name.isidentifier() else f"env_{name}"


# --- up -------------------------------------------------------------------------------------------


def run_up(arguments: argparse.Namespace) -> int:
    from kubefixtures.details import EnvironmentDetails
    from kubefixtures.provisioning.fresh import FreshProvisioning
    from kubefixtures.session import SessionState
    from kubefixtures.settings import parse_image_overrides

    spec = spec_of(arguments, arguments.name)
    name = spec.name
    try:
        overrides = parse_image_overrides(arguments.image_overrides)
    except ValueError as error:
        raise KubefixturesError(f"--image-overrides: {error}") from None
    settings = Settings(
        context=arguments.context,
        kubeconfig=arguments.kubeconfig,
        namespace_prefix=arguments.namespace_prefix,
        ready_timeout=arguments.ready_timeout,
        image_overrides=overrides,
        lease_duration=arguments.lease_duration,
        keep_for=arguments.keep_for,
        route=arguments.route,
        direct_address=arguments.direct_address,
        relay=arguments.relay,
    )
    out: Path = (arguments.details_out or Path(f"{name}.kubefixtures.json")).resolve()
    session = SessionState(settings, lambda line: print(line, flush=True))
    lifecycle = FreshProvisioning(spec, session.view())
    stop = threading.Event()

    def interrupted(signum: int, frame: FrameType | None) -> None:
        stop.set()
        lifecycle.cancel()  # a setup under way gives up and cleans up

    previous = {
        signum: signal.signal(signum, interrupted) for signum in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        environment = lifecycle.setup()
        # The values it was rendered with: a run attaching to it renders its objects alike.
        details: EnvironmentDetails = environment.details.model_copy(
            update={"values": dict(spec.values)}
        )
        details.write(out)
        lifecycle.report_ready()
        session.flush()
        print(f"details: {out} (mode 0600: it holds the environment's secrets)")
        print(f"use it:  KUBEFIXTURES_DETAILS={out} pytest")
        print(
            "serving the port-forwards until Ctrl-C or SIGTERM; the environment then stays up "
            f"for {settings.keep_for / 3600:.1f} h (`kubefixtures down {out}` deletes it)",
            flush=True,
        )
        while not stop.wait(1.0):
            session.flush()  # lease warnings from the renewal thread
        line = lifecycle.release(settings.keep_for)
        print(f"stopped serving; namespace {details.namespace} stays up", flush=True)
        if line:
            print(line, flush=True)
        return 0
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        session.close()


def spec_of(arguments: argparse.Namespace, name: str | None) -> EnvironmentSpec:
    """The environment ``up`` brings up (or ``pool create`` keeps): its sources (catalog
    services first), name (``name``, else a default) and values; bad arguments are one line
    naming the flag."""
    from kubefixtures.catalog._sources import SERVICES, manifests, merged_values
    from kubefixtures.provisioning.base import EnvironmentSpec

    services: list[str] = arguments.catalog
    for service in services:
        if service not in SERVICES:
            raise KubefixturesError(
                f"--catalog {service}: no such catalog service (the catalog has "
                f"{', '.join(SERVICES)})"
            )
    if len(set(services)) != len(services):
        raise KubefixturesError(f"--catalog {' '.join(services)}: a service is named twice")
    for source in arguments.sources:
        if not source.exists():
            raise KubefixturesError(f"{source}: no such file or directory")
    if not services and not arguments.sources:
        raise KubefixturesError(
            f"{getattr(arguments, 'what', None) or arguments.command}: give SOURCE... or "
            "--catalog SERVICE... (or both)"
        )
    values = _nested_values(arguments.values, services)
    if services:
        values = merged_values(values)  # the catalog's defaults under what was given
    sources = [*(manifests(service) for service in services), *arguments.sources]
    if not name and len(services) == 1 and not arguments.sources:
        name = f"kubefixtures_{services[0]}"  # the environment of catalog.fixtures' fixture
    elif not name:
        name = _default_name(arguments.sources[0] if arguments.sources else Path("catalog"))
    return EnvironmentSpec(
        name=name,
        sources=tuple(source.resolve() for source in sources),
        values=values,
        values_files=tuple(path.resolve() for path in arguments.values_files),
    )


# --- down -----------------------------------------------------------------------------------------


def run_down(arguments: argparse.Namespace) -> int:
    from kubefixtures.details import EnvironmentDetails
    from kubefixtures.kube.client import Cluster
    from kubefixtures.leases.cluster_scoped import release_all
    from kubefixtures.naming import MANAGED_BY_LABEL, MANAGED_BY_VALUE, SESSION_LABEL

    started = time.monotonic()
    path: Path = arguments.file
    details = EnvironmentDetails.read(path)
    cluster = Cluster.connect_to_read(arguments.kubeconfig, arguments.context or details.context)
    try:
        namespace = cluster.namespace(details.namespace)
        if namespace is None:
            path.unlink(missing_ok=True)
            print(f"namespace {details.namespace} is already gone; removed {path}")
            return 0
        labels = namespace["metadata"].get("labels") or {}
        ours = labels.get(MANAGED_BY_LABEL) == MANAGED_BY_VALUE
        if not ours or labels.get(SESSION_LABEL) != details.session_id:
            raise KubefixturesError(
                f"{path}: namespace {details.namespace} is not the one kubefixtures created "
                f"for session {details.session_id} (its labels differ); not deleting it"
            )
        # Its cluster-scoped objects first (those no other live session uses go).
        release_all(
            cluster,
            [(ref.api_version, ref.kind, ref.name) for ref in details.objects if not ref.namespace],
            details.namespace,
        )
        cluster.delete_namespace(details.namespace, wait=not arguments.no_wait)
    finally:
        cluster.close()
    path.unlink(missing_ok=True)
    verb = "asked to delete" if arguments.no_wait else "deleted"
    print(
        f"{verb} namespace {details.namespace} of environment {details.name!r} "
        f"({time.monotonic() - started:.1f} s); removed {path}"
    )
    return 0


# --- diagnose -------------------------------------------------------------------------------------


def run_diagnose(arguments: argparse.Namespace) -> int:
    from kubefixtures.kube.client import Cluster
    from kubefixtures.reporting import write_bundle

    masks: set[str] = set()
    context = arguments.context
    if arguments.details is not None:
        from kubefixtures.details import EnvironmentDetails

        details = EnvironmentDetails.read(arguments.details)
        masks = {value.get_secret_value() for value in details.secrets.values()}
        context = context or details.context
    started = time.monotonic()
    cluster = Cluster.connect_to_read(arguments.kubeconfig, context)
    try:
        bundle = write_bundle(
            cluster, arguments.namespace, arguments.out, masks=masks, log_lines=arguments.log_lines
        )
    finally:
        cluster.close()
    print(
        f"wrote {bundle.directory}: {bundle.objects} objects, {bundle.logs} logs, "
        f"{bundle.events} events ({time.monotonic() - started:.1f} s)"
    )
    for error in bundle.errors:
        print(f"kubefixtures: warning: {error}", file=sys.stderr)
    return 0
