"""The xdist state-file protocol (kubefixtures.xdist.state), without pytest-xdist or a cluster:
several Coordinators on one file play the workers; fake clocks keep the waits instant."""

from __future__ import annotations

import json
import multiprocessing
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from kubefixtures.xdist.state import Coordinator, ProcessRef, SharingError

KEY = "shop-0123456789ab"


class Clock:
    """A monotonic clock that only moves when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps = 0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps += 1
        self.now += seconds


def dead_process() -> ProcessRef:
    """A process that existed and is gone (reaped): its pid is free."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return ProcessRef(pid=child.pid, start="1")


def worker(
    path: Path,
    name: str,
    count: int = 3,
    *,
    clock: Clock | None = None,
    process: ProcessRef | None = None,
    grace: float = 10.0,
) -> Coordinator:
    clock = clock or Clock()
    return Coordinator(
        path,
        name,
        count,
        process=process,
        clock=clock,
        sleep=clock.sleep,
        unknown_worker_grace=grace,
    )


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "kubefixtures-xdist-run.json"


def test_the_first_claim_manages_and_later_ones_attach(state: Path) -> None:
    gw0, gw1, gw2 = (worker(state, f"gw{index}") for index in range(3))
    assert gw0.claim(KEY).role == "manager"
    attached = gw1.claim(KEY)
    assert attached.role == "attached"
    assert attached.manager == "gw0"
    assert attached.manager_process == gw0.process
    assert gw2.claim(KEY).role == "attached"
    shared = gw0.read().environments[KEY]
    assert set(shared.attached) == {"gw1", "gw2"}
    assert shared.attached["gw1"].pid == os.getpid()


def test_environments_are_claimed_independently(state: Path) -> None:
    gw0, gw1 = worker(state, "gw0"), worker(state, "gw1")
    assert gw0.claim("shop-1").role == "manager"
    assert gw1.claim("cache-2").role == "manager"
    assert gw1.claim("shop-1").role == "attached"


def test_attached_workers_get_what_the_manager_published(state: Path) -> None:
    gw0, gw1 = worker(state, "gw0"), worker(state, "gw1")
    gw0.claim(KEY)
    gw1.claim(KEY)
    payload = {"details": {"namespace": "kf-shop-abc"}, "objects": [{"kind": "Service"}]}
    publisher = threading.Timer(0.05, gw0.publish, args=(KEY, payload))
    publisher.start()
    real = Coordinator(state, "gw1", 3)  # real clock and sleep: the publish comes from a thread
    try:
        assert real.wait_ready(KEY, timeout=10) == payload
    finally:
        publisher.join()


def test_a_failed_setup_fails_every_attached_worker_with_its_message(state: Path) -> None:
    gw0, gw1, gw2 = (worker(state, f"gw{index}") for index in range(3))
    gw0.claim(KEY)
    gw1.claim(KEY)
    gw0.fail(KEY, "environment 'shop' timed out after 180 s: pod/redis not ready")
    with pytest.raises(SharingError, match=r"timed out after 180 s: pod/redis not ready"):
        gw1.wait_ready(KEY, timeout=60)
    # A worker arriving later fails at once rather than bringing up another one.
    with pytest.raises(SharingError, match=r"timed out after 180 s"):
        gw2.claim(KEY)


def test_a_dead_manager_ends_the_wait_at_once_with_a_clear_error(state: Path) -> None:
    clock = Clock()
    manager = worker(state, "gw0", clock=clock, process=dead_process())
    gw1 = worker(state, "gw1", clock=clock)
    manager.claim(KEY)
    with pytest.raises(SharingError) as raised:
        gw1.claim(KEY)
    message = str(raised.value)
    assert "xdist worker gw0" in message
    assert "died" in message
    assert "\n" not in message
    assert clock.sleeps == 0
    # Recorded: every later worker gets the same error without checking the pid itself.
    shared = gw1.read().environments[KEY]
    assert shared.status == "failed"
    assert shared.error == message


def test_a_manager_dying_while_others_wait_is_noticed_within_a_poll(state: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        manager = worker(state, "gw0", process=ProcessRef.of(child.pid))
        manager.claim(KEY)
        gw1 = Coordinator(state, "gw1", 2, poll=0.01)
        gw1.claim(KEY)
        threading.Timer(0.1, child.kill).start()
        with pytest.raises(SharingError, match="died"):
            gw1.wait_ready(KEY, timeout=30)
    finally:
        child.kill()
        child.wait()


def test_waiting_is_bounded(state: Path) -> None:
    clock = Clock()
    gw0, gw1 = worker(state, "gw0", clock=clock), worker(state, "gw1", clock=clock)
    gw0.claim(KEY)
    gw1.claim(KEY)
    with pytest.raises(SharingError, match=r"gw0 .*did not bring it up within 5 s"):
        gw1.wait_ready(KEY, timeout=5)
    assert 5 <= clock.now < 5.1


def test_release_waits_for_every_worker_that_may_still_run_a_test(state: Path) -> None:
    clock = Clock()
    gw0, gw1, gw2 = (worker(state, f"gw{index}", clock=clock) for index in range(3))
    for coordinator in (gw0, gw1, gw2):
        coordinator.join()
    gw0.claim(KEY)
    gw1.claim(KEY)  # gw2 never uses the environment, but may still need it later
    gw0.finish()
    gw1.finish()
    assert gw0.pending_workers(gw0.read(), waited=0) == ["gw2"]
    with pytest.raises(SharingError, match=r"workers gw2 still running after 1 s"):
        gw0.release(KEY, timeout=1)
    gw2.finish()
    assert gw0.release(KEY) == []
    assert gw0.read().environments[KEY].status == "released"


def test_release_does_not_wait_for_dead_workers(state: Path) -> None:
    clock = Clock()
    gw0 = worker(state, "gw0", 2, clock=clock)
    gw1 = worker(state, "gw1", 2, clock=clock, process=dead_process())  # kill -9'd
    gw0.join()
    gw1.join()
    gw0.claim(KEY)
    gw1.claim(KEY)
    gw0.finish()
    assert gw0.release(KEY) == []
    assert clock.sleeps == 0


def test_release_waits_for_workers_not_heard_from_only_for_a_grace_period(state: Path) -> None:
    clock = Clock()
    gw0 = worker(state, "gw0", 2, clock=clock, grace=3.0)  # gw1 never joined (crashed early)
    gw0.join()
    gw0.claim(KEY)
    gw0.finish()
    assert gw0.release(KEY) == []
    assert 3.0 <= clock.now < 3.2


def test_failures_on_any_worker_reach_the_manager(state: Path) -> None:
    clock = Clock()
    gw0, gw1 = worker(state, "gw0", 2, clock=clock), worker(state, "gw1", 2, clock=clock)
    gw0.join()
    gw1.join()
    gw0.claim(KEY)
    gw1.claim(KEY)
    gw1.record_failure(KEY, "test_cart.py::test_total")
    gw1.record_failure(KEY, "test_cart.py::test_total")  # recorded once
    gw0.record_failure(KEY, "test_cart.py::test_empty")
    gw1.detach(KEY)
    gw1.finish()
    gw0.finish()
    assert gw0.release(KEY) == ["test_cart.py::test_total", "test_cart.py::test_empty"]
    assert gw0.read().environments[KEY].attached == {}


def test_a_released_environment_is_brought_up_again_by_the_next_claim(state: Path) -> None:
    gw0, gw1 = worker(state, "gw0", 1), worker(state, "gw1", 1)
    gw0.join()
    gw0.claim(KEY)
    gw0.publish(KEY, {"details": {"secret": "s3cret"}})
    gw0.finish()
    gw0.release(KEY)
    assert "s3cret" not in state.read_text()  # the payload goes with the environment
    assert gw1.claim(KEY).role == "manager"


def test_the_state_file_is_private_and_json(state: Path) -> None:
    gw0 = worker(state, "gw0")
    gw0.join()
    assert stat.S_IMODE(state.stat().st_mode) == 0o600
    assert json.loads(state.read_text())["version"] == 1


def test_a_damaged_state_file_is_a_one_line_error(state: Path) -> None:
    state.write_text("{not json")
    with pytest.raises(SharingError, match=r"kubefixtures-xdist-run.json: the xdist state file"):
        worker(state, "gw0").claim(KEY)


def test_a_reused_pid_is_not_the_same_process() -> None:
    me = ProcessRef.current()
    assert me.alive()
    assert me.start is not None
    assert not ProcessRef(pid=me.pid, start="0").alive()
    assert not dead_process().alive()


def _claim(
    path: str, name: str, results: multiprocessing.Queue[tuple[str, str]], done: Any
) -> None:
    results.put((name, Coordinator(Path(path), name, 8).claim(KEY).role))
    done.wait(60)  # a manager that exited would be a dead manager to the others


def test_exactly_one_of_many_processes_claiming_at_once_manages(state: Path) -> None:
    context = multiprocessing.get_context("spawn")
    results: multiprocessing.Queue[tuple[str, str]] = context.Queue()
    done = context.Event()
    processes = [
        context.Process(target=_claim, args=(str(state), f"gw{index}", results, done))
        for index in range(6)
    ]
    for process in processes:
        process.start()
    try:
        roles = [results.get(timeout=60)[1] for _ in processes]
    finally:
        done.set()
        for process in processes:
            process.join(60)
    assert sorted(roles) == ["attached"] * 5 + ["manager"]


def test_a_state_file_that_is_not_utf8_is_a_one_line_error(state: Path) -> None:
    state.write_bytes(b'{"version": 1, "workers": {"caf\xe9": {}}}')
    with pytest.raises(SharingError) as caught:
        worker(state, "gw0").claim(KEY)
    assert str(caught.value) == f"{state}: the xdist state file is not UTF-8 text (line 1)"


def test_an_unwritable_shared_directory_is_a_one_line_error(
    state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As in a read-only shared temp dir: the lock file and the state file cannot be made."""
    real_open = os.open

    def refusing_open(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if str(path).startswith(str(state.parent)) and flags & os.O_CREAT:
            raise PermissionError(13, "Permission denied", str(path))
        return int(real_open(path, flags, *args, **kwargs))

    monkeypatch.setattr(os, "open", refusing_open)
    with pytest.raises(SharingError) as caught:
        worker(state, "gw0").join()
    assert str(caught.value) == (
        f"{state}.lock: cannot update the xdist state file: Permission denied"
    )
