"""`kubefixtures cluster up|down|status|load-image|remove-image|build`."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from kubefixtures.cluster import PROVIDERS, get_provider


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cluster = commands.add_parser(
        "cluster",
        help="bring a Kubernetes cluster for the tests up or down",
        description="Manage the cluster the tests run on. The provider comes from "
        "--provider, else KUBEFIXTURES_CLUSTER, else auto (the current kubeconfig "
        "context if it answers, else kind where Docker and kind exist, else local).",
    )
    actions = cluster.add_subparsers(dest="action", required=True, metavar="ACTION")
    for action, help_text in (
        ("up", "start the cluster (a no-op that reports it when it is already running)"),
        ("down", "stop the cluster and remove everything it put on the host"),
        ("status", "say whether the cluster runs, and where"),
        ("load-image", "put image tarballs (docker save / OCI) into the cluster's runtime"),
        ("remove-image", "remove image references (NAME:TAG) from the cluster's runtime"),
        (
            "build",
            "build the local provider's binaries (Kubernetes, CoreDNS, Helm; cached by "
            "version), without starting anything",
        ),
    ):
        parser = actions.add_parser(action, help=help_text, description=help_text)
        if action != "build":  # only the local provider builds anything
            parser.add_argument("--provider", choices=PROVIDERS, default=None)
        if action == "load-image":
            parser.add_argument("archives", nargs="+", type=Path, metavar="ARCHIVE")
        if action == "remove-image":
            parser.add_argument("refs", nargs="+", metavar="REF")
        parser.set_defaults(handler=run)


def run(arguments: argparse.Namespace) -> int:
    started = time.monotonic()
    if arguments.action == "build":
        from kubefixtures.cluster.local import build
        from kubefixtures.cluster.local.layout import Layout

        paths = Layout.default()
        tools = build.ensure_tools(paths.binaries, paths.cache / "logs")
        print(f"Kubernetes {tools.kubernetes_version}, CoreDNS and Helm are in {paths.binaries}")
        return 0
    provider = get_provider(arguments.provider)
    if arguments.action == "up":
        status = provider.up()
        print(status.describe())
        print(f"up in {time.monotonic() - started:.1f} s")
    elif arguments.action == "down":
        provider.down()
        print(f"{provider.name} cluster is down ({time.monotonic() - started:.1f} s)")
    elif arguments.action == "status":
        status = provider.status()
        print(status.describe())
        return 0 if status.running else 3
    elif arguments.action == "remove-image":
        for ref in arguments.refs:
            provider.remove_image(ref)
            print(f"removed {ref} from the {provider.name} cluster")
    else:
        for archive in arguments.archives:
            provider.load_image(archive)
            print(f"loaded {archive} into the {provider.name} cluster")
    return 0
