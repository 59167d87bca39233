"""Benchmark the mouth networks (issue 32): training samples/s and the generator's inference time
per frame. Prints one JSON object.

    python bench/bench_mouth.py [--steps 10] [--threads 2] [--channels 16] [--data data/shared256/train]

Training: `train_mouth`'s own step (embedder on K shots + mouth generator, the projection
discriminator, L1 + VGG + hinge + feature matching + embedding match) on a synthetic batch, with and
without bf16 autocast (where the CPU runs bf16 natively), and with the lip loss (a lip locator's
forward and backward on the generated crops; `--lip-locator`, default checkpoints/lip-locator.pt,
an untrained one of the same shape when that is missing: the cost is the same), and with LPIPS in place of
the VGG term (`train-mouth --lpips`). Inference: the mouth generator alone
on one crop with psi precomputed (what `animate` runs per frame), and `MouthEpisodes` items/s in
one process when `--data` names a prepared data set. The first step is warm-up, not timed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from functools import partial
from pathlib import Path

from common import machine


def synthetic_batch(config, generator):
    import torch

    B, K, s = config.batch_size, config.shots, config.side

    def image(*shape):
        return torch.rand(*shape, 3, s, s, generator=generator) * 2 - 1

    return {
        "shots": image(B, K),
        "shot_lips": image(B, K),
        "target": image(B),
        "target_lips": image(B),
        "warped": image(B),
        "target_region": torch.rand(B, 1, s, s, generator=generator),
        "target_hidden": torch.rand(B, 1, s, s, generator=generator),
        "video_index": torch.arange(B) % 4,
    }


def train_rate(config, steps: int, amp: bool, locator=None) -> float:
    import torch

    from talkinghead.models.mouth import MouthNetworks, mouth_discriminator
    from talkinghead.training.gan import Adversary, StepInputs, adversarial_step
    from talkinghead.training.losses import GeneratorLoss
    from talkinghead.training.mouth import generate_mouth, settings_of

    torch.manual_seed(0)
    networks = MouthNetworks(settings_of(config))
    discriminator = mouth_discriminator(settings_of(config), 4)
    adversary = Adversary(
        discriminator,
        GeneratorLoss(config.loss, locator),
        torch.optim.Adam(networks.parameters(), lr=1e-4, betas=(0.0, 0.999)),
        torch.optim.Adam(discriminator.parameters(), lr=4e-4, betas=(0.0, 0.999)),
        amp=amp,
    )
    batch = synthetic_batch(config, torch.Generator().manual_seed(0))
    points = torch.rand(config.batch_size, 20, 2, generator=torch.Generator().manual_seed(1)) * config.side
    real = StepInputs(
        batch["target"], batch["target_lips"], person=batch["video_index"], region=batch["target_region"], points=points
    )
    times = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        adversarial_step(partial(generate_mouth, networks, batch), real, adversary)
        times.append(time.perf_counter() - start)
    return config.batch_size * steps / sum(times[1:])


def inference_ms(config, repeats: int = 50) -> float:
    import torch

    from talkinghead.training.mouth import settings_of

    generator = settings_of(config).generator().eval()
    x = torch.rand(1, 3, config.side, config.side) * 2 - 1
    region = torch.rand(1, 1, config.side, config.side)
    psi = generator.adain_params(torch.randn(1, config.embedding_dim))
    best = float("inf")
    with torch.no_grad():
        generator.synthesise(x, x, psi, region)
        for _ in range(repeats):
            start = time.perf_counter()
            generator.synthesise(x, x, psi, region)
            best = min(best, time.perf_counter() - start)
    return best * 1000


def episode_rate(data: Path, config, items: int = 64) -> float:
    from talkinghead.data import FaceDataset
    from talkinghead.data.mouth import MouthEpisodes

    dataset = FaceDataset(data)
    episodes = MouthEpisodes(dataset, shots=config.shots, side=config.side)
    episodes[(0, 0)]
    start = time.perf_counter()
    for i in range(items):
        episodes[(1, i % len(dataset))]
    return items / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--channels", type=int, default=16, help="the networks' width (train-mouth --channels)")
    parser.add_argument("--data", type=Path, default=None, help="a prepared data set for the episodes' rate")
    parser.add_argument(
        "--lip-locator", type=Path, default=Path(__file__).parents[1] / "checkpoints" / "lip-locator.pt"
    )
    args = parser.parse_args()

    import torch

    from talkinghead.models.mouth import LipLocator
    from talkinghead.training.gan import cpu_has_bf16
    from talkinghead.training.lips import load_lip_locator
    from talkinghead.training.mouth import MouthConfig

    torch.set_num_threads(args.threads)
    config = MouthConfig(channels=args.channels)
    result = {
        "machine": machine(),
        "threads": args.threads,
        "channels": config.channels,
        "side": config.side,
        "batch_size": config.batch_size,
        "shots": config.shots,
        "train_samples_per_second_fp32": round(train_rate(config, args.steps, amp=False), 1),
    }
    amp = cpu_has_bf16()
    if amp:
        result["train_samples_per_second_bf16"] = round(train_rate(config, args.steps, amp=True), 1)
    locator = load_lip_locator(args.lip_locator) if args.lip_locator.exists() else LipLocator().requires_grad_(False)
    with_lips = dataclasses.replace(config, loss=dataclasses.replace(config.loss, lips=5.0))
    key = "train_samples_per_second_with_lip_loss_" + ("bf16" if amp else "fp32")
    result[key] = round(train_rate(with_lips, args.steps, amp=amp, locator=locator), 1)
    with_lpips = dataclasses.replace(config, loss=dataclasses.replace(config.loss, lpips=1.0, vgg=0.0))
    key = "train_samples_per_second_with_lpips_loss_" + ("bf16" if amp else "fp32")
    result[key] = round(train_rate(with_lpips, args.steps, amp=amp), 1)
    torch.set_num_threads(1)
    result["generator_ms_per_frame_1_thread"] = round(inference_ms(config), 2)
    if args.data is not None:
        result["episodes_per_second_1_process"] = round(episode_rate(args.data, config), 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
