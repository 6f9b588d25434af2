"""The public API: ``__all__`` is sorted, complete and honest."""

from __future__ import annotations

import subprocess
import sys

import pytest

import kubefixtures
from kubefixtures import errors


def test_all_is_sorted_and_every_name_resolves() -> None:
    assert kubefixtures.__all__ == sorted(kubefixtures.__all__)
    for name in kubefixtures.__all__:
        assert getattr(kubefixtures, name) is not None


def test_the_contract_names_are_exported() -> None:
    contract = {
        "environment",
        "Environment",
        "EnvironmentDetails",
        "ServiceDetails",
        "KubefixturesError",
        "RenderError",
        "ClusterError",
        "ApplyError",
        "NotReadyError",
        "SettingsError",
    }
    assert contract <= set(kubefixtures.__all__)


def test_every_public_error_is_exported() -> None:
    assert set(errors.__all__) <= set(kubefixtures.__all__)


def test_unknown_attributes_raise_attribute_error() -> None:
    with pytest.raises(AttributeError, match="nope"):
        kubefixtures.nope  # noqa: B018


def test_importing_the_plugin_loads_neither_kubernetes_nor_pydantic_nor_yaml() -> None:
    code = (
        "import sys, kubefixtures, kubefixtures.plugin;"
        "print(sorted(m for m in ('kubernetes', 'pydantic', 'yaml') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
