"""The pytest plugin: options, ini keys and hooks only; the work is done elsewhere.

Loaded by every pytest run in an environment where kubefixtures is installed, so it imports
nothing heavy: the Kubernetes client, pydantic and yaml come in only when a test uses an
environment.
"""

from __future__ import annotations

from collections.abc import Generator
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any

import pytest

from kubefixtures.errors import SettingsError
from kubefixtures.settings import OPTIONS, Settings

if TYPE_CHECKING:
    from kubefixtures.session import SessionState

# Lines of a worker's terminal summary, sent to the xdist controller, which prints them:
# a worker's own terminal output is never shown.
WORKER_SUMMARY = "kubefixtures_summary"
# What a worker gathered for the session report (environments, phases, kept namespaces).
WORKER_REPORT = "kubefixtures_report"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("kubefixtures", "kubefixtures: services on Kubernetes")
    for option in OPTIONS:
        help_text = f"{option.help} (ini: {option.ini}; default: {option.default or 'unset'})"
        if option.kind == "flag":
            # `--kubefixtures-keep-on-failure` alone means true; `=false` turns a default off.
            group.addoption(
                option.flag, nargs="?", const="true", dest=option.dest, default=None,
                metavar=option.placeholder, help=help_text,
            )  # fmt: skip
        elif option.kind == "pairs":
            group.addoption(
                option.flag, action="append", dest=option.dest, default=None,
                metavar=option.placeholder, help=help_text,
            )  # fmt: skip
        else:
            group.addoption(
                option.flag, dest=option.dest, default=None, metavar=option.placeholder,
                help=help_text,
            )  # fmt: skip
        if option.kind == "pairs":
            parser.addini(option.ini, help=option.help, type="linelist", default=None)
        else:
            parser.addini(option.ini, help=option.help, type="string", default=None)


def pytest_configure(config: pytest.Config) -> None:
    _import_without_rewriting(config)
    from kubefixtures.session import SESSION_KEY, SessionState  # cheap, but only here

    try:
        settings = Settings.from_config(config)
    except SettingsError as error:
        raise pytest.UsageError(f"kubefixtures: {error}") from None

    def write_line(line: str) -> None:
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is None:
            print(line)
            return
        # Environments come up during a test's setup, while output is captured: suspend the
        # capture (as live logging does) so that the line reaches the terminal now.
        capture = config.pluginmanager.get_plugin("capturemanager")
        suspended = capture.global_and_fixture_disabled() if capture else nullcontext()
        with suspended:
            # Progress dots or a test id may be on the current line: start a fresh one.
            writer = getattr(reporter, "_tw", None)
            if getattr(writer, "width_of_current_line", 1):
                reporter.write("\n")
            reporter.write_line(line)

    state = SessionState(settings, write_line)
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None:
        state.worker = str(workerinput.get("workerid") or "") or None
    config.stash[SESSION_KEY] = state
    if settings.report and workerinput is None:
        config.pluginmanager.register(_OutcomeCounter(state), "kubefixtures-report-outcomes")
    from kubefixtures import factories

    # The conftests that declare environments are loaded by now (those of deeper
    # directories come with collection, and connect when their environments start).
    if factories.declared() and _provisions(config):
        # A kubeconfig that only the official client can read (auth-provider) imports it
        # in a background thread, often while a test runs. requests silences urllib3's
        # warning about PySocks with a global filter, which pytest's per-test filters
        # replace: the warning would land in, or with filterwarnings=error fail, whatever
        # test was running. Keep requests' intent (by message: naming the category would
        # import urllib3 in every run).
        config.addinivalue_line("filterwarnings", "ignore:SOCKS support in urllib3:Warning")
        state.warm_up()  # connect (read-only) while pytest starts the session and collects
        if workerinput is not None or not getattr(config.option, "numprocesses", None):
            # Beside it, what the first environment needs (not on an xdist controller: its
            # workers bring the environments up), and first the relay process if the
            # settings want one.
            factories.start_importing(first=state.start_relay)
        state.arm_cancel()  # SIGTERM/SIGINT/SIGHUP: tear down at once (kubefixtures.cancel)


def _import_without_rewriting(config: pytest.Config) -> None:
    """Import the rest of kubefixtures as Python does, not through pytest's assertion
    rewriting. pytest rewrites every module of a plugin's distribution, for assertions
    in tests that a plugin ships; ours has none (its asserts are type-checker hints), and
    the rewriting import hook costs about a third more CPU per module: some 0.03 s on a
    first environment's path (benchmarks/pool.py, part 3). Private to pytest, hence the
    care: where its hook looks different, nothing changes."""
    hook = getattr(config.pluginmanager, "rewrite_hook", None)
    marked = getattr(hook, "_must_rewrite", None)
    cache = getattr(hook, "_marked_for_rewrite_cache", None)
    if not isinstance(marked, set) or not isinstance(cache, dict):
        return
    package = __name__.partition(".")[0]
    marked.discard(package)
    for name in [name for name in cache if name == package or name.startswith(f"{package}.")]:
        del cache[name]


@pytest.hookimpl(tryfirst=True)
def pytest_collection(session: pytest.Session) -> None:
    # Test modules import what they like as they are collected: kubefixtures' own background
    # import must be over by then (kubefixtures.factories.imported says why).
    from kubefixtures import factories

    factories.imported()


# Before pytest-xdist's worker reports its collection: its controller hands out tests only
# once every worker has, so each has claimed the environments it brings up in advance.
@pytest.hookimpl(tryfirst=True)
def pytest_collection_finish(session: pytest.Session) -> None:
    from kubefixtures import factories
    from kubefixtures.session import SESSION_KEY

    state = session.config.stash.get(SESSION_KEY, None)
    if state is None or not factories.declared() or not _provisions(session.config):
        return
    if hasattr(session.config, "workerinput"):
        from kubefixtures.errors import KubefixturesError
        from kubefixtures.xdist.workers import join_worker

        try:
            join_worker(session.config)  # before any test: managers expect every worker
        except KubefixturesError as error:
            # A worker's own terminal output is never shown: the summary reaches the controller.
            state.summary_lines.append(
                f"kubefixtures: not sharing environments with other workers: {error}"
            )
    # On pytest-xdist workers too, once joined: each brings up its share of the run's
    # session environments (kubefixtures.xdist.workers.prestarts_here).
    if state.settings.prestart:
        factories.prestart(session.items, session.config)


def pytest_report_header(config: pytest.Config) -> str | None:
    """``kubefixtures X.Y.Z: cluster CONTEXT (SERVER)``, for suites that declare environments
    (read from the kubeconfig: nothing is contacted). Nothing for other suites."""
    from kubefixtures import factories
    from kubefixtures.session import SESSION_KEY

    state = config.stash.get(SESSION_KEY, None)
    if state is None or not factories.declared() or hasattr(config, "workerinput"):
        return None
    from kubefixtures.report.header import header_line

    return header_line(state.settings.kubeconfig, state.settings.context)


def _provisions(config: pytest.Config) -> bool:
    """False for runs that only list or plan tests: they must not create anything."""
    option = config.option
    return not (
        getattr(option, "collectonly", False)
        or getattr(option, "setupplan", False)
        or getattr(option, "setuponly", False)
    )


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    # Before this worker's last teardown, which may be where it tears down environments
    # it manages: other workers' managers need not wait for it any more.
    if nextitem is None and hasattr(item.config, "workerinput"):
        from kubefixtures.xdist.workers import finish_worker

        finish_worker(item.config)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed or report.when == "teardown":
        from kubefixtures.session import SESSION_KEY

        state = item.config.stash.get(SESSION_KEY, None)
        fixtures = getattr(item, "fixturenames", ())
        if state is not None and report.failed:
            state.record_failure(item.nodeid, fixtures)
            from kubefixtures.reporting import add_to_report

            alive = state.alive(fixtures) if state.settings.diagnostics else []
            add_to_report(report, fixtures, alive, state.settings.log_lines)
        if state is not None and report.when == "teardown":
            state.flush()  # lines from background threads, shown between tests
    return report


class _OutcomeCounter:
    """Registered when a session report is asked for: counts the tests' outcomes (under
    xdist, the controller is given every worker's reports)."""

    def __init__(self, state: SessionState) -> None:
        self.state = state

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.state.report.count(report.when, report.outcome, hasattr(report, "wasxfail"))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    from kubefixtures.session import SESSION_KEY

    state = terminalreporter.config.stash.get(SESSION_KEY, None)
    if state is not None:
        state.flush()
    # One line per environment (every xdist worker's too), then kept namespaces and such.
    lines = [*state.report.summary_lines(), *state.summary_lines] if state is not None else []
    if lines:
        terminalreporter.section("kubefixtures")
        for line in lines:
            terminalreporter.write_line(line)


@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> Generator[None, None, None]:
    from kubefixtures.session import SESSION_KEY

    config = session.config
    workeroutput: dict[str, Any] | None = getattr(config, "workeroutput", None)
    if workeroutput is not None:  # a worker stopped early (-x) did not say so yet
        from kubefixtures.xdist.workers import finish_worker

        finish_worker(config)
    try:
        yield  # session-scoped fixtures are torn down in there (if not already)
    finally:
        from kubefixtures import cancel

        cancel.finishing()  # torn down: a late SIGTERM must not interrupt what follows
        state = config.stash.get(SESSION_KEY, None)
        if state is not None:
            state.release_unclaimed()
            state.finish_pool()  # copies coming up for the next runs: their lines in the summary
            if workeroutput is not None:
                state.flush()
                workeroutput[WORKER_SUMMARY] = list(state.summary_lines)
                workeroutput[WORKER_REPORT] = state.report.worker_output()
            elif state.settings.report:
                from kubefixtures.report.files import write_session_report

                state.summary(write_session_report(state, int(session.exitstatus)))


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    """pytest-xdist's controller: a worker is done; print its summary lines with ours, and
    merge its environments into the session report."""
    output = getattr(node, "workeroutput", None) or {}
    lines = output.get(WORKER_SUMMARY) or []
    gathered = output.get(WORKER_REPORT)
    if not lines and not gathered:
        return
    from kubefixtures.session import session_state

    state = session_state(node.config)
    state.summary_lines.extend(str(line) for line in lines)
    if gathered:
        worker = str((getattr(node, "workerinput", None) or {}).get("workerid") or "gw?")
        try:
            state.report.merge(worker, gathered)
        except (ValueError, KeyError, TypeError) as problem:  # another kubefixtures release?
            first = (str(problem).splitlines() or [type(problem).__name__])[0]
            state.summary(f"kubefixtures: xdist worker {worker}'s environments: {first}")


@pytest.hookimpl(optionalhook=True)
def pytest_testnodeready(node: Any) -> None:
    """pytest-xdist's controller: remember the worker's pid, to pass a cancel signal on."""
    popen = getattr(getattr(getattr(node, "gateway", None), "_io", None), "popen", None)
    pid = getattr(popen, "pid", None)
    if isinstance(pid, int):
        from kubefixtures.session import session_state

        session_state(node.config).worker_pids.append(pid)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    from kubefixtures import cancel
    from kubefixtures.session import SESSION_KEY

    state = config.stash.get(SESSION_KEY, None)
    if state is None:
        return
    state.close()
    signum = cancel.requested()
    if signum is not None:
        cancel.release_now()  # what is still coming up in the background: released
    cancel.uninstall(state.cancelled)
    # Last of all: a run cancelled by SIGTERM/SIGHUP ends by that signal (see
    # kubefixtures.cancel). Not xdist workers: their controller reports how they ended.
    if not hasattr(config, "workerinput"):
        cancel.exit_by_signal(signum)
