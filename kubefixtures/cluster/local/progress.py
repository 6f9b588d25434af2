"""Go builds run side by side in lanes, with a progress line at least every 30 s.

`go build -v` names each package as it compiles it (packages found in Go's build cache are
not named), and `go list -deps` says how many packages the binary has in all, so a line
reads "Kubernetes v1.35.4 compiling 1234/2693 packages". The time left extrapolates the
rate measured so far; before there is one, it is the figure measured on a fresh 2-core
machine (README). Each build's whole output goes to its log file.
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from kubefixtures.cluster.base import ClusterError

PROGRESS_INTERVAL = 20.0
"""Seconds between progress lines (the promise is one at least every 30 s)."""

# What `go build -v` prints for a package it compiles: its import path alone on a line.
_IMPORT_PATH = re.compile(r"[A-Za-z0-9_.~+\-]+(?:/[A-Za-z0-9_.~+\-]+)*")
_RATE_FROM = 0.05  # the fraction of packages compiled before the rate is trusted


def format_duration(seconds: float) -> str:
    """``45 s``, ``6 min 46 s``: what a person reads in a progress line."""
    whole = max(0, round(seconds))
    if whole < 60:
        return f"{whole} s"
    return f"{whole // 60} min {whole % 60:02d} s"


def _about(seconds: float) -> str:
    """A rounded estimate: ``about 40 s``, ``about 5 min``."""
    if seconds < 60:
        return f"about {max(10, round(seconds / 10) * 10)} s"
    return f"about {max(1, round(seconds / 60))} min"


@dataclass
class GoJob:
    """One `go build -v` / `go install -v` whose packages are counted as they compile."""

    label: str
    """What the user reads: ``Kubernetes v1.35.4``."""
    argv: list[str]
    cwd: Path | None
    env: dict[str, str]
    log: Path
    main_package: str
    """Its import path: the last package compiled, after which the build links."""
    typical_seconds: float
    """A cold build on a fresh 2-core machine, measured: the estimate until a rate exists."""
    link_seconds: float
    """Linking, measured: the part of the build that compiles no package."""
    count_packages: Callable[[], int | None]
    """How many packages the binary has in all (`go list -deps`); None when unknown."""
    finish: Callable[[], object] = lambda: None
    """Run once the build succeeded (renaming its output into place)."""

    phase: str = "waiting"
    compiled: int = 0
    total: int | None = None
    started: float | None = None
    first_compiled: float | None = None
    linking_since: float | None = None
    finished: float | None = None
    returncode: int | None = None
    process: subprocess.Popen[str] | None = field(default=None, repr=False)

    # -- what one line of the build's output tells -------------------------------------

    def note_line(self, line: str, now: float) -> None:
        text = line.strip()
        if text.startswith("go: downloading"):
            if self.compiled == 0:
                self.phase = "downloading modules"
            return
        if not _IMPORT_PATH.fullmatch(text):
            return  # a compiler message, an error, a blank line
        self.compiled += 1
        if self.first_compiled is None:
            self.first_compiled = now
        if text == self.main_package:
            self.phase = "linking"
            self.linking_since = now
        else:
            self.phase = "compiling"

    # -- what the progress line says ---------------------------------------------------

    def describe(self) -> str:
        if self.phase in ("waiting", "done", "failed", "stopped"):
            return f"{self.label} {self.phase}"
        if self.phase == "compiling" and self.compiled:
            if self.total:
                done = min(self.compiled, self.total)
                return f"{self.label} compiling {done}/{self.total} packages"
            return f"{self.label} compiling, {self.compiled} packages so far"
        return f"{self.label} {self.phase}"

    @property
    def has_rate(self) -> bool:
        """Whether enough packages compiled for their rate to say how long the rest takes."""
        return bool(self.total) and self.compiled >= _RATE_FROM * (self.total or 0)

    def seconds_left(self, now: float) -> float:
        if self.phase in ("done", "failed", "stopped"):
            return 0.0
        if self.started is None:
            return self.typical_seconds
        if self.linking_since is not None:
            return max(self.link_seconds - (now - self.linking_since), 5.0)
        if self.has_rate and self.first_compiled is not None and self.total:
            per_package = (now - self.first_compiled) / self.compiled
            to_compile = max(self.total - self.compiled, 0)
            return per_package * to_compile + self.link_seconds
        return max(self.typical_seconds - (now - self.started), self.link_seconds)


def lanes_seconds_left(lanes: Sequence[Sequence[GoJob]], now: float) -> float:
    """Lanes run side by side, the jobs of a lane one after the other.

    Until a build has a measured rate, the figures are those of each build alone, and the
    lanes share the same 2 cores: their sum, as if no lane gained from the other. Rates
    measured while the lanes run side by side already say how they share the cores, so
    from then on the longest lane is what is left.
    """
    jobs = [job for lane in lanes for job in lane]
    if not any(job.has_rate for job in jobs):
        return sum(job.seconds_left(now) for job in jobs)
    return max((sum(job.seconds_left(now) for job in lane) for lane in lanes), default=0.0)


def run_lanes(
    lanes: Sequence[Sequence[GoJob]],
    out: TextIO | None = None,
    interval: float = PROGRESS_INTERVAL,
) -> None:
    """Run each lane's jobs in turn, the lanes at once, printing progress to ``out``.

    The first failure stops every other build (its processes are ours) and is raised,
    naming the log and quoting its last lines.
    """
    stream = out if out is not None else sys.stdout
    lanes = [list(lane) for lane in lanes if lane]
    jobs = [job for lane in lanes for job in lane]
    if not jobs:
        return
    stop = threading.Event()
    threads = [
        threading.Thread(target=_run_lane, args=(lane, stop, stream), daemon=True) for lane in lanes
    ]
    began = time.monotonic()
    names = ", ".join(job.label for job in jobs)
    _say(
        stream,
        f"building {names} (first run only; {_about(lanes_seconds_left(lanes, began))} "
        f"on 2 cores; logs in {jobs[0].log.parent})",
    )
    for thread in threads:
        thread.start()
    last_line = began
    try:
        while any(thread.is_alive() for thread in threads):
            if stop.wait(0.5):
                _stop_all(jobs)  # a build failed: the others' work is wasted
                for thread in threads:
                    thread.join()
                break
            now = time.monotonic()
            if now - last_line >= interval and not stop.is_set():
                _say(stream, progress_line(lanes, now - began, now))
                last_line = now
    except BaseException:  # Ctrl-C: no Go process outlives us
        stop.set()
        _stop_all(jobs)
        raise
    failed = [job for job in jobs if job.phase == "failed"]
    if failed:
        raise _failure(failed[0])
    _say(stream, f"built {names} in {format_duration(time.monotonic() - began)}")


def progress_line(lanes: Sequence[Sequence[GoJob]], elapsed: float, now: float) -> str:
    states = " · ".join(job.describe() for lane in lanes for job in lane)
    left = lanes_seconds_left(lanes, now)
    return f"  [{format_duration(elapsed)}] {states} · {_about(left)} left"


def _say(stream: TextIO, line: str) -> None:
    stream.write(line + "\n")
    stream.flush()  # through make and pipes, as it happens


def _run_lane(lane: list[GoJob], stop: threading.Event, out: TextIO) -> None:
    for job in lane:
        if stop.is_set():
            return
        _run_job(job, stop)
        if job.returncode != 0:
            with _FAILING:
                # The first to fail is the failure; the others were stopped because of it.
                job.phase = "stopped" if stop.is_set() else "failed"
                stop.set()
            return
        job.finish()
        job.phase = "done"
        took = (job.finished or 0.0) - (job.started or 0.0)
        _say(out, f"  built {job.label} in {format_duration(took)}")


_FAILING = threading.Lock()


def _run_job(job: GoJob, stop: threading.Event) -> None:
    job.started = time.monotonic()
    job.phase = "starting"
    threading.Thread(target=_count, args=(job,), daemon=True).start()
    job.log.parent.mkdir(parents=True, exist_ok=True)
    with (
        job.log.open("w") as log,
        subprocess.Popen(
            job.argv,
            cwd=job.cwd,
            env=job.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        ) as process,
    ):
        job.process = process
        if stop.is_set():
            # Another build failed while this one was starting: stopping them all may have
            # missed it (it had no process yet), so it stops itself.
            process.terminate()
        assert process.stdout is not None
        for line in process.stdout:
            log.write(line)
            job.note_line(line, time.monotonic())
        job.returncode = process.wait()
    job.finished = time.monotonic()


def _count(job: GoJob) -> None:
    try:
        job.total = job.count_packages()
    except (OSError, subprocess.SubprocessError):
        job.total = None


def _stop_all(jobs: Sequence[GoJob]) -> None:
    for job in jobs:
        process = job.process
        if process is not None and process.poll() is None:
            process.terminate()
    for job in jobs:
        process = job.process
        if process is not None:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


def _failure(job: GoJob) -> ClusterError:
    tail = job.log.read_text(errors="replace").strip().splitlines()[-15:]
    return ClusterError(
        f"the Go build of {job.label} failed (exit {job.returncode}); full log: {job.log}\n"
        + "\n".join(f"    {line}" for line in tail)
    )
