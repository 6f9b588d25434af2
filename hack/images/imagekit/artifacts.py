"""Small local builds (gcc, go, pip, npm) whose outputs go into images, cached by input hash.

An artifact's output is a file (a compiled binary) or a directory tree (packages that
``pip install --target`` or ``npm ci`` put in ``{out}``); a layer places either at a path.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

from imagekit.errors import BuildError
from imagekit.recipes import ArtifactRecipe

# Where tools live when they are installed outside PATH: the Makefile puts Go here.
_EXTRA_TOOL_DIRS = ("/usr/local/go/bin",)


def find_tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path=os.pathsep.join(_EXTRA_TOOL_DIRS))
    if found is None:
        raise BuildError(f"{name} not found on PATH (install it; see hack/images/README.md)")
    return found


def _tool_version(command: tuple[str, ...]) -> str:
    if not command:
        return ""
    result = subprocess.run(
        [find_tool(command[0]), *command[1:]],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    if result.returncode != 0:
        raise BuildError(f"{' '.join(command)} failed: {result.stderr.strip()}")
    return result.stdout.strip()


def _sources(recipe: ArtifactRecipe, directory: Path) -> list[Path]:
    found = {
        path for pattern in recipe.sources for path in directory.glob(pattern) if path.is_file()
    }
    if not found:
        raise BuildError(f"artifact {recipe.name}: no file matches sources {list(recipe.sources)}")
    return sorted(found)


def artifact_key(recipe: ArtifactRecipe, directory: Path) -> str:
    inputs = {
        "recipe": asdict(recipe),
        "tool": _tool_version(recipe.version_command),
        "sources": [
            # relpath, not relative_to: a recipe may hash sources outside this directory
            # (the operator image hashes ../../kubefixtures/**/*.py).
            (os.path.relpath(path, directory), hashlib.sha256(path.read_bytes()).hexdigest())
            for path in _sources(recipe, directory)
        ],
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


def build_artifact(
    recipe: ArtifactRecipe, directory: Path, work: Path, *, force: bool
) -> tuple[Path, bool]:
    """Build `recipe` into work/artifacts/NAME unless its inputs are unchanged.
    Returns the output path and whether it was built now."""
    out = work / "artifacts" / recipe.name
    key_file = out.with_name(f"{recipe.name}.key")
    key = artifact_key(recipe, directory)
    if not force and out.exists() and key_file.is_file() and key_file.read_text() == key:
        return out, False

    out.parent.mkdir(parents=True, exist_ok=True)
    temporary = out.with_name(f".{recipe.name}.tmp-{os.getpid()}")
    command = [find_tool(recipe.command[0])]
    command += [arg.replace("{out}", str(temporary)) for arg in recipe.command[1:]]
    try:
        result = subprocess.run(
            command,
            cwd=directory / recipe.workdir,
            env={**os.environ, **dict(recipe.env)},
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0 or not (temporary.is_file() or temporary.is_dir()):
            # The tool's own diagnostics first, then our one-line summary.
            sys.stderr.write(result.stdout + result.stderr)
            raise BuildError(
                f"artifact {recipe.name}: {recipe.command[0]} failed with exit code "
                f"{result.returncode} (its output is above)"
            )
        key_file.unlink(missing_ok=True)  # never a key next to a half-replaced output
        _remove(out)
        os.replace(temporary, out)
    finally:
        _remove(temporary)
    key_file.write_text(key)
    return out, True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
