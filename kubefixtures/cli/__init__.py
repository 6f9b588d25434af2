"""The `kubefixtures` command. Each command group lives in its own module and only
the one that runs is imported."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from kubefixtures import __version__
from kubefixtures.cli.options import SETTING_FLAGS
from kubefixtures.errors import KubefixturesError, settings_named


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kubefixtures",
        description="Real services on Kubernetes for pytest suites.",
    )
    parser.add_argument("--version", action="version", version=f"kubefixtures {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    from kubefixtures.cli import cluster, environments, pools, sessions

    cluster.register(commands)
    environments.register(commands)
    pools.register(commands)
    sessions.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    arguments = parser.parse_args(argv)
    try:
        with settings_named(SETTING_FLAGS):
            code: int = arguments.handler(arguments)
    except KubefixturesError as error:
        print(f"kubefixtures: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return code
