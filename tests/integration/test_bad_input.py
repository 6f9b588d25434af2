"""Bad input on the real cluster: refused in one line naming the file or option, before any
namespace exists (an alias bomb used to expand to hundreds of megabytes at apply time, a
lease duration of inf to fail once the namespace was there)."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]
# Read now: pytester points HOME at a temporary directory while a test runs.
KUBECONFIG = os.environ.get("KUBECONFIG") or str(Path.home() / ".kube" / "config")
pytestmark = pytest.mark.cluster

CONFIGMAP = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\ndata:\n"
BOMB = CONFIGMAP + "".join(
    [
        '  a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n',
        *(
            f"  {name}: &{name} [{', '.join([f'*{previous}'] * 9)}]\n"
            for previous, name in zip("abcdefgh", "bcdefghi", strict=True)
        ),
    ]
)
INJECTION = CONFIGMAP + "  a: ${v}\n"
INJECTED = "x\n---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: injected"

CASES = {
    "alias_bomb": (BOMB, {}, [], "*bad.yaml:*: the objects expand to more than 16 MiB here*"),
    "duplicate_key": (
        CONFIGMAP + "  a: '1'\n  a: '2'\n",
        {},
        [],
        "*bad.yaml:7: duplicate key 'a' (first on line 6)*",
    ),
    "line_break_in_value": (
        INJECTION,
        {"v": INJECTED},
        [],
        "*bad.yaml:6: the value of ${v} spans several lines*",
    ),
    "infinite_lease": (
        CONFIGMAP,
        {},
        ["--kubefixtures-lease-duration=inf"],
        "*--kubefixtures-lease-duration (ini kubefixtures_lease_duration): 'inf' is out of range*",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_fails_before_a_namespace_exists(
    pytester: pytest.Pytester, all_namespaces: Callable[[str], list[str]], case: str
) -> None:
    manifest, values, options, expected = CASES[case]
    name = f"{case}_{secrets.token_hex(3)}"
    (pytester.path / "env").mkdir()
    (pytester.path / "env" / "bad.yaml").write_text(manifest)
    pytester.makeconftest(
        f"from kubefixtures import environment\n{name} = environment('env', values={values!r})\n"
    )
    pytester.makepyfile(f"def test_uses_it({name}):\n    pass\n")
    result = pytester.runpytest_inprocess(
        "-p", "no:cacheprovider", f"--kubefixtures-kubeconfig={KUBECONFIG}", *options
    )
    pytest.LineMatcher(result.outlines + result.errlines).fnmatch_lines([expected])
    assert "Traceback" not in "\n".join(result.outlines + result.errlines)
    assert all_namespaces(name) == []
