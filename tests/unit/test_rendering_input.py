"""Hostile or broken manifests: each refused by rendering (before anything is created) with
one line naming the file and line, never a traceback or an object the author did not write."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from kubefixtures.errors import RenderError
from kubefixtures.limits import MAX_YAML_DEPTH
from kubefixtures.rendering import RenderContext, parse_manifests, render_sources
from kubefixtures.yamlinput import ExpansionBudget

CONFIGMAP = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n"

# 9 levels of 9 aliases: 9**9 "lol"s, hundreds of megabytes as JSON, from a tiny file.
BILLION_LAUGHS = (
    CONFIGMAP.format(name="laughs")
    + '  a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n'
    + "".join(
        f"  {name}: &{name} [{', '.join([f'*{previous}'] * 9)}]\n"
        for previous, name in zip("abcdefgh", "bcdefghi", strict=True)
    )
)


def context(**values: object) -> RenderContext:
    return RenderContext(
        namespace="kf-test-abc123", session_id="s1", environment="shop", values=values
    )


def render_text(tmp_path: Path, text: str | bytes, **values: object) -> RenderError:
    path = tmp_path / "m.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    with pytest.raises(RenderError) as caught:
        render_sources([path], context(**values))
    assert "\n" not in str(caught.value)
    return caught.value


def test_alias_expansion_past_the_limit_is_refused(tmp_path: Path) -> None:
    assert len(BILLION_LAUGHS) < 700
    error = render_text(tmp_path, BILLION_LAUGHS)
    assert error.location.startswith(f"{tmp_path / 'm.yaml'}:")
    assert "expand to more than 16 MiB" in error.problem


def test_aliases_within_the_limit_still_work(tmp_path: Path) -> None:
    text = CONFIGMAP.format(name="x") + "  a: &a 'value'\n  b: *a\n"
    objects = parse_manifests(text, "m.yaml")
    assert objects[0].manifest["data"] == {"a": "value", "b": "value"}


def test_the_expansion_budget_is_shared_by_every_file(tmp_path: Path) -> None:
    budget = ExpansionBudget(limit=400)
    parse_manifests(
        CONFIGMAP.format(name="a") + "  k: " + "v" * 100 + "\n", "a.yaml", budget=budget
    )
    with pytest.raises(RenderError, match="expand to more than 400 bytes"):
        parse_manifests(
            CONFIGMAP.format(name="b") + "  k: " + "v" * 300 + "\n", "b.yaml", budget=budget
        )


def test_a_recursive_alias_is_refused(tmp_path: Path) -> None:
    error = render_text(tmp_path, CONFIGMAP.format(name="x") + "  a: &a [*a]\n")
    assert error.location == f"{tmp_path / 'm.yaml'}:6"
    assert error.problem == "alias *a refers to a node that contains it"


@pytest.mark.parametrize("depth", [MAX_YAML_DEPTH + 1, 500, 50_000])
def test_deep_nesting_is_refused_not_a_recursion_error(tmp_path: Path, depth: int) -> None:
    error = render_text(tmp_path, "[" * depth + "]" * depth + "\n")
    assert error.problem == f"nested more than {MAX_YAML_DEPTH} levels deep"


def test_nesting_up_to_the_limit_is_accepted() -> None:
    nested = "[" * (MAX_YAML_DEPTH - 3) + "]" * (MAX_YAML_DEPTH - 3)
    text = CONFIGMAP.format(name="x") + f"  deep: '{nested}'\nspec: {nested}\n"
    assert parse_manifests(text, "m.yaml")[0].name == "x"


def test_a_duplicate_key_is_refused_with_both_lines(tmp_path: Path) -> None:
    error = render_text(tmp_path, CONFIGMAP.format(name="x") + "  a: '1'\n  b: '2'\n  a: '3'\n")
    assert str(error) == f"{tmp_path / 'm.yaml'}:8: duplicate key 'a' (first on line 6)"


def test_a_duplicate_key_in_a_flow_mapping_is_refused(tmp_path: Path) -> None:
    error = render_text(tmp_path, CONFIGMAP.format(name="x") + "  m: '{}'\nspec: {a: 1, a: 2}\n")
    assert error.problem == "duplicate key 'a' (first on line 7)"


def test_merge_keys_are_not_duplicates() -> None:
    text = CONFIGMAP.format(name="x") + "  <<: &base {a: '1', b: '2'}\n  b: '3'\n"
    assert parse_manifests(text, "m.yaml")[0].manifest["data"] == {"a": "1", "b": "3"}


@pytest.mark.parametrize("line_break", ["\n", "\r", "\x85", "\u2028", "\u2029"])
def test_a_value_with_a_line_break_cannot_inject_an_object(tmp_path: Path, line_break: str) -> None:
    injected = (
        f"x{line_break}---{line_break}apiVersion: v1{line_break}kind: Secret"
        f"{line_break}metadata: {{name: injected}}"
    )
    error = render_text(tmp_path, CONFIGMAP.format(name="x") + "  a: ${v}\n", v=injected)
    assert error.location == f"{tmp_path / 'm.yaml'}:6"
    assert error.problem.startswith("the value of ${v} spans several lines")


def test_multi_line_text_passes_as_json(tmp_path: Path) -> None:
    import json

    path = tmp_path / "m.yaml"
    path.write_text(CONFIGMAP.format(name="x") + "  a: ${v}\n")
    objects = render_sources([path], context(v=json.dumps("one\ntwo: 2\n---\n")))
    assert objects[0].manifest["data"] == {"a": "one\ntwo: 2\n---\n"}


def test_a_manifest_that_is_not_utf8_names_the_file_and_line(tmp_path: Path) -> None:
    error = render_text(tmp_path, CONFIGMAP.format(name="x").encode() + b"  a: caf\xe9\n")
    assert str(error) == f"{tmp_path / 'm.yaml'}: is not UTF-8 text (line 6)"


def test_a_manifest_over_the_size_limit_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("kubefixtures.rendering.MAX_FILE_BYTES", 100)
    error = render_text(tmp_path, CONFIGMAP.format(name="x") + "  a: " + "v" * 100 + "\n")
    assert str(error) == f"{tmp_path / 'm.yaml'}: is larger than 100 bytes"


LATIN1_HELM = b"""#!/bin/sh
printf -- '---\\n# Source: c/templates/cm.yaml\\napiVersion: v1\\nkind: ConfigMap\\n'
printf 'metadata:\\n  name: x\\ndata:\\n  a: caf\\351\\n'
"""


def test_helm_output_that_is_not_utf8_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    helm = bin_dir / "helm"
    helm.write_bytes(LATIN1_HELM)
    helm.chmod(helm.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    chart = tmp_path / "c"
    chart.mkdir()
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: c\nversion: 0.1.0\n")
    with pytest.raises(RenderError) as caught:
        render_sources([chart], context())
    assert str(caught.value) == (
        f"{chart} (helm output line 8): helm template printed text that is not UTF-8"
    )


def test_a_control_character_is_one_line(tmp_path: Path) -> None:
    error = render_text(tmp_path, CONFIGMAP.format(name="x") + "  a: '\x00'\n")
    assert error.location == str(tmp_path / "m.yaml")
    assert error.problem.startswith("invalid YAML: unacceptable character #x0000")


def test_dates_and_binary_stay_strings_as_kubernetes_reads_them() -> None:
    text = CONFIGMAP.format(name="x") + "  day: 2024-01-01\n  raw: !!binary aGk=\n"
    data = parse_manifests(text, "m.yaml")[0].manifest["data"]
    assert data == {"day": "2024-01-01", "raw": "aGk="}


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("!!int x", "invalid YAML: a value does not match its explicit tag"),
        ("!!bool maybe", "invalid YAML: a value does not match its explicit tag"),
        (".nan", "cannot be sent as JSON: Out of range float values are not JSON compliant"),
    ],
)
def test_values_json_cannot_carry_are_refused_before_apply(
    tmp_path: Path, value: str, problem: str
) -> None:
    error = render_text(tmp_path, CONFIGMAP.format(name="x") + f"  a: {value}\n")
    assert error.location == f"{tmp_path / 'm.yaml'}:1"
    assert error.problem == problem
