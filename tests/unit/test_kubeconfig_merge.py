"""`cluster up` adds its context to the user's kubeconfig the way kind does, and `down`
takes it out again, leaving everything else as it was."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from kubefixtures.cluster import kubeconfig
from kubefixtures.errors import ClusterError
from tests.unit.file_creation import creation_modes


def fragment(name: str, server: str) -> dict[str, Any]:
    return {
        "clusters": [{"name": name, "cluster": {"server": server}}],
        "users": [{"name": name, "user": {"token": "t"}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
        "current-context": name,
    }


@pytest.fixture
def config_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "kube" / "config"
    monkeypatch.setenv("KUBECONFIG", f"{path}:{tmp_path / 'other'}")
    return path


def test_the_first_file_of_kubeconfig_is_the_one_written(config_path: Path) -> None:
    assert kubeconfig.user_kubeconfig_path() == config_path


def test_merge_creates_a_private_file_and_makes_the_context_current(config_path: Path) -> None:
    kubeconfig.merge_context(fragment("local", "https://10.250.0.1:6443"))
    written = yaml.safe_load(config_path.read_text())
    assert written["current-context"] == "local"
    assert [c["name"] for c in written["contexts"]] == ["local"]
    assert config_path.stat().st_mode & 0o777 == 0o600


def test_the_kubeconfig_is_private_from_its_creation_on_every_write(
    config_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It holds a system:masters key: never readable by others, not even for a moment."""
    with creation_modes(monkeypatch) as modes:
        kubeconfig.merge_context(fragment("local", "https://10.250.0.1:6443"))
        assert modes == {config_path.resolve(): 0o600}
        modes.clear()
        kubeconfig.remove_context("local")
        assert modes == {config_path.resolve(): 0o600}


def test_merge_replaces_its_own_entries_and_keeps_the_others(config_path: Path) -> None:
    kubeconfig.merge_context(fragment("work", "https://work.example:6443"))
    kubeconfig.merge_context(fragment("local", "https://old:6443"))
    kubeconfig.merge_context(fragment("local", "https://10.250.0.1:6443"))
    written = yaml.safe_load(config_path.read_text())
    servers = {c["name"]: c["cluster"]["server"] for c in written["clusters"]}
    assert servers == {"work": "https://work.example:6443", "local": "https://10.250.0.1:6443"}


def test_remove_takes_out_only_its_context(config_path: Path) -> None:
    kubeconfig.merge_context(fragment("work", "https://work.example:6443"))
    kubeconfig.merge_context(fragment("local", "https://10.250.0.1:6443"))
    kubeconfig.remove_context("local")
    written = yaml.safe_load(config_path.read_text())
    assert [c["name"] for c in written["contexts"]] == ["work"]
    assert written["current-context"] == ""


def test_a_kubeconfig_that_is_not_a_mapping_is_named(config_path: Path) -> None:
    config_path.parent.mkdir(parents=True)
    config_path.write_text("- just\n- a list\n")
    with pytest.raises(ClusterError, match=rf"{config_path}: not a kubeconfig"):
        kubeconfig.merge_context(fragment("local", "https://10.250.0.1:6443"))


def test_invalid_yaml_is_named_with_its_line(config_path: Path) -> None:
    config_path.parent.mkdir(parents=True)
    config_path.write_text("apiVersion: v1\nclusters: [\n")
    with pytest.raises(ClusterError, match=rf"{config_path}:\d+: not valid YAML"):
        kubeconfig.remove_context("local")
