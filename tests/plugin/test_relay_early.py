"""``--kubefixtures-relay=process``: the relay process is started while pytest collects,
before any forward needs it, and nothing of it outlives the session. No cluster: the inner
runs' tests look at the relay (``_relay.SHARED``) and write down what they saw; the kubeconfig
does not exist, so no environment ever comes up."""

from __future__ import annotations

import signal

import pytest

from tests.unit.test_portforward_relay import alive

pytest_plugins = ["pytester"]

# Written down at the end of collection (the background import, which starts the relay
# first, is over by then) and by each test.
SEEN = """
import os
from kubefixtures.kube.portforward import _relay


def seen(when):
    relay = _relay.SHARED.current
    with open(os.environ["RELAY_SEEN"], "a") as out:
        out.write(f"{when} {relay.pid if relay is not None else 'none'}\\n")


def pytest_collection_modifyitems(items):
    seen("collected")
"""

DECLARED = "from kubefixtures import environment\nshop = environment('m.yaml')\n"

TESTS = """
import os
import signal
from conftest import seen


def test_it({fixture}):
    seen("test")
    {then}
"""


def inner_run(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    *options: str,
    declare: bool = True,
    fixture: str = "",
    then: str = "pass",
) -> tuple[pytest.RunResult, dict[str, str]]:
    pytester.makeconftest(SEEN + (DECLARED if declare else ""))
    (pytester.path / "m.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n")
    pytester.makepyfile(TESTS.format(fixture=fixture, then=then))
    record = pytester.path / "seen"
    monkeypatch.setenv("RELAY_SEEN", str(record))
    result = pytester.runpytest_subprocess(
        f"--kubefixtures-kubeconfig={pytester.path / 'none'}", "-p", "no:randomly", *options
    )
    lines = record.read_text().splitlines() if record.exists() else []
    return result, dict(line.split(" ", 1) for line in lines)


@pytest.mark.parametrize("options", [("--kubefixtures-relay=process",), ()], ids=["", "default"])
def test_the_relay_runs_before_the_first_forward_and_ends_with_the_session(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, options: tuple[str, ...]
) -> None:
    result, seen = inner_run(pytester, monkeypatch, *options)
    result.assert_outcomes(passed=1)
    assert seen["collected"] != "none", seen
    assert seen["test"] == seen["collected"]  # the same child, no forward asked for it
    assert not alive(int(seen["collected"])), "the relay process outlived the session"


@pytest.mark.parametrize(
    ("options", "declare"),
    [
        (("--kubefixtures-relay=process", "--kubefixtures-route=forward"), True),
        (("--kubefixtures-relay=thread",), True),
        (("--kubefixtures-relay=process",), False),  # no environment
    ],
    ids=["route-forward", "relay-thread", "no-environment"],
)
def test_no_relay_process_where_none_is_needed(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    options: tuple[str, ...],
    declare: bool,
) -> None:
    result, seen = inner_run(pytester, monkeypatch, *options, declare=declare)
    result.assert_outcomes(passed=1)
    assert seen == {"collected": "none", "test": "none"}


def test_collect_only_starts_no_relay_process(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    result, seen = inner_run(
        pytester, monkeypatch, "--kubefixtures-relay=process", "--collect-only"
    )
    assert result.ret == pytest.ExitCode.OK
    assert seen == {"collected": "none"}


@pytest.mark.parametrize(
    ("fixture", "then", "exit_code"),
    [
        # Bad input: the environment's kubeconfig does not exist.
        ("shop", "pass", pytest.ExitCode.TESTS_FAILED),
        ("", "raise KeyboardInterrupt", pytest.ExitCode.INTERRUPTED),
        ("", "os.kill(os.getpid(), signal.SIGTERM)", -signal.SIGTERM),
    ],
    ids=["bad-input", "ctrl-c", "sigterm"],
)
def test_a_session_that_ends_badly_leaves_no_relay_process(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    fixture: str,
    then: str,
    exit_code: int,
) -> None:
    result, seen = inner_run(
        pytester, monkeypatch, "--kubefixtures-relay=process", fixture=fixture, then=then
    )
    assert result.ret == exit_code, result.outlines + result.errlines
    assert seen["collected"] != "none", seen
    assert not alive(int(seen["collected"])), "the relay process outlived the session"
