"""The libyaml reader of kubefixtures.yamlinput against the pure one: the same documents,
start lines, budget spent, refusals and messages, whatever the text; and each guard that
sends a text to the pure reader, with the difference it guards against."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubefixtures import yamlinput
from kubefixtures.limits import MAX_RENDERED_BYTES, MAX_YAML_DEPTH
from kubefixtures.yamlinput import ExpansionBudget, YAMLInputError, load_document, load_documents
from tests.fuzz._support import mutate
from tests.fuzz.test_fuzz_inputs import YAML_TOKENS

pytestmark = pytest.mark.skipif(not yaml.__with_libyaml__, reason="PyYAML built without libyaml")

SHOP = Path(__file__).parents[1] / "integration" / "environments" / "shop"
CONFIGMAP = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n"
KUBECONFIG = """apiVersion: v1
kind: Config
clusters:
- cluster:
    certificate-authority-data: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUM=
    server: https://127.0.0.1:6443
  name: local
contexts:
- context:
    cluster: local
    namespace: default
    user: admin
  name: local
current-context: local
preferences: {}
users:
- name: admin
  user:
    client-certificate-data: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUM=
    client-key-data: LS0tLS1CRUdJTiBQUklWQVRFIEtFWS0tLS0tCk1JSUV=
"""

Reader = Callable[[str, ExpansionBudget, bool], Iterator[tuple[int, Any]]]


def public(text: str, budget: ExpansionBudget, unique_keys: bool) -> Iterator[tuple[int, Any]]:
    """What callers get: libyaml where it reads the text alike, else the pure reader."""
    return load_documents(text, budget=budget, unique_keys=unique_keys)


def pure(text: str, budget: ExpansionBudget, unique_keys: bool) -> Iterator[tuple[int, Any]]:
    return yamlinput._read_pure(text, budget, unique_keys)


def outcome(read: Reader, texts: Iterable[str], limit: int, unique_keys: bool) -> str:
    """Every document, refusal (line and message) and budget left, file after file sharing
    one budget; repr() so that key order, 1 against 1.0 and -0.0 against 0.0 count."""
    budget = ExpansionBudget(limit)
    seen: list[object] = []
    for text in texts:
        try:
            seen.extend(read(text, budget, unique_keys))
        except YAMLInputError as error:
            seen.append((error.line, error.problem, str(error)))
        seen.append(budget.left)
    return repr(seen)


def assert_alike(texts: list[str], limit: int = MAX_RENDERED_BYTES) -> None:
    for unique_keys in (True, False):
        assert outcome(public, texts, limit, unique_keys) == outcome(
            pure, texts, limit, unique_keys
        )


def libyaml_reads(text: str) -> bool:
    """Whether the libyaml reader itself read ``text`` (no fallback to the pure one)."""
    return yamlinput._read_with_libyaml(text, ExpansionBudget(), True) is not None


def unguarded_libyaml(text: str) -> str:
    """What libyaml's reader makes of ``text`` without the guard in front of it."""
    assert yamlinput._LIBYAML is not None
    loader = yamlinput._LIBYAML(text)
    try:
        documents = []
        while loader.check_node():
            node = loader.get_node()
            assert node is not None
            documents.append((node.start_mark.line + 1, yamlinput._construct(loader, node)))
        return repr(documents)
    except Exception as error:
        return repr(error)
    finally:
        loader.dispose()


def pure_reading(text: str) -> str:
    try:
        return repr(list(pure(text, ExpansionBudget(), True)))
    except YAMLInputError as error:
        return repr(error)


# -- the same results, whatever the text ---------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=6), children, max_size=4)
        # The same object twice: the dumper writes an anchor and an alias.
        | children.map(lambda shared: {"a": shared, "b": [shared, shared]})
    ),
    max_leaves=16,
)

DUMP_STYLES: list[dict[str, Any]] = [
    {},
    {"default_flow_style": True},
    {"default_flow_style": None},
    {"canonical": True},
    {"explicit_start": True, "explicit_end": True},
    {"width": 12},
    {"indent": 4, "allow_unicode": True},
    {"default_style": '"'},
    {"default_style": "'"},
    {"default_style": "|"},
    {"sort_keys": False, "allow_unicode": True, "width": 20},
]


def dump(documents: list[Any], style: dict[str, Any]) -> str:
    text: str = yaml.safe_dump_all(documents, **style)
    return text


dumped = st.builds(dump, st.lists(json_values, max_size=3), st.sampled_from(DUMP_STYLES))

# The fuzz suite's pieces of YAML (structure, anchors, tags, directives, markers), and the
# corners where the two parsers might part: characters each reads its own way, lone tags,
# keys around libyaml's and PyYAML's 1024-character limit for a simple key.
EDGE_TOKENS = [
    *YAML_TOKENS,
    "--- ",
    "a: 1\n",
    "a: 2\n",
    "!",
    "! ",
    "!!str ",
    "!!int ",
    '"\\u00e9"',
    "%YAML 1.3\n",
    "\r",
    "\r\n",
    "\x85",
    "\u2028",
    "\x7f",
    "é",
    "\U0001f600",
    "k" * 1024,
    "k" * 1025,
    "é" * 1025,
]

edged = st.builds(
    lambda pieces, final_break: "".join(pieces) + ("\n" if final_break else ""),
    st.lists(st.sampled_from(EDGE_TOKENS) | st.text(max_size=5), max_size=24),
    st.booleans(),
)


@st.composite
def garbled(draw: st.DrawFn, texts: st.SearchStrategy[str]) -> str:
    data = draw(texts).encode()
    for _ in range(draw(st.integers(1, 3))):
        data = mutate(data, draw)
    return data.decode("utf-8", "surrogateescape")


SHOP_TEXTS = [path.read_text() for path in sorted(SHOP.glob("*.yaml"))]
yaml_texts = st.one_of(
    dumped,
    edged,
    garbled(dumped),
    garbled(st.sampled_from([*SHOP_TEXTS, KUBECONFIG])),
)


@settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.lists(yaml_texts, min_size=1, max_size=2), st.sampled_from([MAX_RENDERED_BYTES, 60, 400]))
def test_libyaml_and_pure_readers_agree(texts: list[str], limit: int) -> None:
    assert_alike(texts, limit)


def test_manifests_and_kubeconfigs_take_the_libyaml_reader() -> None:
    # Otherwise the differential test above would compare the pure reader with itself.
    for text in [*SHOP_TEXTS, KUBECONFIG, CONFIGMAP.format(name="x") + "  a: !!binary aGk=\n"]:
        assert libyaml_reads(text)
        assert_alike([text])


# -- each guard -------------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [MAX_YAML_DEPTH + 1, 50_000])
def test_deep_nesting_is_refused_by_the_pure_reader_message(depth: int) -> None:
    # Checked on libyaml's events (iterative) before libyaml's recursive composer runs; the
    # pure reader then words the refusal as always.
    text = "[" * depth + "]" * depth + "\n"
    assert not libyaml_reads(text)
    with pytest.raises(YAMLInputError) as caught:
        list(load_documents(text))
    assert caught.value.problem == f"nested more than {MAX_YAML_DEPTH} levels deep"
    assert_alike([text])


def nested(levels: int, leaf: str) -> str:
    """``leaf`` inside ``levels`` collections, mappings and sequences in turn: the leaf is
    at level ``levels + 1``."""
    text = leaf
    for level in range(levels):
        text = f"[{text}]" if level % 2 else f"{{k{level}: {text}}}"
    return text + "\n"


@pytest.mark.parametrize(
    ("levels", "leaf", "accepted"),
    [
        (MAX_YAML_DEPTH - 1, "[]", True),
        (MAX_YAML_DEPTH - 1, "{}", True),
        (MAX_YAML_DEPTH, "[]", False),
        (MAX_YAML_DEPTH - 1, "x", True),  # a scalar is a level of its own
        (MAX_YAML_DEPTH, "x", False),
        (MAX_YAML_DEPTH - 2, "{a: b}", True),  # a key too
        (MAX_YAML_DEPTH - 1, "{a: b}", False),
    ],
)
def test_nesting_at_the_limit_is_counted_as_the_pure_reader_counts(
    levels: int, leaf: str, accepted: bool
) -> None:
    text = nested(levels, leaf)
    assert libyaml_reads(text) is accepted
    assert_alike([text])


def test_aliases_and_anchors_are_left_to_the_pure_reader() -> None:
    text = CONFIGMAP.format(name="x") + "  a: &a ['v', 'w']\n  b: *a\n  c: {<<: {d: *a}}\n"
    assert not libyaml_reads(text)
    assert not libyaml_reads(CONFIGMAP.format(name="x") + "  a: &a 'v'\n")
    for limit in range(90, 140):  # around the document's expanded size: accepted, refused
        assert_alike([text], limit)


def test_an_alias_inside_what_it_refers_to_is_refused_as_before() -> None:
    text = CONFIGMAP.format(name="x") + "  a: &a [*a]\n"
    with pytest.raises(YAMLInputError) as caught:
        list(load_documents(text))
    assert str(caught.value) == "line 6: alias *a refers to a node that contains it"
    assert_alike([text])


def test_a_duplicate_key_is_refused_with_the_pure_reader_message() -> None:
    text = CONFIGMAP.format(name="x") + "  a: '1'\n  b: {c: 1, c: 2}\n  a: '3'\n"
    assert not libyaml_reads(text)
    with pytest.raises(YAMLInputError) as caught:
        list(load_documents(text))
    assert str(caught.value) == "line 7: duplicate key 'c' (first on line 7)"
    assert load_document(text) == {**yaml.safe_load(text)}  # last wins where allowed
    assert_alike([text])


def test_the_budget_is_shared_by_every_file_as_before() -> None:
    first = CONFIGMAP.format(name="a") + "  k: " + "v" * 100 + "\n"
    second = CONFIGMAP.format(name="b") + "  k: " + "v" * 300 + "\n"
    budget = ExpansionBudget(limit=400)
    assert [line for line, _ in load_documents(first, budget=budget)] == [1]
    assert budget.left == 400 - 179  # its size as JSON, about
    with pytest.raises(YAMLInputError, match="expand to more than 400 bytes"):
        list(load_documents(second, budget=budget))
    assert_alike([first, second, first], limit=400)


def test_the_budget_is_spent_as_each_document_is_yielded() -> None:
    text = "a: 1\n---\nb: 2\n"
    budget = ExpansionBudget()
    documents = load_documents(text, budget=budget)
    assert budget.left == MAX_RENDERED_BYTES
    assert next(documents) == (1, {"a": 1})
    assert budget.left == MAX_RENDERED_BYTES - 10
    assert next(documents) == (3, {"b": 2})
    assert budget.left == MAX_RENDERED_BYTES - 20


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("a:\t1\n", id="tab after a colon (libyaml accepts it)"),
        pytest.param("a: !\n", id="non-specific tag on an empty node (libyaml: a string)"),
        pytest.param("a: 1\n---\n\ufeffb: 2\n", id="byte order mark inside (libyaml skips it)"),
        pytest.param("a: 1\n--- ", id="no final line break (libyaml: the end on a new line)"),
        pytest.param("%YAML 1.3\n---\na: 1\n", id="directive (libyaml refuses 1.3)"),
    ],
)
def test_a_text_libyaml_reads_differently_goes_to_the_pure_reader(text: str) -> None:
    assert unguarded_libyaml(text) != pure_reading(text)
    assert not libyaml_reads(text)
    assert_alike([text])


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("a: 'x\r\n  y'\r\nb: 2\r\n", id="CRLF"),
        pytest.param("a: x\x85  y\n", id="next line"),
        pytest.param("a: x\u2028  y\n", id="line separator"),
        pytest.param("a: '\x01'\n", id="control character"),
        pytest.param("a: '\udc80'\n", id="surrogate"),
    ],
)
def test_other_line_breaks_and_characters_go_to_the_pure_reader(text: str) -> None:
    assert not libyaml_reads(text)
    assert_alike([text])


@pytest.mark.parametrize(
    ("text", "by_libyaml"),
    [
        pytest.param("", True, id="empty"),
        pytest.param("# only a comment\n", True, id="comment"),
        pytest.param("---\n---\n...\n---\n", True, id="empty documents"),
        pytest.param("a: 1\n...\n", True, id="final document end"),
        pytest.param("k" * 1024 + ": v\n", True, id="a key of 1024 characters"),
        pytest.param("é" * 1024 + ": v\n", True, id="a key of 1024 non-ASCII characters"),
        pytest.param("k" * 1025 + ": v\n", False, id="a key of 1025 characters (both refuse)"),
        pytest.param("{" + "k" * 1025 + ": v}\n", False, id="a flow key of 1025 (both refuse)"),
        pytest.param("a: 1\n...\nb: 2\n", False, id="content after a document end"),
    ],
)
def test_corners_both_parsers_read_alike(text: str, by_libyaml: bool) -> None:
    assert libyaml_reads(text) is by_libyaml
    assert unguarded_libyaml(text) == pure_reading(text) or not by_libyaml
    assert_alike([text])


def test_errors_are_the_pure_reader_errors() -> None:
    for text in ["a: [1\n", "a: 1\n  b: 2\n", "- a\nb: c\n", "a: !!int x\n", "a: .nan\n"]:
        assert not libyaml_reads(text)
        assert_alike([text])


def test_without_libyaml_the_pure_reader_reads_everything(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(yamlinput, "_LIBYAML", None)
    assert not libyaml_reads(KUBECONFIG)
    assert load_document(KUBECONFIG)["current-context"] == "local"
