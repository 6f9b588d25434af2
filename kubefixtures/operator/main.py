"""Run the kopf operator until SIGTERM: ``python -m kubefixtures.operator [OPTIONS]`` (the
operator image's entry point) and ``kubefixtures operator [OPTIONS]`` both end here."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import kopf

from kubefixtures.errors import KubefixturesError, settings_named
from kubefixtures.leases.options import OPERATOR_DESCRIPTION, add_operator_arguments
from kubefixtures.operator import handlers  # noqa: F401 - registers the handlers
from kubefixtures.operator.config import OperatorConfig

__all__ = ["main", "run", "start"]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m kubefixtures.operator``: parse the options, then ``start``."""
    parser = argparse.ArgumentParser(
        prog="python -m kubefixtures.operator", description=OPERATOR_DESCRIPTION
    )
    add_operator_arguments(parser)
    try:
        return start(parser.parse_args(argv))
    except KeyboardInterrupt:
        return 130


def start(arguments: argparse.Namespace) -> int:
    """The settings from the environment, overridden by the options; then ``run``."""
    try:
        config = OperatorConfig.from_env()
        updates: dict[str, object] = {}
        if arguments.grace is not None:
            updates["grace_seconds"] = arguments.grace
        if arguments.selector:
            updates["selector"] = arguments.selector
        if arguments.pool_namespace:
            updates["pool_namespace"] = arguments.pool_namespace
        if arguments.pool_max_namespaces is not None:
            updates["pool_max_namespaces"] = arguments.pool_max_namespaces
        config = config.model_copy(update=updates)
    except KubefixturesError as error:
        print(f"kubefixtures: error: {error}", file=sys.stderr)
        return 1
    return run(config, liveness=arguments.liveness, verbose=arguments.verbose)


# The operator takes its cluster from the environment (or its pod): messages name that.
SETTING_SOURCES = {"kubeconfig": "KUBECONFIG", "context": "the kubeconfig's current-context"}


def run(config: OperatorConfig, *, liveness: str | None = None, verbose: bool = False) -> int:
    kopf.configure(verbose=verbose, log_format=kopf.LogFormat.PLAIN)
    with settings_named(SETTING_SOURCES):
        kopf.run(
            clusterwide=True,  # namespaces are cluster-scoped, and Leases live in every namespace
            standalone=True,
            liveness_endpoint=liveness,
            memo=kopf.Memo(config=config),
        )
    return 0
