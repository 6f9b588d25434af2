"""Planning an image from its recipe, and writing it only when its plan changed.

The cache key is a hash of everything that ends up in the tarball: the image
config, every layer entry (path, kind, mode, content hash or link target) and
the builder's own source. A key equal to the one stored next to the tarball
means the tarball already holds exactly this image.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from imagekit import hostfs
from imagekit.archive import EPOCH_ISO, canonical_json, write_docker_archive, write_layer
from imagekit.errors import BuildError
from imagekit.host import image_architecture, package_version, upstream_version
from imagekit.recipes import ImageRecipe, LayerRecipe, Recipes
from imagekit.rootfs import Entry, Rootfs, directory, disk_file, inline_file, symlink

VERSION_LABEL = "org.opencontainers.image.version"
PACKAGES_LABEL = "io.kubefixtures.debian-packages"


@dataclass(frozen=True)
class PlannedLayer:
    name: str
    entries: dict[str, Entry]

    def key(self) -> str:
        identities = sorted((path, *entry.identity()) for path, entry in self.entries.items())
        return hashlib.sha256(canonical_json(identities)).hexdigest()


@dataclass(frozen=True)
class PlannedImage:
    recipe: ImageRecipe
    layers: list[PlannedLayer]
    config: dict[str, Any]  # without rootfs.diff_ids, which exist once layers are written
    key: str


def _apply_layer(fs: Rootfs, layer: LayerRecipe, artifacts: dict[str, Path]) -> None:
    for spec in layer.dirs:
        fs.put(spec.path, directory(spec.mode))
    for path, target in layer.symlinks:
        fs.put(path, symlink(target))
    for path in layer.files:
        hostfs.add_host_path(fs, path)
    for path in layer.binaries:
        hostfs.add_binary(fs, path)
    for path, artifact in layer.artifacts:
        if artifacts[artifact].is_dir():
            hostfs.add_tree(fs, path, artifacts[artifact])
        else:
            fs.put(path, disk_file(artifacts[artifact], mode=0o755))
    for path, content in layer.text:
        fs.put(path, inline_file(content.lstrip("\n").encode()))
    if layer.busybox_applets:
        hostfs.add_busybox_applets(fs, layer.busybox_applets)


def _labels(recipe: ImageRecipe, packages: list[str]) -> dict[str, str]:
    labels = {"org.opencontainers.image.title": recipe.ref.rpartition(":")[0]}
    if recipe.version_package is not None:
        version = package_version(recipe.version_package)
        upstream = upstream_version(version)
        if recipe.version_prefix and not upstream.startswith(recipe.version_prefix):
            raise BuildError(
                f"image {recipe.name}: Debian {recipe.version_package} is {upstream} but the "
                f"tag {recipe.ref} promises {recipe.version_prefix}x (fix recipes.toml)"
            )
        labels[VERSION_LABEL] = version
    elif recipe.version is not None:
        labels[VERSION_LABEL] = recipe.version
    if packages:
        labels[PACKAGES_LABEL] = " ".join(f"{p}={package_version(p)}" for p in packages)
    labels.update(recipe.labels)
    return labels


def _config(recipe: ImageRecipe, packages: list[str]) -> dict[str, Any]:
    container: dict[str, Any] = {
        "Env": list(recipe.env),
        "Labels": _labels(recipe, packages),
    }
    if recipe.entrypoint is not None:
        container["Entrypoint"] = list(recipe.entrypoint)
    if recipe.cmd is not None:
        container["Cmd"] = list(recipe.cmd)
    if recipe.ports:
        container["ExposedPorts"] = {port: {} for port in recipe.ports}
    if recipe.workdir:
        container["WorkingDir"] = recipe.workdir
    if recipe.user:
        container["User"] = recipe.user
    return {
        "architecture": image_architecture(),
        "os": "linux",
        "created": EPOCH_ISO,
        "config": container,
        "history": [
            {"created": EPOCH_ISO, "created_by": f"hack/images/build.py: layer {name}"}
            for name in recipe.layers
        ],
    }


def plan_image(
    recipes: Recipes, recipe: ImageRecipe, artifacts: dict[str, Path], builder_hash: str
) -> PlannedImage:
    fs = Rootfs()
    packages: list[str] = []
    for name in recipe.layers:
        layer = recipes.layers[name]
        packages += [p for p in layer.packages if p not in packages]
        for package in layer.packages:
            package_version(package)  # fails early, naming the package to install
        fs.new_layer()
        _apply_layer(fs, layer, artifacts)
    layers = [
        PlannedLayer(name, entries) for name, entries in zip(recipe.layers, fs.layers, strict=True)
    ]
    config = _config(recipe, packages)
    key_material = {
        "builder": builder_hash,
        "ref": recipe.ref,
        "config": config,
        "layers": [layer.key() for layer in layers],
    }
    key = hashlib.sha256(canonical_json(key_material)).hexdigest()
    return PlannedImage(recipe=recipe, layers=layers, config=config, key=key)


class LayerStore:
    """Layer tars written during one run, so a layer shared by several images
    (the busybox base) is written once. Files live in a temporary directory."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self._tmp = tempfile.TemporaryDirectory(prefix=".layers-", dir=directory)
        self._written: dict[str, tuple[str, Path]] = {}

    def get(self, layer: PlannedLayer) -> tuple[str, Path]:
        key = layer.key()
        if key not in self._written:
            path = Path(self._tmp.name) / f"{key}.tar"
            with path.open("w+b") as handle:
                diff_id = write_layer(layer.entries, handle)
            self._written[key] = (diff_id, path)
        return self._written[key]

    def close(self) -> None:
        self._tmp.cleanup()


def write_image(plan: PlannedImage, dest: Path, store: LayerStore) -> str:
    """Write the tarball atomically (a temporary name, then rename); returns the image ID."""
    written = [store.get(layer) for layer in plan.layers]
    config = {**plan.config, "rootfs": {"type": "layers", "diff_ids": [d for d, _ in written]}}
    temporary = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
    handles: list[BinaryIO] = []
    try:
        handles = [path.open("rb") for _, path in written]
        image_id = write_docker_archive(
            temporary,
            plan.recipe.ref,
            config,
            [(diff_id, handle) for (diff_id, _), handle in zip(written, handles, strict=True)],
        )
        os.replace(temporary, dest)
    finally:
        for handle in handles:
            handle.close()
        temporary.unlink(missing_ok=True)
    return image_id
