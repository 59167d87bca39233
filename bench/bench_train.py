"""Benchmark meta-training steps: seconds per step, samples/s, peak memory. Prints one JSON object.

    python bench/bench_train.py [--configs tiny cpu paper] [--steps 3] [--device cpu|cuda]

Each config runs in its own process (so peak memory is its own) on synthetic episodes of its
resolution, through the training loop's own `train_step` with the full loss (VGG16 + FaceNet
content, hinge, feature matching, embedding match). The first step is
warm-up and not timed. AMP (bf16 autocast: on GPUs, and on CPUs with native bf16) and, on
CUDA, channels-last follow the config; `--configs NAME+train.amp=false` compares without it.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from types import SimpleNamespace

from common import load_spec, machine, run_each


def run_one(name: str, steps: int, device_name: str) -> dict:
    import torch

    from talkinghead.model import build_model
    from talkinghead.training.gan import Adversary
    from talkinghead.training.losses import GeneratorLoss
    from talkinghead.training.train import EmbedderGenerator, train_step

    config = load_spec(name)
    t, R = config.train, config.model.resolution
    device = torch.device(device_name)
    model = build_model(config, num_videos=1000)
    eg, d = EmbedderGenerator(model.embedder, model.generator).to(device), model.discriminator.to(device)
    channels_last = device.type == "cuda" and t.channels_last
    if channels_last:
        eg, d = eg.to(memory_format=torch.channels_last), d.to(memory_format=torch.channels_last)
    loss_fn = GeneratorLoss(config.loss).to(device)
    opt_g = torch.optim.Adam(eg.parameters(), lr=t.lr_generator, betas=t.betas)
    opt_d = torch.optim.Adam(d.parameters(), lr=t.lr_discriminator, betas=t.betas)
    B, K = t.batch_size, t.shots
    g = torch.Generator().manual_seed(0)
    src = (torch.rand(B, K, 3, R, R, generator=g) * 2 - 1).to(device)
    src_lm = (torch.rand(B, K, 3, R, R, generator=g) * 2 - 1).to(device)
    real = (torch.rand(B, 3, R, R, generator=g) * 2 - 1).to(device)
    lm = (torch.rand(B, 3, R, R, generator=g) * 2 - 1).to(device)
    videos = torch.arange(B, device=device)
    batch = {
        "source_frames": src,
        "source_landmark_images": src_lm,
        "source_points": (torch.rand(B, K, 68, 2, generator=g) * R).to(device),
        "target_frame": real,
        "target_landmark_images": lm,
        "target_points": (torch.rand(B, 68, 2, generator=g) * R).to(device),
        "video_index": videos,
    }
    # What train_step reads of the loop's TrainState (one process, no DDP, no compile).
    adversary = Adversary(d, loss_fn, opt_g, opt_d, discriminator_steps=t.discriminator_steps, amp=t.amp)
    state = SimpleNamespace(eg_train=eg, adversary=adversary)
    times = []
    for _ in range(steps + 1):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        train_step(batch, state)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    seconds = sum(times[1:]) / steps
    result = {
        "config": name,
        "resolution": R,
        "batch_size": B,
        "shots": K,
        "parameters_millions": round(sum(p.numel() for m in (eg, d) for p in m.parameters()) / 1e6, 2),
        "seconds_per_step": round(seconds, 3),
        "samples_per_second": round(B / seconds, 2),
    }
    if device.type == "cuda":
        result["peak_gpu_memory_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        result["amp"] = bool(t.amp)
    result["peak_process_memory_gb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=["tiny", "cpu", "paper"])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--device", default="cuda" if "--cuda" in sys.argv else "cpu")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args.steps, args.device)))
        return
    import torch

    results = run_each(__file__, args.configs, "--steps", str(args.steps), "--device", args.device)
    print(
        json.dumps(
            {
                "benchmark": "train_step",
                "machine": machine(),
                "device": args.device if args.device == "cpu" else torch.cuda.get_device_name(),
                "torch_threads": torch.get_num_threads(),
                "results": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
