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

Errors are ``YAMLInputError(line, problem)``; the caller adds the file's name.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.resolver import Resolver

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


class _Bounds(Composer, SafeConstructor):
    """The bounds, on PyYAML's composer, and Kubernetes' constructors: shared by the pure
    reader and the libyaml one, which differ only in where the parser's events come from."""

    def _bound(self, budget: ExpansionBudget, unique_keys: bool) -> None:
        self._budget = budget
        self._unique_keys = unique_keys
        self._depth = 0
        # Expanded size of every node composed so far in this document, by id(): an alias
        # returns its anchor's node, whose size is then known (unless it is an ancestor).
        self._sizes: dict[int, int] = {}

    def compose_document(self) -> Node | None:
        self._sizes = {}  # ids are only unique while the document's nodes live
        node = super().compose_document()
        if node is not None:
            self._budget.left -= self._sizes[id(node)]
        return node

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        event = self.peek_event()  # type: ignore[attr-defined]
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


class _BoundedLoader(_Bounds, yaml.SafeLoader):
    """PyYAML's pure-Python reader: the reference, and what runs without libyaml."""

    def __init__(self, text: str, budget: ExpansionBudget, unique_keys: bool) -> None:
        yaml.SafeLoader.__init__(self, text)
        self._bound(budget, unique_keys)


# What libyaml and the pure reader do not read alike, so that only the pure reader reads it
# (tests/unit/test_yamlinput_libyaml.py pins each case). Characters outside line feed and
# the printable ranges: tabs (libyaml accepts "a:<tab>1", the pure reader refuses it), a
# byte order mark (libyaml skips one at the start of any line, the pure reader only at the
# start of the text), control characters and surrogates (refused by both, worded apart),
# and line breaks other than "\n" ("\r", "\x85", "\u2028", "\u2029": read alike in every
# case tried, but by separate code, and rare in manifests).
_UNLIKE_CHARACTER = re.compile(
    r"[^\n\x20-\x7e\xa0-\u2027\u202a-\ud7ff\ue000-\ufefe\uff00-\ufffd\U00010000-\U0010ffff]"
)
# The non-specific tag "!" on its own: on an empty node libyaml makes a string, the pure
# reader a null. Searched only where the text has a "!" at all.
_NON_SPECIFIC_TAG = re.compile(r"(?<![^\s\[{,])!(?![^\s\]},])")


def _libyaml_reads_alike(text: str) -> bool:
    return (
        # Without a final line break, libyaml puts the end of the stream (and so an empty
        # last document's start line) on a line of its own.
        (not text or text.endswith("\n"))
        # Directives: each accepts %YAML versions the other refuses.
        and not text.startswith("%")
        and "\n%" not in text
        and _UNLIKE_CHARACTER.search(text) is None
        and ("!" not in text or _NON_SPECIFIC_TAG.search(text) is None)
    )


_Libyaml: Callable[[str, ExpansionBudget, bool], _Bounds] | None = None
if yaml.__with_libyaml__:
    from yaml._yaml import CParser

    class _LibyamlLoader(_Bounds, CParser, Resolver):
        """libyaml's parser (C) under PyYAML's composer and the same bounds: libyaml's own
        composer recurses on the C stack, this one stops at MAX_YAML_DEPTH as the pure one
        does (the parser below it is iterative)."""

        def __init__(self, text: str, budget: ExpansionBudget, unique_keys: bool) -> None:
            CParser.__init__(self, text)
            Composer.__init__(self)
            SafeConstructor.__init__(self)
            Resolver.__init__(self)
            self._bound(budget, unique_keys)

    _Libyaml = _LibyamlLoader


def _read_with_libyaml(
    text: str, budget: ExpansionBudget, unique_keys: bool
) -> list[tuple[int, Any, int]] | None:
    """Every document as ``(line, value, size spent)``, read by libyaml against a copy of
    ``budget``; None where the pure reader must read it (no libyaml, a text libyaml reads
    differently, or any error or refusal: the pure reader reports it as it always has)."""
    if _Libyaml is None or not _libyaml_reads_alike(text):
        return None
    spent = ExpansionBudget(budget.limit)
    spent.left = budget.left
    loader: _Bounds | None = None
    documents: list[tuple[int, Any, int]] = []
    try:
        loader = _Libyaml(text, spent, unique_keys)
        while loader.check_node():
            left = spent.left
            node = loader.get_node()
            if node is not None:
                line = node.start_mark.line + 1
                documents.append((line, _construct(loader, node), left - spent.left))
    except Exception:  # whatever it is, the pure reader says it as it always has
        return None
    finally:
        if loader is not None:
            loader.dispose()  # type: ignore[attr-defined]
    return documents


def _as_string(loader: yaml.SafeLoader, node: Node) -> Any:
    return loader.construct_yaml_str(node)


def _as_mapping(loader: yaml.SafeLoader, node: Node) -> Any:
    return loader.construct_yaml_map(node)


# As Kubernetes reads YAML (sigs.k8s.io/yaml): an unquoted date is a string, not a datetime
# that JSON cannot carry to the API server; !!binary keeps its base64 text.
_Bounds.add_constructor("tag:yaml.org,2002:timestamp", _as_string)
_Bounds.add_constructor("tag:yaml.org,2002:binary", _as_string)
# A !!set is a mapping whose values are null, as JSON has no sets.
_Bounds.add_constructor("tag:yaml.org,2002:set", _as_mapping)


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


def _construct(loader: _Bounds, node: Node) -> Any:
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


def load_documents(
    text: str, *, budget: ExpansionBudget | None = None, unique_keys: bool = True
) -> Iterator[tuple[int, Any]]:
    """Every document of ``text``, as ``(line where it starts, Python value)``.

    Read by libyaml where PyYAML has it and the text has nothing the two parsers read
    differently; otherwise, and again on any error, by the pure reader (whose errors are the
    ones reported). Either way the budget is spent as each document is yielded."""
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
