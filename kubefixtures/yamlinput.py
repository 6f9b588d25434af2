"""Reading YAML that kubefixtures did not write (manifests, Helm output, kubeconfigs), within
bounds that PyYAML's safe loader does not set by itself:

- nesting: the composer recurses once per level, so a few hundred ``[`` raised
  RecursionError; deeper than MAX_YAML_DEPTH is refused;
- aliases: a small file of nested aliases (``b: [*a, *a, ...]``) expands, once serialised
  for the API server, to hundreds of megabytes; the expanded size of every document is
  measured while composing (each anchor's size computed once, so this costs linear time)
  and refused past a budget, as is an alias that refers to a node containing it;
- duplicate keys, which the safe loader resolves silently to the last one, are refused
  where asked (manifests, as kubectl does), with the line of both.

Where PyYAML has libyaml, a text is read by it (about five times less CPU) when a first
pass over libyaml's events vouches that the pure reader would read it alike and accept it:
nothing libyaml reads differently, no anchor, no nesting past the limit, no repeated key,
within the budget. Anything else, and any error, is read by the pure reader, which gives
the same documents or the same refusal, with its message and line, as it always has.

Errors are ``YAMLInputError(line, problem)``; the caller adds the file's name.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import yaml
from yaml.constructor import BaseConstructor
from yaml.events import (
    AliasEvent,
    DocumentEndEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
)
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from kubefixtures.limits import MAX_RENDERED_BYTES, MAX_YAML_DEPTH, describe_size

__all__ = ["ExpansionBudget", "YAMLInputError", "load_document", "load_documents"]

_MERGE_TAG = "tag:yaml.org,2002:merge"


class YAMLInputError(ValueError):
    """YAML that cannot be read, or is refused; ``line`` is 1-based (None: unknown)."""

    def __init__(self, line: int | None, problem: str) -> None:
        super().__init__(f"line {line}: {problem}" if line else problem)
        self.line = line
        self.problem = problem


class ExpansionBudget:
    """How many bytes documents may still expand to (roughly their size as JSON); shared by
    every file of an environment, so that many files cannot add up past the limit either."""

    def __init__(self, limit: int = MAX_RENDERED_BYTES) -> None:
        self.limit = limit
        self.left = limit

    def describe(self) -> str:
        return describe_size(self.limit)


class _BoundedLoader(yaml.SafeLoader):
    def __init__(self, text: str, budget: ExpansionBudget, unique_keys: bool) -> None:
        super().__init__(text)
        self._budget = budget
        self._unique_keys = unique_keys
        self._depth = 0
        # Expanded size of every node composed so far in this document, by id(): an alias
        # returns its anchor's node, whose size is then known (unless it is an ancestor).
        self._sizes: dict[int, int] = {}

    def compose_document(self) -> Node | None:
        self._sizes = {}  # ids are only unique while the document's nodes live
        node: Node | None = super().compose_document()
        if node is not None:
            self._budget.left -= self._sizes[id(node)]
        return node

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        line = event.start_mark.line + 1
        if isinstance(event, yaml.AliasEvent):
            anchored = super().compose_node(parent, index)
            assert anchored is not None  # None only at the end of a stream
            if id(anchored) not in self._sizes:
                raise YAMLInputError(
                    line, f"alias *{event.anchor} refers to a node that contains it"
                )
            return anchored
        self._depth += 1
        if self._depth > MAX_YAML_DEPTH:
            raise YAMLInputError(line, f"nested more than {MAX_YAML_DEPTH} levels deep")
        node = super().compose_node(parent, index)
        assert node is not None  # None only at the end of a stream
        self._depth -= 1
        size = self._size_of(node)
        if size > self._budget.left:
            raise YAMLInputError(
                line,
                f"the objects expand to more than {self._budget.describe()} here "
                "(every use of a YAML alias repeats what it refers to)",
            )
        if self._unique_keys and isinstance(node, MappingNode):
            _check_unique_keys(node)
        self._sizes[id(node)] = size
        return node

    def _size_of(self, node: Node) -> int:
        # About the node's size as JSON: what the API server will be sent.
        if isinstance(node, ScalarNode):
            return len(node.value) + 3
        if isinstance(node, SequenceNode):
            return 2 + sum(self._sizes[id(item)] for item in node.value)
        assert isinstance(node, MappingNode)
        return 2 + sum(self._sizes[id(key)] + self._sizes[id(value)] for key, value in node.value)


def _as_string(loader: _BoundedLoader, node: Node) -> Any:
    return loader.construct_yaml_str(node)


def _as_mapping(loader: _BoundedLoader, node: Node) -> Any:
    return loader.construct_yaml_map(node)


# As Kubernetes reads YAML (sigs.k8s.io/yaml): an unquoted date is a string, not a datetime
# that JSON cannot carry to the API server; !!binary keeps its base64 text.
_BoundedLoader.add_constructor("tag:yaml.org,2002:timestamp", _as_string)
_BoundedLoader.add_constructor("tag:yaml.org,2002:binary", _as_string)
# A !!set is a mapping whose values are null, as JSON has no sets.
_BoundedLoader.add_constructor("tag:yaml.org,2002:set", _as_mapping)


def _check_unique_keys(node: MappingNode) -> None:
    first_line: dict[tuple[str, str], int] = {}
    for key, _value in node.value:
        if not isinstance(key, ScalarNode) or key.tag == _MERGE_TAG:
            continue
        line = key.start_mark.line + 1
        identity = (key.tag, key.value)
        if identity in first_line:
            raise YAMLInputError(
                line, f"duplicate key {key.value!r} (first on line {first_line[identity]})"
            )
        first_line[identity] = line


def _construct(loader: BaseConstructor, node: Node) -> Any:
    line = node.start_mark.line + 1
    try:
        document = loader.construct_document(node)
    except yaml.YAMLError:
        raise
    except Exception:
        # PyYAML's constructors fail with whatever Python raised (ValueError for !!int x,
        # KeyError for !!bool maybe) on a value that does not fit an explicit tag.
        problem = "invalid YAML: a value does not match its explicit tag"
        raise YAMLInputError(line, problem) from None
    try:
        # What the API server will be sent: JSON, without NaN or infinities.
        json.dumps(document, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise YAMLInputError(line, f"cannot be sent as JSON: {error}") from None
    return document


# What libyaml and the pure reader do not read alike, so that only the pure reader reads it
# (tests/unit/test_yamlinput_libyaml.py pins each case). Patterns, not compiled here: re
# compiles and caches them on the first read, off the import (a compiled class of every
# printable character costs 7 ms). Characters outside line feed and the printable ranges:
# tabs (libyaml accepts "a:<tab>1", the pure reader refuses it), a byte order mark
# (libyaml skips one at the start of any line, the pure reader only at the start of the
# text), control characters and surrogates (refused by both, worded apart), and line
# breaks other than "\n" ("\r", "\x85", "\u2028", "\u2029": read alike in every case
# tried, but by separate code, and rare in manifests).
_UNLIKE_CHARACTER = r"[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff\ufeff\ufffe\uffff]"
# The non-specific tag "!" on its own: on an empty node libyaml makes a string, the pure
# reader a null. Searched only where the text has a "!" at all.
_NON_SPECIFIC_TAG = r"(?<![^\s\[{,])!(?![^\s\]},])"


def _libyaml_reads_alike(text: str) -> bool:
    return (
        # Without a final line break, libyaml puts the end of the stream (and so an empty
        # last document's start line) on a line of its own.
        (not text or text.endswith("\n"))
        # Directives: each accepts %YAML versions the other refuses.
        and not text.startswith("%")
        and "\n%" not in text
        and re.search(_UNLIKE_CHARACTER, text) is None
        and ("!" not in text or re.search(_NON_SPECIFIC_TAG, text) is None)
    )


_LIBYAML: type[yaml.CSafeLoader] | None = None
if yaml.__with_libyaml__:

    class _LibyamlLoader(yaml.CSafeLoader):
        """libyaml's parser and composer, with the pure reader's constructors (the same
        registry, not a copy)."""

        yaml_constructors = _BoundedLoader.yaml_constructors

    _LIBYAML = _LibyamlLoader


def _libyaml_vouches(text: str, left: int, unique_keys: bool) -> list[int] | None:
    """The size each document of ``text`` spends from a budget with ``left`` bytes, when
    the pure reader would accept every one of them; None at the first doubt (see below)."""
    sizes = _document_sizes(text, unique_keys)
    if sizes is None:
        return None
    for size in sizes:
        if size > left:  # the root is the largest node: the pure reader refuses this one
            return None
        left -= size
    return sizes


def _document_sizes(text: str, unique_keys: bool) -> list[int] | None:
    """Each document's size as _BoundedLoader measures it, from libyaml's events (parsed
    iteratively: nothing deep reaches libyaml's recursive composer); None where the pure
    reader might refuse the text: an anchor or alias (their accounting is left to it), a
    node deeper than MAX_YAML_DEPTH, a key text repeated in a mapping (whatever its tag)."""
    assert _LIBYAML is not None
    parser = _LIBYAML(text)
    sizes: list[int] = []
    size = depth = 0
    # The texts of the open mapping's keys and values, in order (None for a collection);
    # None in a sequence, or without unique_keys. The enclosing collections' are stacked.
    children: list[str | None] | None = None
    enclosing: list[list[str | None] | None] = []
    try:
        event: Any = parser.get_event()
        while (kind := type(event)) is not StreamEndEvent:
            if kind is ScalarEvent:
                # As _BoundedLoader.compose_node counts: one level below its collection.
                if event.anchor is not None or depth >= MAX_YAML_DEPTH:
                    return None
                size += len(event.value) + 3
                if children is not None:
                    children.append(event.value)
            elif kind is MappingStartEvent or kind is SequenceStartEvent:
                depth += 1
                if event.anchor is not None or depth > MAX_YAML_DEPTH:
                    return None
                size += 2
                if children is not None:
                    children.append(None)
                enclosing.append(children)
                children = [] if kind is MappingStartEvent and unique_keys else None
            elif kind is MappingEndEvent or kind is SequenceEndEvent:
                if children is not None and _repeats_a_key(children):
                    return None
                depth -= 1
                children = enclosing.pop()
            elif kind is DocumentEndEvent:
                sizes.append(size)
                size = 0
            elif kind is AliasEvent:
                return None
            event = parser.get_event()
        return sizes
    finally:
        parser.dispose()


def _repeats_a_key(children: list[str | None]) -> bool:
    keys = [key for key in children[::2] if key is not None]
    return len(set(keys)) != len(keys)


def _read_with_libyaml(
    text: str, budget: ExpansionBudget, unique_keys: bool
) -> list[tuple[int, Any, int]] | None:
    """Every document as ``(line, value, size it spends)``, read by libyaml; None where the
    pure reader must read it (no libyaml, a text libyaml reads differently, a doubt, any
    error: the pure reader then accepts or refuses it, and words it, as it always has)."""
    if _LIBYAML is None or not _libyaml_reads_alike(text):
        return None
    documents: list[tuple[int, Any, int]] = []
    try:
        sizes = _libyaml_vouches(text, budget.left, unique_keys)
        if sizes is None:
            return None
        loader = _LIBYAML(text)
        try:
            while loader.check_node():
                node = loader.get_node()
                if node is not None:
                    line = node.start_mark.line + 1
                    documents.append((line, _construct(loader, node), sizes[len(documents)]))
        finally:
            loader.dispose()
    except Exception:  # whatever it is, the pure reader says it as it always has
        return None
    return documents if len(documents) == len(sizes) else None


def load_documents(
    text: str, *, budget: ExpansionBudget | None = None, unique_keys: bool = True
) -> Iterator[tuple[int, Any]]:
    """Every document of ``text``, as ``(line where it starts, Python value)``.

    Read by libyaml where PyYAML has it and a first pass vouches for the text (see the
    module's docstring); otherwise, and on any error, by the pure reader, whose errors are
    the ones reported. Either way the budget is spent as each document is yielded (libyaml's
    pass checks it as it stands at the first document: the callers read one file at a time,
    and nothing else spends it meanwhile)."""
    budget = budget or ExpansionBudget()
    read = _read_with_libyaml(text, budget, unique_keys)
    if read is None:
        yield from _read_pure(text, budget, unique_keys)
        return
    for line, document, size in read:
        budget.left -= size
        yield line, document


def _read_pure(text: str, budget: ExpansionBudget, unique_keys: bool) -> Iterator[tuple[int, Any]]:
    loader: _BoundedLoader | None = None
    try:
        # The reader refuses control characters as soon as it is made.
        loader = _BoundedLoader(text, budget, unique_keys)
        while loader.check_node():
            node = loader.get_node()
            if node is not None:
                yield node.start_mark.line + 1, _construct(loader, node)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        problem = error.problem or error.context or "cannot be parsed"
        raise YAMLInputError(mark.line + 1 if mark else None, f"invalid YAML: {problem}") from None
    except yaml.YAMLError as error:
        raise YAMLInputError(None, f"invalid YAML: {' '.join(str(error).split())}") from None
    finally:
        if loader is not None:
            loader.dispose()


def load_document(text: str, *, unique_keys: bool = False) -> Any:
    """The first document of ``text`` (None if it has none), as ``yaml.safe_load`` reads a
    file holding one; duplicate keys are last-wins unless ``unique_keys``."""
    for _line, document in load_documents(text, unique_keys=unique_keys):
        return document
    return None
