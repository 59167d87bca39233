"""Two models side by side: portraits driven by validation people's landmarks (relative motion).

python scripts/make_comparison_figure.py --old OLD.safetensors --new NEW.safetensors \
    --portraits astronaut ../shared/data/portraits/mona_lisa_1.jpg \
    --data data/shared128/validation --clips 2 7 --steps 40 --out docs/images/warp-vs-paper.png

One block per portrait and driver: the driver's landmarks as retargeted onto the portrait, then a
row per model, at a few moments of the clip. Only generated frames and drawn landmarks (and the
scikit-image astronaut, `astronaut`, as its own source): no pixels of the data set or crops of
the shared portraits.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from talkinghead.checkpoint import load_model
from talkinghead.data import FaceDataset
from talkinghead.face.drawing import draw_batch
from talkinghead.face.points import to_unit
from talkinghead.inference.fitting import FitOptions, fit_avatar
from talkinghead.inference.motion import Motion


def _portrait(name: str) -> np.ndarray | str:
    if name == "astronaut":
        from skimage import data

        return np.ascontiguousarray(data.astronaut())
    return name


def _label(image: np.ndarray, text: str) -> np.ndarray:
    canvas = Image.fromarray(image)
    ImageDraw.Draw(canvas).text((3, 2), text, fill=(255, 255, 0))
    return np.asarray(canvas)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", required=True, type=Path)
    parser.add_argument("--new", required=True, type=Path)
    parser.add_argument("--names", nargs=2, default=["paper generator (old)", "warp generator (new)"])
    parser.add_argument("--portraits", nargs="+", required=True)
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--clips", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--moments", type=int, default=5)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args()
    models = [load_model(args.old), load_model(args.new)]
    data = FaceDataset(args.data)
    blocks = []
    for portrait in args.portraits:
        avatars = [fit_avatar([_portrait(portrait)], model=m, options=FitOptions(steps=args.steps)) for m in models]
        for clip in args.clips:
            landmarks = data.landmarks(clip)
            motion = Motion(to_unit(landmarks, data.meta(clip)["crop_size"]), 25.0, np.ones(len(landmarks), bool))
            picks = np.linspace(0, len(landmarks) - 1, args.moments).round().astype(int)
            rows = []
            for n, avatar in enumerate(avatars):
                driving = motion.retarget(avatar.shot_landmarks[0], avatar.size, mode="relative")[picks]
                if n == 0:
                    drawn = draw_batch(driving, avatar.size)
                    # Only a PyPI test photo is shown as it is: crops of shared media are never committed.
                    shown = avatar.shots[0] if portrait == "astronaut" else np.zeros_like(avatar.shots[0])
                    rows.append(np.concatenate([_label(shown, f"source: {Path(portrait).stem}"), *drawn], axis=1))
                frames = list(avatar.generate(driving))
                rows.append(np.concatenate([_label(np.zeros_like(frames[0]), args.names[n]), *frames], axis=1))
            blocks.append(np.concatenate(rows))
    grid = np.concatenate(blocks)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).save(args.out, optimize=True)
    print(f"{args.out}: {grid.shape[1]}x{grid.shape[0]}")


if __name__ == "__main__":
    main()
