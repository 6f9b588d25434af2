"""An image's file tree, planned in memory layer by layer before any tar is written.

Paths inside the tree are canonical: relative to the image root, no leading
slash, and no component that is a symlink in the image. Adding
``/lib/x86_64-linux-gnu/libc.so.6`` while the image has ``lib -> usr/lib``
therefore files it under ``usr/lib/x86_64-linux-gnu/libc.so.6``; a layer tar
never writes through a symlink.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from imagekit.errors import BuildError

Kind = Literal["dir", "file", "symlink"]

_MAX_SYMLINK_HOPS = 40  # what Linux allows before ELOOP


@dataclass(frozen=True)
class Entry:
    """One tar member-to-be. Regular files carry either a source on disk or
    inline data, and always the sha256 of their content."""

    kind: Kind
    mode: int
    source: Path | None = None
    data: bytes | None = None
    target: str = ""
    digest: str = ""
    size: int = 0

    def identity(self) -> tuple[str, int, str]:
        """What makes two entries the same file, wherever their bytes come from."""
        return (self.kind, self.mode, self.digest or self.target)


def directory(mode: int = 0o755) -> Entry:
    return Entry("dir", mode)


def symlink(target: str) -> Entry:
    return Entry("symlink", 0o777, target=target)


def inline_file(data: bytes, mode: int = 0o644) -> Entry:
    return Entry("file", mode, data=data, digest=hashlib.sha256(data).hexdigest(), size=len(data))


_digest_cache: dict[tuple[str, int, int, int], str] = {}


def file_digest(path: Path, stat: os.stat_result) -> str:
    """sha256 of a file, remembered for the run (the same libc goes into several images)."""
    key = (str(path), stat.st_ino, stat.st_size, stat.st_mtime_ns)
    if key not in _digest_cache:
        with path.open("rb") as handle:
            _digest_cache[key] = hashlib.file_digest(handle, "sha256").hexdigest()
    return _digest_cache[key]


def disk_file(source: Path, mode: int | None = None) -> Entry:
    """A regular file read from disk; mode defaults to the file's own."""
    try:
        stat = source.stat()
    except OSError as error:
        raise BuildError(f"{source}: {error.strerror}") from None
    return Entry(
        "file",
        (stat.st_mode & 0o7777) if mode is None else mode,
        source=source,
        digest=file_digest(source, stat),
        size=stat.st_size,
    )


def _split(path: str) -> list[str]:
    return [part for part in path.split("/") if part not in ("", ".")]


class Rootfs:
    """The layers of one image. Lookups see all layers (upper wins, as in
    overlayfs); additions go to the newest layer."""

    def __init__(self) -> None:
        self.layers: list[dict[str, Entry]] = []

    def new_layer(self) -> None:
        self.layers.append({})

    @property
    def top(self) -> dict[str, Entry]:
        if not self.layers:
            raise RuntimeError("new_layer() first")
        return self.layers[-1]

    def lookup(self, canonical: str) -> Entry | None:
        for layer in reversed(self.layers):
            if canonical in layer:
                return layer[canonical]
        return None

    def resolve_dir(self, path: str, *, create: bool, hops: int = 0) -> str | None:
        """Canonical path of the directory `path` names, following the image's
        symlinks. Missing directories are created in the top layer when
        `create`, else None is returned."""
        current = ""
        for part in _split(path):
            if part == "..":
                current = posixpath.dirname(current)
                continue
            candidate = posixpath.join(current, part) if current else part
            entry = self.lookup(candidate)
            if entry is None:
                if not create:
                    return None
                self.top[candidate] = directory()
                current = candidate
            elif entry.kind == "dir":
                current = candidate
            elif entry.kind == "symlink":
                if hops >= _MAX_SYMLINK_HOPS:
                    raise BuildError(f"/{candidate}: too many levels of symbolic links")
                base = "" if entry.target.startswith("/") else current
                resolved = self.resolve_dir(
                    posixpath.join("/", base, entry.target), create=create, hops=hops + 1
                )
                if resolved is None:
                    return None
                current = resolved
            else:
                raise BuildError(f"/{candidate}: is a file in the image, not a directory")
        return current

    def canonical(self, path: str, *, create: bool) -> str | None:
        """Canonical path of `path` itself (its last component is not followed)."""
        parent, name = posixpath.split(posixpath.normpath("/" + path))
        resolved = self.resolve_dir(parent, create=create)
        if resolved is None or not name:
            return resolved
        return posixpath.join(resolved, name) if resolved else name

    def exists(self, path: str) -> bool:
        canonical = self.canonical(path, create=False)
        return canonical is not None and self.lookup(canonical) is not None

    def put(self, path: str, entry: Entry) -> str:
        """Add `entry` at `path`. Re-adding the same thing is a no-op; a file may
        shadow one in a lower layer; anything else is a conflict."""
        canonical = self.canonical(path, create=True)
        if not canonical:
            raise BuildError(f"{path}: cannot replace the image root")
        existing = self.lookup(canonical)
        if existing is None or existing.identity() == entry.identity():
            if existing is None:
                self.top[canonical] = entry
            return canonical
        shadows_lower = canonical not in self.top and existing.kind == entry.kind == "file"
        if existing.kind == entry.kind == "dir" or shadows_lower:
            self.top[canonical] = entry  # a new mode, or a newer file over a lower one
            return canonical
        raise BuildError(
            f"{path}: conflicts with the {existing.kind} already at /{canonical} in the image"
        )
