"""Pools the operator keeps (``kubefixtures pool create|list|delete``) on the real cluster:
the operator (in-process, kopf's KopfRunner) brings N spares up, a real pytest session run
with ``--kubefixtures-pool-claim`` claims one and the operator refills to N, a changed
manifest never gets a spare of the old one, ``pool delete`` removes the spares.

Every operator started here keeps the Pools of a namespace of this test's own and reaps only
this test's environment (--selector): other sessions on the shared cluster are never at risk.
"""

from __future__ import annotations

import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubefixtures.kube import Cluster
from kubefixtures.kube.client import LEASE, POOL
from kubefixtures.leases.pool import POOL_KEY_LABEL, SPARE, operator_pool_selector
from tests.integration.operator_support import operator_in_process
from tests.integration.sharing_support import (
    BIN,
    TOKEN_WEB,
    delete_all,
    namespaces,
    output,
    records,
    run_kubefixtures,
    run_pytest,
    unique,
    wait_for,
    write_suite,
)

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]
CRDS = ROOT / "charts" / "kubefixtures-operator" / "crds"
CLAIMED = "a spare copy from the pool (--kubefixtures-pool-claim)"
# A copy of token-web comes up in 2-3 s on the local cluster; room for a loaded machine.
COPY_TIMEOUT = 90


def spares(cluster: Cluster, home: str, name: str) -> dict[str, str]:
    """The pool's ready spares that are not being deleted: namespace -> pool key."""
    leases = cluster.items(LEASE, None, operator_pool_selector(home, name, SPARE))
    found = {
        str(lease["metadata"]["namespace"]): str(lease["metadata"]["labels"][POOL_KEY_LABEL])
        for lease in leases
    }
    environment = {lease["metadata"]["labels"]["kubefixtures.io/environment"] for lease in leases}
    going = {
        namespace
        for env in environment
        for namespace, deleting in namespaces(cluster, env).items()
        if deleting
    }
    return {namespace: key for namespace, key in found.items() if namespace not in going}


@pytest.fixture
def pool_cap() -> int:
    """The operator's cap on namespaces (a test parametrizes it to test the cap)."""
    return 10


@pytest.fixture
def pools(
    kubefixtures_cluster: Cluster, monkeypatch: pytest.MonkeyPatch, pool_cap: int
) -> Iterator[tuple[str, str]]:
    """(the namespace of the Pools, the environment's name), with an operator keeping the
    Pools of that namespace running in this process."""

    cluster = kubefixtures_cluster
    subprocess.run([str(BIN / "kubectl"), "apply", "-f", str(CRDS)], check=True, timeout=60)
    home = f"kfpools-{secrets.token_hex(3)}"
    cluster.create_namespace(home, {})
    name = unique("oppool")
    monkeypatch.setenv("KUBEFIXTURES_OPERATOR_POOL_NAMESPACE", home)
    monkeypatch.setenv("KUBEFIXTURES_OPERATOR_POOL_MAX_NAMESPACES", str(pool_cap))
    monkeypatch.setenv("KUBEFIXTURES_OPERATOR_SELECTOR", f"kubefixtures.io/environment={name}")
    monkeypatch.setenv("KUBEFIXTURES_OPERATOR_GRACE", "1")
    try:
        with operator_in_process() as runner:
            yield home, name
        assert runner.exit_code == 0, runner.output
    finally:
        cluster.delete_namespace(home)
        delete_all(cluster, name)


def create_pool(
    home: str, name: str, size: int, ready_delay: int, *extra: str, pool: str = "web"
) -> str:
    done = run_kubefixtures(
        "pool", "create", str(TOKEN_WEB), f"--values=ready_delay={ready_delay}",
        f"--name={pool}", f"--size={size}", f"--environment={name}", f"--namespace={home}",
        *extra,
    )  # fmt: skip
    return done.stdout


def claim(directory: Path, name: str, ready_delay: int) -> tuple[str, str]:
    """A pytest session of environment ``name`` that claims from pools: (its output, the
    namespace its test used)."""
    (directory / "records.jsonl").unlink(missing_ok=True)
    write_suite(directory, name, values={"ready_delay": ready_delay})
    result = run_pytest(directory, "--kubefixtures-pool-claim", "--kubefixtures-lease-duration=3")
    assert result.returncode == 0, output(result)
    [record] = records(directory)
    return output(result), str(record["namespace"])


def test_the_operator_keeps_n_spares_refills_after_a_claim_and_pool_delete_removes_them(
    pools: tuple[str, str], kubefixtures_cluster: Cluster, tmp_path: Path
) -> None:
    cluster = kubefixtures_cluster
    home, name = pools
    created = create_pool(home, name, size=2, ready_delay=0)
    assert "pool web created" in created
    first = wait_for(
        lambda: (found := spares(cluster, home, "web")) and len(found) == 2 and found,
        COPY_TIMEOUT,
        "the operator's two spares",
        interval=0.5,
    )
    listing = wait_for(
        lambda: (
            (text := run_kubefixtures("pool", "list", f"--namespace={home}").stdout)
            and " ok" in text
            and text
        ),
        30,
        "the pool's status",
        interval=0.5,
    )
    [row] = [line for line in listing.splitlines() if line.startswith("web ")]
    assert row.split()[:5] == ["web", name, "2", "2", "0"], listing

    # Spares are never leaks: status and gc (even without grace) keep them.
    selector = f"--selector=kubefixtures.io/environment={name}"
    gc = run_kubefixtures("gc", "--grace=0", selector).stdout
    for namespace in first:
        assert f"kept          {namespace}: kept until" in gc

    out, used = claim(tmp_path, name, ready_delay=0)
    assert CLAIMED in out
    assert used in first  # the session got one of the operator's copies
    # ... and the operator refills to two, with a new copy.
    refilled = wait_for(
        lambda: (found := spares(cluster, home, "web")) and len(found) == 2 and found,
        COPY_TIMEOUT,
        "the refill to two spares",
        interval=0.5,
    )
    assert used not in refilled
    assert len(set(refilled) - set(first)) == 1
    assert namespaces(cluster, name).get(used, True)  # the claimed copy: gone with its session

    deleted = run_kubefixtures("pool", "delete", "web", f"--namespace={home}").stdout
    # The command retires the spares; the operator, seeing the Pool gone, may retire some
    # of them first (each spare goes once: a compare-and-swap of its Lease).
    assert "pool web deleted" in deleted, deleted
    wait_for(lambda: spares(cluster, home, "web") == {}, 10, "no spare left", interval=0.2)
    assert cluster.get_or_none(POOL, home, "web") is None
    assert "no pools in namespace" in run_kubefixtures("pool", "list", f"--namespace={home}").stdout
    wait_for(
        lambda: not any(not going for going in namespaces(cluster, name).values()),
        60,
        "every copy gone",
        interval=0.5,
    )


def test_a_changed_manifest_never_gets_a_spare_of_the_old_one(
    pools: tuple[str, str], kubefixtures_cluster: Cluster, tmp_path: Path
) -> None:
    cluster = kubefixtures_cluster
    home, name = pools
    create_pool(home, name, size=1, ready_delay=0)
    old = wait_for(
        lambda: spares(cluster, home, "web"), COPY_TIMEOUT, "the old spare", interval=0.5
    )
    [old_key] = set(old.values())

    # Another value, another key: the session brings its own copy up.
    out, used = claim(tmp_path, name, ready_delay=1)
    assert "claimed namespace" not in out
    assert used not in old
    assert spares(cluster, home, "web") == old

    # The pool created again from the changed sources: the old spare is retired, never
    # claimed, and a copy of the new manifest takes its place.
    assert "pool web replaced" in create_pool(home, name, size=1, ready_delay=1)
    new = wait_for(
        lambda: (found := spares(cluster, home, "web")) and old_key not in found.values() and found,
        COPY_TIMEOUT,
        "a spare of the new template",
        interval=0.5,
    )
    assert not set(new) & set(old)
    out, used = claim(tmp_path, name, ready_delay=1)
    assert CLAIMED in out
    assert used in new


def test_spares_older_than_the_maximum_age_are_replaced(
    pools: tuple[str, str], kubefixtures_cluster: Cluster
) -> None:
    cluster = kubefixtures_cluster
    home, name = pools
    create_pool(home, name, 1, 0, "--max-age=8")
    [first] = wait_for(
        lambda: spares(cluster, home, "web"), COPY_TIMEOUT, "the first spare", interval=0.5
    )
    [_second] = wait_for(
        lambda: (found := spares(cluster, home, "web")) and first not in found and found,
        COPY_TIMEOUT,
        "its replacement",
        interval=0.5,
    )
    assert namespaces(cluster, name).get(first, True)  # retired: being deleted, or gone


@pytest.mark.parametrize("pool_cap", [3])
def test_the_pools_never_hold_more_namespaces_than_the_cap(
    pools: tuple[str, str], kubefixtures_cluster: Cluster
) -> None:
    cluster = kubefixtures_cluster
    home, name = pools
    create_pool(home, name, 2, 0, pool="one")
    create_pool(home, name, 2, 0, pool="two")

    def members() -> int:
        return len(cluster.items(LEASE, None, operator_pool_selector(home)))

    wait_for(
        lambda: len(spares(cluster, home, "one")) + len(spares(cluster, home, "two")) == 3,
        COPY_TIMEOUT,
        "three spares in all",
        interval=0.5,
    )
    for _ in range(10):  # a few rounds of the operator: never a fourth
        assert members() <= 3
        time.sleep(1)
    listing = run_kubefixtures("pool", "list", f"--namespace={home}").stdout
    assert "capped: the operator's pools hold 3 namespaces at most" in listing, listing


# --- the operator installed from its chart ----------------------------------------------------


@pytest.fixture(scope="module")
def pool_operator_image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The operator image built from this checkout and loaded under a tag of its own (so
    that removing it afterwards touches no other test's image); its tag."""
    import hashlib
    import sys

    sys.path.insert(0, str(ROOT / "hack" / "images"))
    from imagekit.archive import retag_archive

    scratch = tmp_path_factory.mktemp("operator-image")
    build = subprocess.run(
        [sys.executable, str(ROOT / "hack/images/build.py"), "--out", str(scratch), "operator"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert build.returncode == 0, build.stderr
    archive = scratch / "operator.tar"
    tag = "pools-" + hashlib.sha256(archive.read_bytes()).hexdigest()[:12]
    loaded = retag_archive(archive, f"kubefixtures.local/operator:{tag}", scratch / "tagged.tar")
    run_kubefixtures("cluster", "load-image", str(loaded))
    try:
        yield tag
    finally:
        run_kubefixtures(
            "cluster", "remove-image", f"kubefixtures.local/operator:{tag}", check=False
        )


def test_the_chart_installed_operator_keeps_a_pool_with_the_rights_the_chart_grants(
    pool_operator_image: str, kubefixtures_cluster: Cluster, tmp_path: Path
) -> None:
    cluster = kubefixtures_cluster
    name = unique("chartpool")
    release = f"kfpl-{name.rpartition('_')[2]}"
    home = f"{release}-system"
    cluster.create_namespace(
        home,
        {
            "pod-security.kubernetes.io/enforce": "restricted",
            "pod-security.kubernetes.io/enforce-version": "latest",
        },
    )

    def helm(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "helm"), *args, "-n", home], capture_output=True, text=True, check=False
        )

    def logs() -> str:
        done = subprocess.run(
            [str(BIN / "kubectl"), "-n", home, "logs", f"deploy/{release}-kubefixtures-operator"],
            capture_output=True,
            text=True,
            check=False,
        )
        return done.stdout + done.stderr

    try:
        installed = helm(
            "install", release, str(ROOT / "charts" / "kubefixtures-operator"),
            f"--set=image.tag={pool_operator_image}", "--set=pool.maxNamespaces=3",
            f"--set=selector=kubefixtures.io/environment={name}", "--set=grace=3",
            "--wait", "--timeout=120s",
        )  # fmt: skip
        assert installed.returncode == 0, installed.stderr
        create_pool(home, name, size=2, ready_delay=0)
        try:
            first = wait_for(
                lambda: (found := spares(cluster, home, "web")) and len(found) == 2 and found,
                COPY_TIMEOUT,
                "the chart operator's two spares",
                interval=0.5,
            )
        except AssertionError as error:
            raise AssertionError(f"{error}; the operator logged:\n{logs()}") from None
        out, used = claim(tmp_path, name, ready_delay=0)
        assert CLAIMED in out
        assert used in first
        wait_for(
            lambda: (
                (found := spares(cluster, home, "web")) and len(found) == 2 and used not in found
            ),
            COPY_TIMEOUT,
            "the refill",
            interval=0.5,
        )
        deleted = run_kubefixtures("pool", "delete", "web", f"--namespace={home}").stdout
        assert "pool web deleted" in deleted
        wait_for(lambda: spares(cluster, home, "web") == {}, 10, "no spare left", interval=0.2)
        operator_log = logs()
        assert "spare namespace" in operator_log
        assert "forbidden" not in operator_log.lower(), operator_log  # the chart's RBAC suffices
    finally:
        helm("uninstall", release, "--wait")
        cluster.delete_namespace(home)
        delete_all(cluster, name)
