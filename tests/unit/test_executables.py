"""Running a command-line tool with its output bounded (kubefixtures.executables)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from kubefixtures.executables import OutputTooLarge, run_bounded


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_output_and_status_come_back() -> None:
    done = run_bounded(
        python("import sys; print('out'); print('err', file=sys.stderr); sys.exit(3)"),
        timeout=30,
        limit=100,
    )
    assert (done.returncode, done.stdout, done.stderr) == (3, b"out\n", b"err\n")


def test_stdout_past_the_limit_stops_the_tool() -> None:
    # It would print for ever: the bound, not its end, stops it.
    with pytest.raises(OutputTooLarge, match="printed more than 1000 bytes"):
        run_bounded(python("while True: print('x' * 100, flush=True)"), timeout=30, limit=1000)


def test_only_the_end_of_stderr_is_kept() -> None:
    done = run_bounded(
        python("import sys; sys.stderr.write('a' * 200000 + 'the end')"), timeout=30, limit=10
    )
    assert done.stderr.endswith(b"the end")
    assert len(done.stderr) == 64 * 1024


def test_a_tool_past_its_time_is_killed() -> None:
    with pytest.raises(subprocess.TimeoutExpired):
        run_bounded(python("import time; time.sleep(30)"), timeout=0.5, limit=10)
