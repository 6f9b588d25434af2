"""Broken kubeconfigs, read to connect (kube/config.py) or to add the local cluster's context
(cluster/kubeconfig.py): one line naming the file and the field, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubefixtures.cluster import kubeconfig as user_kubeconfig
from kubefixtures.errors import ClusterError
from kubefixtures.kube.config import load_config

VALID = """\
apiVersion: v1
kind: Config
current-context: main
clusters:
  - name: main
    cluster: {server: "https://127.0.0.1:6443"}
users:
  - name: main
    user: {token: abc}
contexts:
  - name: main
    context: {cluster: main, user: main}
"""

BROKEN = [
    ("clusters: [1]\n", "clusters[0] is not a mapping"),
    ("clusters: oops\n", "clusters is not a list"),
    ("users: [{name: x, user: str}]\n", "users[0].user ('x') is not a mapping"),
    ("contexts: [{name: c, context: str}]\n", "contexts[0].context ('c') is not a mapping"),
    ("contexts: [{name: c, context: {cluster: [1]}}]\n", "contexts[0].context.cluster ('c')"),
    ("contexts: [{name: [c]}]\n", "contexts[0].name is not a string"),
    ("users: [{name: x, user: {exec: run}}]\n", "users[0].user ('x').exec is not a mapping"),
    ("users: [{name: x, user: {exec: {command: a, args: b}}}]\n", ".exec.args is not a list"),
    ("users: [{name: x, user: {exec: {command: a, env: [1]}}}]\n", ".exec.env[0] is not a"),
    ("clusters: " + "[" * 500 + "]" * 500 + "\n", "line 2: not valid YAML (nested more than"),
    ("a: &a [*a]\n", "line 2: not valid YAML (alias *a refers to a node that contains it)"),
]


@pytest.mark.parametrize(("content", "message"), BROKEN, ids=[m for _, m in BROKEN])
def test_a_malformed_kubeconfig_is_one_line_naming_the_field(
    tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "config"
    path.write_text("current-context: main\n" + content)
    with pytest.raises(ClusterError) as caught:
        load_config(str(path))
    assert str(caught.value).startswith(f"kubeconfig {path}")
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_kubeconfig_that_is_not_utf8_names_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_bytes(VALID.encode() + b"# caf\xe9\n")
    with pytest.raises(ClusterError) as caught:
        load_config(str(path))
    assert str(caught.value) == f"kubeconfig {path} is not UTF-8 text (line 13)"


def test_the_valid_kubeconfig_loads(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_text(VALID)
    assert load_config(str(path)).server == "https://127.0.0.1:6443"


@pytest.fixture
def user_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "kube" / "config"
    path.parent.mkdir()
    monkeypatch.setenv("KUBECONFIG", str(path))
    return path


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"clusters: [1]\n", "clusters[0] is not a mapping"),
        (b"users: 5\n", "users is not a list"),
        (b"contexts: " + b"[" * 500 + b"]" * 500 + b"\n", ":1: not valid YAML (nested more"),
        (b"current-context: caf\xe9\n", " is not UTF-8 text (line 1)"),
    ],
)
def test_updating_a_malformed_user_kubeconfig_is_one_line(
    user_config: Path, content: bytes, message: str
) -> None:
    user_config.write_bytes(content)
    for change in (
        lambda: user_kubeconfig.remove_context("local"),
        lambda: user_kubeconfig.merge_context(
            {"clusters": [], "users": [], "contexts": [], "current-context": "local"}
        ),
    ):
        with pytest.raises(ClusterError) as caught:
            change()
        assert str(caught.value).startswith(str(user_config))
        assert message in str(caught.value)
        assert "\n" not in str(caught.value)
    assert user_config.read_bytes() == content  # left as it was


def test_a_token_file_that_is_not_utf8_is_one_line(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_bytes(b"\xff\xfe")
    path = tmp_path / "config"
    path.write_text(VALID.replace("{token: abc}", f"{{tokenFile: {token}}}"))
    with pytest.raises(ClusterError) as caught:
        load_config(str(path)).authorization()
    assert str(caught.value) == f"kubeconfig {path}: the token file {token} is not UTF-8 text"
