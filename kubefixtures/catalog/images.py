"""``app_image(...)``: the image of the service under test, loaded into the test cluster::

    # conftest.py
    from kubefixtures.catalog import app_image, catalog

    web_image = app_image(build="app/")                  # docker build, where Docker runs
    # or: app_image(build="app/", base_images=["python.tar"])  # FROM an image no registry has
    # or: app_image(image="dist/web.tar")               # a docker-archive / OCI tarball
    # or: app_image(image="ghcr.io/me/web:1.2")        # a reference the cluster can pull
    shop = catalog("redis", sources=["k8s/"], values={"web_image": web_image.ref},
                   requires=["web_image"])

``web_image.ref`` is known when the conftest is read, so it can fill a ``${web_image}``
placeholder; ``requires`` makes the environment wait until the image is loaded. Pods
should use ``imagePullPolicy: IfNotPresent`` (a loaded image is in no registry). Loading
goes through the cluster provider (``kubefixtures.cluster.get_provider().load_image``);
xdist workers take turns under a file lock.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import re
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kubefixtures.declarations import caller_directory
from kubefixtures.errors import KubefixturesError
from kubefixtures.factories import Scope

__all__ = ["AppImage", "app_image", "docker_available"]

_ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".oci")
_DOCKER_TIMEOUT = 1800


@dataclass(frozen=True)
class AppImage:
    """The value of an ``app_image`` fixture."""

    ref: str
    archive: Path | None
    """The tarball loaded into the cluster (None: the cluster pulls ``ref`` itself)."""
    built: bool
    """Whether ``docker build`` made it in this run."""


def app_image(
    *,
    build: str | Path | None = None,
    image: str | Path | None = None,
    ref: str | None = None,
    dockerfile: str | None = None,
    build_args: Mapping[str, str] | None = None,
    base_images: Sequence[str | Path] = (),
    network: str | None = None,
    scope: Scope = "session",
) -> Any:  # pytest's type for a fixture definition is private
    """A fixture factory: ``build`` a Docker context (with ``docker build``), or use ``image``,
    a tarball or a reference; load it into the cluster; the value is an ``AppImage``.

    ``ref`` names the image (default: ``kubefixtures.local/DIRNAME:dev`` for a build, the
    tarball's own tag for a tarball). The returned fixture definition has ``.ref``.
    ``base_images`` are tarballs to ``docker load`` before building (a ``FROM`` that no
    registry serves); ``network`` is ``docker build --network`` (``host`` where the engine
    runs without a bridge network).
    """
    if (build is None) == (image is None):
        raise TypeError("app_image() takes exactly one of build=PATH or image=REF")
    if build is None and (base_images or network):
        raise TypeError("app_image(): base_images and network go with build=PATH only")
    base = caller_directory()
    bases = tuple(base / str(path) for path in base_images)
    context = archive = None
    if build is not None:
        context = base / build
        if not context.is_dir():
            raise ValueError(f"app_image(build={str(build)!r}): {context} is not a directory")
        chosen = ref or _default_ref(context)
    elif _is_archive(image, base):
        archive = base / str(image)
        chosen = ref or archive_ref(archive)
    else:
        chosen = ref or str(image)
    _check_ref(chosen)
    extra = dict(build_args or {})

    def fixture() -> Iterator[AppImage]:
        failure = None
        with _turn(chosen):  # held while building and loading only
            try:
                provided = _provide(
                    chosen, context, archive, _Build(dockerfile, extra, bases, network)
                )
            except KubefixturesError as error:
                failure = str(error)
        if failure is not None:
            pytest.fail(failure, pytrace=False)
        yield provided

    fixture.__name__ = "app_image"
    fixture.__doc__ = f"the image {chosen}, loaded into the test cluster"
    definition: Any = pytest.fixture(scope=scope)(fixture)
    definition.ref = chosen  # so that an environment's values can name it at declaration
    return definition


@dataclass(frozen=True)
class _Build:
    """How to ``docker build`` a context."""

    dockerfile: str | None
    args: Mapping[str, str]
    base_images: tuple[Path, ...]
    network: str | None


def _provide(ref: str, context: Path | None, archive: Path | None, build: _Build) -> AppImage:
    from kubefixtures.cluster import get_provider

    if context is not None:
        with tempfile.TemporaryDirectory(prefix="kubefixtures-image-") as scratch:
            saved = Path(scratch) / "image.tar"
            _docker_build(ref, context, build)
            _docker(["save", "-o", str(saved), ref], f"docker save {ref}")
            get_provider().load_image(saved)
        return AppImage(ref=ref, archive=None, built=True)
    if archive is not None:
        if not archive.is_file():
            raise KubefixturesError(f"app_image(image={str(archive)!r}): no such file")
        get_provider().load_image(archive)
        return AppImage(ref=ref, archive=archive, built=False)
    if docker_available() and _docker_has(ref):
        with tempfile.TemporaryDirectory(prefix="kubefixtures-image-") as scratch:
            saved = Path(scratch) / "image.tar"
            _docker(["save", "-o", str(saved), ref], f"docker save {ref}")
            get_provider().load_image(saved)
        return AppImage(ref=ref, archive=None, built=False)
    return AppImage(ref=ref, archive=None, built=False)  # the cluster pulls it


def docker_available() -> bool:
    """Whether a Docker engine answers (the CLI alone is not enough to build)."""
    docker = shutil.which("docker")
    if docker is None:
        return False
    try:
        done = subprocess.run(
            [docker, "version", "--format", "{{.Server.Version}}"],
            capture_output=True,
            timeout=15,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def _docker_build(ref: str, context: Path, build: _Build) -> None:
    if not docker_available():
        raise KubefixturesError(
            f"app_image(build={str(context)!r}): building needs a Docker engine and none "
            "answers (`docker version`); start one, or build the image elsewhere and pass "
            "app_image(image='IMAGE.tar')"
        )
    for base in build.base_images:
        if not base.is_file():
            raise KubefixturesError(f"app_image(base_images=[{str(base)!r}]): no such file")
        _docker(["load", "--input", str(base)], f"docker load of {base}")
    command = ["build", "-t", ref]
    if build.dockerfile:
        command += ["-f", str(context / build.dockerfile)]
    if build.network:
        command += ["--network", build.network]
    for key, value in sorted(build.args.items()):
        command += ["--build-arg", f"{key}={value}"]
    _docker([*command, str(context)], f"docker build of {context}")


def _docker_has(ref: str) -> bool:
    docker = shutil.which("docker") or "docker"
    done = subprocess.run(
        [docker, "image", "inspect", ref], capture_output=True, timeout=60, check=False
    )
    return done.returncode == 0


def _docker(arguments: list[str], doing: str) -> None:
    docker = shutil.which("docker") or "docker"
    try:
        done = subprocess.run(
            [docker, *arguments],
            capture_output=True,
            text=True,
            timeout=_DOCKER_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise KubefixturesError(f"{doing} took more than {_DOCKER_TIMEOUT} s") from None
    if done.returncode != 0:
        lines = [line for line in (done.stderr or done.stdout).splitlines() if line.strip()]
        raise KubefixturesError(f"{doing} failed: {lines[-1] if lines else 'no output'}")


def _is_archive(image: str | Path | None, base: Path) -> bool:
    text = str(image)
    return text.endswith(_ARCHIVE_SUFFIXES) or (base / text).is_file()


def archive_ref(archive: Path) -> str:
    """The first tag in a docker-archive's manifest.json (what ``docker save`` recorded)."""
    try:
        with tarfile.open(archive) as tar:
            member = tar.extractfile("manifest.json")
            if member is None:
                raise KeyError("manifest.json")
            tags = json.load(member)[0].get("RepoTags") or []
    except (OSError, tarfile.TarError, KeyError, ValueError, IndexError) as error:
        raise ValueError(
            f"app_image(image={str(archive)!r}): cannot read its tag ({error}); pass ref='NAME:TAG'"
        ) from None
    if not tags:
        raise ValueError(f"app_image(image={str(archive)!r}): it has no tag; pass ref='NAME:TAG'")
    return str(tags[0])


def _default_ref(context: Path) -> str:
    name = re.sub(r"[^a-z0-9._-]+", "-", context.name.lower()).strip("-._") or "app"
    return f"kubefixtures.local/{name}:dev"


def _check_ref(ref: str) -> None:
    if not re.fullmatch(r"[a-z0-9]([a-z0-9._/:@-]*[A-Za-z0-9_])?", ref) or ":" not in ref:
        raise ValueError(f"app_image(ref={ref!r}): not an image reference with a tag (NAME:TAG)")


class _turn:
    """One xdist worker at a time builds and loads a given image (a file lock)."""

    def __init__(self, ref: str) -> None:
        from filelock import FileLock

        directory = Path(tempfile.gettempdir()) / f"kubefixtures-{getpass.getuser()}"
        directory.mkdir(mode=0o700, exist_ok=True)
        digest = hashlib.sha256(ref.encode()).hexdigest()[:16]
        self._lock = FileLock(str(directory / f"image-{digest}.lock"))

    def __enter__(self) -> None:
        self._lock.acquire()

    def __exit__(self, *exc: object) -> None:
        self._lock.release()
