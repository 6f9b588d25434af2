"""``environment(...)``: declare, at module level in a conftest, a fixture that brings up
services on Kubernetes::

    shop = environment("manifests/shop/", values={"redis_version": "7"})

The fixture is named after the variable (or ``name=``); its value is an ``Environment``.
Nothing happens at declaration time beyond checking the arguments: the cluster is only
contacted (and what bringing environments up needs imported, in the background) once pytest
is configured, and nothing is created before a collected test uses the fixture.
"""

from __future__ import annotations

import contextlib
import importlib
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from kubefixtures.declarations import BUILTIN_PLACEHOLDERS, caller_directory
from kubefixtures.errors import KubefixturesError
from kubefixtures.limits import parse_seconds

if TYPE_CHECKING:
    from concurrent.futures import Future

    import pytest

    from kubefixtures.details import Environment
    from kubefixtures.provisioning.base import EnvironmentSpec, Provisioning
    from kubefixtures.readiness.app import Probe
    from kubefixtures.session import SessionState

__all__ = [
    "declared",
    "environment",
    "import_models",
    "imported",
    "prestart",
    "start_importing",
]

Scope = Literal["session", "package", "module", "class", "function"]
_SCOPES = ("session", "package", "module", "class", "function")
_declarations: list[object] = []  # every environment() fixture declared in this process


# What bringing the first environment up imports, up to its details: about 0.15 s of CPU
# (the API client, the forwarder, provisioning, rendering). The plugin starts importing it
# in a background thread once pytest is configured, beside the connection
# (``start_importing``), and collection waits for it (``imported``). Packages before their
# modules.
_PRELOADED = (
    "kubefixtures.kube",
    "kubefixtures.kube.portforward",
    "kubefixtures.control",
    "kubefixtures.session",
    "kubefixtures.provisioning.dispatch",
    "kubefixtures.provisioning.shared",
    "kubefixtures.provisioning.pooled",
    "kubefixtures.provisioning.reused",
    "kubefixtures.xdist.workers",
    "kubefixtures.leases.renewal",
    "kubefixtures.readiness.wait",
)
_importing: list[threading.Thread] = []  # the import thread (later ones: only `first`)
# What an environment needs once it is up: pydantic and the models built with it (the
# details, the report's records), about 0.1 s of CPU. Imported by the main thread right
# after ``prestart`` has started the environments (``import_models``): pydantic's import
# then overlaps their round trips to the cluster (a claimed spare is mostly those), where
# it used to delay collection. Never beside another thread's import of pydantic: the
# setups import it through kubefixtures.details too, and wait for this import to finish.
_MODELS = ("kubefixtures.details", "kubefixtures.report.model")


def start_importing(first: Callable[[], None] | None = None) -> None:
    """Import what bringing environments up needs, in a background thread (once). Nothing
    here talks to a cluster. ``first`` runs in that thread once ``kubefixtures.kube`` is
    imported, before the rest (it may import modules of the package: never beside another
    thread's import of them); in a later session of the same process (pytester) it runs
    alone."""
    if _importing and first is None:
        return
    names = () if _importing else _PRELOADED
    thread = threading.Thread(
        target=_import_after, args=(first, names), name="kubefixtures-import", daemon=True
    )
    _importing.append(thread)
    thread.start()


def imported() -> None:
    """Wait for the background import. Called before anything else may import modules of
    the package (test modules, as they are collected; the fixtures): a thread that imports
    a module while another imports its package may get it half-initialised (ImportError:
    partially initialized module), so the two never overlap."""
    for thread in _importing:
        thread.join()


def import_models() -> None:
    """Import pydantic's models (``_MODELS``), here, in the calling thread."""
    _import_all(_MODELS)


def _import_after(first: Callable[[], None] | None, names: Sequence[str]) -> None:
    # The API package before ``first``: a thread that imports a module of the package first
    # holds that module's import lock while it waits for the package, and deadlocks with
    # the connecting thread, whose import of the package imports that module (Python then
    # hands one of them a partially initialised module: ImportError).
    _import_all(names[:1])
    if first is not None:
        with contextlib.suppress(Exception):  # best effort: whatever needs it says why
            first()
    _import_all(names[1:])


def _import_all(names: Sequence[str]) -> None:
    for name in names:
        try:
            importlib.import_module(name)
        except Exception:  # the import that needs it says what is wrong
            return


def declared() -> int:
    """How many environments the loaded conftests and modules declared."""
    return len(_declarations)


def environment(
    *sources: str | Path,
    name: str | None = None,
    values: Mapping[str, Any] | None = None,
    values_files: Sequence[str | Path] = (),
    scope: Scope = "session",
    timeout: float | None = None,
    requires: Sequence[str] = (),
    ready: Mapping[str, str | Callable[[Environment], object]] | None = None,
) -> Any:  # pytest's type for a fixture definition is private
    """A fixture factory: the returned fixture brings up ``sources`` in a fresh namespace.

    ``sources`` are YAML files, directories of YAML files, or Helm chart directories; relative
    paths are relative to the file that calls ``environment``. ``values`` fill ``${name}``
    placeholders (and are a Helm chart's values); ``values_files`` are YAML files of values,
    merged in order under ``values`` (relative like ``sources``). ``timeout`` overrides the
    ``ready-timeout`` setting for this environment. ``requires`` names fixtures to set up
    before this environment is applied, such as the ``kubefixtures.catalog.app_image``
    whose image it runs; such an environment is not brought up in advance (see
    ``prestart``), since it has to wait for them. ``ready`` maps Service names to how to
    tell that their application answers, once the objects are ready and within the same
    deadline: ``"http:/PATH"`` (a 2xx), ``"tcp"``, or a callable given the Environment
    (kubefixtures.readiness.app).
    """
    _check_arguments(sources, values, values_files, scope, timeout)
    probes = _probes(ready)
    paths, files = _beside_the_caller(sources, values_files)
    frozen_values = dict(values or {})
    required = tuple(_fixture_name(dependency) for dependency in requires)

    # pytest is imported here rather than at the top: `import kubefixtures` (the CLI does)
    # must not pay for it. Under pytest it is loaded already.
    import pytest

    declaration = _Declaration(
        paths,
        frozen_values,
        scope,
        timeout,
        prestart=not required,
        values_files=files,
        ready=probes,
    )

    def fixture(request: pytest.FixtureRequest) -> Iterator[Any]:
        # Imported here, when a test needs an environment (in the background since pytest
        # was configured: see start_importing).
        imported()
        from kubefixtures.provisioning.dispatch import provisioning_for
        from kubefixtures.session import session_state
        from kubefixtures.xdist.workers import coordinator

        _set_up_first(request, required)
        session = session_state(request.config)
        fixture_name = request.fixturename or name or "environment"
        spec = declaration.spec(fixture_name)
        claimed = session.claim(fixture)  # brought up in advance (see prestart)
        # Brought up here, shared with other xdist workers, or found in a details file.
        lifecycle = (
            claimed[0]
            if claimed
            else provisioning_for(spec, session.view(), coordinator(request.config), scope)
        )
        failure = None
        try:
            environment = _bring_up(session, lifecycle, claimed, scope)
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
        environment._bind_controls(
            partial(session.cluster, environment.context), session.settings.image_overrides
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
    fixture.__dict__["__kubefixtures__"] = declaration
    _declarations.append(fixture)
    return pytest.fixture(scope=scope, name=name)(fixture)


def _set_up_first(request: pytest.FixtureRequest, required: Sequence[str]) -> None:
    """The fixtures an environment requires (``requires=``), set up before it."""
    for dependency in required:
        request.getfixturevalue(dependency)


def _bring_up(
    session: SessionState,
    lifecycle: Provisioning,
    claimed: tuple[Provisioning, Future[Environment]] | None,
    scope: str,
) -> Environment:
    """The environment: set up here, or brought up in advance (``claimed``); recorded, with
    its phases, for the terminal summary and the session report."""
    try:
        environment = _set_up(session, lifecycle, claimed)
    except KubefixturesError as error:
        session.record(lifecycle, scope, None, str(error))
        raise
    session.record(lifecycle, scope, environment)
    return environment


def _set_up(
    session: SessionState,
    lifecycle: Provisioning,
    claimed: tuple[Provisioning, Future[Environment]] | None,
) -> Environment:
    if claimed is None:
        return lifecycle.setup()
    try:
        return claimed[1].result()
    except BaseException as error:
        if not isinstance(error, Exception):  # its own failure: it cleaned up after itself
            # Interrupted (SIGTERM...) while it came up: torn down with the unclaimed ones.
            session.abandon(lifecycle, claimed[1])
        raise


def _beside_the_caller(
    *groups: Sequence[str | Path],
) -> tuple[tuple[Path, ...], ...]:
    """Each group of paths, relative ones taken from the directory of the conftest (or
    module) that declared the environment."""
    base = caller_directory(depth=2)  # the caller of environment()
    return tuple(
        tuple(path if path.is_absolute() else base / path for path in map(Path, group))
        for group in groups
    )


def _check_arguments(
    sources: Sequence[str | Path],
    values: Mapping[str, Any] | None,
    values_files: Sequence[str | Path],
    scope: str,
    timeout: float | None,
) -> None:
    """Mistakes in a declaration fail when the conftest is imported, not in some test."""
    if not sources:
        raise TypeError("environment() needs at least one source (a YAML file, dir or chart)")
    if isinstance(values_files, str | Path):
        raise TypeError("environment(values_files=...) takes a list of files")
    if scope not in _SCOPES:
        raise ValueError(f"environment(scope={scope!r}): scope must be one of {', '.join(_SCOPES)}")
    if timeout is not None:
        try:
            parse_seconds(str(timeout))
        except ValueError as error:
            raise ValueError(f"environment(timeout={timeout!r}): {error}") from None
    reserved = sorted(set(values or {}) & set(BUILTIN_PLACEHOLDERS))
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
    values_files: tuple[Path, ...] = ()
    ready: Mapping[str, Probe] = field(default_factory=dict)

    def spec(self, name: str) -> EnvironmentSpec:
        """What the fixture named ``name`` brings up."""
        from kubefixtures.provisioning.base import EnvironmentSpec

        return EnvironmentSpec(
            name=name,
            sources=self.sources,
            values=self.values,
            timeout=self.timeout,
            values_files=self.values_files,
            ready=self.ready,
        )


def prestart(items: Sequence[pytest.Item], config: pytest.Config) -> None:
    """Start bringing up, in the background, every session-scoped environment that the
    collected ``items`` use; their fixtures then only wait for what is still under way.
    With a pool (``--kubefixtures-pool``), the spare copies of narrower-scoped environments
    start coming up too.

    Tests can be collected long before the first one needing an environment runs (and
    several environments come up side by side this way). On a pytest-xdist worker, only
    those this worker brings up for the whole run (``xdist.workers.prestarts_here``): the
    other workers attach to them as usual.
    """
    wanted = _prestartable(items)
    if not wanted:
        return
    # Only now: a suite that uses no environment never imports any of this.
    imported()
    from kubefixtures.provisioning.dispatch import provisioning_for
    from kubefixtures.provisioning.shared import SharedProvisioning
    from kubefixtures.session import session_state
    from kubefixtures.xdist.workers import coordinator, prestarts_here

    session = session_state(config)
    index = 0  # among session-scoped environments: the same on every xdist worker
    for name, function, declaration, uses in wanted:
        spec = declaration.spec(name)
        if declaration.scope != "session":
            # Narrower scopes come up test by test; with a pool, their first spare copies
            # start now, while the first tests run, as many as the run will claim (up to a
            # bound). An xdist worker collects every test but runs its share only: it
            # keeps the pool's size.
            if session.settings.pool and not session.settings.reuse:
                worker = hasattr(config, "workerinput")
                session.spare_pool().prepare(spec, uses=0 if worker else uses)
            continue
        index += 1
        if not prestarts_here(config, index - 1):
            continue
        provisioning = provisioning_for(spec, session.view(), coordinator(config), "session")
        if isinstance(provisioning, SharedProvisioning):
            try:
                managing = provisioning.claim_in_advance()
            except KubefixturesError:
                continue  # its fixture meets the error again, and fails with it
            if not managing:
                continue  # another worker brings it up: the fixture attaches when needed
        session.prestart(function, provisioning)
    import_models()  # while those claim, create and wait on the cluster (see _MODELS)


def _prestartable(items: Sequence[pytest.Item]) -> list[tuple[str, object, _Declaration, int]]:
    """The environments the ``items`` use that can come up in advance (fixture name,
    fixture function, declaration, how many times the ``items`` bring it up: once per test,
    module, ... of its scope), in the order of their first use: the same list on every
    xdist worker, which all collect the same items. Session-scoped ones come up in
    advance; narrower ones only have their pool's spares prepared."""
    found: dict[object, tuple[str, object, _Declaration]] = {}
    instances: dict[object, set[object]] = {}
    for item in items:
        # pytest keeps each item's fixture definitions here (private, hence the getattr).
        definitions = getattr(getattr(item, "_fixtureinfo", None), "name2fixturedefs", {})
        for name in getattr(item, "fixturenames", ()):
            if not definitions.get(name):
                continue
            function = definitions[name][-1].func
            declaration = getattr(function, "__kubefixtures__", None)
            if not isinstance(declaration, _Declaration):
                continue
            if declaration.prestart and function not in found:
                found[function] = (name, function, declaration)
            instances.setdefault(function, set()).add(_instance(item, declaration.scope))
    return [(*entry, len(instances[function])) for function, entry in found.items()]


def _instance(item: pytest.Item, scope: Scope) -> object:
    """What one environment of ``scope`` serves, for ``item``: the test, its class, its
    module, its package (tests in a row share one, as pytest's fixtures do)."""
    if scope == "function":
        return item.nodeid
    if scope == "class":
        return (item.path, getattr(item, "cls", None))
    if scope == "module":
        return item.path
    return item.path.parent if scope == "package" else None


def _probes(ready: Mapping[str, object] | None) -> dict[str, Probe]:
    """``ready=``, checked now: a probe that is not one fails when the conftest loads (the
    Services it names are checked once the sources are rendered)."""
    if not ready:
        return {}
    from kubefixtures.readiness.app import parse  # standard library only

    return parse(ready)


def _fixture_name(dependency: Any) -> str:
    if not isinstance(dependency, str) or not dependency.isidentifier():
        raise TypeError(f"environment(requires=...): {dependency!r} is not a fixture name")
    return dependency
