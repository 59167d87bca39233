"""How far a mouth generator that only paints the inner mouth could go: the real target pasted into
the model's (and the `warp` baseline's) frames inside the driving inner lips grown by 0, 0.08 (the
region the mouth generator paints) and 0.2 mouth widths, and inside the outer lips grown by 0.08
(feathered as the renderer pastes), scored by `evaluate`'s mouth-box LPIPS on open and closed
targets (T = 1, 8 targets a clip, the mean over all targets). A perfect generator would reach the
row of its region; the rows above it say how much of the gap to the real mouth lies outside it.

`--donors` adds two rows that ask what a real inside *of the right shape*, but from another moment
or another person, would score: for each target, the real frame whose lips
(landmarks 48-67 in the mouth's own frame, corners at (-1, 0) and (1, 0)) are closest in shape,
warped to the target's landmarks (the `warp` baseline's spline) and pasted in the generator's
region (inner lips + 0.08). The frame is taken from the same clip at least `--gap` frames
from the target (the person's own mouth, another moment), or from the other people of the split
(or of `--pool`, another prepared data set such as the training split).

    python scripts/mouth_ceiling.py MODEL --data data/shared256/validation [--methods ff warp]
        [--donors [--pool DATA] [--gap FRAMES] [--min-frames N]]
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable

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


def lip_shape(landmarks: np.ndarray) -> np.ndarray:
    """`[N, 68, 2]` -> `[N, 20, 2]`: the lips (48-67) moved, turned and scaled so that the mouth's
    corners (48, 54) land on (-1, 0) and (1, 0); y points down, as in the image."""
    left, right = landmarks[:, 48], landmarks[:, 54]
    axis = right - left
    half = np.linalg.norm(axis, axis=-1, keepdims=True) / 2
    u = axis / (2 * half)
    v = np.stack([-u[:, 1], u[:, 0]], -1)
    lips = landmarks[:, 48:68] - ((left + right) / 2)[:, None]
    return np.stack([(lips * u[:, None]).sum(-1), (lips * v[:, None]).sum(-1)], -1) / half[:, None]


def nearest_lips(pool: np.ndarray, wanted: np.ndarray, skip: tuple[int, int] | None = None) -> tuple[int, float]:
    """(index, mean point distance) of the `[M, 20, 2]` lip shape in `pool` closest to `wanted`
    `[20, 2]`, leaving out `pool[skip[0]:skip[1]]`; ValueError when that leaves nothing."""
    distance = np.linalg.norm(pool - wanted, axis=-1).mean(-1)
    if skip is not None:
        distance[max(0, skip[0]) : max(0, skip[1])] = np.inf
    index = int(distance.argmin())
    if not np.isfinite(distance[index]):
        raise ValueError(f"no lip shape left among {len(pool)} outside frames {max(0, skip[0])}..{skip[1] - 1}")
    return index, float(distance[index])


def donors(data, pool, size: int, gap: int) -> dict[str, Callable]:
    """Per kind of donor, `pick(clip, target_index, target_shapes) -> [(data set, clip, frame)]`:
    the same clip of `data`, or the other people's clips of `pool` (a data set, `data` itself or
    another split)."""
    from talkinghead.face.points import rescale_points

    def lips_of(dataset):
        return {
            c: lip_shape(rescale_points(dataset.landmarks(c), dataset.meta(c)["crop_size"], size))
            for c in range(len(dataset))
        }

    own = lips_of(data)
    others = own if pool is data else lips_of(pool)
    pool_identity = {c: pool.meta(c)["identity"] for c in others}

    def same_person(clip, index, wanted):
        return [(data, clip, nearest_lips(own[clip], w, (i - gap + 1, i + gap))[0]) for i, w in zip(index, wanted)]

    def other_people(clip, index, wanted):
        person, picks = data.meta(clip)["identity"], []
        for w in wanted:
            found = [(nearest_lips(lips, w), c) for c, lips in others.items() if pool_identity[c] != person]
            (frame, _), c = min(found, key=lambda f: f[0][1])
            picks.append((pool, c, frame))
        return picks

    return {"same person, nearest lips": same_person, "other people, nearest lips": other_people}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--data", required=True)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--methods", nargs="+", default=["ff", "warp"])
    parser.add_argument("--donors", action="store_true", help="add the rows of real insides of the nearest shape")
    parser.add_argument("--gap", type=int, default=25, help="same-person donors: frames away from the target")
    parser.add_argument("--pool", help="other people's donors from this data set (default: --data's other people)")
    parser.add_argument("--min-frames", type=int, default=0, help="only clips this long (a large --gap needs them)")
    args = parser.parse_args()

    import torch

    from talkinghead.data import FaceDataset
    from talkinghead.evaluation.evaluate import EvalOptions, Evaluator, _resized, load_split, split_clip, warp_to
    from talkinghead.evaluation.mouth import mouth_crops
    from talkinghead.face.mouth import INNER_LIPS, OPEN, OUTER_LIPS, lip_gap, mouth_boxes
    from talkinghead.face.points import rescale_points

    torch.set_num_threads(2)
    S = args.size
    evaluator = Evaluator(args.model, EvalOptions(shots=(1,), methods=tuple(args.methods), targets=8, size=S))
    data = FaceDataset(args.data)
    pastes = {"as made": None, "inner +0": (0.0, INNER_LIPS), "inner +0.08": (0.08, INNER_LIPS),
              "inner +0.2": (0.2, INNER_LIPS), "outer +0.08": (0.08, OUTER_LIPS)}  # fmt: skip
    rows: dict[tuple[str, str], list[np.ndarray]] = {}
    opened_all = []
    clips = [
        c for c in range(len(data)) if data.num_frames(c) >= args.min_frames and split_clip(data.num_frames(c), 1, 8)
    ]
    pool = FaceDataset(args.pool) if args.pool else data
    pickers = donors(data, pool, S, args.gap) if args.donors else {}
    for clip in clips:
        shots, shot_lm, targets, target_lm = load_split(data, clip, 1, 8, S)
        boxes = mouth_boxes(target_lm, S)
        opened_all.append(lip_gap(target_lm) > OPEN)
        real = mouth_crops(targets, boxes)
        insides = {name: (targets, paste) for name, paste in pastes.items()}
        target_index, wanted = split_clip(data.num_frames(clip), 1, 8)[1], lip_shape(target_lm)
        for name, pick in pickers.items():
            try:
                chosen = pick(clip, target_index, wanted)
            except ValueError as error:
                parser.error(f"clip {clip} ({data.num_frames(clip)} frames) is too short for --gap {args.gap}: {error}")
            frames = np.stack([_resized(d.frame(c, i)[None], S)[0] for d, c, i in chosen])  # clips' sizes differ
            points = np.stack([rescale_points(d.landmarks(c)[i], d.meta(c)["crop_size"], S) for d, c, i in chosen])
            insides[name] = (
                warp_to(frames, points.astype(np.float32), target_lm.astype(np.float32)),
                (0.08, INNER_LIPS),
            )
        for method in args.methods:
            frames, _ = evaluator.generate(method, shots, shot_lm, target_lm)
            for name, (inside, paste) in insides.items():
                if paste is not None:
                    masks = [region(p, S, *paste) for p in target_lm]
                    frames_in = np.stack([(f * (1 - m) + r * m).round() for f, r, m in zip(frames, inside, masks)])
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
