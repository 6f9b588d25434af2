"""The kernel settings the local cluster changes are recorded at `up` and put back at
`down`, except those someone else changed while the cluster ran (on a /proc/sys of files)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubefixtures.cluster.base import ClusterError
from kubefixtures.cluster.local.kernel import REQUIRED, KernelSettings


@pytest.fixture
def settings(tmp_path: Path) -> KernelSettings:
    proc_sys = tmp_path / "proc" / "sys"
    host = {
        "net.ipv4.ip_forward": "0",
        "net.bridge.bridge-nf-call-iptables": "1",
        "kernel.panic": "1",
        "kernel.panic_on_oops": "0",
        "net.ipv4.ip_local_port_range": "32768\t60999",
    }
    for name, value in host.items():
        path = proc_sys / name.replace(".", "/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(value + "\n")
    return KernelSettings(tmp_path / "run" / "kernel-settings.json", proc_sys)


def kubelet_starts(settings: KernelSettings) -> None:
    """What the kubelet does to the kernel as it starts."""
    (settings.proc_sys / "kernel/panic").write_text("10\n")
    (settings.proc_sys / "kernel/panic_on_oops").write_text("1\n")


def test_up_sets_what_the_cluster_needs(settings: KernelSettings) -> None:
    settings.prepare()
    assert {name: settings.read(name) for name in REQUIRED} == REQUIRED


def test_down_puts_back_what_up_and_the_components_changed(settings: KernelSettings) -> None:
    settings.prepare()
    kubelet_starts(settings)
    settings.note_ours()
    settings.restore()
    assert settings.read("net.ipv4.ip_forward") == "0"
    assert settings.read("kernel.panic") == "1"
    assert settings.read("kernel.panic_on_oops") == "0"
    assert not settings.record.exists()


def test_a_cluster_killed_while_starting_is_put_back_too(settings: KernelSettings) -> None:
    """No note of the cluster's own values yet: everything goes back."""
    settings.prepare()
    kubelet_starts(settings)
    settings.restore()
    assert settings.read("net.ipv4.ip_forward") == "0"
    assert settings.read("kernel.panic") == "1"


def test_a_change_someone_else_made_while_the_cluster_ran_is_kept(
    settings: KernelSettings,
) -> None:
    settings.prepare()
    settings.note_ours()
    (settings.proc_sys / "kernel/panic").write_text("30\n")  # an administrator's choice
    settings.restore()
    assert settings.read("kernel.panic") == "30"
    assert settings.read("net.ipv4.ip_forward") == "0"


def test_settings_the_kernel_lacks_are_not_recorded(settings: KernelSettings) -> None:
    settings.prepare()
    settings.note_ours()
    settings.restore()
    assert settings.read("vm.overcommit_memory") is None


def test_a_missing_required_setting_says_which_module_to_load(settings: KernelSettings) -> None:
    (settings.proc_sys / "net/bridge/bridge-nf-call-iptables").unlink()
    with pytest.raises(ClusterError, match=r"lacks net.bridge.bridge-nf-call-iptables .*"):
        settings.prepare()
    assert settings.read("net.ipv4.ip_forward") == "0"


def test_down_without_a_record_changes_nothing(settings: KernelSettings) -> None:
    settings.restore()
    assert settings.read("net.ipv4.ip_forward") == "0"


def test_a_damaged_record_is_named(settings: KernelSettings) -> None:
    settings.record.parent.mkdir(parents=True)
    settings.record.write_text("[1, 2")
    with pytest.raises(ClusterError, match=rf"^{settings.record}: not a record of kernel"):
        settings.restore()
