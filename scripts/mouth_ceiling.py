"""How far a mouth generator that only paints the inner mouth could go: the real target pasted into
the model's (and the `warp` baseline's) frames inside the driving inner lips grown by 0, 0.08 (the
region the mouth generator paints) and 0.2 mouth widths, and inside the outer lips grown by 0.08
(feathered as the renderer pastes), scored by `evaluate`'s mouth-box LPIPS on open and closed
targets (T = 1, 8 targets a clip, the mean over all targets). A perfect generator would reach the
row of its region; the rows above it say how much of the gap to the real mouth lies outside it.

    python scripts/mouth_ceiling.py MODEL --data data/shared256/validation [--methods ff warp]
"""

from __future__ import annotations

import argparse
import json

import cv2
import numpy as np


def region(points: np.ndarray, size: int, grow: float, part: list[int]) -> np.ndarray:
    """`[size, size, 1]` float32: the polygon of `points[part]` grown by `grow` mouth widths and
    feathered over 0.06 (face/mouth.py `inner_mouth_mask`, in frame pixels)."""
    from talkinghead.face.mouth import FEATHER

    width = np.linalg.norm(points[54] - points[48])
    canvas = np.zeros((size, size), np.uint8)
    cv2.fillPoly(canvas, [np.round(points[part] * 16).astype(np.int32)], 255, cv2.LINE_AA, shift=4)
    if grow > 0:
        pixels = max(1, round(grow * width))
        canvas = cv2.dilate(canvas, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * pixels + 1,) * 2))
    return cv2.GaussianBlur(canvas.astype(np.float32) / 255, (0, 0), max(0.5, FEATHER * width / 2))[..., None]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--data", required=True)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--methods", nargs="+", default=["ff", "warp"])
    args = parser.parse_args()

    import torch

    from talkinghead.data import FaceDataset
    from talkinghead.evaluation.evaluate import EvalOptions, Evaluator, load_split
    from talkinghead.evaluation.mouth import mouth_crops
    from talkinghead.face.mouth import INNER_LIPS, OPEN, OUTER_LIPS, lip_gap, mouth_boxes

    torch.set_num_threads(2)
    S = args.size
    evaluator = Evaluator(args.model, EvalOptions(shots=(1,), methods=tuple(args.methods), targets=8, size=S))
    data = FaceDataset(args.data)
    pastes = {"as made": None, "inner +0": (0.0, INNER_LIPS), "inner +0.08": (0.08, INNER_LIPS),
              "inner +0.2": (0.2, INNER_LIPS), "outer +0.08": (0.08, OUTER_LIPS)}  # fmt: skip
    rows: dict[tuple[str, str], list[np.ndarray]] = {}
    opened_all = []
    for clip in range(len(data)):
        split = load_split(data, clip, 1, 8, S)
        if split is None:
            continue
        shots, shot_lm, targets, target_lm = split
        boxes = mouth_boxes(target_lm, S)
        opened_all.append(lip_gap(target_lm) > OPEN)
        real = mouth_crops(targets, boxes)
        for method in args.methods:
            frames, _ = evaluator.generate(method, shots, shot_lm, target_lm)
            for name, paste in pastes.items():
                if paste is not None:
                    masks = [region(p, S, *paste) for p in target_lm]
                    frames_in = np.stack([(f * (1 - m) + r * m).round() for f, r, m in zip(frames, targets, masks)])
                else:
                    frames_in = frames
                made = mouth_crops(frames_in.astype(np.uint8), boxes)
                rows.setdefault((method, name), []).append(evaluator.lpips(real, made).numpy())
    opened = np.concatenate(opened_all)
    for (method, name), parts in rows.items():
        distance = np.concatenate(parts)
        print(json.dumps({"method": method, "real mouth pasted": name, "open": round(float(distance[opened].mean()), 4),
                          "closed": round(float(distance[~opened].mean()), 4), "targets": [int(opened.sum()),
                          int((~opened).sum())]}))  # fmt: skip


if __name__ == "__main__":
    main()
