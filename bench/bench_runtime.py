"""Benchmark the per-frame path: PyTorch against onnxruntime, one frame at a time. Prints one JSON object.

    python bench/bench_runtime.py [--configs cpu-warp cpu] [--frames 200] [--threads 2]

Networks are freshly initialised (speed does not depend on the weights). The avatar is fitted
feed-forward to scikit-image's astronaut (T = 1), and driven by the bundled motion's landmarks,
retargeted to it. Per frame, one at a time as live use runs it: drawing the landmark image, then
the generator (PyTorch with spectral norm folded, as `animate` runs it; or the exported ONNX graph
in onnxruntime), then the conversion to uint8; each stage timed in its own loop over the frames. Also the generator's GFLOP per frame (PyTorch's
FLOP counter: multiply-adds x 2).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from common import load_spec, machine, run_each


def run_one(name: str, frames: int, threads: int) -> dict:
    import numpy as np
    import torch
    from skimage import data
    from torch.utils.flop_counter import FlopCounterMode

    from talkinghead.checkpoint import save_model
    from talkinghead.face.drawing import draw_batch
    from talkinghead.inference.animate import default_motion_path
    from talkinghead.inference.fitting import fit_avatar
    from talkinghead.inference.motion import Motion
    from talkinghead.inference.onnx import FramePath, OnnxFramePath, export_onnx
    from talkinghead.media.images import to_tensor, to_uint8
    from talkinghead.model import build_model

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    config = load_spec(name)
    tmp = Path(tempfile.mkdtemp())
    model = save_model(tmp / "model.safetensors", build_model(config, num_videos=1), half=False)
    avatar = fit_avatar([data.astronaut()], model=model)
    motion = Motion.load(default_motion_path())
    landmarks = motion.retarget(avatar.shot_landmarks[0], avatar.size)
    landmarks = np.concatenate([landmarks] * (frames // len(landmarks) + 1))[:frames]
    thickness = config.model.landmark_thickness or None

    start = time.perf_counter()
    report = export_onnx(avatar, tmp / "avatar.onnx")
    export_seconds = time.perf_counter() - start
    session = OnnxFramePath(report["path"], threads=threads)
    path = FramePath(avatar).eval()

    def draw(points):
        return to_tensor(draw_batch(points[None], avatar.size, thickness=thickness))

    with torch.inference_mode():
        image, points = draw(landmarks[0]), torch.from_numpy(landmarks[:1])
        with FlopCounterMode(display=False) as counter:
            path(image, points)
        gflop = counter.get_total_flops() / 1e9
        # Each stage in its own loop over the same frames: interleaved, onnxruntime's worker
        # threads (which spin-wait after each run) took CPU from the PyTorch call that followed.
        timings = {}
        timings["drawing"], images = _timed(lambda i: draw(landmarks[i]), frames)
        timings["torch"], outs = _timed(lambda i: path(images[i], torch.from_numpy(landmarks[i : i + 1])), frames)
        timings["onnxruntime"], onnx_outs = _timed(lambda i: session(images[i].numpy(), landmarks[i : i + 1]), frames)
        timings["to_uint8"], _ = _timed(lambda i: to_uint8(outs[i]), frames)
        out, onnx_out = torch.cat(outs), np.concatenate(onnx_outs)
        difference = float(np.abs(onnx_out - out.numpy()).max())
    median = {k: float(np.median(v)) * 1000 for k, v in timings.items()}
    return {
        "config": name,
        "generator": config.model.generator,
        "resolution": config.model.resolution,
        "frames": frames,
        "threads": threads,
        "gflop_per_frame": round(gflop, 3),
        "median_ms": {k: round(v, 3) for k, v in median.items()},
        "generator_fps": {
            "torch": round(1000 / median["torch"], 1),
            "onnxruntime": round(1000 / median["onnxruntime"], 1),
        },
        "onnxruntime_speedup": round(median["torch"] / median["onnxruntime"], 2),
        "max_abs_difference": difference,
        "export_seconds": round(export_seconds, 1),
        "onnx_megabytes": round(report["bytes"] / 2**20, 1),
    }


def _timed(call, count: int, warmup: int = 5) -> tuple[list[float], list]:
    """`call(i)` for i in range(count) after `warmup` untimed calls: (seconds per call, results)."""
    for i in range(warmup):
        call(i)
    seconds, results = [], []
    for i in range(count):
        start = time.perf_counter()
        results.append(call(i))
        seconds.append(time.perf_counter() - start)
    return seconds, results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--configs", nargs="+", default=["cpu-warp", "cpu"])
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args.frames, args.threads)))
        return
    results = run_each(__file__, args.configs, "--frames", str(args.frames), "--threads", str(args.threads))
    print(json.dumps({"machine": machine(), "results": results}, indent=2))


if __name__ == "__main__":
    main()
