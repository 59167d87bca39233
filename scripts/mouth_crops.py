"""A quick held-out check of a mouth checkpoint on mouth-aligned crops, before the full `evaluate`:
episodes of a data set of people it never saw (`MouthEpisodes`, fixed seed), the generator's mouth
(feed-forward, psi = P e-hat of the K shots) against what the renderer gives without it (the nearest
shot warped to the target's lips, parted for a mouth trained on parted lips: both modes take the
mouth's own settings). Prints one JSON object per target kind: `open` (open targets
with the clip's most closed frames as shots: the mouth must be invented) and `any` (targets and
shots drawn at random), with LPIPS of the whole 64 px crop and L1 inside the inner mouth (grown and
feathered as pasted), both against the real crop.

With `--shots T`, the few-shot stage instead (`fit_mouth`, as `fit` runs it): per clip, T shots
from its first part and 8 targets from the rest (`evaluate`'s split, at 256 px), the mouth fitted
feed-forward and fine-tuned for `--steps`, each target made from the shot with the nearest lips
warped to its lips; one JSON object with both, and the warp.

    python scripts/mouth_crops.py MOUTH --data data/shared256/validation [--episodes 4]
    python scripts/mouth_crops.py MOUTH --data data/shared256/validation --shots 8 [--steps 100]

MOUTH: a `train-mouth` checkpoint (.pt) or a model file that carries a mouth.
"""

from __future__ import annotations

import argparse
import json

import torch


def load_mouth(path: str):
    """(the `Mouth`, its step or None) of a train-mouth checkpoint or a model file."""
    from talkinghead.checkpoint import load_checkpoint, load_model
    from talkinghead.model import Mouth
    from talkinghead.models.mouth import MouthNetworks, mouth_discriminator
    from talkinghead.training.mouth import _config_from, settings_of

    if not path.endswith(".pt"):
        mouth = load_model(path).mouth
        if mouth is None:
            raise SystemExit(f"{path}: the model file has no mouth (talkinghead export MODEL --mouth CHECKPOINT)")
        return mouth, None
    state = load_checkpoint(path)
    settings = settings_of(_config_from(state["config"]))
    networks, discriminator = MouthNetworks(settings), mouth_discriminator(settings, int(state["num_videos"]))
    networks.load_state_dict(state["networks"])
    discriminator.load_state_dict(state["discriminator"])
    return Mouth(settings, networks.eval(), discriminator.eval()), int(state["step"])


@torch.no_grad()
def measure(mouth, step: int | None, data: str, episodes: int) -> list[dict]:
    from talkinghead.data import FaceDataset
    from talkinghead.data.mouth import MouthEpisodes
    from talkinghead.features.lpips import LPIPS
    from talkinghead.training.losses import region_l1_loss

    networks, s = mouth.networks, mouth.settings
    dataset, lpips, rows = FaceDataset(data), LPIPS().eval(), []
    for kind, open_targets in (("open", 1.0), ("any", 0.0)):
        # The episodes as the mouth trained on them (its region, what it hides, the lips parted or not).
        source = MouthEpisodes(
            dataset, shots=4, side=s.side, seed=1, open_targets=open_targets, closed_shots=1.0, dilate=s.dilate,
            hidden_dilate=s.hidden_dilate, parting=s.parting,
        )  # fmt: skip
        items = [source[epoch, clip] for epoch in range(episodes) for clip in range(len(dataset))]
        batch = {k: torch.stack([item[k] for item in items]) for k in items[0]}
        made, mask, _ = networks(
            batch["shots"], batch["shot_lips"], batch["warped"], batch["target_lips"], batch["target_region"],
            batch["target_hidden"],
        )  # fmt: skip
        real, region = batch["target"], batch["target_region"]
        row = {
            "kind": kind,
            "step": step,
            "targets": len(items),
            "synthesised": round(float(mask.mean()), 3),
        }
        for name, image in (("warp", batch["warped"]), ("mouth", made)):
            row[f"{name}_lpips"] = round(float(lpips(real, image).mean()), 4)
            row[f"{name}_inner_l1"] = round(float(region_l1_loss(image, real, region)), 4)
        rows.append(row)
    return rows


def few_shot(mouth, data: str, shots: int, steps: int, clips: int = 0) -> dict:
    """Feed-forward and fine-tuned mouths on each clip's later frames, and the warp."""
    import numpy as np

    from talkinghead.data import FaceDataset
    from talkinghead.data.mouth import LIPS, mouth_input
    from talkinghead.evaluation.evaluate import load_split
    from talkinghead.face.mouth import OPEN, draw_lips, hidden_share, lip_gap, region_and_hidden
    from talkinghead.features.lpips import LPIPS
    from talkinghead.inference.mouth import fit_mouth, mouth_shots
    from talkinghead.media.images import to_tensor
    from talkinghead.training.losses import region_l1_loss

    dataset, lpips, side = FaceDataset(data), LPIPS().eval(), mouth.settings.side
    scores: dict[str, list[float]] = {}
    for clip in range(min(clips or len(dataset), len(dataset))):
        split = load_split(dataset, clip, shots, 8, 256)
        if split is None:
            continue
        shot_frames, shot_points, target_frames, target_points = split
        crops, points = mouth_shots(shot_frames, shot_points, side)
        targets, goals = mouth_shots(target_frames, target_points, side)
        s = mouth.settings
        region, hidden = (
            torch.from_numpy(m)[:, None] for m in region_and_hidden(goals, side, s.dilate, s.hidden_dilate)
        )
        centred = points[:, LIPS] - points[:, LIPS].mean(1, keepdims=True)
        warped, unseen = [], []
        for goal, part in zip(goals, hidden.numpy()):
            distance = np.linalg.norm(centred - (goal[LIPS] - goal[LIPS].mean(0)), axis=-1).mean(-1)
            nearest = int(distance.argmin())
            moved, hide = mouth_input(crops[nearest], points[nearest], goal, part, s.parting)  # as trained
            warped.append(moved)
            unseen.append(hide)
        real, warped = to_tensor(targets), to_tensor(np.stack(warped))
        lips = to_tensor(np.stack([draw_lips(g, side) for g in goals]))
        if s.parting:  # what no part of the nearest shot shows, as the renderer hides it
            hidden = torch.from_numpy(np.stack(unseen))
        opened = lip_gap(goals) > OPEN
        made = {"warp": warped}
        for name, n in (("ff", 0), ("ft", steps)):
            fitted, _ = fit_mouth(mouth, shot_frames, shot_points, steps=n, seed=clip)
            with torch.no_grad():
                shown = hidden
                if not s.parting:  # as far as the target opens wider than every shot, as the renderer hides it
                    share = torch.from_numpy(hidden_share(lip_gap(goals), fitted.shot_opening)).float()
                    shown = hidden * share[:, None, None, None]
                psi = fitted.psi.expand(len(warped), -1)
                made[name] = fitted.generator(warped, lips, psi, region, shown)[0]
        for name, image in made.items():
            with torch.no_grad():
                distance = lpips(real, image).numpy()
            scores.setdefault(f"{name}_lpips", []).extend(distance)
            scores.setdefault(f"{name}_lpips_open", []).extend(distance[opened])
            scores.setdefault(f"{name}_inner_l1", []).append(float(region_l1_loss(image, real, region)))
    return {
        "shots": shots,
        "steps": steps,
        "clips": len(scores.get("warp_inner_l1", [])),
        **{k: round(float(np.mean(v)), 4) for k, v in scores.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mouth", help="train-mouth checkpoint (.pt) or a model file with a mouth")
    parser.add_argument("--data", required=True)
    parser.add_argument("--episodes", type=int, default=4, help="per clip and kind")
    parser.add_argument("--shots", type=int, help="the few-shot stage with T shots instead")
    parser.add_argument("--steps", type=int, default=100, help="fine-tuning steps with --shots")
    parser.add_argument("--clips", type=int, default=0, help="with --shots: the first N clips (0: all)")
    args = parser.parse_args()
    torch.manual_seed(0)
    mouth, step = load_mouth(args.mouth)
    if args.shots:
        print(json.dumps(few_shot(mouth, args.data, args.shots, args.steps, args.clips)), flush=True)
        return
    for row in measure(mouth, step, args.data, args.episodes):
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
