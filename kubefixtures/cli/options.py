"""Command-line options that several `kubefixtures` commands share."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from functools import partial
from typing import TypeVar

from kubefixtures.limits import parse_count, parse_seconds
from kubefixtures.settings import parse_namespace_prefix

T = TypeVar("T")

# How messages name a setting while a command runs (kubefixtures.errors.setting_name): the
# flags below, not the pytest options.
SETTING_FLAGS = {
    "kubeconfig": "--kubeconfig",
    "context": "--context",
    "image-overrides": "--image-overrides (kubefixtures up) or --kubefixtures-image-overrides "
    "(pytest)",
}


def add_cluster_options(parser: argparse.ArgumentParser) -> None:
    """--kubeconfig and --context, for commands that talk to a cluster."""
    parser.add_argument(
        "--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config)"
    )
    parser.add_argument("--context", help="kubeconfig context (default: the current one)")


def _argument_type(parse: Callable[[str], T], name: str) -> Callable[[str], T]:
    """``parse`` (one of kubefixtures.limits', raising ValueError) as an argparse type:
    argparse shows an ArgumentTypeError's message, but only "invalid value" for others."""

    def convert(text: str) -> T:
        try:
            return parse(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    convert.__name__ = name
    return convert


# The same validators as the pytest options and ini keys (kubefixtures.settings).
seconds = _argument_type(parse_seconds, "seconds")
seconds_or_zero = _argument_type(partial(parse_seconds, zero_allowed=True), "seconds")
count = _argument_type(parse_count, "count")
namespace_prefix = _argument_type(parse_namespace_prefix, "namespace prefix")
