"""Where the warp falls short: the mouth. LPIPS and L1 in the mouth box, and how much of it the
model synthesises, for the model (feed-forward) against the `warp` baseline. Prints JSON.

    python scripts/mouth_region.py --model MODEL --data data/shared128/validation [--shots 1] [--targets 8]

Per target the box is the target's mouth landmarks (48-67) padded by 30 % a side, cut from the
real, the model's and the warp's frames and compared at 64 px. `open` counts targets whose inner
lips are apart by more than 0.1 outer-eye-corner distances, where the warp can only stretch lips
(the inside of the mouth is in no shot with the mouth closed). `synthesised` is the mean of
1 - blend mask in the box and outside it (0: every pixel moved from the shots).
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
import torch.nn.functional as F


def mouth_boxes(landmarks: np.ndarray, size: int, pad: float = 0.3) -> np.ndarray:
    """`[N, 4]` (x0, y0, x1, y1) integer boxes around `[N, 68, 2]` landmarks' mouths."""
    mouth = landmarks[:, 48:68]
    low, high = mouth.min(1), mouth.max(1)
    margin = (high - low).max(1, keepdims=True) * pad
    low, high = np.floor(low - margin).clip(0, size - 1), np.ceil(high + margin).clip(1, size)
    return np.concatenate([low, high], 1).astype(int)


def crops(frames: np.ndarray, boxes: np.ndarray) -> torch.Tensor:
    """`[N, 3, 64, 64]` in [-1, 1]: each frame's box, resized."""
    from talkinghead.media.images import to_tensor

    out = []
    for frame, (x0, y0, x1, y1) in zip(frames, boxes):
        piece = to_tensor(np.ascontiguousarray(frame[y0:y1, x0:x1])[None])
        out.append(F.interpolate(piece, size=(64, 64), mode="bilinear", align_corners=False, antialias=True))
    return torch.cat(out)


def main() -> None:
    from talkinghead.checkpoint import load_model
    from talkinghead.data.dataset import FaceDataset
    from talkinghead.evaluation.evaluate import _nearest_shots, load_split, warp_to
    from talkinghead.evaluation.metrics import LPIPS
    from talkinghead.inference.fitting import FitOptions, fit_shots
    from talkinghead.inference.motion import mouth_opening
    from talkinghead.media.images import to_uint8

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--shots", type=int, default=1)
    parser.add_argument("--targets", type=int, default=8)
    args = parser.parse_args()
    model, data, lpips = load_model(args.model), FaceDataset(args.data), LPIPS()
    size = model.resolution
    rows = {k: [] for k in ("lpips_model", "lpips_warp", "l1_model", "l1_warp", "open", "synth_in", "synth_out")}
    for clip in range(len(data)):
        split = load_split(data, clip, args.shots, args.targets, size)
        if split is None:
            continue
        shots, shot_lm, targets, target_lm = split
        avatar = fit_shots(model, shots, shot_lm, FitOptions())
        inputs = avatar.generator_inputs(target_lm)
        with torch.no_grad():
            output = avatar.generator.eval()(inputs, avatar.psi.expand(len(inputs), -1))
        frames, mask = output.frame, output.blend_mask
        made = to_uint8(frames)
        nearest = _nearest_shots(shot_lm, target_lm)
        warped = warp_to(shots[nearest], shot_lm[nearest].astype(np.float32), target_lm.astype(np.float32))
        boxes = mouth_boxes(target_lm, size)
        real = crops(targets, boxes)
        for name, frames in (("model", made), ("warp", warped)):
            fake = crops(frames, boxes)
            rows[f"lpips_{name}"] += lpips(real, fake).tolist()
            rows[f"l1_{name}"] += (real - fake).abs().mean((1, 2, 3)).tolist()
        synthesised = 1 - mask[:, 0]  # [N, S, S]
        inside = torch.zeros_like(synthesised, dtype=torch.bool)
        for i, (x0, y0, x1, y1) in enumerate(boxes):
            inside[i, y0:y1, x0:x1] = True
        rows["synth_in"] += [synthesised[i][inside[i]].mean().item() for i in range(len(boxes))]
        rows["synth_out"] += [synthesised[i][~inside[i]].mean().item() for i in range(len(boxes))]
        rows["open"] += (mouth_opening(target_lm) > 0.1).tolist()
    r = {k: np.asarray(v, np.float64) for k, v in rows.items()}
    opened = r["open"].astype(bool)
    summary = {"model": args.model, "shots": args.shots, "targets": len(opened), "open_targets": int(opened.sum())}
    for key in ("lpips_model", "lpips_warp", "l1_model", "l1_warp", "synth_in", "synth_out"):
        summary[key] = round(float(r[key].mean()), 5)
        summary[key + "_open"] = round(float(r[key][opened].mean()), 5) if opened.any() else None
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
