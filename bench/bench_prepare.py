"""Benchmark `prepare` end to end and reading the data set back. Prints one JSON object.

    python bench/bench_prepare.py [INPUT ...] [--out DIR] [--workers N]

Defaults to ../shared/data/videos (144 clips, 95 people). Frames/s counts frames written to the
data set per second of wall time (every frame decoded is tracked; with the default stride of 1
every frame with a face is written). Read-back decodes random frames of random clips, as
training episodes do, in one process and in `--workers` processes.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from talkinghead.data import FaceDataset
from talkinghead.data.prepare import PrepareOptions, prepare

DEFAULT_INPUT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "videos"


def _read(args: tuple[str, int, int]) -> int:
    root, count, seed = args
    dataset = FaceDataset(root)
    rng = np.random.default_rng(seed)
    for _ in range(count):
        clip = int(rng.integers(len(dataset)))
        dataset.frame(clip, int(rng.integers(dataset.num_frames(clip))))
    return count


def read_rate(root: Path, processes: int, count: int = 4000) -> float:
    start = time.perf_counter()
    if processes == 1:
        _read((str(root), count, 0))
    else:
        with multiprocessing.get_context("spawn").Pool(processes) as pool:
            pool.map(_read, [(str(root), count // processes, seed) for seed in range(processes)])
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("inputs", nargs="*", default=[DEFAULT_INPUT])
    parser.add_argument("--out", help="data set folder (default: a temporary one, deleted)")
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--size", type=int, default=256)
    args = parser.parse_args()

    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="bench-prepare-"))
    if out.exists():
        shutil.rmtree(out)
    start = time.perf_counter()
    summary = prepare(args.inputs, out, PrepareOptions(crop_size=args.size), workers=args.workers, progress=False)
    seconds = time.perf_counter() - start
    total = summary.clips + len(summary.skipped)
    result = {
        "benchmark": "prepare",
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.processor() or platform.platform()}",
        "inputs": [str(p) for p in args.inputs],
        "workers": args.workers,
        "crop_size": args.size,
        "clips": total,
        "clips_prepared": summary.clips,
        "clips_prepared_fraction": round(summary.clips / max(total, 1), 4),
        "identities": len(summary.identities),
        "frames_written": summary.frames,
        "frames_decoded": summary.source_frames,
        "seconds": round(seconds, 1),
        "frames_per_second": round(summary.frames / seconds, 1),
        "dataset_bytes": sum(p.stat().st_size for p in (out / "shards").glob("*")),
        "read_frames_per_second_1_process": round(read_rate(out, 1), 1),
        f"read_frames_per_second_{args.workers}_processes": round(read_rate(out, args.workers), 1),
        "skipped": summary.skipped,
    }
    if not args.out:
        shutil.rmtree(out)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
