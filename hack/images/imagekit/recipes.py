"""Reading recipes.toml into typed, validated recipes.

Every mistake is reported as one line naming the file and the dotted key, e.g.
``recipes.toml: images.redis.entrypiont: unknown key``.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imagekit.errors import BuildError

DEFAULT_ENV = ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",)


@dataclass(frozen=True)
class DirSpec:
    path: str
    mode: int


@dataclass(frozen=True)
class LayerRecipe:
    """What one layer holds. Applied in this order: dirs, symlinks, files,
    binaries, artifacts, text, busybox applets."""

    name: str
    packages: tuple[str, ...]
    dirs: tuple[DirSpec, ...]
    symlinks: tuple[tuple[str, str], ...]  # (path in image, link target)
    files: tuple[str, ...]  # host paths, copied to the same path
    binaries: tuple[str, ...]  # like files, plus every shared library ldd lists
    artifacts: tuple[tuple[str, str], ...]  # (path in image, artifact name)
    text: tuple[tuple[str, str], ...]  # (path in image, content), mode 0644
    busybox_applets: str | None  # host busybox whose applets become symlinks


@dataclass(frozen=True)
class ArtifactRecipe:
    """A file built from sources in this directory by a local command."""

    name: str
    sources: tuple[str, ...]  # glob patterns relative to the recipes directory
    workdir: str
    command: tuple[str, ...]  # "{out}" stands for the output path
    version_command: tuple[str, ...]  # its output joins the cache key
    env: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class ImageRecipe:
    name: str
    ref: str
    layers: tuple[str, ...]
    entrypoint: tuple[str, ...] | None
    cmd: tuple[str, ...] | None
    env: tuple[str, ...]
    ports: tuple[str, ...]  # "6379/tcp"
    labels: tuple[tuple[str, str], ...]
    workdir: str
    user: str
    version: str | None  # a fixed version label, or:
    version_package: str | None  # the Debian package whose version is the label
    version_prefix: str | None  # the upstream version must start with this


@dataclass(frozen=True)
class Recipes:
    path: Path
    images: dict[str, ImageRecipe]
    layers: dict[str, LayerRecipe]
    artifacts: dict[str, ArtifactRecipe]

    @property
    def directory(self) -> Path:
        return self.path.parent


class _Table:
    """One TOML table being read: remembers where it is and which keys it used,
    so misspelt keys are reported instead of ignored."""

    def __init__(self, raw: object, where: str, file: str) -> None:
        if not isinstance(raw, dict):
            raise BuildError(f"{file}: {where}: expected a table")
        self.raw: dict[str, Any] = raw
        self.where = where
        self.file = file
        self.used: set[str] = set()

    def fail(self, key: str, message: str) -> BuildError:
        return BuildError(f"{self.file}: {self.where}.{key}: {message}")

    def get(self, key: str) -> Any:
        self.used.add(key)
        return self.raw.get(key)

    def string(self, key: str, default: str | None = None) -> str | None:
        value = self.get(key)
        if value is None:
            return default
        if not isinstance(value, str):
            raise self.fail(key, "expected a string")
        return value

    def required_string(self, key: str) -> str:
        value = self.string(key)
        if not value:
            raise self.fail(key, "is required")
        return value

    def strings(self, key: str, default: tuple[str, ...] = ()) -> tuple[str, ...]:
        value = self.get(key)
        if value is None:
            return default
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(key, "expected a list of strings")
        return tuple(value)

    def optional_strings(self, key: str) -> tuple[str, ...] | None:
        """None when the key is absent, so the image config leaves the field out."""
        if self.get(key) is None:
            return None
        return self.strings(key)

    def mapping(self, key: str) -> tuple[tuple[str, str], ...]:
        value = self.get(key)
        if value is None:
            return ()
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise self.fail(key, "expected a table of strings")
        return tuple(sorted(value.items()))

    def table(self, key: str) -> _Table:
        return _Table(self.get(key) or {}, f"{self.where}.{key}", self.file)

    def finish(self) -> None:
        unknown = sorted(set(self.raw) - self.used)
        if unknown:
            raise self.fail(unknown[0], "unknown key")


def _image_path(table: _Table, key: str, path: str) -> str:
    if not path.startswith("/") or "\\" in path or "/../" in f"{path}/":
        raise table.fail(key, f"{path!r} must be an absolute path without '..'")
    return path


def _dirs(table: _Table) -> tuple[DirSpec, ...]:
    raw = table.get("dirs") or []
    if not isinstance(raw, list):
        raise table.fail("dirs", "expected a list of {path, mode} tables")
    specs = []
    for index, item in enumerate(raw):
        entry = _Table(item, f"{table.where}.dirs[{index}]", table.file)
        path = _image_path(entry, "path", entry.required_string("path"))
        mode = entry.get("mode")
        if mode is None:
            mode = 0o755
        if not isinstance(mode, int) or isinstance(mode, bool) or not 0 <= mode <= 0o7777:
            raise entry.fail("mode", "expected an octal integer such as 0o1777")
        entry.finish()
        specs.append(DirSpec(path, mode))
    return tuple(specs)


def _layer(name: str, raw: object, file: str) -> LayerRecipe:
    table = _Table(raw, f"layers.{name}", file)
    text = table.mapping("text")
    symlinks = table.mapping("symlinks")
    artifacts = table.mapping("artifacts")
    files = table.strings("files")
    binaries = table.strings("binaries")
    for key, paths in (
        ("text", [p for p, _ in text]),
        ("symlinks", [p for p, _ in symlinks]),
        ("artifacts", [p for p, _ in artifacts]),
        ("files", list(files)),
        ("binaries", list(binaries)),
    ):
        for path in paths:
            _image_path(table, key, path)
    layer = LayerRecipe(
        name=name,
        packages=table.strings("packages"),
        dirs=_dirs(table),
        symlinks=symlinks,
        files=files,
        binaries=binaries,
        artifacts=artifacts,
        text=text,
        busybox_applets=table.string("busybox_applets"),
    )
    table.finish()
    return layer


def _artifact(name: str, raw: object, file: str) -> ArtifactRecipe:
    table = _Table(raw, f"artifacts.{name}", file)
    command = table.strings("command")
    if not command or "{out}" not in command:
        raise table.fail("command", 'is required and must contain "{out}"')
    artifact = ArtifactRecipe(
        name=name,
        sources=table.strings("sources"),
        workdir=table.string("workdir", ".") or ".",
        command=command,
        version_command=table.strings("version_command"),
        env=table.mapping("env"),
    )
    if not artifact.sources:
        raise table.fail("sources", "is required (the cache key is made from them)")
    table.finish()
    return artifact


def _ports(table: _Table) -> tuple[str, ...]:
    raw = table.get("ports") or []
    ports = []
    for port in raw if isinstance(raw, list) else [None]:
        if isinstance(port, int) and not isinstance(port, bool) and 0 < port < 65536:
            ports.append(f"{port}/tcp")
        elif isinstance(port, str) and port.partition("/")[2] in ("tcp", "udp", "sctp"):
            ports.append(port)
        else:
            raise table.fail("ports", 'expected port numbers or strings like "53/udp"')
    return tuple(ports)


def _image(name: str, raw: object, file: str, layers: dict[str, LayerRecipe]) -> ImageRecipe:
    table = _Table(raw, f"images.{name}", file)
    ref = table.required_string("ref")
    if ":" not in ref.rpartition("/")[2]:
        raise table.fail("ref", f"{ref!r} needs an explicit tag (name:tag)")
    image_layers = table.strings("layers")
    if not image_layers:
        raise table.fail("layers", "is required")
    for layer in image_layers:
        if layer not in layers:
            raise table.fail("layers", f"no layer named {layer!r} (known: {', '.join(layers)})")
    image = ImageRecipe(
        name=name,
        ref=ref,
        layers=image_layers,
        entrypoint=table.optional_strings("entrypoint"),
        cmd=table.optional_strings("cmd"),
        env=table.strings("env", DEFAULT_ENV),
        ports=_ports(table),
        labels=table.mapping("labels"),
        workdir=table.string("workdir", "") or "",
        user=table.string("user", "") or "",
        version=table.string("version"),
        version_package=table.string("version_package"),
        version_prefix=table.string("version_prefix"),
    )
    if (image.version is None) == (image.version_package is None):
        raise table.fail("version", "give exactly one of version or version_package")
    table.finish()
    return image


def load_recipes(path: Path) -> Recipes:
    """Parse and validate a recipes file; artifacts referenced by layers must exist."""
    file = path.name
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise BuildError(f"{path}: cannot read recipes: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:
        raise BuildError(f"{file}: invalid TOML: {error}") from None
    top = _Table(raw, "", file)
    artifacts = {n: _artifact(n, r, file) for n, r in top.table("artifacts").raw.items()}
    layers = {n: _layer(n, r, file) for n, r in top.table("layers").raw.items()}
    images = {n: _image(n, r, file, layers) for n, r in top.table("images").raw.items()}
    unknown_top = sorted(set(raw) - {"artifacts", "layers", "images"})
    if unknown_top:
        raise BuildError(f"{file}: {unknown_top[0]}: unknown table")
    for layer in layers.values():
        for target, artifact in layer.artifacts:
            if artifact not in artifacts:
                raise BuildError(
                    f"{file}: layers.{layer.name}.artifacts: {target} names unknown "
                    f"artifact {artifact!r}"
                )
    return Recipes(path=path, images=images, layers=layers, artifacts=artifacts)
