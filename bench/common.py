"""What the benchmarks share: one process per config (so peak memory is its own), machine line."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, reference conv {reference_gflops():.0f} GFLOP/s"


def reference_gflops() -> float:
    """GFLOP/s of one fixed 3x3 convolution (8 x 64 x 128 x 128 -> 64 channels), best of 5.

    The 2-core VMs these benchmarks run on have moved by 2x between runs of the same code; this
    number, printed with every result, says how fast the machine was at the time, so results of
    different runs can be related (ratios within one run remain the claim)."""
    import time

    import torch

    x, conv = torch.randn(8, 64, 128, 128), torch.nn.Conv2d(64, 64, 3, padding=1)
    best = float("inf")
    with torch.no_grad():
        conv(x)
        for _ in range(5):
            start = time.perf_counter()
            conv(x)
            best = min(best, time.perf_counter() - start)
    return 2 * x.numel() * 64 * 9 / best / 1e9


def load_spec(spec: str):
    """The config a benchmark's `--configs` entry names: `NAME[+key=value...]`, a preset with `--set`
    overrides, so that one run can compare variants (`cpu-warp-lean+train.amp=false`)."""
    from talkinghead.config import load_config

    name, *overrides = spec.split("+")
    return load_config(name, overrides)


def run_each(script: str, configs: list[str], *args: str) -> list[dict]:
    """Run `script --one CONFIG ARGS...` per config; each prints its result as JSON last."""
    results = []
    for name in configs:
        out = subprocess.run([sys.executable, script, "--one", name, *args], capture_output=True, text=True, check=True)
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return results
