"""The operator run in this process, for integration tests that need fast feedback."""

from __future__ import annotations

import gc
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kopf.testing import KopfRunner

OPERATOR_ARGS = ("run", "-A", "--standalone", "-m", "kubefixtures.operator")


@contextmanager
def operator_in_process(*extra: str) -> Iterator[KopfRunner]:
    """kopf's KopfRunner running kubefixtures.operator; on exit, its leftovers collected.

    A stopped in-process operator can leave asyncio transports to the apiserver unclosed
    (a request in flight when kopf stopped its loop; in the operator's own process they
    go with the process). Collected at some later point, each warns "unclosed transport"
    in whatever test runs then, which filterwarnings=error turns into a failure of that
    unrelated test. Collected here, at once, those warnings are the operator's and are
    ignored; any other warning still fails the test.
    """
    from kopf.testing import KopfRunner

    try:
        with KopfRunner([*OPERATOR_ARGS, *extra]) as runner:
            yield runner
    finally:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "unclosed transport", ResourceWarning)
            warnings.filterwarnings("ignore", "unclosed <socket", ResourceWarning)
            gc.collect()
