"""The local cluster's kubelet admits as many pods as its pod subnet has addresses for: a
suite-sized pool (50 copies of a two-pod environment) fits beside other tests' pods."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

from kubefixtures.cluster.local import layout
from kubefixtures.cluster.local.configs import write_kubelet_config
from kubefixtures.cluster.local.layout import Layout


def test_max_pods_is_every_address_of_the_pod_subnet(tmp_path: Path) -> None:
    paths = Layout(state=tmp_path / "state", run=tmp_path / "run", cache=tmp_path / "cache")
    written = json.loads(write_kubelet_config(paths).read_text())
    subnet = ipaddress.ip_network(layout.POD_SUBNET)
    # Less the network's, the broadcast's and the gateway's addresses.
    assert written["maxPods"] == subnet.num_addresses - 3 == layout.MAX_PODS
    assert ipaddress.ip_address(layout.POD_GATEWAY) in subnet
    assert written["maxPods"] >= 2 * 50 + 110  # a 50-copy pool beside the old default's worth
