"""Property-based fuzzing of what users hand kubefixtures: manifests and values (the renderer),
details files, and kubeconfigs.

Whatever the bytes, a loader returns or raises a KubefixturesError subclass whose message
is one line; never a traceback from YAML, JSON, decoding or the standard library.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from hypothesis import given
from hypothesis import strategies as st

from kubefixtures.details import EnvironmentDetails
from kubefixtures.errors import KubefixturesError
from kubefixtures.kube.config import load_config
from kubefixtures.provisioning.attached import find_details
from kubefixtures.rendering import RenderContext, parse_manifests, render_sources, substitute
from tests.fuzz._support import mutate, raised

# -- strategies ----------------------------------------------------------------------------

# Pieces of YAML that reach the parser's corners: structure, anchors and aliases, tags,
# timestamps, directives, block scalars, placeholders and their escapes.
YAML_TOKENS = [
    "apiVersion: v1\n",
    "kind: ConfigMap\n",
    "kind: List\nitems:\n",
    "metadata:\n  name: x\n",
    "  namespace: other\n",
    "spec:\n  containers:\n  - image: nginx\n",
    "data:\n",
    "---\n",
    "...\n",
    "- ",
    "  ",
    "\n",
    "\t",
    "[",
    "]",
    "{",
    "}",
    ", ",
    ": ",
    "? ",
    "&a ",
    "*a",
    "<<: *a\n",
    "!!binary ",
    "!!set ",
    "!!omap ",
    "!!python/object:os.system ",
    "!custom ",
    "2001-13-01",
    "2001-02-30 25:61:00",
    "1e400",
    "0x",
    ".inf",
    "%YAML 1.1\n",
    "%TAG ! tag:x,2000:\n",
    "|\n",
    ">-\n",
    "'",
    '"',
    '"\\x',
    "#",
    "\ufeff",
    "\x00",
    "${namespace}",
    "${secret:token}",
    "${a.b}",
    "${",
    "$${",
    "${nope}",
    "${ bad }",
]

yaml_ish = st.lists(st.one_of(st.sampled_from(YAML_TOKENS), st.text(max_size=8)), max_size=40).map(
    "".join
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)

# A values mapping as a user writes one: nested, with placeholders in its strings.
values_strategy = st.dictionaries(
    st.sampled_from(["a", "b", "image", "x.y", ""]),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | yaml_ish,
        lambda children: (
            st.lists(children, max_size=3)
            | st.dictionaries(st.sampled_from(["a", "b", "c"]), children, max_size=3)
        ),
        max_leaves=10,
    ),
    max_size=4,
)

# File contents: YAML-ish text in a few encodings, or arbitrary bytes.
file_bytes = st.one_of(
    yaml_ish.map(lambda text: text.encode("utf-8", "surrogatepass")),
    yaml_ish.map(lambda text: text.encode("utf-16")),
    st.binary(max_size=512),
    st.builds(lambda depth: b"[" * depth, st.integers(0, 1000)),
    st.builds(lambda depth: b"{a: " * depth, st.integers(0, 1000)),
)


def context(values: dict[str, Any] | None = None) -> RenderContext:
    return RenderContext(
        namespace="ns",
        session_id="s1",
        environment="env",
        values=values or {},
        image_overrides={"nginx": "kubefixtures.local/nginx:1"},
    )


def in_file(data: bytes, name: str, check: Callable[[Path], object]) -> KubefixturesError | None:
    with tempfile.TemporaryDirectory(prefix="kf-fuzz-") as directory:
        path = Path(directory) / name
        path.write_bytes(data)
        return raised(KubefixturesError, lambda: check(path))


# -- the renderer ----------------------------------------------------------------------------


@given(yaml_ish)
def test_parse_manifests_raises_only_render_errors(text: str) -> None:
    raised(KubefixturesError, lambda: parse_manifests(text, "m.yaml"))


@given(yaml_ish)
def test_substitute_raises_only_render_errors(text: str) -> None:
    known = {"namespace": "ns", "a.b": "1", "secret:token": "t"}
    raised(KubefixturesError, lambda: substitute(text, "m.yaml", known.get))


@given(file_bytes, values_strategy)
def test_render_sources_raises_only_kubefixtures_errors(
    data: bytes, values: dict[str, Any]
) -> None:
    in_file(data, "m.yaml", lambda path: render_sources([path], context(values)))


# -- the details file --------------------------------------------------------------------------

VALID_DETAILS = {
    "version": 1,
    "name": "env",
    "namespace": "ns",
    "context": None,
    "session_id": "s1",
    "services": {
        "web": {
            "name": "web",
            "namespace": "ns",
            "host": "127.0.0.1",
            "port": 1234,
            "ports": {"80": 1234},
            "named_ports": {"http": 1234},
            "url": "http://127.0.0.1:1234",
        }
    },
    "objects": [{"api_version": "v1", "kind": "Service", "name": "web", "namespace": "ns"}],
    "secrets": {"token": "abc"},
    "ready_seconds": 1.5,
    "created_at": "2026-01-01T00:00:00Z",
}


@st.composite
def replaced(draw: st.DrawFn, document: Any) -> Any:
    """`document` with one value somewhere in it replaced by an arbitrary JSON value."""
    if isinstance(document, dict) and document and draw(st.booleans()):
        key = draw(st.sampled_from(sorted(document)))
        return {**document, key: draw(replaced(document[key]))}
    if isinstance(document, list) and document and draw(st.booleans()):
        index = draw(st.integers(0, len(document) - 1))
        return [*document[:index], draw(replaced(document[index])), *document[index + 1 :]]
    return draw(json_values)


@st.composite
def mutated(draw: st.DrawFn, documents: st.SearchStrategy[bytes]) -> bytes:
    return mutate(draw(documents), draw)


def details_bytes() -> st.SearchStrategy[bytes]:
    structured = replaced(VALID_DETAILS).map(lambda doc: json.dumps(doc).encode())
    return st.one_of(structured, mutated(structured), file_bytes)


@given(details_bytes())
def test_details_file_loader_raises_only_kubefixtures_errors(data: bytes) -> None:
    in_file(data, "details.json", EnvironmentDetails.read)
    in_file(data, "details.json", lambda path: find_details(str(path), "env"))


# -- the kubeconfig ----------------------------------------------------------------------------

VALID_KUBECONFIG = {
    "apiVersion": "v1",
    "kind": "Config",
    "current-context": "c",
    "clusters": [
        {
            "name": "k",
            "cluster": {
                "server": "https://127.0.0.1:6443",
                "certificate-authority-data": "LS0tLS1CRUdJTg==",
                "tls-server-name": "kubernetes",
            },
        }
    ],
    "users": [
        {
            "name": "u",
            "user": {
                "token": "t0ken",
                "client-certificate": "cert.pem",
                "client-key": "key.pem",
            },
        }
    ],
    "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u", "namespace": "ns"}}],
}


def kubeconfig_bytes() -> st.SearchStrategy[bytes]:
    structured = replaced(VALID_KUBECONFIG)
    return st.one_of(
        structured.map(lambda doc: yaml.safe_dump(doc).encode()),
        structured.map(lambda doc: json.dumps(doc).encode()),
        mutated(structured.map(lambda doc: yaml.safe_dump(doc).encode())),
        file_bytes,
    )


@given(kubeconfig_bytes())
def test_kubeconfig_loader_raises_only_kubefixtures_errors(data: bytes) -> None:
    in_file(data, "config", lambda path: load_config(str(path)))
