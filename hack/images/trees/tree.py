#!/usr/bin/env python3
"""Directory-tree artifacts for hack/images: what `pip install --target`, `npm ci` or a
filtered copy of a host directory puts in OUT, ready to be placed in an image.

    tree.py copy SRC OUT [--exclude GLOB ...] [--compile IMAGE_DIR]
    tree.py pip REQUIREMENTS OUT --compile IMAGE_DIR
    tree.py npm PACKAGE_DIR OUT

Python trees are byte-compiled with unchecked-hash .pyc files: the image's files all have
mtime 0, which would make timestamp-checked .pyc files stale, and a non-root container
cannot write fresh ones, so every start would compile moto and botocore again. The .pyc
files name IMAGE_DIR, where the tree lands, not the build directory. Standard library only.
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

# Debian's interpreter, the one the images run (a pyenv or venv python may come first on PATH).
PYTHON = "/usr/bin/python3.11"


def run(command: list[str], cwd: Path | None = None) -> None:
    result = subprocess.run(command, cwd=cwd, check=False)
    if result.returncode != 0:
        sys.exit(f"tree.py: {' '.join(command[:4])} ... failed with exit code {result.returncode}")


def copy(source: Path, out: Path, excludes: list[str]) -> None:
    """Copy SRC to OUT, leaving out paths (relative to SRC) matching any exclude glob, and
    symlinks that point outside SRC (Debian links sitecustomize.py into /etc)."""

    def ignored(directory: str, names: list[str]) -> set[str]:
        relative = Path(directory).relative_to(source)
        skip = set()
        for name in names:
            path = str(relative / name) if str(relative) != "." else name
            if any(fnmatch.fnmatch(path, pattern) for pattern in excludes):
                skip.add(name)
                continue
            full = Path(directory) / name
            if full.is_symlink() and not full.resolve().is_relative_to(source.resolve()):
                skip.add(name)
        return skip

    shutil.copytree(source, out, symlinks=True, ignore=ignored)


def compile_tree(out: Path, image_dir: str) -> None:
    for cache in out.rglob("__pycache__"):
        shutil.rmtree(cache)  # the host's timestamp-checked ones
    run([
        PYTHON, "-m", "compileall", "-q", "-j", "0",
        "--invalidation-mode", "unchecked-hash",
        "-s", str(out), "-p", image_dir,
        str(out),
    ])  # fmt: skip


def pip(requirements: Path, out: Path) -> None:
    # Exact pins, no dependency resolution (the file lists every package), wheels only,
    # and nothing compiled here: compile_tree does it for the image's path.
    run([
        PYTHON, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
        "--no-deps", "--only-binary=:all:", "--root-user-action=ignore", "--no-compile",
        "--no-warn-script-location",
        "--target", str(out), "--requirement", str(requirements),
    ])  # fmt: skip
    shutil.rmtree(out / "bin", ignore_errors=True)  # scripts naming the build's interpreter


def npm(package_dir: Path, out: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="tree-npm-") as scratch:
        for name in ("package.json", "package-lock.json"):
            shutil.copy2(package_dir / name, Path(scratch) / name)
        run(
            ["npm", "ci", "--omit=dev", "--ignore-scripts", "--no-audit", "--no-fund",
             "--loglevel=error"],
            cwd=Path(scratch),
        )  # fmt: skip
        # npm's own bookkeeping records install times: leave it out for reproducible trees.
        (Path(scratch) / "node_modules" / ".package-lock.json").unlink(missing_ok=True)
        shutil.move(Path(scratch) / "node_modules", out)


def main() -> None:
    parser = argparse.ArgumentParser(prog="tree.py")
    commands = parser.add_subparsers(dest="command", required=True)
    copy_parser = commands.add_parser("copy")
    copy_parser.add_argument("source", type=Path)
    copy_parser.add_argument("out", type=Path)
    copy_parser.add_argument("--exclude", action="append", default=[])
    copy_parser.add_argument("--compile", metavar="IMAGE_DIR")
    pip_parser = commands.add_parser("pip")
    pip_parser.add_argument("requirements", type=Path)
    pip_parser.add_argument("out", type=Path)
    pip_parser.add_argument("--compile", metavar="IMAGE_DIR", required=True)
    npm_parser = commands.add_parser("npm")
    npm_parser.add_argument("package_dir", type=Path)
    npm_parser.add_argument("out", type=Path)
    args = parser.parse_args()
    os.umask(0o022)  # modes in the tree become modes in the image
    if args.command == "copy":
        copy(args.source, args.out, args.exclude)
    elif args.command == "pip":
        pip(args.requirements, args.out)
    else:
        npm(args.package_dir, args.out)
    if getattr(args, "compile", None):
        compile_tree(args.out, args.compile)


if __name__ == "__main__":
    main()
