"""Writing layer tars and docker-archive tarballs (the format of `docker save`,
which `ctr images import` and `docker load` accept) byte for byte reproducibly:
sorted members, mtime 0, owner 0:0 without names."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any, BinaryIO

from imagekit.errors import BuildError
from imagekit.rootfs import Entry

EPOCH_ISO = "1970-01-01T00:00:00Z"  # "created" of every image: reproducible
_TAR_FORMAT = tarfile.PAX_FORMAT  # plain ustar unless a name needs more


def _member(name: str, kind: str, mode: int, size: int = 0, target: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = {"dir": tarfile.DIRTYPE, "file": tarfile.REGTYPE, "symlink": tarfile.SYMTYPE}[kind]
    info.mode = mode
    info.size = size
    info.linkname = target
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


class _VerifyingReader:
    """Hands a file to tarfile while checking it still has the planned content:
    the cache key promises exactly those bytes."""

    def __init__(self, handle: BinaryIO, entry: Entry, name: str) -> None:
        self.handle = handle
        self.entry = entry
        self.name = name
        self.hash = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        chunk = self.handle.read(size)
        self.hash.update(chunk)
        return chunk

    def check(self) -> None:
        if self.hash.hexdigest() != self.entry.digest:
            raise BuildError(f"{self.entry.source or self.name}: changed while the image was built")


def _sort_key(path: str) -> list[str]:
    return path.split("/")  # parents before children, siblings by name


def write_layer(entries: dict[str, Entry], out: BinaryIO) -> str:
    """Write entries as a layer tar into `out`; returns its diff_id ("sha256:...")."""
    with tarfile.open(fileobj=out, mode="w", format=_TAR_FORMAT) as tar:
        for path in sorted(entries, key=_sort_key):
            entry = entries[path]
            member = _member(path, entry.kind, entry.mode, entry.size, entry.target)
            if entry.kind != "file":
                tar.addfile(member)
                continue
            if entry.data is not None:
                source: BinaryIO = io.BytesIO(entry.data)
            elif entry.source is not None:
                source = entry.source.open("rb")
            else:
                raise RuntimeError(f"{path}: file entry without content")
            with source:
                reader = _VerifyingReader(source, entry, path)
                tar.addfile(member, reader)
                reader.check()
    out.seek(0)
    digest = hashlib.sha256()
    while chunk := out.read(1 << 20):
        digest.update(chunk)
    return f"sha256:{digest.hexdigest()}"


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    tar.addfile(_member(name, "file", 0o644, len(data)), io.BytesIO(data))


def canonical_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def write_docker_archive(
    dest: Path, ref: str, config: dict[str, Any], layers: list[tuple[str, BinaryIO]]
) -> str:
    """Write a docker-archive tarball: one directory per layer holding
    layer.tar, the config as <sha256>.json, and manifest.json tying them to
    `ref`. `layers` are (diff_id, open layer tar) pairs. Returns the image ID
    (the config digest)."""
    config_bytes = canonical_json(config)
    image_id = hashlib.sha256(config_bytes).hexdigest()
    layer_names = [f"{diff_id.removeprefix('sha256:')}/layer.tar" for diff_id, _ in layers]
    manifest = [{"Config": f"{image_id}.json", "RepoTags": [ref], "Layers": layer_names}]
    with tarfile.open(dest, mode="w", format=_TAR_FORMAT) as tar:
        for name, (_, handle) in sorted(zip(layer_names, layers, strict=True)):
            tar.addfile(_member(name.removesuffix("/layer.tar"), "dir", 0o755))
            handle.seek(0, io.SEEK_END)
            size = handle.tell()
            handle.seek(0)
            tar.addfile(_member(name, "file", 0o644, size), handle)
        _add_bytes(tar, f"{image_id}.json", config_bytes)
        _add_bytes(tar, "manifest.json", canonical_json(manifest))
    return f"sha256:{image_id}"


def retag_archive(source: Path, ref: str, dest: Path) -> Path:
    """A copy of the docker-archive `source` whose only tag is `ref` (benchmarks and tests
    load images under tags of their own, so that removing them touches nobody else's)."""
    with tarfile.open(source) as original, tarfile.open(dest, "w", format=_TAR_FORMAT) as copy:
        for member in original.getmembers():
            data = original.extractfile(member) if member.isfile() else None
            if member.name == "manifest.json" and data is not None:
                manifest = json.load(data)
                for image in manifest:
                    image["RepoTags"] = [ref]
                payload = json.dumps(manifest).encode()
                member.size = len(payload)
                copy.addfile(member, io.BytesIO(payload))
            else:
                copy.addfile(member, data)
    return dest
