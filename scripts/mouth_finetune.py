"""The mouth's fine-tuning alone, scored as `talkinghead evaluate` scores it: on the validation
split's shots and targets (`evaluate`'s split, T shots, 8 targets a clip), the face rendered
feed-forward once per clip, then the mouth fitted with each number of steps and pasted, and the
mouth box's LPIPS (all, open and closed targets; the mean over clips, as `evaluate` averages).

`evaluate --methods ff ft` fine-tunes the face too (about 60 s a clip here), which moves the mouth
box by less than 1e-4 (docs/training.md, "Fine-tuning on near and far pairs"); this isolates the
mouth's part in a third of the time.

    python scripts/mouth_finetune.py MODEL --data data/shared256/validation [--shots 8] [--clips 8]
        [--steps 0 100]
"""

from __future__ import annotations

import argparse
import json

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--data", required=True)
    parser.add_argument("--shots", type=int, default=8)
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, nargs="+", default=[0, 100])
    args = parser.parse_args()

    import torch

    from talkinghead.data import FaceDataset
    from talkinghead.evaluation.evaluate import EvalOptions, Evaluator, _resized, load_split
    from talkinghead.evaluation.mouth import mouth_crops
    from talkinghead.face.mouth import OPEN, lip_gap, mouth_boxes
    from talkinghead.face.points import rescale_points
    from talkinghead.inference.fitting import FitOptions, fit_shots
    from talkinghead.inference.mouth import fit_mouth
    from talkinghead.media.images import to_tensor, to_uint8

    torch.set_num_threads(2)
    evaluator = Evaluator(args.model, EvalOptions(shots=(args.shots,), methods=("ff",), targets=8, size=args.size))
    model, R, S = evaluator.model, evaluator.resolution, args.size
    data = FaceDataset(args.data)
    scores: dict[int, list[tuple[float, float, float]]] = {steps: [] for steps in args.steps}
    for clip in range(min(args.clips, len(data))):
        split = load_split(data, clip, args.shots, 8, S)
        if split is None:
            continue
        shots, shot_lm, targets, target_lm = split
        avatar = fit_shots(model, _resized(shots, R), rescale_points(shot_lm, S, R).astype(np.float32),
                           FitOptions(mouth=False), detail=shots)  # fmt: skip
        frames = to_tensor(np.stack(list(avatar.generate(rescale_points(target_lm, S, R).astype(np.float32)))))
        boxes, opened = mouth_boxes(target_lm, S), lip_gap(target_lm) > OPEN
        real = mouth_crops(targets, boxes)
        for steps in args.steps:
            mouth, notes = fit_mouth(model.mouth_for(shot_lm), shots, shot_lm, steps=steps)
            avatar.mouth = mouth  # made as `Avatar.render` makes it (the lips parted when it parts them)
            made = to_uint8(avatar.make_mouth(frames, target_lm.astype(np.float64)))
            distance = evaluator.lpips(real, mouth_crops(made, boxes)).numpy()
            part = [distance[m].mean() if m.any() else np.nan for m in (np.ones_like(opened), opened, ~opened)]
            scores[steps].append(tuple(part))
            print(json.dumps({"clip": clip, "steps": steps, "mouth_lpips": round(float(part[0]), 5), "notes": notes}))
    for steps, rows in scores.items():
        mean = np.nanmean(np.array(rows, np.float64), axis=0)
        print(json.dumps({"steps": steps, "clips": len(rows), "mouth_lpips": round(mean[0], 5),
                          "open": round(mean[1], 5), "closed": round(mean[2], 5)}))  # fmt: skip


if __name__ == "__main__":
    main()
