"""Watching the mode files are created with: a secret file must be 0600 from the moment it
exists, not chmod'ed to it afterwards (in between, anyone could open it)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest


@contextmanager
def creation_modes(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[Path, int]]:
    """Under umask 0 (so that only an explicit mode protects a file), the mode each file had
    when this process created it with os.open, by its final path (followed through
    os.replace). Files created any other way (open(), Path.write_text, a subprocess) are
    missing: they were not created with an explicit mode."""
    modes: dict[Path, int] = {}
    real_open, real_replace = os.open, os.replace

    def spying_open(path: Any, flags: int, mode: int = 0o777, **kwargs: Any) -> int:
        descriptor = real_open(path, flags, mode, **kwargs)
        if flags & os.O_CREAT:
            modes[Path(path).resolve()] = stat.S_IMODE(os.fstat(descriptor).st_mode)
        return descriptor

    def spying_replace(source: Any, target: Any, **kwargs: Any) -> None:
        real_replace(source, target, **kwargs)
        mode = modes.pop(Path(source).resolve(), None)
        if mode is not None:
            modes[Path(target).resolve()] = mode

    monkeypatch.setattr(os, "open", spying_open)
    monkeypatch.setattr(os, "replace", spying_replace)
    previous = os.umask(0)
    try:
        yield modes
    finally:
        os.umask(previous)
