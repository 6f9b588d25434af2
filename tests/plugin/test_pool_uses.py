"""With a pool, the copies a run's narrower-scoped environments will claim are counted at
collection (kubefixtures.factories.prestart): one per test, class, module or package that
uses the environment, so that the pool starts that many in advance. No cluster: the inner
conftest fakes the provisioning's cluster steps and logs what the pool is asked for."""

from __future__ import annotations

import pytest

from tests.plugin.test_plugin import FAKE_LIFECYCLE, calls

pytest_plugins = ["pytester"]

LOG_PREPARE = """
pooled = importlib.import_module("kubefixtures.provisioning.pooled")
real_prepare = pooled.SparePool.prepare


def logged_prepare(self, spec, uses=0):
    log("prepare", spec.name, uses)


pooled.SparePool.prepare = logged_prepare


def pytest_sessionfinish(session):
    pooled.SparePool.prepare = real_prepare
"""


def test_the_pool_is_told_how_many_copies_each_scope_will_claim(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(
        FAKE_LIFECYCLE
        + LOG_PREPARE
        + "\nfrom kubefixtures import environment\n"
        + 'per_test = environment("manifests/", scope="function")\n'
        + 'per_class = environment("manifests/", scope="class")\n'
        + 'per_module = environment("manifests/", scope="module")\n'
        + 'whole = environment("manifests/")\n'
    )
    (pytester.path / "manifests").mkdir()
    pytester.makepyfile(
        test_a=(
            "import pytest\n\n"
            "@pytest.mark.parametrize('index', range(3))\n"
            "def test_many(per_test, per_module, whole, index): pass\n\n"
            "class TestOne:\n"
            "    def test_one(self, per_class, per_module): pass\n"
            "    def test_two(self, per_class): pass\n"
        ),
        test_b="def test_other(per_test, per_module, per_class): pass\n",
    )
    result = pytester.runpytest("-p", "no:randomly", "--kubefixtures-pool=2")
    result.assert_outcomes(passed=6)
    prepared = sorted(line for line in calls(pytester) if line.startswith("prepare"))
    assert prepared == [
        "prepare per_class 2",  # TestOne, and test_b's module-level test
        "prepare per_module 2",
        "prepare per_test 4",
    ]
