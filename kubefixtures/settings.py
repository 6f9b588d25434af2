"""Settings: each one is a command-line option ``--kubefixtures-NAME`` and an ini key
``kubefixtures_NAME``; the option wins over the ini key, which wins over the default.

This module is imported by the plugin at pytest start-up, even by suites that use no
kubefixtures fixture, so it stays on the standard library: a frozen dataclass rather than a
pydantic model keeps that start-up cheap.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import MISSING, dataclass, field
from types import MappingProxyType
from typing import Any, Literal, Protocol

from kubefixtures.errors import SettingsError
from kubefixtures.limits import parse_count, parse_pool_size, parse_seconds

__all__ = [
    "ADDRESSES",
    "OPTIONS",
    "RELAYS",
    "ROUTES",
    "Address",
    "Option",
    "Relay",
    "Route",
    "Settings",
    "parse_direct_address",
    "parse_image_overrides",
    "parse_namespace",
    "parse_namespace_prefix",
    "parse_relay",
    "parse_report_path",
    "parse_route",
]

Kind = Literal["string", "seconds", "flag", "pairs", "count"]
# How a test reaches a Service (kubefixtures.kube.portforward's `Route`; kept here too so
# that pytest's start-up imports nothing of kube/).
Route = Literal["auto", "forward", "direct"]
ROUTES: tuple[Route, ...] = ("auto", "forward", "direct")
# Where a direct route is served (the forwarder's `Address`, kept here for the same reason).
Address = Literal["local", "service"]
ADDRESSES: tuple[Address, ...] = ("local", "service")
# What moves a direct route's bytes (the forwarder's `Relay`, kept here for the same reason).
Relay = Literal["thread", "process"]
RELAYS: tuple[Relay, ...] = ("thread", "process")
# The relay process is handed its sockets over a Unix SOCK_SEQPACKET socketpair, which
# Linux has (and where the pod network is reachable, it mostly is Linux); elsewhere the
# relay stays in the test process rather than warn in every session.
DEFAULT_RELAY: Relay = "process" if sys.platform.startswith("linux") else "thread"


@dataclass(frozen=True)
class Option:
    """One setting: its name (``ready-timeout``), kind and help text; its default is the
    ``Settings`` field's, written once there."""

    name: str
    kind: Kind
    help: str
    metavar: str = ""

    @property
    def default(self) -> str:
        """The default as an option or an ini key would spell it."""
        value = Settings.__dataclass_fields__[self.name.replace("-", "_")].default
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, float):
            return f"{value:g}"
        return "" if value is None or value is MISSING else str(value)

    @property
    def placeholder(self) -> str:
        """What ``--help`` shows as the option's argument."""
        return self.metavar or {
            "seconds": "SECONDS",
            "pairs": "NAME=IMAGE",
            "flag": "BOOL",
            "count": "N",
        }.get(self.kind, "VALUE")

    @property
    def flag(self) -> str:
        return f"--kubefixtures-{self.name}"

    @property
    def dest(self) -> str:
        return f"kubefixtures_{self.name.replace('-', '_')}"

    @property
    def ini(self) -> str:
        return self.dest


OPTIONS: tuple[Option, ...] = (
    Option(
        "context",
        "string",
        "kubeconfig context to use (default: the current context)",
        metavar="NAME",
    ),
    Option(
        "kubeconfig",
        "string",
        "kubeconfig file (default: $KUBECONFIG, then ~/.kube/config, then in-cluster config)",
        metavar="PATH",
    ),
    Option(
        "namespace-prefix",
        "string",
        "prefix of the namespaces kubefixtures creates",
        metavar="PREFIX",
    ),
    Option(
        "namespace",
        "string",
        "an existing namespace to bring every environment up in, for credentials that may "
        "not create namespaces: kubefixtures never creates nor deletes it, deletes only the "
        "objects it applied there, and refuses a second session in it",
        metavar="NAME",
    ),
    Option(
        "ready-timeout",
        "seconds",
        "seconds an environment may take to come up (apply, readiness, port-forwards)",
    ),
    Option(
        "keep-on-failure",
        "flag",
        "keep an environment's namespace when a test that used it failed, and print how to "
        "inspect it",
    ),
    Option(
        "image-overrides",
        "pairs",
        "replace container images: NAME=IMAGE pairs separated by spaces, commas or new lines "
        "(repeatable, added to the ini key's); NAME is an exact reference (redis:7) or a "
        "repository (redis, any tag)",
    ),
    Option(
        "prestart",
        "flag",
        "once tests are collected, start bringing up the session-scoped environments they "
        "use, in the background (false: bring each up when a test first needs it)",
    ),
    Option(
        "wait-for-delete",
        "flag",
        "at teardown, wait until the namespace is really gone (default: ask for deletion only)",
    ),
    Option(
        "lease-duration",
        "seconds",
        "seconds a session's lease lasts without renewal (renewed every third of it); the "
        "operator or `kubefixtures gc` may delete a namespace whose lease expired",
    ),
    Option(
        "keep-for",
        "seconds",
        "seconds a namespace left up on purpose (keep-on-failure, reuse, a pool's spare) is "
        "protected from "
        "the operator and `kubefixtures gc` after the session ends (a keep-until annotation)",
    ),
    Option(
        "reuse",
        "flag",
        "keep environments between runs and use them again while their rendered manifests "
        "are unchanged (a changed manifest replaces the environment)",
    ),
    Option(
        "pool",
        "count",
        "keep N spare copies of each environment the session uses ready in namespaces of their "
        "own, claimed at once by this and later runs (0: no pool); left protected for "
        "--kubefixtures-keep-for after the session",
    ),
    Option(
        "pool-max-age",
        "seconds",
        "seconds after which a spare copy is no longer claimed but replaced",
    ),
    Option(
        "pool-claim",
        "flag",
        "claim spare copies that others keep (an operator's pool, `kubefixtures pool "
        "create`) without keeping any: no copy is started; implied by --kubefixtures-pool",
    ),
    Option(
        "diagnostics",
        "flag",
        "add the environment's recent events and its pods' last log lines to the report of "
        "a failing test",
    ),
    Option(
        "log-lines",
        "count",
        "log lines per container in a failing test's report (0: events only)",
    ),
    Option(
        "report",
        "string",
        "write a report of the session to FILE.json (machine-readable: environments, their "
        "phases, the outcome, kept namespaces) or FILE.html (a waterfall of the phases)",
        metavar="FILE",
    ),
    Option(
        "route",
        "string",
        "how tests reach Services on 127.0.0.1: auto (straight to the pod's IP when a "
        "connect probe to it succeeds, else through the apiserver), forward (always "
        "through the apiserver), direct (to the pod's IP, or fail)",
        metavar="|".join(ROUTES),
    ),
    Option(
        "direct-address",
        "string",
        "where a Service on the direct route is served: local (127.0.0.1, a splice per "
        "connection to the pod's IP) or service (its ClusterIP and port when they answer "
        "from here, routed by kube-proxy with nothing in between; else local)",
        metavar="|".join(ADDRESSES),
    ),
    Option(
        "relay",
        "string",
        "what moves the bytes of a Service on the direct route served on 127.0.0.1: thread "
        "(an event-loop thread in the test process) or process (a child process, which busy "
        "Python threads in the test process do not slow down; Linux only, and its default "
        "there: thread elsewhere)",
        metavar="|".join(RELAYS),
    ),
)


class _ConfigLike(Protocol):
    """The part of ``pytest.Config`` that settings are read from (a protocol for unit tests)."""

    def getoption(self, name: str) -> Any: ...

    def getini(self, name: str) -> Any: ...


_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})


@dataclass(frozen=True)
class Settings:
    """Every kubefixtures setting, resolved and typed; the defaults are written here only."""

    context: str | None = None
    kubeconfig: str | None = None
    namespace_prefix: str = "kf"
    namespace: str | None = None  # an existing namespace (provisioning.existing)
    ready_timeout: float = 180.0
    keep_on_failure: bool = False
    image_overrides: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    wait_for_delete: bool = False
    prestart: bool = True
    lease_duration: float = 60.0
    keep_for: float = 7200.0
    reuse: bool = False
    pool: int = 0
    pool_max_age: float = 3600.0
    pool_claim: bool = False
    diagnostics: bool = True
    log_lines: int = 50
    report: str | None = None
    route: Route = "auto"
    direct_address: Address = "local"
    relay: Relay = DEFAULT_RELAY

    @property
    def claims_spares(self) -> bool:
        """Environments are claimed from pools: this session's (``pool``), or others'."""
        return self.pool > 0 or self.pool_claim

    @classmethod
    def from_config(cls, config: _ConfigLike) -> Settings:
        """Read every setting from options, then ini keys, then defaults.

        Raises SettingsError naming the option and ini key when a value is unusable.
        """
        raw = {option.dest: _raw_value(config, option) for option in OPTIONS}
        by_name = {option.dest: option for option in OPTIONS}

        def parsed(dest: str, parse: Callable[[str], Any]) -> Any:
            try:
                return parse(raw[dest])
            except ValueError as error:
                option = by_name[dest]
                raise SettingsError(f"{option.flag} (ini {option.ini}): {error}") from None

        prefix = parsed("kubefixtures_namespace_prefix", parse_namespace_prefix)
        namespace = parsed("kubefixtures_namespace", parse_namespace) or None
        reuse = parsed("kubefixtures_reuse", _flag)
        pool = parsed("kubefixtures_pool", parse_pool_size)
        pool_claim = parsed("kubefixtures_pool_claim", _flag)
        if namespace and reuse:
            raise SettingsError(
                "--kubefixtures-namespace (ini kubefixtures_namespace) cannot be combined with "
                "--kubefixtures-reuse: reuse keeps whole namespaces between runs"
            )
        if namespace and (pool or pool_claim):
            flag = "--kubefixtures-pool" if pool else "--kubefixtures-pool-claim"
            raise SettingsError(
                "--kubefixtures-namespace (ini kubefixtures_namespace) cannot be combined with "
                f"{flag}: a pool keeps spare copies in namespaces of their own"
            )
        if reuse and pool_claim and not pool:
            raise SettingsError(
                "--kubefixtures-reuse and --kubefixtures-pool-claim (ini kubefixtures_reuse, "
                "kubefixtures_pool_claim) exclude each other: choose one"
            )
        if reuse and pool:
            # Reuse hands the next run the same, used environment; a pool hands it a fresh one.
            raise SettingsError(
                "--kubefixtures-reuse and --kubefixtures-pool (ini kubefixtures_reuse, "
                "kubefixtures_pool) exclude each other: choose one"
            )
        return cls(
            context=raw["kubefixtures_context"] or None,
            kubeconfig=raw["kubefixtures_kubeconfig"] or None,
            namespace_prefix=prefix,
            namespace=namespace,
            ready_timeout=parsed("kubefixtures_ready_timeout", parse_seconds),
            keep_on_failure=parsed("kubefixtures_keep_on_failure", _flag),
            image_overrides=MappingProxyType(
                parsed("kubefixtures_image_overrides", parse_image_overrides)
            ),
            wait_for_delete=parsed("kubefixtures_wait_for_delete", _flag),
            prestart=parsed("kubefixtures_prestart", _flag),
            lease_duration=parsed("kubefixtures_lease_duration", parse_seconds),
            keep_for=parsed("kubefixtures_keep_for", parse_seconds),
            reuse=reuse,
            pool=pool,
            pool_max_age=parsed("kubefixtures_pool_max_age", parse_seconds),
            pool_claim=pool_claim,
            diagnostics=parsed("kubefixtures_diagnostics", _flag),
            log_lines=parsed("kubefixtures_log_lines", parse_count),
            report=parsed("kubefixtures_report", parse_report_path) or None,
            route=parsed("kubefixtures_route", parse_route),
            direct_address=parsed("kubefixtures_direct_address", parse_direct_address),
            relay=parsed("kubefixtures_relay", parse_relay),
        )


def _raw_value(config: _ConfigLike, option: Option) -> str:
    value = config.getoption(option.dest)
    if option.kind == "pairs":
        # Pairs add up: the ini key's, then the options' (a later NAME wins).
        from_ini = config.getini(option.ini) or []
        value = [*([from_ini] if isinstance(from_ini, str) else from_ini), *(value or [])]
    elif value is None:
        value = config.getini(option.ini)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return "\n".join(str(item) for item in value)
    text = str(value).strip() if value is not None else ""
    return text or option.default


def _flag(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(f"{text!r} is not a boolean (use true or false)")


def parse_namespace_prefix(text: str) -> str:
    if not re.fullmatch(r"[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?", text):
        raise ValueError(
            f"{text!r} is not a usable namespace prefix "
            "(lowercase letters, digits and dashes, at most 32 characters)"
        )
    return text


def parse_namespace(text: str) -> str:
    """An existing namespace's name (a DNS-1123 label), or "" for none."""
    if text and not re.fullmatch(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?", text):
        raise ValueError(
            f"{text!r} is not a namespace name "
            "(lowercase letters, digits and dashes, at most 63 characters)"
        )
    return text


def parse_route(text: str) -> Route:
    for route in ROUTES:
        if text.strip().lower() == route:
            return route
    raise ValueError(f"{text!r} is not a route (use {', '.join(ROUTES)})")


def parse_direct_address(text: str) -> Address:
    for address in ADDRESSES:
        if text.strip().lower() == address:
            return address
    raise ValueError(f"{text!r} is not a direct address (use {', '.join(ADDRESSES)})")


def parse_relay(text: str) -> Relay:
    for relay in RELAYS:
        if text.strip().lower() == relay:
            return relay
    raise ValueError(f"{text!r} is not a relay (use {', '.join(RELAYS)})")


def parse_image_overrides(text: str | Iterable[str]) -> dict[str, str]:
    """Parse ``NAME=IMAGE`` pairs: ``"redis:7=local/redis:7.0, nginx=local/nginx"``."""
    chunks = [text] if isinstance(text, str) else list(text)
    overrides: dict[str, str] = {}
    for chunk in chunks:
        for pair in re.split(r"[\s,]+", chunk.strip()):
            if not pair:
                continue
            name, equals, image = pair.partition("=")
            if not equals or not name or not image:
                raise ValueError(f"{pair!r} is not a NAME=IMAGE pair")
            overrides[name] = image
    return overrides


REPORT_SUFFIXES = (".json", ".html")


def parse_report_path(text: str) -> str:
    """The session report's file, absolute: ``.json`` or ``.html``, in a directory that
    exists and that we may write to ("" for none)."""
    if not text:
        return ""
    path = os.path.abspath(os.path.expanduser(text))
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in REPORT_SUFFIXES:
        raise ValueError(f"{text!r} must end in .json or .html (the report's format)")
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        raise ValueError(f"{text!r}: directory {directory} does not exist")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise ValueError(f"{text!r}: directory {directory} is not writable")
    if os.path.isdir(path):
        raise ValueError(f"{text!r} is a directory")
    return path
