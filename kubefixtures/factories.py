"""``environment(...)``: declare, at module level in a conftest, a fixture that brings up
services on Kubernetes::

    shop = environment("manifests/shop/", values={"redis_version": "7"})

The fixture is named after the variable (or ``name=``); its value is an ``Environment``.
Nothing happens at declaration time beyond checking the arguments (and starting to import,
in the background, what bringing environments up needs): the cluster is only contacted
once pytest is configured, and nothing is created before a collected test uses the fixture.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from kubefixtures.errors import KubefixturesError
from kubefixtures.limits import parse_seconds

if TYPE_CHECKING:
    import pytest

__all__ = ["declared", "environment", "prestart"]

Scope = Literal["session", "package", "module", "class", "function"]
_SCOPES = ("session", "package", "module", "class", "function")
_BUILTINS = ("environment", "namespace", "session_id")  # kept in step with rendering.py
_declarations: list[object] = []  # every environment() fixture declared in this process


def _start_importing() -> None:
    """Import what bringing environments up needs, in a background thread: about 0.2 s
    (pydantic's models among it) that then overlaps pytest's own start-up and collection
    instead of delaying the first environment. Nothing here talks to a cluster."""

    def load() -> None:
        import kubefixtures.kube.lease
        import kubefixtures.kube.waiter
        import kubefixtures.sharing  # noqa: F401 - imported for its side effect: loaded

    threading.Thread(target=load, name="kubefixtures-import", daemon=True).start()


def declared() -> int:
    """How many environments the loaded conftests and modules declared."""
    return len(_declarations)


def environment(
    *sources: str | Path,
    name: str | None = None,
    values: Mapping[str, Any] | None = None,
    scope: Scope = "session",
    timeout: float | None = None,
    requires: Sequence[str] = (),
) -> Any:  # pytest's type for a fixture definition is private
    """A fixture factory: the returned fixture brings up ``sources`` in a fresh namespace.

    ``sources`` are YAML files, directories of YAML files, or Helm chart directories; relative
    paths are relative to the file that calls ``environment``. ``values`` fill ``${name}``
    placeholders (and are a Helm chart's values). ``timeout`` overrides the
    ``ready-timeout`` setting for this environment. ``requires`` names fixtures to set up
    before this environment is applied, such as the ``kubefixtures.catalog.app_image``
    whose image it runs; such an environment is not brought up in advance (see
    ``prestart``), since it has to wait for them.
    """
    _check_arguments(sources, values, scope, timeout)
    base = _caller_directory()
    paths = tuple(path if path.is_absolute() else base / path for path in map(Path, sources))
    frozen_values = dict(values or {})
    required = tuple(_fixture_name(dependency) for dependency in requires)

    # pytest is imported here rather than at the top: `import kubefixtures` (the CLI does)
    # must not pay for it. Under pytest it is loaded already.
    import pytest

    def fixture(request: pytest.FixtureRequest) -> Iterator[Any]:
        # Imported here, when a test needs an environment, not when the conftest loads.
        from kubefixtures.lifecycle import EnvironmentSpec
        from kubefixtures.session import session_state
        from kubefixtures.sharing import provisioning_for

        for dependency in required:
            request.getfixturevalue(dependency)
        session = session_state(request.config)
        fixture_name = request.fixturename or name or "environment"
        spec = EnvironmentSpec(
            name=fixture_name, sources=paths, values=frozen_values, timeout=timeout
        )
        claimed = session.claim(fixture)  # brought up in advance (see prestart)
        # Brought up here, shared with other xdist workers, or found in a details file.
        lifecycle = (
            claimed[0] if claimed else provisioning_for(spec, session, request.config, scope)
        )
        failure = None
        try:
            environment = claimed[1].result() if claimed else lifecycle.setup()
        except KubefixturesError as error:
            failure = str(error)
        if failure is not None:
            # One clear message instead of a traceback through kubefixtures internals (and
            # outside the except block, so that pytest shows no chained exception either).
            pytest.fail(failure, pytrace=False)
        lifecycle.report_ready()
        # The controls (env.exec, env.restart, ...) use the session's connection, whichever
        # way the environment came: brought up here, from a details file, or from the xdist
        # worker that manages it.
        context = environment.context
        environment._bind_controls(
            lambda: session.cluster(context), session.settings.image_overrides
        )
        tracked = session.track(fixture_name, lifecycle)
        try:
            yield environment
        finally:
            session.untrack(tracked)
            failed = tracked.failed_tests
            keep = session.settings.keep_on_failure and bool(failed)
            why = f"{len(failed)} failed test(s), first {failed[0]}" if keep else ""
            for problem in environment._close_controls(keep=keep):
                session.write_line(f"kubefixtures: tearing down {spec.name!r}: {problem}")
            try:
                lifecycle.teardown(keep=keep, why=why)
            except KubefixturesError as error:
                failure = f"tearing down environment {spec.name!r}: {error}"
            if failure is not None:
                pytest.fail(failure, pytrace=False)

    fixture.__name__ = name or "environment"
    fixture.__doc__ = f"kubefixtures environment from {', '.join(map(str, sources))}"
    # Found again by prestart() through pytest's fixture definitions.
    fixture.__dict__["__kubefixtures__"] = _Declaration(
        paths, frozen_values, scope, timeout, prestart=not required
    )
    if not _declarations:
        _start_importing()
    _declarations.append(fixture)
    return pytest.fixture(scope=scope, name=name)(fixture)


def _check_arguments(
    sources: Sequence[str | Path],
    values: Mapping[str, Any] | None,
    scope: str,
    timeout: float | None,
) -> None:
    """Mistakes in a declaration fail when the conftest is imported, not in some test."""
    if not sources:
        raise TypeError("environment() needs at least one source (a YAML file, dir or chart)")
    if scope not in _SCOPES:
        raise ValueError(f"environment(scope={scope!r}): scope must be one of {', '.join(_SCOPES)}")
    if timeout is not None:
        try:
            parse_seconds(str(timeout))
        except ValueError as error:
            raise ValueError(f"environment(timeout={timeout!r}): {error}") from None
    reserved = sorted(set(values or {}) & set(_BUILTINS))
    if reserved:
        raise ValueError(
            f"environment(values=...): {', '.join(reserved)} are built-in placeholders "
            "and cannot be set"
        )


@dataclass(frozen=True)
class _Declaration:
    sources: tuple[Path, ...]
    values: Mapping[str, Any]
    scope: Scope
    timeout: float | None
    prestart: bool = True


def prestart(items: Sequence[pytest.Item], config: pytest.Config) -> None:
    """Start bringing up, in the background, every session-scoped environment that the
    collected ``items`` use; their fixtures then only wait for what is still under way.

    Tests can be collected long before the first one needing an environment runs (and
    several environments come up side by side this way).
    """
    started: set[object] = set()
    for item in items:
        # pytest keeps each item's fixture definitions here (private, hence the getattr).
        definitions = getattr(getattr(item, "_fixtureinfo", None), "name2fixturedefs", {})
        for name in getattr(item, "fixturenames", ()):
            if not definitions.get(name):
                continue
            function = definitions[name][-1].func
            declaration = getattr(function, "__kubefixtures__", None)
            if not isinstance(declaration, _Declaration) or declaration.scope != "session":
                continue
            if not declaration.prestart:
                continue
            if function in started:
                continue
            started.add(function)
            # Only now: a suite that uses no environment never imports any of this.
            from kubefixtures.lifecycle import EnvironmentSpec
            from kubefixtures.session import session_state
            from kubefixtures.sharing import provisioning_for

            session = session_state(config)
            spec = EnvironmentSpec(
                name=name,
                sources=declaration.sources,
                values=declaration.values,
                timeout=declaration.timeout,
            )
            session.prestart(function, provisioning_for(spec, session, config, "session"))


def _fixture_name(dependency: Any) -> str:
    if not isinstance(dependency, str) or not dependency.isidentifier():
        raise TypeError(f"environment(requires=...): {dependency!r} is not a fixture name")
    return dependency


def _caller_directory() -> Path:
    """The directory of the module that called ``environment`` (sources are relative to it)."""
    frame = sys._getframe(2)
    module_file = frame.f_globals.get("__file__")
    return Path(module_file).resolve().parent if module_file else Path.cwd()
