"""Under pytest-xdist, the run's session environments come up in advance and side by side:
each worker brings up its share right after collection, the others attach (pytester, no
cluster: the inner conftest replaces the provisioning's cluster steps with timed phases).
The overlap is read from the session report's phase spans, not from wall-clock timings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytest_plugins = ["pytester"]

FAKE = """
import importlib
import os
import time
from pathlib import Path

from kubefixtures.details import Environment, EnvironmentDetails

fresh = importlib.import_module("kubefixtures.provisioning.fresh")
LOG = Path(__file__).parent / "calls.log"
TOGETHER = {together!r}


# Ready only once every other environment of TOGETHER is coming up too (on any worker): an
# event, not a duration, so that a slow worker start cannot make the setups miss each other.
# If they come up one after the other, this waits in vain and fails.
def wait_for_the_others(name):
    (LOG.parent / ("coming-up-" + name)).touch()
    others = [LOG.parent / ("coming-up-" + other) for other in TOGETHER if other != name]
    deadline = time.monotonic() + 60
    while not all(path.exists() for path in others):
        assert time.monotonic() < deadline, name + " came up alone"
        time.sleep(0.01)
    time.sleep(0.05)  # the report rounds to the millisecond: overlap by more than that


def fake_setup(self):
    with LOG.open("a") as out:
        out.write(f"setup {{self.spec.name}} {{os.environ.get('PYTEST_XDIST_WORKER', '-')}}\\n")
    self.phases.begin()
    with self.phases.phase("render"):
        time.sleep(0.01)
    with self.phases.phase("ready"):
        if self.spec.name in TOGETHER:
            wait_for_the_others(self.spec.name)
        else:
            time.sleep({ready})
    self.namespace = "kf-" + self.spec.name + "-" + self.session.session_id
    details = EnvironmentDetails(
        name=self.spec.name, namespace=self.namespace, session_id=self.session.session_id,
    )
    self.environment = Environment(details, [{{"kind": "ConfigMap"}}])
    self.phases.end()
    return self.environment


def fake_teardown(self, *, keep=False, why=""):
    with LOG.open("a") as out:
        out.write(f"teardown {{self.spec.name}} {{os.environ.get('PYTEST_XDIST_WORKER', '-')}}\\n")


fresh.FreshProvisioning.setup = fake_setup
fresh.FreshProvisioning.teardown = fake_teardown

from kubefixtures import environment

shop = environment("manifests/")
cache = environment("manifests/")
per_module = environment("manifests/", scope="module")
"""

# Every test needs both session environments: a worker sets its fixtures up one after the
# other, so without prestart the second comes up only once the first is ready.
BOTH = """
import pytest


@pytest.mark.parametrize("index", range(4))
def test_uses_both(shop, cache, index):
    assert shop.namespace != cache.namespace
"""

MODULE_SCOPED = """
def test_uses_the_module_environment(per_module):
    assert per_module.namespace
"""


def project(pytester: pytest.Pytester, ready: float = 0.3, together: tuple[str, ...] = ()) -> None:
    """``together``: environments whose setups wait for each other (see the fake); the
    others take ``ready`` seconds."""
    pytester.makeconftest(FAKE.format(ready=ready, together=together))
    (pytester.path / "manifests").mkdir()
    pytester.makepyfile(test_both=BOTH, test_other=BOTH, test_module=MODULE_SCOPED)


def run(pytester: pytest.Pytester, tmp_path: Path, *args: str) -> dict[str, Any]:
    report = tmp_path / "session.json"
    result = pytester.runpytest_subprocess(
        "-n", "2", "-p", "no:cacheprovider", f"--kubefixtures-report={report}", *args
    )
    result.assert_outcomes(passed=9)
    data: dict[str, Any] = json.loads(report.read_text())
    return data


def brought_up(data: dict[str, Any], name: str) -> dict[str, Any]:
    """The one record of the worker that brought ``name`` up (the others waited for it)."""
    [record] = [
        env for env in data["environments"] if env["name"] == name and env["mode"] == "fresh"
    ]
    return record


def calls(pytester: pytest.Pytester, kind: str) -> list[str]:
    lines = (pytester.path / "calls.log").read_text().splitlines()
    return sorted(line.split()[1] for line in lines if line.split()[0] == kind)


@pytest.mark.parametrize("dist", ["load", "loadscope", "loadfile"])
def test_two_session_environments_come_up_side_by_side_on_two_workers(
    pytester: pytest.Pytester, tmp_path: Path, dist: str
) -> None:
    project(pytester, together=("shop", "cache"))
    data = run(pytester, tmp_path, f"--dist={dist}")
    shop, cache = brought_up(data, "shop"), brought_up(data, "cache")
    assert {shop["worker"], cache["worker"]} == {"gw0", "gw1"}  # one each
    spans = [
        next(span for span in env["spans"] if span["phase"] == "ready") for env in (shop, cache)
    ]
    # The two setups overlap: each started before the other was ready. (The fake makes
    # each wait for the other: a run that brought them up in turn would have failed.)
    assert max(span["start"] for span in spans) < min(span["end"] for span in spans)
    # Each came up once for the whole run, and went once; the module-scoped one came up
    # where its test ran, not in advance.
    assert calls(pytester, "setup") == ["cache", "per_module", "shop"]
    assert calls(pytester, "teardown") == ["cache", "per_module", "shop"]


def test_prestart_off_brings_nothing_up_in_advance_on_workers(
    pytester: pytest.Pytester, tmp_path: Path
) -> None:
    project(pytester, ready=0.3)
    data = run(pytester, tmp_path, "--kubefixtures-prestart=false")
    shop, cache = brought_up(data, "shop"), brought_up(data, "cache")
    # The first test to run sets both up, one after the other (the report's times are
    # rounded to the millisecond: ends and starts may look a millisecond apart either way).
    rounding = 0.002
    assert shop["started"] + shop["seconds"] <= cache["started"] + rounding or (
        cache["started"] + cache["seconds"] <= shop["started"] + rounding
    )
    assert calls(pytester, "setup") == ["cache", "per_module", "shop"]


# An environment that requires a fixture (an image built and loaded into the cluster, say).
REQUIRES = """

import os

import pytest


@pytest.fixture(scope="session")
def image():
    with LOG.open("a") as out:
        out.write(f"requirement image {{os.environ.get('PYTEST_XDIST_WORKER', '-')}}\\n")
    return "kubefixtures.local/shop:dev"


needs_image = environment("manifests/", requires=["image"])
"""

USES_NEEDS_IMAGE = """
import pytest


@pytest.mark.parametrize("index", range(4))
def test_uses_the_environment_with_a_requirement(needs_image, shop, index):
    assert needs_image.namespace != shop.namespace
"""


def test_an_environment_with_requires_comes_up_after_its_requirement_once_for_all_workers(
    pytester: pytest.Pytester, tmp_path: Path
) -> None:
    """Not in advance (docs/sharing.md says why): the first worker whose test needs it sets
    the required fixture up, then brings it up; the other worker attaches to it, after
    setting the requirement up in its own process (pytest fixtures are per process)."""
    pytester.makeconftest(FAKE.format(ready=0.5, together=()) + REQUIRES.format())
    (pytester.path / "manifests").mkdir()
    pytester.makepyfile(test_both=BOTH, test_requires=USES_NEEDS_IMAGE)
    report = tmp_path / "session.json"
    result = pytester.runpytest_subprocess(
        "-n", "2", "-p", "no:cacheprovider", f"--kubefixtures-report={report}"
    )
    result.assert_outcomes(passed=8)
    lines = [line.split() for line in (pytester.path / "calls.log").read_text().splitlines()]
    [manager] = [line[2] for line in lines if line[:2] == ["setup", "needs_image"]]
    requirements = [line[2] for line in lines if line[:2] == ["requirement", "image"]]
    # After the requirement, on the worker that brought it up; never before a test needed it.
    assert lines.index(["requirement", "image", manager]) < lines.index(
        ["setup", "needs_image", manager]
    )
    assert len(requirements) == len(set(requirements))  # once per worker that needed it
    data = json.loads(report.read_text())
    assert brought_up(data, "needs_image")["worker"] == manager
    # Each environment came up once for the whole run.
    assert sorted(line[1] for line in lines if line[0] == "setup") == [
        "cache",
        "needs_image",
        "shop",
    ]
