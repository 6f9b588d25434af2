"""The kernel settings (sysctls) the local cluster changes, and putting them back.

`up` records the value of each before anything changes it, and, once the cluster runs,
the value the cluster left. `down` puts back every setting that still has the cluster's
value and leaves alone any that someone changed since (Docker turning forwarding on while
the cluster ran, say): what `down` takes back is only what the cluster did.

The record lives in the runtime directory, on tmpfs: a reboot gives the kernel its boot
values again, and takes away the record, which would then be wrong.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from kubefixtures.cluster.base import ClusterError
from kubefixtures.private_files import write_private_file

PROC_SYS = Path("/proc/sys")

# What the cluster needs, set by `up` itself.
REQUIRED = {
    # Pods reach Services through kube-proxy's iptables rules, which see bridged traffic
    # only with bridge-nf-call-iptables, and leave their node only with forwarding on.
    "net.ipv4.ip_forward": "1",
    "net.bridge.bridge-nf-call-iptables": "1",
}
# What the components set as they start: the kubelet's "kernel tunables" (it rewrites them
# unless protectKernelDefaults, which would only refuse to start on a host that differs),
# and what kube-proxy sets for NodePorts on 127.0.0.1 (turned off in its config; watched
# so that turning it back on cannot leave the host changed).
SET_BY_COMPONENTS = (
    "vm.overcommit_memory",
    "vm.panic_on_oom",
    "kernel.panic",
    "kernel.panic_on_oops",
    "kernel.keys.root_maxkeys",
    "kernel.keys.root_maxbytes",
    "net.ipv4.conf.all.route_localnet",
)
WATCHED = (*REQUIRED, *SET_BY_COMPONENTS)


@dataclass(frozen=True)
class Recorded:
    before: str
    ours: str | None = None  # None until the cluster runs: restore unconditionally


class KernelSettings:
    def __init__(self, record: Path, proc_sys: Path = PROC_SYS) -> None:
        self.record = record
        self.proc_sys = proc_sys

    def prepare(self) -> None:
        """Record every watched setting, then set what the cluster needs."""
        for name in REQUIRED:
            if self.read(name) is None:
                raise ClusterError(
                    f"the kernel lacks {name} (for the bridge settings, load the "
                    "br_netfilter module: `modprobe br_netfilter`)"
                )
        recorded = {}
        for name in WATCHED:
            value = self.read(name)
            if value is not None:
                recorded[name] = Recorded(before=value)
        self._save(recorded)
        for name, value in REQUIRED.items():
            self._set(name, value)

    def note_ours(self) -> None:
        """Record the values the running cluster left: from now on `restore` puts back
        only the settings that still have them."""
        recorded = self._load()
        self._save({name: Recorded(e.before, self.read(name)) for name, e in recorded.items()})

    def restore(self) -> None:
        """Put back what the cluster changed and nobody changed since; then forget the
        record. A setting that cannot be written is named in the error, and the record
        stays for the next `down` or `up` to try again."""
        if not self.record.exists():
            return
        failed = []
        for name, entry in self._load().items():
            current = self.read(name)
            if current is None or current == entry.before:
                continue
            if entry.ours is not None and current != entry.ours:
                continue  # someone else's change, made while the cluster ran
            try:
                self._set(name, entry.before)
            except OSError as error:
                failed.append(f"{name}={entry.before} ({error.strerror})")
        if failed:
            raise ClusterError(f"could not restore the kernel settings {', '.join(failed)}")
        self.record.unlink()

    def read(self, name: str) -> str | None:
        try:
            # Multi-valued settings are tab-separated; compare and write them space-separated.
            return " ".join(self._path(name).read_text().split())
        except FileNotFoundError:
            return None

    def _set(self, name: str, value: str) -> None:
        if self.read(name) != value:
            self._path(name).write_text(value)

    def _path(self, name: str) -> Path:
        return self.proc_sys / name.replace(".", "/")

    def _save(self, recorded: dict[str, Recorded]) -> None:
        entries = {name: {"before": e.before, "ours": e.ours} for name, e in recorded.items()}
        write_private_file(self.record, json.dumps(entries, indent=2) + "\n")

    def _load(self) -> dict[str, Recorded]:
        try:
            entries = json.loads(self.record.read_text(encoding="utf-8"))
            return {
                str(name): Recorded(str(entry["before"]), entry["ours"] and str(entry["ours"]))
                for name, entry in entries.items()
            }
        except (ValueError, TypeError, KeyError, AttributeError) as error:
            raise ClusterError(
                f"{self.record}: not a record of kernel settings ({error}); "
                "delete it to go on without restoring them"
            ) from None
