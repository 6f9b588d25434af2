"""Command-line options that several `kubefixtures` commands share."""

from __future__ import annotations

import argparse


def add_cluster_options(parser: argparse.ArgumentParser) -> None:
    """--kubeconfig and --context, for commands that talk to a cluster."""
    parser.add_argument(
        "--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config)"
    )
    parser.add_argument("--context", help="kubeconfig context (default: the current one)")
