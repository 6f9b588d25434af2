"""Rendering: placeholders, YAML parsing, sources, image overrides (no cluster)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from kubefixtures.errors import RenderError
from kubefixtures.rendering import (
    RenderContext,
    Secrets,
    _helm_error,
    apply_image_overrides,
    parse_manifests,
    render_sources,
    substitute,
)

POD = """\
apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  containers:
    - name: main
      image: {image}
"""


def context(**values: object) -> RenderContext:
    return RenderContext(
        namespace="kf-test-abc123", session_id="s1", environment="shop", values=values
    )


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_values_builtins_and_nested_values_are_filled(tmp_path: Path) -> None:
    source = write(
        tmp_path / "cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm\n"
        "data:\n  ns: ${namespace}\n  sid: ${session_id}\n  env: ${environment}\n"
        "  version: '${redis.version}'\n  flag: '${enabled}'\n",
    )
    [rendered] = render_sources([source], context(redis={"version": 7}, enabled=True))
    assert rendered.manifest["data"] == {
        "ns": "kf-test-abc123",
        "sid": "s1",
        "env": "shop",
        "version": "7",
        "flag": "true",
    }
    assert rendered.location == f"{source}:1"


def test_unknown_placeholder_names_file_line_and_placeholder(tmp_path: Path) -> None:
    source = write(tmp_path / "pod.yaml", POD.format(name="web", image="redis:${redis_versoin}"))
    with pytest.raises(RenderError) as caught:
        render_sources([source], context(redis_version="7"))
    assert str(caught.value) == f"{source}:8: unknown placeholder ${{redis_versoin}}"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("a: ${}\n", "invalid placeholder ${}"),
        ("a: ${ spaced }\n", "invalid placeholder ${ spaced }"),
        ("a: ${unterminated\n", "unterminated placeholder '${unterminated'"),
    ],
)
def test_malformed_placeholders_are_errors(text: str, problem: str) -> None:
    with pytest.raises(RenderError) as caught:
        substitute(text, "f.yaml", lambda _: "x")
    assert caught.value.location == "f.yaml:1"
    assert problem in caught.value.problem


def test_escape_gives_a_literal_placeholder() -> None:
    assert substitute("echo $${HOME} ${x}", "f", lambda _: "1") == "echo ${HOME} 1"


def test_secrets_are_stable_within_a_session_and_differ_between_names(tmp_path: Path) -> None:
    secrets = Secrets()
    source = write(
        tmp_path / "s.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\n"
        "stringData:\n  a: ${secret:db}\n  b: ${secret:db}\n  c: ${secret:other}\n",
    )
    ctx = context()
    ctx.secrets = secrets
    [rendered] = render_sources([source], ctx)
    data = rendered.manifest["stringData"]
    assert data["a"] == data["b"] == secrets.get("db")
    assert data["c"] != data["a"]
    assert len(data["a"]) == 24
    assert data["a"][0].isalpha()
    assert ctx.used_secrets == {"db", "other"}
    assert "db" in repr(secrets)
    assert data["a"] not in repr(secrets)


def test_values_may_hold_builtins_and_secrets(tmp_path: Path) -> None:
    source = write(
        tmp_path / "cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm\ndata:\n  url: ${url}\n",
    )
    ctx = context(url="redis://:${secret:pw}@redis.${namespace}")
    [rendered] = render_sources([source], ctx)
    assert rendered.manifest["data"]["url"] == (
        f"redis://:{ctx.secrets.get('pw')}@redis.kf-test-abc123"
    )


def test_invalid_yaml_names_file_and_line(tmp_path: Path) -> None:
    source = write(tmp_path / "bad.yaml", "apiVersion: v1\nkind: Pod\nmetadata: [unclosed\n")
    with pytest.raises(RenderError) as caught:
        render_sources([source], context())
    assert caught.value.location.startswith(f"{source}:")
    assert "invalid YAML" in caught.value.problem


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        ("kind: Pod\nmetadata:\n  name: x\n", "object without apiVersion"),
        ("apiVersion: v1\nmetadata:\n  name: x\n", "object without kind"),
        ("apiVersion: v1\nkind: Pod\n", "Pod without metadata.name"),
        ("- a\n- b\n", "a document must be a mapping, not list"),
        ("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: x\n", "Namespace objects"),
    ],
)
def test_objects_that_cannot_be_applied_are_errors(document: str, problem: str) -> None:
    text = POD.format(name="first", image="busybox") + "---\n" + document
    with pytest.raises(RenderError) as caught:
        parse_manifests(text, "m.yaml")
    assert caught.value.location == "m.yaml:10"  # the line after `---`
    assert problem in caught.value.problem


def test_empty_documents_are_skipped_and_lists_flattened() -> None:
    text = (
        "---\n---\n# only a comment\n---\n"
        "apiVersion: v1\nkind: List\nitems:\n"
        "  - {apiVersion: v1, kind: ConfigMap, metadata: {name: a}}\n"
        "  - {apiVersion: v1, kind: ConfigMap, metadata: {name: b}}\n"
    )
    assert [str(obj) for obj in parse_manifests(text, "m.yaml")] == ["configmap/a", "configmap/b"]


def test_a_directory_renders_its_yaml_files_in_order(tmp_path: Path) -> None:
    write(tmp_path / "b.yaml", POD.format(name="b", image="x"))
    write(tmp_path / "a" / "a.yml", POD.format(name="a", image="x"))
    write(tmp_path / "README.md", "not yaml: [")
    write(tmp_path / ".hidden" / "c.yaml", "not: [valid")
    names = [obj.name for obj in render_sources([tmp_path], context())]
    assert names == ["a", "b"]


def test_missing_and_empty_sources_are_errors(tmp_path: Path) -> None:
    with pytest.raises(RenderError, match="no such file or directory"):
        render_sources([tmp_path / "nope.yaml"], context())
    with pytest.raises(RenderError, match=r"no \.yaml, \.yml or \.json files"):
        render_sources([tmp_path], context())


def test_duplicate_objects_are_errors(tmp_path: Path) -> None:
    first = write(tmp_path / "a.yaml", POD.format(name="web", image="x"))
    write(tmp_path / "b.yaml", POD.format(name="web", image="y"))
    with pytest.raises(RenderError, match=f"pod/web is also defined at {first}:1"):
        render_sources([tmp_path], context())


def test_a_foreign_namespace_is_an_error_but_our_own_is_fine(tmp_path: Path) -> None:
    ours = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  namespace: ${namespace}\n"
    theirs = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: b\n  namespace: default\n"
    write(tmp_path / "a.yaml", ours)
    assert len(render_sources([tmp_path / "a.yaml"], context())) == 1
    write(tmp_path / "b.yaml", theirs)
    with pytest.raises(RenderError, match=r"sets metadata\.namespace 'default'"):
        render_sources([tmp_path / "b.yaml"], context())


def test_image_overrides_reach_every_pod_spec() -> None:
    deployment = {
        "kind": "Deployment",
        "spec": {
            "template": {
                "spec": {
                    "initContainers": [{"name": "init", "image": "busybox"}],
                    "containers": [
                        {"name": "a", "image": "redis:7", "imagePullPolicy": "Always"},
                        {"name": "b", "image": "docker.io/library/redis:7"},
                        {"name": "c", "image": "nginx:1.27", "imagePullPolicy": "Never"},
                        {"name": "d", "image": "quay.io/x/y:1"},
                    ],
                }
            }
        },
    }
    apply_image_overrides(
        deployment,
        {"redis:7": "kubefixtures.local/redis:7.0", "busybox": "kubefixtures.local/busybox:1.35",
         "nginx": "local/nginx:1"},
    )  # fmt: skip
    spec = deployment["spec"]["template"]["spec"]  # type: ignore[index]
    assert spec["initContainers"][0] == {
        "name": "init",
        "image": "kubefixtures.local/busybox:1.35",
        "imagePullPolicy": "IfNotPresent",
    }
    assert [c["image"] for c in spec["containers"]] == [
        "kubefixtures.local/redis:7.0",
        "kubefixtures.local/redis:7.0",
        "local/nginx:1",
        "quay.io/x/y:1",
    ]
    # An explicit Never is kept: it already never pulls.
    assert [c.get("imagePullPolicy") for c in spec["containers"]] == [
        "IfNotPresent",
        "IfNotPresent",
        "Never",
        None,
    ]


def test_image_override_on_a_cronjob(tmp_path: Path) -> None:
    source = write(
        tmp_path / "cj.yaml",
        "apiVersion: batch/v1\nkind: CronJob\nmetadata:\n  name: cj\nspec:\n  schedule: '@daily'\n"
        "  jobTemplate:\n    spec:\n      template:\n        spec:\n          containers:\n"
        "            - {name: a, image: 'redis:7'}\n",
    )
    ctx = context()
    ctx.image_overrides = {"redis": "local/redis:7.0"}
    [rendered] = render_sources([source], ctx)
    job = rendered.manifest["spec"]["jobTemplate"]["spec"]
    container = job["template"]["spec"]["containers"][0]
    assert container["image"] == "local/redis:7.0"


FAKE_HELM = """#!/bin/sh
# Stands in for `helm template RELEASE CHART --namespace NS --skip-tests --values FILE`.
values=""
while [ $# -gt 0 ]; do
  case "$1" in --values) values="$2"; shift;; esac
  shift
done
[ -n "$FAIL" ] && { echo "Error: parse error at (x/templates/a.yaml:3): bad" >&2; exit 1; }
cp "$values" "$VALUES_COPY"
stat -c %a "$values" > "$VALUES_COPY.mode"
cat <<'OUT'
---
# Source: mychart/templates/cm.yaml
apiVersion: v1
kind: ConfigMap
metadata:
  name: from-helm
---
# Source: mychart/templates/broken.yaml
apiVersion: v1
metadata:
  name: no-kind
OUT
"""


def fake_helm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir = tmp_path / "bin"
    helm = write(bin_dir / "helm", FAKE_HELM)
    helm.chmod(helm.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("VALUES_COPY", str(tmp_path / "values-seen.json"))
    chart = tmp_path / "mychart"
    write(chart / "Chart.yaml", "apiVersion: v2\nname: mychart\nversion: 0.1.0\n")
    return chart


def test_helm_charts_get_values_and_errors_point_at_templates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chart = fake_helm(tmp_path, monkeypatch)
    ctx = context(auth={"password": "${secret:pw}"}, replicas=2)
    with pytest.raises(RenderError) as caught:
        render_sources([chart], ctx)
    assert caught.value.location == f"{chart}/templates/broken.yaml (rendered line 1)"
    assert caught.value.problem == "object without kind"
    seen = json.loads((tmp_path / "values-seen.json").read_text())
    assert seen == {"auth": {"password": ctx.secrets.get("pw")}, "replicas": 2}
    assert (tmp_path / "values-seen.json.mode").read_text().strip() == "600"


def test_helm_failures_are_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    chart = fake_helm(tmp_path, monkeypatch)
    monkeypatch.setenv("FAIL", "1")
    with pytest.raises(RenderError) as caught:
        render_sources([chart], context())
    assert str(caught.value) == f"{chart}/templates/a.yaml:3: helm template failed: bad"


@pytest.mark.parametrize(
    ("stderr", "expected"),
    [
        (
            'Error: template: web/charts/sub/templates/s.yaml:5:15: executing "web/charts/sub/'
            'templates/s.yaml" at <.Values.a.b>: nil pointer evaluating interface {}.b\n\n'
            "Use --debug flag to render out invalid YAML\n",
            "charts/sub/templates/s.yaml:5: helm template failed: <.Values.a.b>: nil pointer "
            "evaluating interface {}.b",
        ),
        (
            "Error: execution error at (web/templates/cm.yaml:5:8): set db\n",
            "templates/cm.yaml:5: helm template failed: set db",
        ),
        (
            "Error: YAML parse error on web/templates/cm.yaml: error converting YAML to JSON: "
            "yaml: line 5: mapping values are not allowed in this context\n",
            "templates/cm.yaml: helm template failed: error converting YAML to JSON: yaml: "
            "line 5: mapping values are not allowed in this context",
        ),
        ("Error: chart requires kubeVersion: >=9\n", ": helm template failed: chart requires "
         "kubeVersion: >=9"),
    ],
)  # fmt: skip
def test_a_helm_error_names_the_template_and_line(stderr: str, expected: str) -> None:
    chart = Path("/charts/web")
    assert str(_helm_error(chart, stderr)) == f"{chart}/{expected}".replace("/:", ":")


def test_values_files_merge_in_order_under_values(tmp_path: Path) -> None:
    base = write(tmp_path / "base.yaml", "db: {name: shop, port: 5432}\ngreeting: base\n")
    extra = write(tmp_path / "extra.yaml", "db: {port: 6543}\n")
    source = write(tmp_path / "cm.yaml", "kind: X\napiVersion: v1\nmetadata: {name: x}\n"
                   "data: ${db.name}-${db.port}-${greeting}\n")  # fmt: skip
    ctx = RenderContext(
        namespace="ns",
        session_id="s1",
        environment="shop",
        values={"greeting": "values"},
        values_files=(base, extra),
    )
    [obj] = render_sources([source], ctx)
    assert obj.manifest["data"] == "shop-6543-values"


@pytest.mark.parametrize(
    ("text", "problem"),
    [("- a list\n", "a values file must hold a mapping, not list"), ("a: [\n", "invalid YAML")],
)
def test_a_bad_values_file_is_named(tmp_path: Path, text: str, problem: str) -> None:
    values = write(tmp_path / "values.yaml", text)
    ctx = RenderContext(namespace="ns", session_id="s", environment="e", values_files=(values,))
    with pytest.raises(RenderError, match=problem) as caught:
        render_sources([write(tmp_path / "x.yaml", "")], ctx)
    assert caught.value.location.startswith(str(values))


def test_missing_helm_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    chart = write(tmp_path / "c" / "Chart.yaml", "apiVersion: v2\nname: c\nversion: 0.1.0\n").parent
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr("sysconfig.get_path", lambda name: str(tmp_path / "empty"))
    with pytest.raises(RenderError, match="the helm CLI is needed"):
        render_sources([chart], context())


def test_helm_output_past_the_limit_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chart = fake_helm(tmp_path, monkeypatch)
    monkeypatch.setattr("kubefixtures.rendering.MAX_TOOL_OUTPUT_BYTES", 50)
    with pytest.raises(RenderError) as caught:
        render_sources([chart], context())
    assert str(caught.value) == f"{chart}: helm template printed more than 50 bytes"
