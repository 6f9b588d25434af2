"""The reapers' command-line options, shared by ``kubefixtures gc | status | operator`` and
``python -m kubefixtures.operator`` (which must not pass through the CLI, nor the CLI
import the operator: hence here, beside the reaping they configure)."""

from __future__ import annotations

import argparse

from kubefixtures.leases.policy import DEFAULT_GRACE_SECONDS, grace_seconds

__all__ = [
    "OPERATOR_DESCRIPTION",
    "OPERATOR_HELP",
    "add_grace_option",
    "add_operator_arguments",
    "add_selector_option",
]

OPERATOR_HELP = "run the garbage-collecting operator (kopf) until interrupted"
OPERATOR_DESCRIPTION = (
    "Watch managed namespaces and their leases; delete a namespace once its "
    "lease expired more than --grace seconds ago. Needs the 'operator' extra (kopf)."
)


def _grace(text: str) -> float:
    try:
        return grace_seconds(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _pool_cap(text: str) -> int:
    from kubefixtures.limits import MAX_POOL_NAMESPACES, parse_count

    try:
        return parse_count(text, maximum=MAX_POOL_NAMESPACES)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def add_selector_option(parser: argparse.ArgumentParser, default: str | None = None) -> None:
    parser.add_argument(
        "-l",
        "--selector",
        default=default,
        metavar="SELECTOR",
        help="only namespaces that also match this label selector, e.g. "
        "kubefixtures.io/user=ci (the managed-by label is always required)",
    )


def add_grace_option(
    parser: argparse.ArgumentParser,
    default: float | None = DEFAULT_GRACE_SECONDS,
    help_text: str = "seconds a lease must have been expired (or a namespace without one must "
    "have existed) before the namespace is deleted (default: %(default).0f)",
) -> None:
    parser.add_argument("--grace", type=_grace, default=default, metavar="S", help=help_text)


def add_operator_arguments(parser: argparse.ArgumentParser) -> None:
    add_grace_option(
        parser,
        default=None,
        help_text="as for gc (default: $KUBEFIXTURES_OPERATOR_GRACE, else "
        f"{DEFAULT_GRACE_SECONDS:.0f})",
    )
    add_selector_option(parser)
    parser.add_argument(
        "--liveness", metavar="URL", help="serve a liveness probe, e.g. http://0.0.0.0:8080/healthz"
    )
    parser.add_argument(
        "--pool-namespace",
        metavar="NAMESPACE",
        help="where the Pools this operator keeps live (`kubefixtures pool create "
        "--namespace`; default: $KUBEFIXTURES_OPERATOR_POOL_NAMESPACE, else its own "
        "namespace, $POD_NAMESPACE)",
    )
    parser.add_argument(
        "--pool-max-namespaces",
        type=_pool_cap,
        default=None,
        metavar="N",
        help="keep the Pools of --pool-namespace, their copies holding at most N namespaces "
        "at once, all pools together, 0 to 1000 (default: "
        "$KUBEFIXTURES_OPERATOR_POOL_MAX_NAMESPACES, else 0: no pools are kept)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log every decision")
