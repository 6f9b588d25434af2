"""A pytest-xdist worker's part in sharing environments: joining the run's state file before
the first test, and saying when it runs no more tests.

The plugin calls these from hooks on every xdist worker, so this module stays light: the
protocol (kubefixtures.xdist.state: pydantic, filelock) is imported only by workers of a
suite that declares environments.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from kubefixtures.xdist.state import Coordinator

__all__ = ["coordinator", "finish_worker", "join_worker", "prestarts_here", "state_path"]

_COORDINATOR = pytest.StashKey["Coordinator | None"]()
_FINISHED = pytest.StashKey[bool]()


def _workerinput(config: pytest.Config) -> dict[str, Any] | None:
    workerinput: dict[str, Any] | None = getattr(config, "workerinput", None)
    return workerinput


def state_path(config: pytest.Config, run_id: str) -> Path:
    """The state file, in the directory every worker of the run has in common: xdist gives
    each worker ``<run's basetemp>/popen-gwN`` as its own basetemp."""
    basetemp = getattr(config.option, "basetemp", None)
    if basetemp:
        directory = Path(basetemp).parent
    else:  # a worker without a basetemp (not a popen gateway): per user, still private
        directory = Path(tempfile.gettempdir()) / f"kubefixtures-{os.getuid()}"
        try:
            directory.mkdir(mode=0o700, exist_ok=True)
        except OSError as error:
            from kubefixtures.errors import KubefixturesError

            raise KubefixturesError(
                f"{directory}: cannot create the xdist state directory: {error.strerror or error}"
            ) from None
    return directory / f"kubefixtures-xdist-{run_id}.json"


def join_worker(config: pytest.Config) -> None:
    """On an xdist worker: take part in sharing (before the first test runs)."""
    workerinput = _workerinput(config)
    if workerinput is None or _COORDINATOR in config.stash:
        return
    run_id = str(workerinput.get("testrunuid") or os.environ.get("PYTEST_XDIST_TESTRUNUID", ""))
    if not run_id:
        config.stash[_COORDINATOR] = None
        return
    from kubefixtures.xdist.state import Coordinator

    shared = Coordinator(
        state_path(config, run_id),
        worker=str(workerinput.get("workerid", "gw?")),
        worker_count=int(workerinput.get("workercount", 1)),
    )
    config.stash[_COORDINATOR] = None  # joined or not, only once
    shared.join()
    config.stash[_COORDINATOR] = shared


def coordinator(config: pytest.Config) -> Coordinator | None:
    """This worker's handle on the run's state file; None when it does not share."""
    return config.stash.get(_COORDINATOR, None)


def prestarts_here(config: pytest.Config, index: int) -> bool:
    """Whether this process brings up, in advance, the ``index``-th session environment of
    the collected tests (kubefixtures.factories.prestart). Outside xdist: every one. On an
    xdist worker that shares: every ``workercount``-th, ``gw0`` from the first on, so that
    the workers bring the run's environments up side by side, each once (whoever claims
    one first in the state file manages it; the others attach). Any worker may run any
    test (``--dist load``), so which one is no better guess than another. A worker that
    does not share brings nothing up in advance: it would be a copy it may never use.
    """
    workerinput = _workerinput(config)
    if workerinput is None:
        return True
    if coordinator(config) is None:
        return False
    count = max(int(workerinput.get("workercount", 1)), 1)
    worker = str(workerinput.get("workerid", ""))
    number = worker.removeprefix("gw")
    return number.isdigit() and index % count == int(number) % count


def finish_worker(config: pytest.Config) -> None:
    """This worker runs no more tests: managers elsewhere need not wait for it. Called
    before its own fixtures are torn down, so that managers never wait for each other."""
    shared = coordinator(config)
    if shared is None or config.stash.get(_FINISHED, False):
        return
    config.stash[_FINISHED] = True
    from kubefixtures.errors import KubefixturesError

    # Failing to say so only makes managers wait until this process has exited.
    with contextlib.suppress(KubefixturesError, OSError):
        shared.finish()
