"""Render a sample grid from a training checkpoint: target landmarks | real | generated | first shot.

With --no-real, landmarks | generated only (research-only data must not appear in committed figures).

    python scripts/sample_grid.py RUN/checkpoints/step-N.pt --data DATA --out grid.png [--rows 6] [--scale 2]

Each row is a fresh episode (K shots + target) of a different clip of DATA, generated feed-forward
by the checkpoint's embedder and generator, as during training.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from PIL import Image

from talkinghead.checkpoint import inference_weights, load_checkpoint
from talkinghead.config import Config
from talkinghead.data import FaceDataset
from talkinghead.data.episodes import EpisodeDataset
from talkinghead.model import build_model
from talkinghead.training.train import EmbedderGenerator, episode_inputs, sample_grid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--data", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--rows", type=int, default=6)
    parser.add_argument("--scale", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--no-real",
        action="store_true",
        help="only landmarks | generated: for figures that must not show the data set's frames",
    )
    args = parser.parse_args()

    state = load_checkpoint(args.checkpoint)
    config = Config.from_dict(state["config"])
    data = FaceDataset(args.data)
    model = build_model(config, num_videos=state["num_videos"])
    eg = EmbedderGenerator(model.embedder, model.generator)
    eg.load_state_dict(inference_weights(state))
    eg.eval()
    episodes = EpisodeDataset(
        data,
        shots=config.train.shots,
        resolution=config.model.resolution,
        seed=args.seed,
        thickness=config.model.landmark_thickness,
    )
    clips = np.random.default_rng(args.seed).choice(len(data), size=min(args.rows, len(data)), replace=False)
    batch = torch.utils.data.default_collate([episodes[(0, int(c))] for c in clips])
    with torch.no_grad():
        fake = eg(*episode_inputs(batch))[0].frame
    grid = sample_grid(batch, fake, rows=len(clips))
    if args.no_real:  # keep the landmark and generated columns only
        size = config.model.resolution
        grid = np.concatenate([grid[:, :size], grid[:, 2 * size : 3 * size]], axis=1)
    grid = np.kron(grid, np.ones((args.scale, args.scale, 1), np.uint8))
    Image.fromarray(grid).save(args.out, optimize=True)
    print(f"{args.out}: {len(clips)} rows, step {state['step']}")


if __name__ == "__main__":
    main()
