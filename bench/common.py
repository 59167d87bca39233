"""What the benchmarks share: one process per config (so peak memory is its own), machine line."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores"


def run_each(script: str, configs: list[str], *args: str) -> list[dict]:
    """Run `script --one CONFIG ARGS...` per config; each prints its result as JSON last."""
    results = []
    for name in configs:
        out = subprocess.run([sys.executable, script, "--one", name, *args], capture_output=True, text=True, check=True)
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return results
