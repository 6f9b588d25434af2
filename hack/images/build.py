#!/usr/bin/env python3
"""Build kubefixtures' local container images as docker-archive tarballs.

    python3 hack/images/build.py --out DIR [NAME ...]

writes DIR/NAME.tar for each image (all of them without NAME) from this
machine's Debian packages and our own small sources, with no registry, daemon
or network, and prints one line per image. An image whose inputs have not
changed since the last build is left alone. Import one into the cluster with
`ctr -n k8s.io images import DIR/NAME.tar`. Recipes: hack/images/recipes.toml;
details: hack/images/README.md. Standard library only.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # the imagekit package next to this script

from imagekit.artifacts import build_artifact  # noqa: E402
from imagekit.errors import BuildError  # noqa: E402
from imagekit.image import LayerStore, plan_image, write_image  # noqa: E402
from imagekit.progress import Heartbeat  # noqa: E402
from imagekit.recipes import ImageRecipe, Recipes, load_recipes  # noqa: E402

DEFAULT_RECIPES = HERE / "recipes.toml"


def builder_hash() -> str:
    """Hash of the builder's own code: a change to how tarballs are written must
    rebuild them even though no recipe or input file changed."""
    digest = hashlib.sha256()
    for path in [Path(__file__).resolve(), *sorted((HERE / "imagekit").glob("*.py"))]:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB"):
        if value < 1024 or unit == "MiB":
            return f"{value:.1f} {unit}" if unit != "B" else f"{size} B"
        value /= 1024
    raise AssertionError("unreachable")


@contextmanager
def locked(out: Path) -> Iterator[None]:
    """One build per output directory at a time (make and a test run may overlap)."""
    with (out / ".lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def select(recipes: Recipes, names: list[str]) -> list[ImageRecipe]:
    unknown = [name for name in names if name not in recipes.images]
    if unknown:
        known = ", ".join(recipes.images)
        raise BuildError(f"no image named {unknown[0]!r} in {recipes.path.name} (known: {known})")
    return [recipes.images[name] for name in names or list(recipes.images)]


def build_artifacts(
    recipes: Recipes, images: list[ImageRecipe], work: Path, force: bool, heartbeat: Heartbeat
) -> dict[str, Path]:
    needed = sorted(
        {
            artifact
            for image in images
            for layer in image.layers
            for _, artifact in recipes.layers[layer].artifacts
        }
    )
    outputs = {}
    for number, name in enumerate(needed, 1):
        heartbeat.step(f"compiling {name} (artifact {number} of {len(needed)})")
        outputs[name], built = build_artifact(
            recipes.artifacts[name], recipes.directory, work, force=force
        )
        if built:
            heartbeat.say(f"build.py: compiled {name}")
    return outputs


def build(
    recipes: Recipes, images: list[ImageRecipe], out: Path, force: bool, heartbeat: Heartbeat
) -> None:
    work = out / ".work"
    artifacts = build_artifacts(recipes, images, work, force, heartbeat)
    own_hash = builder_hash()
    store = LayerStore(work)
    try:
        for number, image in enumerate(images, 1):
            heartbeat.step(f"writing {image.name}.tar (image {number} of {len(images)})")
            plan = plan_image(recipes, image, artifacts, own_hash)
            dest = out / f"{image.name}.tar"
            key_file = out / f"{image.name}.tar.key"
            up_to_date = (
                not force
                and dest.is_file()
                and key_file.is_file()
                and key_file.read_text().strip() == plan.key
            )
            if not up_to_date:
                key_file.unlink(missing_ok=True)  # never a key next to a stale tarball
                write_image(plan, dest, store)
                key_file.write_text(plan.key + "\n")
            status = "up-to-date" if up_to_date else "built"
            size = human_size(dest.stat().st_size)
            line = f"{image.name:<12} {image.ref:<36} {size:>10}  {status:<10}  {dest}"
            heartbeat.say(line, sys.stdout)
    finally:
        store.close()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="build.py",
        description="Build local container images as docker-archive tarballs (no registry).",
    )
    parser.add_argument("names", nargs="*", metavar="NAME", help="images to build (default: all)")
    parser.add_argument("--out", type=Path, help="directory for NAME.tar files (required)")
    parser.add_argument(
        "--recipes", type=Path, default=DEFAULT_RECIPES, help="recipes file (default: %(default)s)"
    )
    parser.add_argument("--force", action="store_true", help="rebuild even if up to date")
    parser.add_argument("--list", action="store_true", help="print NAME and REF of each image")
    args = parser.parse_args(argv)
    if args.out is None and not args.list:
        parser.error("--out DIR is required")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        recipes = load_recipes(args.recipes)
        images = select(recipes, args.names)
        if args.list:
            for image in images:
                print(f"{image.name} {image.ref}")
            return 0
        out: Path = args.out
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise BuildError(f"--out {out}: {error.strerror}") from None
        with Heartbeat() as heartbeat:
            heartbeat.step(f"waiting for another build in {out}")
            with locked(out):
                build(recipes, images, out, args.force, heartbeat)
    except BuildError as error:
        print(f"build.py: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
