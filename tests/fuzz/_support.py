"""What the fuzz tests share: cutting and mutating byte streams, and catching the one error
a call may raise."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import TypeVar

from hypothesis import strategies as st

E = TypeVar("E", bound=BaseException)


@st.composite
def split(draw: st.DrawFn, data: bytes) -> list[bytes]:
    """`data` cut at random places (a network delivers bytes in arbitrary pieces)."""
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=8)))
    return [data[a:b] for a, b in itertools.pairwise([0, *cuts, len(data)])]


def mutate(data: bytes, draw: st.DrawFn) -> bytes:
    """One structural mutation: flip bits, overwrite, insert, delete or truncate."""
    if not data:
        return draw(st.binary(max_size=16))
    position = draw(st.integers(0, len(data) - 1))
    kind = draw(st.sampled_from(["flip", "overwrite", "insert", "delete", "truncate"]))
    if kind == "flip":
        value = data[position] ^ draw(st.integers(1, 255))
        return data[:position] + bytes((value,)) + data[position + 1 :]
    if kind == "overwrite":
        return data[:position] + draw(st.binary(min_size=1, max_size=9)) + data[position + 9 :]
    if kind == "insert":
        return data[:position] + draw(st.binary(min_size=1, max_size=9)) + data[position:]
    if kind == "delete":
        return data[:position] + data[position + draw(st.integers(1, 9)) :]
    return data[:position]


def raised(expected: type[E], call: Callable[[], object]) -> E | None:
    """The `expected` error `call` raised (checked to be one line), or None; any other
    exception propagates and fails the test."""
    error: E | None = None
    try:
        call()
    except expected as caught:
        error = caught
    assert error is None or "\n" not in str(error), f"a multi-line error: {error!r}"
    return error
