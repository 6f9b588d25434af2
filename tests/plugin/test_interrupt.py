"""Ctrl-C as users meet it: whatever else the process runs while pytest formats the
interrupt, the run tears its environments down and exits 2 (interrupted)."""

from __future__ import annotations

import pytest

from tests.plugin.test_plugin import calls, fake_project

pytest_plugins = ["pytester"]

# Python code that parses source while a garbage collection runs. pytest parses source
# files to format the KeyboardInterrupt; on CPython 3.11.0-3.11.7 and 3.12.0-3.12.1, a
# collection inside that parse which runs code parsing too (a finalizer or a thread that
# formats a traceback: Python 3.11's traceback module parses every line it shows; a thread
# the collection let run) failed pytest's parse with "SystemError: AST constructor recursion
# depth mismatch", and the run ended with status 1 (kubefixtures.cancel.AST_PARSE_RACE). In
# CI it was another thread, by chance; a gc callback makes it happen at every collection.
INTERRUPTED_WHILE_COLLECTIONS_PARSE = """
import ast
import gc
import os
import signal
import time


def parse_during_collections(phase, info):
    if phase == "start":
        ast.parse("total = sum(price * count for price, count in basket)")


def test_interrupted(shop):
    gc.set_threshold(50)
    gc.callbacks.append(parse_during_collections)
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(600)
"""


def test_ctrl_c_while_collections_parse_source_exits_2_after_teardown(
    pytester: pytest.Pytester,
) -> None:
    fake_project(pytester, 'shop = environment("manifests/")\n')
    pytester.makepyfile(test_interrupt=INTERRUPTED_WHILE_COLLECTIONS_PARSE)
    # A bound on a hang (the interrupt lost), not a timing: a collection every 50
    # allocations, each parsing source, is slow on a busy machine.
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=180)
    output = "\n".join(result.outlines + result.errlines)
    assert "SystemError" not in output, output
    assert result.ret == pytest.ExitCode.INTERRUPTED, output
    result.stdout.fnmatch_lines(["*! KeyboardInterrupt !*"])
    assert calls(pytester)[-1] == "teardown shop delete ", output
