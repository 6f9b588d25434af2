"""`kubefixtures pool create | list | delete`: pools the operator keeps (docs/pool.md).

``create`` renders the environment once, as ``up`` would bring it up, into a template
(kubefixtures.provisioning.pool_template) and stores it, with its pool key, size and maximum
age, in a Pool object in the operator's namespace; the operator then keeps that many spare
copies ready (kubefixtures.operator.pools). ``delete`` removes the Pool and its unclaimed
spares.
"""

from __future__ import annotations

import argparse
import re
from typing import TYPE_CHECKING, Any

from kubefixtures.cli.environments import add_source_arguments, spec_of
from kubefixtures.cli.options import add_cluster_options, seconds
from kubefixtures.errors import KubefixturesError
from kubefixtures.limits import MAX_POOL_SIZE, parse_count
from kubefixtures.settings import Settings

if TYPE_CHECKING:
    from kubefixtures.kube import Cluster

__all__ = ["DEFAULT_POOLS_NAMESPACE", "register"]

# Where the chart installs the operator (its README): the Pools it keeps live there.
DEFAULT_POOLS_NAMESPACE = "kubefixtures-system"
# What the API server stores in one object (etcd's request limit), with room for metadata.
_MAX_TEMPLATE_BYTES = 1024 * 1024


def _pool_name(text: str) -> str:
    if not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a pool name (lowercase letters, digits and dashes, at most 63)"
        )
    return text


def _size(text: str) -> int:
    try:
        size = parse_count(text, maximum=MAX_POOL_SIZE)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    if size == 0:
        raise argparse.ArgumentTypeError("'0' keeps nothing: give 1 or more")
    return size


def _namespace_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--namespace",
        default=DEFAULT_POOLS_NAMESPACE,
        metavar="NS",
        help="the operator's namespace, where its Pools live (default: %(default)s)",
    )


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    pool = commands.add_parser(
        "pool",
        help="pools of spare environments the operator keeps (create, list, delete)",
        description="Pools the kubefixtures operator keeps for shared CI clusters: spare "
        "copies of an environment, ready for sessions run with --kubefixtures-pool-claim.",
    )
    actions = pool.add_subparsers(dest="action", required=True, metavar="ACTION")

    create = actions.add_parser(
        "create",
        help="store an environment's template; the operator keeps --size copies ready",
        description="Render SOURCE... (and --catalog services) as `kubefixtures up` would, "
        "and store the result in a Pool: the operator keeps --size spare copies of it ready, "
        "each with secrets of its own, claimed by sessions of --user run with "
        "--kubefixtures-pool-claim. Creating an existing pool again replaces its template "
        "(its spares of the old one are retired).",
    )
    add_source_arguments(create)
    create.add_argument("--name", required=True, type=_pool_name, help="the pool's name")
    create.add_argument(
        "--size", required=True, type=_size, metavar="N", help="spare copies to keep ready"
    )
    create.add_argument(
        "--environment",
        metavar="NAME",
        help="the environment's name: the fixture name that claims the copies (default: as "
        "for `kubefixtures up`)",
    )
    create.add_argument(
        "--max-age",
        type=seconds,
        default=Settings().pool_max_age,
        metavar="S",
        help="seconds after which a spare is replaced (default: %(default).0f)",
    )
    create.add_argument(
        "--user",
        metavar="USER",
        help="whose sessions claim the copies: the kubefixtures.io/user label of their "
        "namespaces (default: the current user, as a session here labels them)",
    )
    create.add_argument(
        "--image-overrides",
        action="append",
        default=[],
        metavar="NAME=IMAGE",
        help="as --kubefixtures-image-overrides (repeatable): the claiming sessions must "
        "give the same",
    )
    _namespace_option(create)
    add_cluster_options(create)
    create.set_defaults(handler=run_create, what="pool create")

    listing = actions.add_parser("list", help="list the pools and their spares")
    _namespace_option(listing)
    add_cluster_options(listing)
    listing.set_defaults(handler=run_list)

    delete = actions.add_parser(
        "delete",
        help="delete a pool and its unclaimed spares",
        description="Delete the Pool NAME and its ready, unclaimed spares; the operator "
        "stops the copies still coming up. Claimed copies are their sessions'.",
    )
    delete.add_argument("name", type=_pool_name, metavar="NAME")
    _namespace_option(delete)
    add_cluster_options(delete)
    delete.set_defaults(handler=run_delete)


def _not_installed(namespace: str) -> KubefixturesError:
    return KubefixturesError(
        f"--namespace {namespace}: no Pool resource there: the operator's chart installs it "
        "(kubectl apply -f charts/kubefixtures-operator/crds/), or the namespace does not exist"
    )


def run_create(arguments: argparse.Namespace) -> int:
    from kubefixtures import naming
    from kubefixtures.kube.client import POOL, Cluster
    from kubefixtures.kube.errors import Conflict, NotFound
    from kubefixtures.provisioning.pool_template import template_of
    from kubefixtures.settings import parse_image_overrides

    spec = spec_of(arguments, arguments.environment)
    try:
        overrides = parse_image_overrides(arguments.image_overrides)
    except ValueError as error:
        raise KubefixturesError(f"--image-overrides: {error}") from None
    template = template_of(spec, Settings(image_overrides=overrides))
    if len(template.template.encode()) > _MAX_TEMPLATE_BYTES:
        raise KubefixturesError(
            f"--name {arguments.name}: the rendered environment is larger than the 1 MiB a "
            "Pool can hold"
        )
    user = arguments.user
    if user is None:
        user = naming.namespace_labels("pool", spec.name).get(naming.USER_LABEL, "")
    pool_spec: dict[str, Any] = {
        "environment": template.environment,
        "key": template.key,
        "template": template.template,
        "size": arguments.size,
        "maxAgeSeconds": arguments.max_age,
        "user": naming.label_value(user),
    }
    body = {
        "apiVersion": POOL.api_version,
        "kind": POOL.kind,
        "metadata": {
            "name": arguments.name,
            "labels": {naming.MANAGED_BY_LABEL: naming.MANAGED_BY_VALUE},
        },
        "spec": pool_spec,
    }
    cluster = Cluster.connect_to_read(arguments.kubeconfig, arguments.context)
    try:
        try:
            cluster.create(POOL, arguments.namespace, body)
            verb = "created"
        except Conflict:
            cluster.merge_patch(POOL, arguments.namespace, arguments.name, {"spec": pool_spec})
            verb = "replaced"
        except NotFound:
            raise _not_installed(arguments.namespace) from None
    finally:
        cluster.close()
    print(
        f"pool {arguments.name} {verb} in {arguments.namespace}: {arguments.size} spare "
        f"cop{'y' if arguments.size == 1 else 'ies'} of environment {spec.name!r} (key "
        f"{template.key}) for user {pool_spec['user'] or '(any)'}; sessions claim them with "
        "--kubefixtures-pool-claim (`kubefixtures pool list` shows them)"
    )
    return 0


def run_list(arguments: argparse.Namespace) -> int:
    from kubefixtures.kube.client import POOL, Cluster
    from kubefixtures.kube.errors import NotFound

    cluster = Cluster.connect_to_read(arguments.kubeconfig, arguments.context)
    try:
        try:
            pools = cluster.items(POOL, arguments.namespace)
        except NotFound:
            raise _not_installed(arguments.namespace) from None
    finally:
        cluster.close()
    if not pools:
        print(f"no pools in namespace {arguments.namespace}")
        return 0
    rows = [("NAME", "ENVIRONMENT", "SIZE", "READY", "STARTING", "MAX-AGE", "USER", "STATUS")]
    for pool in sorted(pools, key=lambda item: str(item["metadata"]["name"])):
        spec = pool.get("spec") or {}
        status = pool.get("status") or {}
        rows.append(
            (
                str(pool["metadata"]["name"]),
                str(spec.get("environment", "")),
                str(spec.get("size", "")),
                str(status.get("ready", "-")),
                str(status.get("starting", "-")),
                f"{float(spec.get('maxAgeSeconds') or 0):g}s",
                str(spec.get("user") or "(any)"),
                str(status.get("message") or ("ok" if status else "not seen by an operator")),
            )
        )
    widths = [max(len(row[index]) for row in rows) for index in range(len(rows[0]) - 1)]
    for row in rows:
        print(
            "  ".join(
                [
                    *(cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True)),
                    row[-1],
                ]
            )
        )
    return 0


def run_delete(arguments: argparse.Namespace) -> int:
    from kubefixtures.kube.client import POOL, Cluster

    cluster = Cluster.connect_to_read(arguments.kubeconfig, arguments.context)
    try:
        if not cluster.delete(POOL, arguments.namespace, arguments.name):
            raise KubefixturesError(
                f"pool {arguments.name}: no such pool in namespace {arguments.namespace}"
            )
        retired = _retire_spares(cluster, arguments.namespace, arguments.name)
    finally:
        cluster.close()
    print(
        f"pool {arguments.name} deleted from {arguments.namespace}; {retired} spare "
        f"namespace{'' if retired == 1 else 's'} deleted (the operator stops the copies still "
        "coming up)"
    )
    return 0


def _retire_spares(cluster: Cluster, namespace: str, name: str) -> int:
    from kubefixtures import naming
    from kubefixtures.kube.client import LEASE
    from kubefixtures.leases.pool import SPARE, operator_pool_selector
    from kubefixtures.provisioning.pooled import retire_spare

    session_id = naming.new_session_id()
    spares = cluster.items(LEASE, None, operator_pool_selector(namespace, name, SPARE))
    return sum(1 for lease in spares if retire_spare(cluster, lease, session_id, print))
