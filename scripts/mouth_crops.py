"""A quick held-out check of a mouth checkpoint on mouth-aligned crops, before the full `evaluate`:
episodes of a data set of people it never saw (`MouthEpisodes`, fixed seed), the generator's mouth
(feed-forward, psi = P e-hat of the K shots) against what the renderer gives without it (the nearest
shot warped to the target's lips). Prints one JSON object per target kind: `open` (open targets
with the clip's most closed frames as shots: the mouth must be invented) and `any` (targets and
shots drawn at random), with LPIPS of the whole 64 px crop and L1 inside the inner mouth (grown and
feathered as pasted), both against the real crop.

    python scripts/mouth_crops.py CHECKPOINT --data data/shared256/validation [--episodes 4]
"""

from __future__ import annotations

import argparse
import json

import torch


@torch.no_grad()
def measure(checkpoint: str, data: str, episodes: int) -> list[dict]:
    from talkinghead.checkpoint import load_checkpoint
    from talkinghead.data import FaceDataset
    from talkinghead.data.mouth import MouthEpisodes
    from talkinghead.features.lpips import LPIPS
    from talkinghead.models.mouth import MouthNetworks
    from talkinghead.training.losses import region_l1_loss
    from talkinghead.training.mouth import _config_from, settings_of

    state = load_checkpoint(checkpoint)
    config = _config_from(state["config"])
    networks = MouthNetworks(settings_of(config)).eval()
    networks.load_state_dict(state["networks"])
    dataset, lpips, rows = FaceDataset(data), LPIPS().eval(), []
    for kind, open_targets in (("open", 1.0), ("any", 0.0)):
        source = MouthEpisodes(dataset, shots=config.shots, side=config.side, seed=1, open_targets=open_targets,
                               closed_shots=1.0)  # fmt: skip
        items = [source[epoch, clip] for epoch in range(episodes) for clip in range(len(dataset))]
        batch = {k: torch.stack([item[k] for item in items]) for k in items[0]}
        made, mask, _ = networks(batch["shots"], batch["shot_lips"], batch["warped"], batch["target_lips"])
        real, region = batch["target"], batch["target_region"]
        row = {
            "kind": kind,
            "step": int(state["step"]),
            "targets": len(items),
            "synthesised": round(float(mask.mean()), 3),
        }
        for name, image in (("warp", batch["warped"]), ("mouth", made)):
            row[f"{name}_lpips"] = round(float(lpips(real, image).mean()), 4)
            row[f"{name}_inner_l1"] = round(float(region_l1_loss(image, real, region)), 4)
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--data", required=True)
    parser.add_argument("--episodes", type=int, default=4, help="per clip and kind")
    args = parser.parse_args()
    torch.manual_seed(0)
    for row in measure(args.checkpoint, args.data, args.episodes):
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
