"""YAML input benchmark: kubefixtures.yamlinput read by libyaml against the pure-Python
reader, in one process (no cluster needed).

    .venv/bin/python benchmarks/yaml_input.py [--repeats 21] [--objects 600]

CPU time (process time) per read of: the shop manifests (tests/integration/environments/
shop, both files), a kubeconfig (~/.kube/config when it is one, else a generated one of the
same shape), and a generated multi-document manifest set of ``--objects`` Deployments
(about 1.2 KB each, the size of a Helm chart's output); then ``render_sources`` of the shop
environment, the whole rendering path. The two readers take turns every repeat; prints the
medians, the ratio pure/libyaml, and the machine's load. Both readers give the same results
(tests/unit/test_yamlinput_libyaml.py), so the figures compare like with like.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from kubefixtures import yamlinput
from kubefixtures.rendering import RenderContext, render_sources
from kubefixtures.yamlinput import load_documents

ROOT = Path(__file__).resolve().parent.parent
SHOP = ROOT / "tests" / "integration" / "environments" / "shop"

GENERATED_KUBECONFIG = """apiVersion: v1
kind: Config
clusters:
- cluster:
    certificate-authority-data: {cert}
    server: https://127.0.0.1:6443
  name: local
contexts:
- context:
    cluster: local
    user: admin
  name: local
current-context: local
preferences: {{}}
users:
- name: admin
  user:
    client-certificate-data: {cert}
    client-key-data: {cert}
"""


def kubeconfig_text() -> tuple[str, str]:
    path = Path.home() / ".kube" / "config"
    try:
        text = path.read_text()
        if isinstance(yaml.safe_load(text), dict):
            return str(path), text
    except (OSError, ValueError, yaml.YAMLError):
        pass
    return "generated", GENERATED_KUBECONFIG.format(cert="LS0tLS1CRUdJTi" * 50)


def manifest_set(objects: int) -> str:
    documents = [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": f"app-{index}",
                "labels": {"app": f"app-{index}", "tier": "backend"},
                "annotations": {"checksum/config": f"{index:064x}"},
            },
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": f"app-{index}"}},
                "template": {
                    "metadata": {"labels": {"app": f"app-{index}"}},
                    "spec": {
                        "containers": [
                            {
                                "name": "main",
                                "image": "registry.local/app:1.2.3",
                                "args": ["--port=8080", "--verbose"],
                                "env": [
                                    {"name": f"VAR_{var}", "value": f"value {var} of {index}"}
                                    for var in range(8)
                                ],
                                "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                                "resources": {"limits": {"cpu": "500m", "memory": "256Mi"}},
                                "readinessProbe": {
                                    "httpGet": {"path": "/healthz", "port": 8080},
                                    "periodSeconds": 1,
                                },
                            }
                        ]
                    },
                },
            },
        }
        for index in range(objects)
    ]
    text: str = yaml.safe_dump_all(documents, sort_keys=False)
    return text


def read_all(texts: list[str]) -> None:
    for text in texts:
        for _document in load_documents(text):
            pass


def render_shop() -> None:
    context = RenderContext(
        namespace="kf-bench", session_id="s1", environment="shop", values={"greeting": "hi"}
    )
    render_sources([SHOP], context)


def cpu_seconds(call: Callable[[], None], pure: bool) -> float:
    libyaml = yamlinput._LIBYAML
    if pure:
        yamlinput._LIBYAML = None  # as before: the pure reader for everything
    try:
        started = time.process_time()
        call()
        return time.process_time() - started
    finally:
        yamlinput._LIBYAML = libyaml


def compare(name: str, call: Callable[[], None], repeats: int) -> None:
    samples: dict[bool, list[float]] = {True: [], False: []}
    call()  # warm: imports, regex and constructor caches
    for repeat in range(repeats):
        for pure in (True, False) if repeat % 2 == 0 else (False, True):
            samples[pure].append(cpu_seconds(call, pure))
    before, after = statistics.median(samples[True]), statistics.median(samples[False])
    print(
        f"  {name:44} pure {before * 1000:8.2f} ms   libyaml {after * 1000:7.2f} ms"
        f"   {before / after:5.1f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--objects", type=int, default=600)
    args = parser.parse_args()
    if yamlinput._LIBYAML is None:
        sys.exit("PyYAML has no libyaml here: there is nothing to compare")
    shop = [path.read_text() for path in sorted(SHOP.glob("*.yaml"))]
    where, kubeconfig = kubeconfig_text()
    big = manifest_set(args.objects)
    print(
        f"PyYAML {yaml.__version__} (libyaml {yaml._yaml.get_version_string()}), "  # type: ignore[attr-defined]
        f"Python {sys.version.split()[0]}; load average at start {os.getloadavg()}"
    )
    print(f"CPU time per read, median of {args.repeats}, readers taking turns:")
    compare(f"shop manifests ({sum(map(len, shop))} bytes)", lambda: read_all(shop), args.repeats)
    compare(
        f"kubeconfig ({where}, {len(kubeconfig)} bytes)",
        lambda: read_all([kubeconfig]),
        args.repeats,
    )
    compare(
        f"{args.objects} objects ({len(big) / 1e6:.2f} MB)",
        lambda: read_all([big]),
        max(3, args.repeats // 4),
    )
    compare("render_sources(shop)", render_shop, args.repeats)
    print(f"load average at end {os.getloadavg()}")


if __name__ == "__main__":
    main()
