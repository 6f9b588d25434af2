"""The Go builds' progress lines: packages compiled out of the total, elapsed time, an
estimate, lanes side by side, and a failure that stops the other lane."""

from __future__ import annotations

import io
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from kubefixtures.cluster.base import ClusterError
from kubefixtures.cluster.local import progress
from kubefixtures.cluster.local.progress import (
    GoJob,
    format_duration,
    lanes_seconds_left,
    run_lanes,
)

# A stand-in for `go build -v`: one import path per compiled package, the main one last.
# After its first package it may announce itself (a file) and wait for another file: what
# the tests know about order comes from these events, never from how long anything took,
# so a loaded machine changes nothing. A wait that never ends is an exit status 3.
FAKE_GO = """
import os, sys, time
packages, pause, code = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
announce, wait_for = sys.argv[4], sys.argv[5]
print("go: downloading example.com/dep v1.0.0", flush=True)
for number in range(packages - 1):
    print(f"example.com/dep/p{number}", flush=True)
    if number == 0 and announce:
        open(announce, "w").close()
    if number == 0 and wait_for:
        deadline = time.monotonic() + 60
        while not os.path.exists(wait_for):
            if time.monotonic() > deadline:
                print(f"never saw {wait_for}", flush=True)
                sys.exit(3)
            time.sleep(0.01)
    time.sleep(pause)
if code:
    print("p.go:3:1: undefined: something", flush=True)
    sys.exit(code)
print("example.com/main", flush=True)
time.sleep(pause)
"""


def fake_job(
    tmp_path: Path,
    label: str,
    *,
    packages: int,
    pause: float,
    code: int = 0,
    total: int = 0,
    announce: Path | None = None,
    wait_for: Path | None = None,
) -> GoJob:
    argv = [sys.executable, "-c", FAKE_GO, str(packages), str(pause), str(code)]
    argv += [str(announce or ""), str(wait_for or "")]
    return GoJob(
        label=label,
        argv=argv,
        cwd=None,
        env={},
        log=tmp_path / "logs" / f"{label.split(maxsplit=1)[0]}.log",
        main_package="example.com/main",
        typical_seconds=30.0,
        link_seconds=1.0,
        count_packages=lambda: total or packages,
    )


class Signalling(io.StringIO):
    """The progress output, creating ``when`` once a line containing ``text`` is written."""

    def __init__(self, text: str, when: Path) -> None:
        super().__init__()
        self.text, self.when = text, when

    def write(self, line: str) -> int:
        written = super().write(line)
        if self.text in line:
            self.when.touch()
        return written


def test_durations_read_as_a_person_says_them() -> None:
    assert format_duration(4.4) == "4 s"
    assert format_duration(406) == "6 min 46 s"
    assert format_duration(60) == "1 min 00 s"


def test_progress_lines_count_packages_against_the_total(tmp_path: Path) -> None:
    # The build waits, after its first package, until a progress line counted it.
    counted_line = tmp_path / "counted"
    job = fake_job(tmp_path, "Kubernetes v1.35.4", packages=12, pause=0.01, wait_for=counted_line)
    out = Signalling("Kubernetes v1.35.4 compiling", counted_line)
    run_lanes([[job]], out=out, interval=0.3)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("building Kubernetes v1.35.4 (first run only; about 30 s")
    progress = [line for line in lines if line.startswith("  [")]
    assert progress, lines
    counted = [line for line in progress if "Kubernetes v1.35.4 compiling" in line]
    assert any("/12 packages" in line for line in counted)
    assert all(line.endswith(" left") for line in progress)
    assert lines[-1].startswith("built Kubernetes v1.35.4 in ")
    assert job.compiled == 12
    assert job.phase == "done"
    assert "example.com/dep/p3" in job.log.read_text()


def test_lanes_run_side_by_side(tmp_path: Path) -> None:
    # Kubernetes and CoreDNS each wait for the other to have started: one after the other,
    # the first would wait in vain and fail.
    kube_started, coredns_started = tmp_path / "kube", tmp_path / "coredns"
    kube = fake_job(
        tmp_path,
        "Kubernetes v1",
        packages=10,
        pause=0.01,
        announce=kube_started,
        wait_for=coredns_started,
    )
    coredns = fake_job(
        tmp_path,
        "CoreDNS v1",
        packages=5,
        pause=0.01,
        announce=coredns_started,
        wait_for=kube_started,
    )
    helm = fake_job(tmp_path, "Helm v3", packages=5, pause=0.01)
    out = io.StringIO()
    run_lanes([[kube], [coredns, helm]], out=out, interval=0.25)
    assert kube.started is not None
    assert kube.finished is not None
    assert coredns.started is not None
    assert coredns.finished is not None
    assert kube.started < coredns.finished  # side by side
    assert coredns.started < kube.finished
    assert helm.started is not None
    assert helm.started >= coredns.finished  # one lane: in turn
    text = out.getvalue()
    for label in ("Kubernetes v1", "CoreDNS v1", "Helm v3"):
        assert f"  built {label} in " in text


def test_a_failure_names_the_log_and_stops_the_other_lane(tmp_path: Path) -> None:
    # The failing build fails only once the slow one runs: a build of 100 s that is
    # stopped, not one that has not started yet.
    slow_started = tmp_path / "slow"
    failing = fake_job(
        tmp_path, "CoreDNS v1", packages=3, pause=0.01, code=2, wait_for=slow_started
    )
    slow = fake_job(tmp_path, "Kubernetes v1", packages=1000, pause=0.1, announce=slow_started)
    with pytest.raises(ClusterError) as raised:
        run_lanes([[slow], [failing]], out=io.StringIO(), interval=5)
    first, *rest = str(raised.value).splitlines()
    assert first.startswith("the Go build of CoreDNS v1 failed (exit 2); full log: ")
    assert any("undefined: something" in line for line in rest)
    assert slow.process is not None
    assert slow.process.returncode == -signal.SIGTERM  # stopped, not left running
    assert slow.phase == "stopped"


def test_a_build_starting_as_another_fails_is_stopped_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The failure is handled (every build's process stopped) while the late build is between
    # its lane's check and its own process: that process must not run to its end.
    stopped_all = threading.Event()
    stop_all = progress._stop_all

    def stopping_all(jobs: Sequence[GoJob]) -> None:
        stop_all(jobs)
        stopped_all.set()

    popen = subprocess.Popen

    def late_popen(argv: list[str], **options: Any) -> subprocess.Popen[str]:
        if "late" in argv:
            assert stopped_all.wait(60)
        return popen(argv, **options)

    monkeypatch.setattr(progress, "_stop_all", stopping_all)
    monkeypatch.setattr(subprocess, "Popen", late_popen)
    failing = fake_job(tmp_path, "CoreDNS v1", packages=3, pause=0.01, code=2)
    late = fake_job(tmp_path, "Kubernetes v1", packages=100, pause=0.1)
    late.argv.append("late")
    with pytest.raises(ClusterError, match="the Go build of CoreDNS v1 failed"):
        run_lanes([[late], [failing]], out=io.StringIO(), interval=5)
    assert late.process is not None
    assert late.process.returncode == -signal.SIGTERM  # stopped, not run for 10 s
    assert late.phase == "stopped"


def test_the_estimate_follows_the_measured_rate(tmp_path: Path) -> None:
    job = fake_job(tmp_path, "Kubernetes v1", packages=100, pause=0.0, total=100)
    job.started = job.first_compiled = 0.0
    job.compiled, job.total = 50, 100
    job.phase = "compiling"
    assert job.seconds_left(now=60.0) == pytest.approx(60.0 + job.link_seconds)
    assert job.describe() == "Kubernetes v1 compiling 50/100 packages"
    job.note_line("example.com/main\n", now=61.0)
    assert job.phase == "linking"
    assert job.seconds_left(now=61.5) == pytest.approx(5.0)


def test_lanes_share_the_cores_until_rates_say_how(tmp_path: Path) -> None:
    kube = fake_job(tmp_path, "Kubernetes v1", packages=100, pause=0.0, total=100)
    coredns = fake_job(tmp_path, "CoreDNS v1", packages=100, pause=0.0, total=100)
    helm = fake_job(tmp_path, "Helm v3", packages=100, pause=0.0, total=100)
    lanes = [[kube], [coredns, helm]]
    assert lanes_seconds_left(lanes, now=0.0) == 3 * 30.0  # each alone, one after the other
    kube.started = kube.first_compiled = coredns.started = coredns.first_compiled = 0.0
    kube.phase = coredns.phase = "compiling"
    kube.total = coredns.total = 100
    kube.compiled, coredns.compiled = 10, 50  # 10 and 2 s a package, side by side
    left = lanes_seconds_left(lanes, now=100.0)
    assert left == pytest.approx(max(900.0 + 1.0, 100.0 + 1.0 + 30.0))


def test_cluster_build_with_everything_cached_says_where_and_starts_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from kubefixtures.cli import main
    from kubefixtures.cluster.local import build

    cache = tmp_path / "cache"
    version = build.kubernetes_version()
    for directory, name in (
        (f"kubernetes-{version}", "kube"),
        (f"coredns-{build.COREDNS.version}", "coredns"),
        (f"helm-{build.HELM.version}", "helm"),
    ):
        (cache / "bin" / directory).mkdir(parents=True)
        (cache / "bin" / directory / name).write_text("")
    monkeypatch.setenv("KUBEFIXTURES_CACHE_DIR", str(cache))
    monkeypatch.setattr(build, "link_client_tools", lambda tools: None)
    assert main(["cluster", "build"]) == 0
    assert capsys.readouterr().out == (
        f"Kubernetes {version}, CoreDNS and Helm are in {cache / 'bin'}\n"
    )
    assert (cache / "bin" / f"kubernetes-{version}" / "kubectl").is_symlink()
