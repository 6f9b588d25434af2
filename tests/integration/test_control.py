"""Acting on a running environment from a test, on the real cluster: logs, exec, restart,
delete_pod, scale, patch, apply, wait_ready, events, get, forwards, copies, and errors."""

from __future__ import annotations

import dataclasses
import hashlib
import socket
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from kubefixtures import ControlError, Environment, ExecError, NotReadyError, environment
from kubefixtures.control import applied_objects
from kubefixtures.kube import Cluster
from kubefixtures.kube.client import POD

pytestmark = pytest.mark.cluster

control = environment("environments/control/", scope="module")
EXTRA = Path(__file__).parent / "environments" / "control-extra"
MIB = 1024 * 1024


def pod_names(cluster: Cluster, env: Environment, app: str) -> set[str]:
    pods = cluster.list_objects(POD, env.namespace, f"app={app}")["items"]
    return {pod["metadata"]["name"] for pod in pods if not pod["metadata"].get("deletionTimestamp")}


def redis_ping(address: tuple[str, int]) -> bool:
    try:
        with socket.create_connection(address, timeout=2) as connection:
            connection.sendall(b"PING\r\n")
            return connection.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def eventually(check: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.2)


# --- reading --------------------------------------------------------------------------------


def test_logs_of_a_deployment_its_pod_and_tail(control: Environment) -> None:
    text = control.logs("deployment/shell")
    assert "started shell-" in text
    assert text.rstrip().endswith("line 3")
    [pod] = [line.split()[1] for line in text.splitlines() if line.startswith("started ")]
    assert control.logs(f"pod/{pod}") == text
    assert control.logs("deployment/shell", tail=1) == "line 3\n"
    assert "line 1" in control.logs("deployment/shell", since=3600)


def test_logs_of_a_service_name_are_those_of_its_pods(control: Environment) -> None:
    assert "Ready to accept connections" in control.logs("redis")


def test_get_and_events(control: Environment) -> None:
    settings = control.get("configmap", "settings")
    assert settings["data"] == {"mode": "calm"}
    assert control.get("deployments.apps", "shell")["kind"] == "Deployment"
    events = control.events()
    assert any(event["involvedObject"]["kind"] == "Pod" for event in events)
    assert control.events(since=3600) == events
    assert control.events(since=datetime.now(UTC) + timedelta(hours=1)) == []


# --- exec -----------------------------------------------------------------------------------


def test_exec_returns_the_exit_code_and_both_outputs(control: Environment) -> None:
    result = control.exec("deployment/shell", ["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert (result.exit_code, result.stdout, result.stderr) == (3, b"out\n", b"err\n")
    assert control.exec("redis", ["true"]).exit_code == 0  # a Service name: its pod


def test_exec_passes_ten_mib_through_intact(control: Environment) -> None:
    script = f"head -c {10 * MIB} /dev/urandom > /tmp/blob; sha256sum /tmp/blob >&2; cat /tmp/blob"
    result = control.exec("deployment/shell", ["sh", "-c", script])
    assert result.exit_code == 0
    assert len(result.stdout) == 10 * MIB
    assert result.stderr.split()[0].decode() == hashlib.sha256(result.stdout).hexdigest()


def test_exec_sends_stdin_and_closes_it(control: Environment) -> None:
    assert control.exec("deployment/shell", ["cat"], stdin="hello\n").stdout == b"hello\n"
    payload = bytes(range(256)) * 4096  # 1 MiB
    result = control.exec("deployment/shell", ["sha256sum"], stdin=payload)
    assert result.stdout.split()[0].decode() == hashlib.sha256(payload).hexdigest()


def test_exec_check_names_the_command_and_masks_secrets(control: Environment) -> None:
    token = control.secrets["token"]
    with pytest.raises(ExecError) as raised:
        control.exec(
            "deployment/shell", ["sh", "-c", 'echo "token $TOKEN" >&2; exit 4'], check=True
        )
    message = str(raised.value)
    assert message.startswith("exec in deployment/shell (pod/shell-")
    assert "sh -c 'echo \"token $TOKEN\" >&2; exit 4' exited with code 4" in message
    assert "stderr: token ********" in message
    assert token not in message
    assert raised.value.exit_code == 4
    assert token.encode() in raised.value.stderr  # the data itself is the test's


def test_exec_of_a_missing_command_says_it_could_not_run(control: Environment) -> None:
    with pytest.raises(ControlError) as raised:
        control.exec("deployment/shell", ["no-such-command", "--flag"])
    message = str(raised.value)
    assert message.startswith("exec in deployment/shell (pod/shell-")
    assert "no-such-command --flag could not run: " in message


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda env: env.exec("deployment/nope", ["true"]), "exec in deployment/nope: not found"),
        (lambda env: env.logs("widget/x"), "read the logs of 'widget/x': unknown kind 'widget'"),
        (lambda env: env.restart("pod/x"), "restart pod/x: not a workload that can restart"),
        (lambda env: env.scale("job/x", 1), "scale job/x: not a workload that can scale"),
        (lambda env: env.exec("pod/nope", ["true"]), "exec in pod/nope: not found"),
        (lambda env: env.get("widgets", "x"), "get widgets: "),
        (lambda env: env.wait_ready(["web"]), "wait for service/web: not found"),
    ],
)
def test_bad_targets_give_one_line_naming_the_verb_and_target(
    control: Environment, call: Any, message: str
) -> None:
    with pytest.raises(ControlError) as raised:
        call(control)
    assert str(raised.value).startswith(message)
    assert "\n" not in str(raised.value)


def test_rbac_denials_name_the_verb_and_target(
    control: Environment, kubefixtures_cluster: Cluster
) -> None:
    """A ServiceAccount that may read pods and deployments, nothing else."""
    namespace = control.namespace
    cluster = kubefixtures_cluster
    cluster.request(
        "POST",
        f"/api/v1/namespaces/{namespace}/serviceaccounts",
        body={"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "reader"}},
    )
    cluster.request(
        "POST",
        f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/roles",
        body={
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "reader"},
            "rules": [
                {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]},
                {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get"]},
            ],
        },
    )
    cluster.request(
        "POST",
        f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/rolebindings",
        body={
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "reader"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "reader"},
            "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": namespace}],
        },
    )
    token = cluster.request(
        "POST",
        f"/api/v1/namespaces/{namespace}/serviceaccounts/reader/token",
        body={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}},
    )["status"]["token"]
    config = dataclasses.replace(
        cluster.config,
        client_cert=None,
        client_cert_files=None,
        authorization=lambda: f"Bearer {token}",
        _ssl={},  # a TLS context of its own, without the admin certificate
    )
    reader = Cluster(config)
    limited = Environment(control.details, control.objects)
    limited._bind_controls(lambda: reader, {})
    try:
        with pytest.raises(ControlError) as raised:
            limited.exec("deployment/shell", ["true"])
        assert str(raised.value).startswith("exec in deployment/shell (pod/shell-")
        assert "forbidden (RBAC denies pods/exec)" in str(raised.value)
        with pytest.raises(ControlError, match=r"^restart deployment/shell: forbidden \(RBAC\)"):
            limited.restart("deployment/shell")
        with pytest.raises(ControlError, match=r"^read the logs of pod/shell-\S+ container shell:"):
            limited.logs("deployment/shell")
    finally:
        limited._close_controls()
        reader.close()


# --- acting ---------------------------------------------------------------------------------


def test_the_environments_forward_survives_a_restart(
    control: Environment, kubefixtures_cluster: Cluster
) -> None:
    address = control.services["redis"].address
    assert redis_ping(address)
    before = pod_names(kubefixtures_cluster, control, "redis")
    control.restart("redis")  # a Service name: the Deployment that runs its pods
    after = pod_names(kubefixtures_cluster, control, "redis")
    assert after
    assert not after & before, "restart() returns once the old pods are gone"
    # New connections succeed once the new pod is ready (the forward follows the Service).
    assert eventually(lambda: redis_ping(address), timeout=20)


def test_an_adhoc_forward_to_an_unexposed_port_heals_across_restarts(
    control: Environment,
) -> None:
    address = control.forward("deployment/shell", 8080)
    url = f"http://{address.host}:{address.port}/"

    def hello() -> str:
        try:
            with urllib.request.urlopen(url, timeout=3) as answer:
                return str(answer.read().decode())
        except OSError:
            return ""

    first = hello()
    assert first.startswith("hello from shell-")
    control.restart("deployment/shell")
    second = eventually(lambda: (text := hello()) and text != first and text, timeout=20)
    assert second, "the forward reached no new pod"
    assert second.startswith("hello from shell-")


def test_a_forward_to_one_pod(control: Environment, kubefixtures_cluster: Cluster) -> None:
    pod = min(pod_names(kubefixtures_cluster, control, "redis"))
    address = control.forward(f"pod/{pod}", 6379)
    assert redis_ping(address.address)


def test_delete_pod_then_wait_ready(control: Environment, kubefixtures_cluster: Cluster) -> None:
    deleted = control.delete_pod("deployment/shell")
    assert deleted.startswith("shell-")
    control.wait_ready(["deployment/shell", "redis"], timeout=60)
    assert deleted not in pod_names(kubefixtures_cluster, control, "shell")
    assert control.exec("deployment/shell", ["true"]).exit_code == 0  # picks the new pod
    control.wait_ready()  # every object of the environment


def test_scale_waits_both_ways(control: Environment, kubefixtures_cluster: Cluster) -> None:
    control.scale("deployment/shell", 2)
    assert len(pod_names(kubefixtures_cluster, control, "shell")) == 2
    assert control.logs("deployment/shell").count("==> pod/shell-") == 2
    control.scale("deployment/shell", 1)
    pods = kubefixtures_cluster.list_objects(POD, control.namespace, "app=shell")["items"]
    assert len(pods) == 1  # the surplus pod is gone, not just terminating


def test_patch_a_configmap_and_a_deployment(control: Environment) -> None:
    patched = control.patch("configmap/settings", {"data": {"mode": "stormy"}})
    assert patched["data"]["mode"] == "stormy"
    assert control.get("cm", "settings")["data"]["mode"] == "stormy"
    control.patch("configmap/settings", [{"op": "replace", "path": "/data/mode", "value": "calm"}])
    assert control.get("configmap", "settings")["data"]["mode"] == "calm"
    labels = {"metadata": {"labels": {"patched": "yes"}}}
    assert control.patch("deployment/shell", labels)["metadata"]["labels"]["patched"] == "yes"


def test_apply_a_migration_job_then_teardown_deletes_it(
    control: Environment, kubefixtures_cluster: Cluster
) -> None:
    applied = control.apply(EXTRA / "migrate.yaml", values={"target": "orders"})
    assert [str(ref) for ref in applied] == ["job/migrate"]
    assert control.logs("job/migrate") == f"migrating orders in {control.namespace}\ndone\n"
    config = control.apply(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "extra"},
            "data": {"token": "${secret:token}", "fresh": "${secret:fresh}"},
        }
    )
    assert [str(ref) for ref in config] == ["configmap/extra"]
    data = control.get("configmap", "extra")["data"]
    assert data["token"] == control.secrets["token"]
    assert applied_objects(control.namespace) == ["job/migrate", "configmap/extra"]
    # A failing test's report lists them (diagnostics).
    from kubefixtures.provisioning.base import Inspection
    from kubefixtures.reporting import report_sections

    sections = dict(
        report_sections(
            Inspection(kubefixtures_cluster, control.namespace, "control", frozenset()), 0
        )
    )
    title = f"kubefixtures control ({control.namespace}): applied by tests"
    assert sections[title] == "job/migrate\nconfigmap/extra"
    # A new secret of the apply is masked in errors too.
    with pytest.raises(ControlError) as raised:
        control.patch("configmap/extra", {"data": {"x": data["fresh"]}, "metadata": {"uid": "1"}})
    assert data["fresh"] not in str(raised.value)
    # Teardown (here: closing the controls) deletes what was applied.
    assert control._close_controls() == []
    with pytest.raises(ControlError, match="get configmap/extra: not found"):
        control.get("configmap", "extra")
    assert applied_objects(control.namespace) == []


def test_apply_that_never_gets_ready_fails_like_setup(control: Environment) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "broken"},
        "spec": {"containers": [{"name": "c", "image": "kubefixtures.local/none:0"}]},
    }
    with pytest.raises(NotReadyError, match=r"pod/broken"):
        control.apply(pod, timeout=30)


def test_copy_to_and_from(control: Environment, tmp_path: Path) -> None:
    source = tmp_path / "data"
    (source / "sub").mkdir(parents=True)
    (source / "a.txt").write_text("alpha")
    (source / "sub" / "b.bin").write_bytes(bytes(range(256)) * 100)
    control.copy_to("deployment/shell", source, "/tmp/copied")
    listing = control.exec("deployment/shell", ["find", "/tmp/copied"], check=True).stdout
    assert b"/tmp/copied/sub/b.bin" in listing
    back = tmp_path / "back"
    control.copy_from("deployment/shell", "/tmp/copied", back)
    assert (back / "a.txt").read_text() == "alpha"
    assert (back / "sub" / "b.bin").read_bytes() == bytes(range(256)) * 100
    control.copy_to("deployment/shell", source / "a.txt", "/tmp/renamed.txt")
    assert control.exec("deployment/shell", ["cat", "/tmp/renamed.txt"]).stdout == b"alpha"


# --- async twins ----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_async_twins(control: Environment) -> None:
    import asyncio

    results = await asyncio.gather(
        *(control.aio.exec("deployment/shell", ["sh", "-c", f"echo {n}"]) for n in range(5))
    )
    assert [result.stdout for result in results] == [f"{n}\n".encode() for n in range(5)]
    assert "line 3" in await control.aio.logs("deployment/shell")
    assert (await control.aio.get("configmap", "settings"))["data"]["mode"] == "calm"
    with pytest.raises(ControlError, match=r"^scale deployment/nope: not found"):
        await control.aio.scale("deployment/nope", 1)
