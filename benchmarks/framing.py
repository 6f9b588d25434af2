"""Parser benchmark: the WebSocket and SPDY frame parsers of this checkout against a baseline
git revision's, in one process (no cluster needed).

    .venv/bin/python benchmarks/framing.py [--baseline main] [--repeats 7] [--mib 64]

Feeds the same server byte streams to both parsers in reads of a socket's size, alternating
baseline and checkout each repeat, and prints the best repeat's MiB/s of CPU time and the
checkout's ratio to the baseline: 32 KiB WebSocket frames (what the apiserver relays),
4 KiB fragments of 16 KiB messages (a fragmenting proxy), and 32 KiB SPDY data frames (what
the kubelet sends). It shows whether the protocol checks cost anything next to the
tunnel's own rate (benchmarks/portforward.py), not an absolute figure.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MODULES = ("kubefixtures/kube/portforward/_wsframe.py", "kubefixtures/kube/portforward/_spdy.py")
READ = 256 * 1024


def load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def baseline_modules(revision: str, scratch: Path) -> tuple[ModuleType, ModuleType]:
    loaded = []
    for path in MODULES:
        source = subprocess.run(
            ["git", "-C", str(ROOT), "show", f"{revision}:{path}"],
            capture_output=True,
            check=True,
        ).stdout
        target = scratch / f"baseline_{Path(path).name}"
        target.write_bytes(source)
        loaded.append(load(target, f"baseline_{Path(path).stem}"))
    return loaded[0], loaded[1]


def ws_frame(fin: bool, opcode: int, payload: bytes) -> bytes:
    first = (0x80 if fin else 0) | opcode
    size = len(payload)
    if size < 126:
        return bytes((first, size)) + payload
    if size < 1 << 16:
        return bytes((first, 126)) + struct.pack("!H", size) + payload
    return bytes((first, 127)) + struct.pack("!Q", size) + payload


def ws_stream(total: int, size: int, fragments: int) -> bytes:
    piece = os.urandom(size)
    out = bytearray()
    for index in range(total // size):
        position = index % fragments
        opcode = 0x2 if position == 0 else 0x0
        out += ws_frame(position == fragments - 1, opcode, piece)
    return bytes(out)


def spdy_stream(total: int) -> bytes:
    piece = os.urandom(32 * 1024)
    header = struct.pack("!IB3s", 3, 0, len(piece).to_bytes(3, "big"))
    return (header + piece) * (total // len(piece))


def timed(parser: Any, data: bytes, read: int) -> float:
    view = memoryview(data)
    # CPU time of this process: the machine may be shared, and waiting for a core is not
    # the parser's cost.
    started = time.process_time()
    for offset in range(0, len(data), read):
        parser.feed(view[offset : offset + read])
    return time.process_time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default="main", help="git revision to compare with")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--mib", type=int, default=64, help="MiB per stream")
    options = parser.parse_args()
    total = options.mib * 1024 * 1024
    with tempfile.TemporaryDirectory(prefix="kf-framing-") as scratch:
        old_ws, old_spdy = baseline_modules(options.baseline, Path(scratch))
        new_ws = load(ROOT / MODULES[0], "checkout_wsframe")
        new_spdy = load(ROOT / MODULES[1], "checkout_spdy")
        cases: list[tuple[str, bytes, Callable[[], Any], Callable[[], Any]]] = [
            (
                "WebSocket, 32 KiB frames",
                ws_stream(total, 32 * 1024, 1),
                old_ws.FrameParser,
                new_ws.FrameParser,
            ),
            (
                "WebSocket, 4 KiB fragments",
                ws_stream(total, 4 * 1024, 4),
                old_ws.FrameParser,
                new_ws.FrameParser,
            ),
            (
                "SPDY, 32 KiB data frames",
                spdy_stream(total),
                old_spdy.FrameParser,
                new_spdy.FrameParser,
            ),
        ]
        print(
            f"baseline {options.baseline}; {options.mib} MiB per stream, "
            f"reads of {READ // 1024} KiB"
        )
        print(f"{'stream':30s} {'baseline MiB/s':>15s} {'checkout MiB/s':>15s} {'ratio':>7s}")
        for label, data, make_old, make_new in cases:
            old_times, new_times = [], []
            for repeat in range(options.repeats):
                pair = [(old_times, make_old), (new_times, make_new)]
                for times, make in pair if repeat % 2 == 0 else reversed(pair):
                    times.append(timed(make(), data, READ))
            # The fastest repeat: what the code costs, with the least of the noise around it.
            old_rate = options.mib / min(old_times)
            new_rate = options.mib / min(new_times)
            print(f"{label:30s} {old_rate:15.0f} {new_rate:15.0f} {new_rate / old_rate:6.2f}x")


if __name__ == "__main__":
    main()
