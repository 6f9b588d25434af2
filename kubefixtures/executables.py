"""The command-line tools kubefixtures runs (kubectl, helm): where they are, and running one
with its output bounded.

Standard library only: rendering (helm, kustomize) and the cluster providers both use it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sysconfig
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO

__all__ = ["BoundedRun", "OutputTooLarge", "find_tool", "run_bounded"]

_CHUNK = 64 * 1024
# Of stderr only the end is kept: error messages are at the end, and a tool that prints
# megabytes of warnings must not fill memory either.
_STDERR_TAIL = 64 * 1024


def find_tool(name: str) -> Path | None:
    """A tool on PATH, or next to the running Python (the project's .venv/bin, where
    `kubefixtures cluster up` links kubectl and helm even when the venv is not active)."""
    on_path = shutil.which(name)
    if on_path:
        return Path(on_path)
    beside = Path(sysconfig.get_path("scripts")) / name
    return beside if beside.exists() else None


class OutputTooLarge(Exception):
    """The tool printed more than the limit on stdout (it was killed)."""


@dataclass(frozen=True)
class BoundedRun:
    returncode: int
    stdout: bytes
    stderr: bytes  # its last _STDERR_TAIL bytes


def run_bounded(argv: list[str], *, timeout: float, limit: int) -> BoundedRun:
    """Run ``argv`` (no stdin) and collect its output as bytes; kill it and raise
    ``OutputTooLarge`` once stdout passes ``limit`` bytes, ``subprocess.TimeoutExpired``
    once ``timeout`` seconds have passed. (``subprocess.run`` would hold all of it in
    memory first, whatever its size.)"""
    with subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as process:
        assert process.stdout is not None
        assert process.stderr is not None
        stdout = bytearray()
        stderr = bytearray()
        too_large = threading.Event()

        def read_stdout(stream: IO[bytes]) -> None:
            while chunk := os.read(stream.fileno(), _CHUNK):
                if len(stdout) + len(chunk) > limit:
                    too_large.set()
                    process.kill()
                    return
                stdout.extend(chunk)

        def read_stderr(stream: IO[bytes]) -> None:
            while chunk := os.read(stream.fileno(), _CHUNK):
                stderr.extend(chunk)
                del stderr[:-_STDERR_TAIL]

        readers = [
            threading.Thread(target=read_stdout, args=(process.stdout,), daemon=True),
            threading.Thread(target=read_stderr, args=(process.stderr,), daemon=True),
        ]
        for reader in readers:
            reader.start()
        try:
            returncode = process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
        finally:
            for reader in readers:
                # The pipes close when the process is gone (unless it left children that
                # hold them: then give up on them rather than wait).
                reader.join(5.0)
        if too_large.is_set():
            raise OutputTooLarge(f"printed more than {limit} bytes")
        return BoundedRun(returncode, bytes(stdout), bytes(stderr))
