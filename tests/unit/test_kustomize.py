"""Kustomize sources with a stand-in kubectl: how kubefixtures calls it, fills placeholders
afterwards, points at objects, and reports failures on one line (no cluster, no kubectl;
tests/integration/test_kustomize.py uses the real one)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from kubefixtures.errors import RenderError
from kubefixtures.rendering import RenderContext, render_sources

# Prints what kustomize would for an overlay, with a placeholder kustomize passed through;
# KUSTOMIZE_FAIL makes it fail as kubectl does (its message on stderr after "error:").
FAKE_KUBECTL = """#!/bin/sh
echo "$@" > "$ARGS_COPY"
if [ -n "$KUSTOMIZE_FAIL" ]; then
  echo "# Warning: 'commonLabels' is deprecated. Please use 'labels' instead." >&2
  printf '%s\\n' "$KUSTOMIZE_FAIL" >&2
  exit 1
fi
cat <<'OUT'
apiVersion: v1
data:
  greeting: ${greeting}
kind: ConfigMap
metadata:
  labels:
    app: web
  name: test-settings-4b5f2k
---
apiVersion: v1
kind: Service
metadata:
  name: test-web
spec:
  ports:
  - port: ${port}
OUT
"""


def context(**values: object) -> RenderContext:
    return RenderContext(namespace="kf-k-abc", session_id="s1", environment="k", values=values)


@pytest.fixture
def overlay(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    kubectl = bin_dir / "kubectl"
    kubectl.write_text(FAKE_KUBECTL)
    kubectl.chmod(kubectl.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("ARGS_COPY", str(tmp_path / "args"))
    directory = tmp_path / "overlays" / "test"
    directory.mkdir(parents=True)
    (directory / "kustomization.yaml").write_text("resources: [../../base]\n")
    return directory


def test_a_kustomization_is_rendered_by_kubectl_then_placeholders_filled(
    overlay: Path, tmp_path: Path
) -> None:
    configmap, service = render_sources([overlay], context(greeting="hello", port=8080))
    assert (tmp_path / "args").read_text().split() == ["kustomize", str(overlay)]
    assert configmap.manifest["data"] == {"greeting": "hello"}
    assert service.manifest["spec"]["ports"] == [{"port": 8080}]
    assert service.location == f"{overlay} (service/test-web, kustomize output line 10)"


@pytest.mark.parametrize("name", ["kustomization.yml", "Kustomization"])
def test_every_name_kustomize_knows_is_a_kustomization(overlay: Path, name: str) -> None:
    (overlay / "kustomization.yaml").rename(overlay / name)
    assert len(render_sources([overlay], context(greeting="hi", port=1))) == 2


def test_an_unknown_placeholder_names_the_object_it_is_in(overlay: Path) -> None:
    with pytest.raises(RenderError) as caught:
        render_sources([overlay], context(greeting="hi"))
    assert str(caught.value) == (
        f"{overlay} (service/test-web, kustomize output line 16): unknown placeholder ${{port}}"
    )


@pytest.mark.parametrize(
    ("stderr", "message"),
    [
        (
            "error: accumulating resources: accumulation err='accumulating resources from "
            "'../../base': open /x/base: no such file or directory'",
            "accumulating resources: accumulation err='accumulating resources from "
            "'../../base': open /x/base: no such file or directory'",
        ),
        (  # kustomize's message spread over lines: joined
            "error: map[string]interface {}(nil): yaml: unmarshal errors:\n"
            "  line 3: field nameprefix not found in type types.Kustomization",
            "map[string]interface {}(nil): yaml: unmarshal errors: line 3: field nameprefix "
            "not found in type types.Kustomization",
        ),
        (  # kubectl builds that log through klog
            'E1201 10:46:16.888757    9116 run.go:72] "command failed" err="invalid '
            'Kustomization: json: unknown field \\"namePrefx\\""',
            'invalid Kustomization: json: unknown field "namePrefx"',
        ),
    ],
)
def test_a_kustomize_failure_is_one_line_naming_the_directory(
    overlay: Path, monkeypatch: pytest.MonkeyPatch, stderr: str, message: str
) -> None:
    monkeypatch.setenv("KUSTOMIZE_FAIL", stderr)
    with pytest.raises(RenderError) as caught:
        render_sources([overlay], context())
    assert str(caught.value) == f"{overlay}: kustomize failed: {message}"
    assert "\n" not in str(caught.value)


def test_output_past_the_limit_is_refused(overlay: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("kubefixtures.rendering.MAX_TOOL_OUTPUT_BYTES", 100)
    with pytest.raises(RenderError) as caught:
        render_sources([overlay], context(greeting="hi", port=1))
    assert str(caught.value) == f"{overlay}: kubectl kustomize printed more than 100 bytes"


def test_missing_kubectl_is_a_clear_error(
    overlay: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr("sysconfig.get_path", lambda name: str(tmp_path / "empty"))
    with pytest.raises(RenderError, match=r"^kubectl: kubectl \(its built-in kustomize\) is"):
        render_sources([overlay], context())


def test_a_kustomization_inside_a_directory_of_manifests_points_at_its_directory(
    tmp_path: Path,
) -> None:
    (tmp_path / "deploy" / "base").mkdir(parents=True)
    (tmp_path / "deploy" / "base" / "kustomization.yaml").write_text("resources: []\n")
    with pytest.raises(RenderError) as caught:
        render_sources([tmp_path / "deploy"], context())
    assert caught.value.location == str(tmp_path / "deploy" / "base" / "kustomization.yaml")
    assert f"give its directory ({tmp_path / 'deploy' / 'base'}) as the source" in str(caught.value)
