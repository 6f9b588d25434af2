"""The pytest plugin: options, ini keys and hooks only; the work is done elsewhere.

Loaded by every pytest run in an environment where kubefixtures is installed, so it imports
nothing heavy: the Kubernetes client, pydantic and yaml come in only when a test uses an
environment.
"""

from __future__ import annotations

from collections.abc import Generator
from contextlib import nullcontext
from typing import Any

import pytest

from kubefixtures.errors import SettingsError
from kubefixtures.settings import OPTIONS, Settings

# Lines of a worker's terminal summary, sent to the xdist controller, which prints them:
# a worker's own terminal output is never shown.
WORKER_SUMMARY = "kubefixtures_summary"


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
    config.stash[SESSION_KEY] = state
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
        state.arm_cancel()  # SIGTERM/SIGINT/SIGHUP: tear down at once (kubefixtures.cancel)


def pytest_collection_finish(session: pytest.Session) -> None:
    from kubefixtures import factories
    from kubefixtures.session import SESSION_KEY

    state = session.config.stash.get(SESSION_KEY, None)
    # Not on pytest-xdist workers: each collects every test but runs only some, so it would
    # bring up environments that it never uses.
    on_worker = hasattr(session.config, "workerinput")
    wanted = state is not None and state.settings.prestart and not on_worker
    if wanted and _provisions(session.config):
        factories.prestart(session.items, session.config)
    if on_worker and state is not None and factories.declared() and _provisions(session.config):
        from kubefixtures.errors import KubefixturesError
        from kubefixtures.xdist.workers import join_worker

        try:
            join_worker(session.config)  # before any test: managers expect every worker
        except KubefixturesError as error:
            # A worker's own terminal output is never shown: the summary reaches the controller.
            state.summary_lines.append(
                f"kubefixtures: not sharing environments with other workers: {error}"
            )


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


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    from kubefixtures.session import SESSION_KEY

    state = terminalreporter.config.stash.get(SESSION_KEY, None)
    if state is not None:
        state.flush()
    if state is not None and state.summary_lines:
        terminalreporter.section("kubefixtures")
        for line in state.summary_lines:
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


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    """pytest-xdist's controller: a worker is done; print its summary lines with ours."""
    lines = (getattr(node, "workeroutput", None) or {}).get(WORKER_SUMMARY) or []
    if not lines:
        return
    from kubefixtures.session import session_state

    session_state(node.config).summary_lines.extend(str(line) for line in lines)


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
