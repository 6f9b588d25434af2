"""pytest-xdist workers sharing session-scoped environments through one state file.

Every worker of a run reads and writes ``kubefixtures-<testrunuid>.json`` in the temporary
directory the workers have in common, always under a FileLock for read-modify-write (plain
polls read without it: the file is replaced atomically, so a reader sees one version or
the next, never half of one). The protocol, per environment key:

1. The first worker to ``claim`` a key is its manager: it records itself (worker id and
   process) with status ``starting`` and brings the environment up.
2. Later workers register as attached (worker id and process) and ``wait_ready`` until
   the manager ``publish``-es the environment (its details and objects) or its ``fail``-ure.
   A manager whose process is gone is noticed within one poll: the wait ends with a
   one-line error instead of lasting forever.
3. The manager tears down only once every other worker of the run has ``finish``-ed (it
   will run no more tests) or is dead. Waiting for every worker, not only the attached
   ones, keeps a worker that needs the environment late from finding it gone and bringing
   up a second one. Workers mark themselves finished *before* tearing down their own
   fixtures, so two managers waiting for each other cannot deadlock.
4. Failed tests are recorded in the file as they happen, so that the manager knows, at
   teardown, whether any test on any worker failed with the environment (keep-on-failure).

Processes are identified by pid and start time (Linux: /proc/PID/stat), so a pid reused by
an unrelated process after a ``kill -9`` does not count as the worker being alive.

Pure standard library + pydantic + filelock: no pytest, no cluster; unit-tested on its own.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kubefixtures.errors import KubefixturesError
from kubefixtures.limits import read_text

__all__ = [
    "STATE_VERSION",
    "Claim",
    "Coordinator",
    "ProcessRef",
    "RunState",
    "SharedEnvironment",
    "SharingError",
    "WorkerState",
]

STATE_VERSION: Literal[1] = 1
T = TypeVar("T")

Status = Literal["starting", "ready", "failed", "released"]


class SharingError(KubefixturesError):
    """Sharing an environment between xdist workers failed (a dead manager, a timeout)."""


class ProcessRef(BaseModel):
    """A process: its pid, and when it started (to tell a reused pid from the original)."""

    model_config = ConfigDict(frozen=True)

    pid: int
    start: str | None = None

    @classmethod
    def of(cls, pid: int) -> ProcessRef:
        return cls(pid=pid, start=_start_time(pid))

    @classmethod
    def current(cls) -> ProcessRef:
        return cls.of(os.getpid())

    def alive(self) -> bool:
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # exists, but another user's: not one of our workers
            return False
        if self.start is None:
            return True
        started = _start_time(self.pid)
        # Zombies (killed, not yet reaped by their parent) have no usable start time.
        return started == self.start and not _is_zombie(self.pid)

    def __str__(self) -> str:
        return f"pid {self.pid}"


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may contain spaces: split after it.
    return text.rpartition(")")[2].split()


def _start_time(pid: int) -> str | None:
    fields = _stat_fields(pid)
    return fields[19] if fields and len(fields) > 19 else None  # field 22: starttime


def _is_zombie(pid: int) -> bool:
    fields = _stat_fields(pid)
    return fields is not None and bool(fields) and fields[0] in ("Z", "X")


class WorkerState(BaseModel):
    process: ProcessRef
    finished: bool = False  # runs no more tests (its fixtures may still be tearing down)


class SharedEnvironment(BaseModel):
    """One environment shared by the run's workers."""

    name: str = ""  # for messages: the environment's fixture name (keys carry a digest)
    manager: str
    manager_process: ProcessRef
    status: Status = "starting"
    error: str | None = None
    payload: dict[str, Any] | None = None  # what attached workers need: details, objects
    attached: dict[str, ProcessRef] = Field(default_factory=dict)
    failed_tests: list[str] = Field(default_factory=list)


class RunState(BaseModel):
    """The whole state file."""

    version: Literal[1] = STATE_VERSION
    workers: dict[str, WorkerState] = Field(default_factory=dict)
    environments: dict[str, SharedEnvironment] = Field(default_factory=dict)


class Claim(BaseModel):
    """The outcome of ``claim``: manage the environment, or attach to the manager's."""

    model_config = ConfigDict(frozen=True)

    role: Literal["manager", "attached"]
    manager: str
    manager_process: ProcessRef


class Coordinator:
    """One worker's handle on the run's state file.

    ``worker`` is the xdist worker id (``gw0``), ``worker_count`` the number of workers the
    run started with (``gw0`` .. ``gw{count-1}``, whom the manager expects to hear from).
    """

    def __init__(
        self,
        path: Path,
        worker: str,
        worker_count: int,
        *,
        process: ProcessRef | None = None,
        poll: float = 0.01,
        release_poll: float = 0.1,
        unknown_worker_grace: float = 10.0,
        lock_timeout: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        from filelock import FileLock  # only xdist runs that share an environment need it

        self.path = path
        self.worker = worker
        self.worker_count = worker_count
        self.process = process or ProcessRef.current()
        self._lock = FileLock(str(path) + ".lock", timeout=lock_timeout)
        self._poll = poll
        self._release_poll = release_poll
        self._unknown_grace = unknown_worker_grace
        self._lock_timeout = lock_timeout
        self._clock = clock
        self._sleep = sleep

    # --- the file -------------------------------------------------------------------------

    def read(self) -> RunState:
        """The state as it is now (no lock: writes replace the file atomically)."""
        try:
            # No size limit: this run's workers wrote it, in a directory only they share.
            text = read_text(self.path, limit=None)
        except FileNotFoundError:
            return RunState()
        except OSError as error:
            raise SharingError(f"{self.path}: cannot read the xdist state file: {error}") from None
        except ValueError as error:  # not UTF-8
            raise SharingError(f"{self.path}: the xdist state file {error}") from None
        try:
            return RunState.model_validate_json(text)
        except ValidationError as error:
            raise SharingError(
                f"{self.path}: the xdist state file is damaged ({error.errors()[0]['msg']})"
            ) from None

    def _write(self, state: RunState) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        try:
            with os.fdopen(descriptor, "w", encoding="utf-8") as stream:  # mkstemp: 0600
                stream.write(state.model_dump_json())
            os.replace(temporary, self.path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    def update(self, change: Callable[[RunState], T]) -> T:
        """Read, ``change`` in place, write back: all under the lock."""
        from filelock import Timeout

        try:
            with self._lock:
                state = self.read()
                result = change(state)
                self._write(state)
                return result
        except Timeout:
            raise SharingError(
                f"{self._lock.lock_file}: could not lock the xdist state file within "
                f"{self._lock_timeout:.0f} s"
            ) from None
        except OSError as error:  # a read-only or full shared temp directory
            where = error.filename or self.path
            raise SharingError(
                f"{where}: cannot update the xdist state file: {error.strerror or error}"
            ) from None

    # --- workers ----------------------------------------------------------------------------

    def join(self) -> None:
        """Say that this worker takes part in the run (before it runs any test)."""

        def change(state: RunState) -> None:
            state.workers[self.worker] = WorkerState(process=self.process)

        self.update(change)

    def finish(self) -> None:
        """Say that this worker runs no more tests. Idempotent."""

        def change(state: RunState) -> None:
            record = state.workers.get(self.worker) or WorkerState(process=self.process)
            state.workers[self.worker] = record.model_copy(update={"finished": True})

        self.update(change)

    # --- environments -----------------------------------------------------------------------

    def claim(self, key: str, name: str = "") -> Claim:
        """Become the manager of ``key`` if nobody is, else register as attached.

        Raises SharingError when the manager's process is gone (or its setup failed): the
        environment will never come, and saying so now beats a timeout.
        """

        def change(state: RunState) -> Claim:
            shared = state.environments.get(key)
            if shared is None or shared.status == "released" or shared.manager == self.worker:
                state.environments[key] = SharedEnvironment(
                    name=name or key, manager=self.worker, manager_process=self.process
                )
                return Claim(role="manager", manager=self.worker, manager_process=self.process)
            _check_usable(key, shared)
            shared.attached[self.worker] = self.process
            return Claim(
                role="attached", manager=shared.manager, manager_process=shared.manager_process
            )

        try:
            return self.update(change)
        except SharingError:
            self._mark_failed_if_manager_died(key)
            raise

    def publish(self, key: str, payload: dict[str, Any]) -> None:
        """The manager: the environment is ready; attached workers get ``payload``."""

        def change(state: RunState) -> None:
            shared = self._managed(state, key)
            shared.status = "ready"
            shared.payload = payload

        self.update(change)

    def fail(self, key: str, error: str) -> None:
        """The manager: setting up failed; attached workers fail with ``error``."""

        def change(state: RunState) -> None:
            shared = self._managed(state, key)
            shared.status = "failed"
            shared.error = error

        self.update(change)

    def wait_ready(self, key: str, timeout: float) -> dict[str, Any]:
        """An attached worker: wait for the manager's environment (bounded by ``timeout``)."""
        deadline = self._clock() + timeout
        while True:
            shared = self.read().environments.get(key)
            if shared is None or shared.status == "released":
                raise SharingError(
                    f"environment {_name(key, shared)!r} was torn down by its xdist manager "
                    f"before this worker ({self.worker}) could use it"
                )
            if shared.status == "ready" and shared.payload is not None:
                return shared.payload
            try:
                _check_usable(key, shared)
            except SharingError:
                self._mark_failed_if_manager_died(key)
                raise
            if self._clock() >= deadline:
                raise SharingError(
                    f"environment {_name(key, shared)!r}: xdist worker {shared.manager} "
                    f"({shared.manager_process}) did not bring it up within {timeout:.0f} s"
                )
            self._sleep(self._poll)

    def record_failure(self, key: str, test: str) -> None:
        """A test that used ``key`` failed on this worker (for keep-on-failure)."""

        def change(state: RunState) -> None:
            shared = state.environments.get(key)
            if shared is not None and test not in shared.failed_tests:
                shared.failed_tests.append(test)

        self.update(change)

    def detach(self, key: str) -> None:
        """An attached worker is done with ``key``."""

        def change(state: RunState) -> None:
            shared = state.environments.get(key)
            if shared is not None:
                shared.attached.pop(self.worker, None)

        self.update(change)

    def pending_workers(self, state: RunState, waited: float) -> list[str]:
        """The other workers that may still run a test: alive and not finished (and the
        expected ones not heard from yet, for ``unknown_worker_grace`` seconds)."""
        pending = [
            name
            for name, record in sorted(state.workers.items())
            if name != self.worker and not record.finished and record.process.alive()
        ]
        if waited < self._unknown_grace:
            expected = expected_workers(self.worker_count)
            pending += [name for name in expected if name not in state.workers]
        return sorted(set(pending) - {self.worker})

    def release(self, key: str, timeout: float | None = None) -> list[str]:
        """The manager: wait until no other worker may run a test any more, then mark
        ``key`` released. Returns every failed test recorded for it, by any worker.

        With ``timeout``, raises SharingError naming the workers still running after it.
        """
        started = self._clock()
        while True:
            waited = self._clock() - started
            pending, failed = self.update(partial(self._try_release, key=key, waited=waited))
            if not pending:
                return failed
            if timeout is not None and waited >= timeout:
                raise SharingError(
                    f"environment {key!r}: xdist workers {', '.join(pending)} still running "
                    f"after {timeout:.0f} s"
                )
            self._sleep(self._release_poll)

    def _try_release(
        self, state: RunState, *, key: str, waited: float
    ) -> tuple[list[str], list[str]]:
        pending = self.pending_workers(state, waited)
        shared = state.environments.get(key)
        failed = list(shared.failed_tests) if shared is not None else []
        if not pending and shared is not None and shared.manager == self.worker:
            shared.status = "released"
            shared.payload = None  # no secrets left lying around once it is gone
        return pending, failed

    # --- helpers ----------------------------------------------------------------------------

    def _managed(self, state: RunState, key: str) -> SharedEnvironment:
        shared = state.environments.get(key)
        if shared is None or shared.manager != self.worker:
            raise SharingError(f"environment {key!r} is not managed by worker {self.worker}")
        return shared

    def _mark_failed_if_manager_died(self, key: str) -> None:
        """Record a dead manager once, so that every later worker fails at once too."""

        def change(state: RunState) -> None:
            shared = state.environments.get(key)
            running = shared is not None and shared.status in ("starting", "ready")
            if shared is not None and running and not shared.manager_process.alive():
                shared.status = "failed"
                shared.error = _died(key, shared)

        with contextlib.suppress(SharingError):
            self.update(change)


def _name(key: str, shared: SharedEnvironment | None) -> str:
    return shared.name if shared is not None and shared.name else key


def _died(key: str, shared: SharedEnvironment) -> str:
    return (
        f"environment {_name(key, shared)!r}: xdist worker {shared.manager} "
        f"({shared.manager_process}), which managed it, died; its namespace is left to its "
        "lease (the operator or `kubefixtures gc` removes it)"
    )


def _check_usable(key: str, shared: SharedEnvironment) -> None:
    if shared.status == "failed":
        raise SharingError(
            shared.error or f"environment {_name(key, shared)!r} failed on {shared.manager}"
        )
    if not shared.manager_process.alive():
        raise SharingError(_died(key, shared))


def expected_workers(count: int) -> Iterable[str]:
    """The ids of the workers xdist started the run with."""
    return (f"gw{index}" for index in range(count))
