"""Adding a cluster to the user's kubeconfig and taking it out again, as kind does."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from kubefixtures.errors import ClusterError
from kubefixtures.limits import read_text
from kubefixtures.private_files import write_private_file
from kubefixtures.yamlinput import YAMLInputError, load_document

SECTIONS = ("clusters", "users", "contexts")


def user_kubeconfig_path() -> Path:
    configured = os.environ.get("KUBECONFIG", "")
    first = next((part for part in configured.split(os.pathsep) if part), None)
    return Path(first) if first else Path.home() / ".kube" / "config"


def _load(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {"apiVersion": "v1", "kind": "Config", "preferences": {}}
    try:
        loaded = load_document(read_text(path)) or {}
    except YAMLInputError as error:
        where = f"{path}:{error.line}" if error.line is not None else str(path)
        raise ClusterError(
            f"{where}: not valid YAML ({error.problem}), so its context cannot be updated"
        ) from None
    except ValueError as error:  # not UTF-8, too large
        raise ClusterError(f"{path} {error}, so its context cannot be updated") from None
    if not isinstance(loaded, dict):
        raise ClusterError(f"{path}: not a kubeconfig (expected a mapping at the top)")
    for section in SECTIONS:
        entries = loaded.get(section) or []
        if not isinstance(entries, list):
            raise ClusterError(f"{path}: {section} is not a list, so its context cannot be updated")
        for index, entry in enumerate(entries):
            if not isinstance(entry, dict):
                raise ClusterError(
                    f"{path}: {section}[{index}] is not a mapping, so its context cannot be updated"
                )
    return loaded


def _save(path: Path, config: dict[str, Any]) -> None:
    # It holds the local cluster's system:masters key (and whatever else the user has).
    write_private_file(path, yaml.safe_dump(config, sort_keys=False))


def merge_context(fragment: dict[str, Any], make_current: bool = True) -> Path:
    """Replace the fragment's entries (by name) in the user's kubeconfig."""
    path = user_kubeconfig_path()
    config = _load(path)
    for section in SECTIONS:
        names = {entry["name"] for entry in fragment.get(section, [])}
        kept = [entry for entry in config.get(section) or [] if entry.get("name") not in names]
        config[section] = kept + list(fragment.get(section, []))
    if make_current:
        config["current-context"] = fragment["current-context"]
    _save(path, config)
    return path


def remove_context(name: str) -> None:
    path = user_kubeconfig_path()
    if not path.is_file():
        return
    config = _load(path)
    for section in SECTIONS:
        config[section] = [e for e in config.get(section) or [] if e.get("name") != name]
    if config.get("current-context") == name:
        config["current-context"] = ""
    _save(path, config)
