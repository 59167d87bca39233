"""README figure for the mouth: portraits driven by a talking video at the frame where the driver's
mouth is widest, the lower face cropped at full size, the warp's mouth (a model without a mouth)
beside the mouth generators' (models with one), one column a model.

    python scripts/make_mouth_figure.py --driving VIDEO --before MODEL --after MODEL [MODEL ...] \\
        [--labels LABEL ...] [--portraits P.jpg ...] [--seconds 8] [--out docs/images/mouth.png]

The astronaut (scikit-image) is always the first portrait.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw


def lower_face(avatar, frame: np.ndarray, height: int = 200) -> np.ndarray:
    """The portrait's lower face (nose to chin, cheek to cheek) in `frame`, resized to `height`."""
    from talkinghead.face.crop import to_frame

    points = to_frame(avatar.shot_landmarks[0], avatar.portrait_box, avatar.size)
    x0, x1 = points[[2, 14], 0]
    y0, y1 = points[29, 1], points[8, 1] + 0.1 * (points[8, 1] - points[29, 1])
    crop = frame[max(int(y0), 0) : int(y1), max(int(x0), 0) : int(x1)]
    width = round(crop.shape[1] * height / crop.shape[0])
    return np.asarray(Image.fromarray(crop).resize((width, height), Image.LANCZOS))


def main() -> None:
    from skimage import data

    from talkinghead.face.mouth import lip_gap
    from talkinghead.face.points import from_unit
    from talkinghead.inference.motion import Motion
    from talkinghead.media.video import VideoReader
    from talkinghead.stages import animate

    root = Path(__file__).resolve().parents[1]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--driving", type=Path, required=True)
    parser.add_argument("--before", required=True, help="model file without a mouth (the warp's mouth)")
    parser.add_argument("--after", required=True, nargs="+", help="model files with a mouth")
    parser.add_argument("--labels", nargs="+", help="one a model after the first column (default: mouth generator)")
    parser.add_argument("--portraits", type=Path, nargs="*", default=[])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--out", type=Path, default=root / "docs" / "images" / "mouth.png")
    args = parser.parse_args()
    motion = Motion.from_video(args.driving).trimmed(0, args.seconds)
    widest = int(np.argmax(lip_gap(from_unit(motion.landmarks.astype(np.float64), 512))))
    rows, labels = [], []
    with tempfile.TemporaryDirectory() as folder:
        template = Path(folder) / "motion.npz"
        motion.save(template)
        astronaut = Path(folder) / "astronaut.png"
        Image.fromarray(np.ascontiguousarray(data.astronaut())).save(astronaut)
        for portrait in [astronaut, *args.portraits]:
            panels = []
            for model in (args.before, *args.after):
                video = Path(folder) / "out.mp4"
                report = animate(source=[portrait], driving=template, model=model, out=video, layout="paste",
                                 size=512, mode="relative", progress=False)  # fmt: skip
                with VideoReader(video) as reader:
                    frame = next(rgb for n, _, rgb in reader if n == widest)
                panels.append(lower_face(report.avatar, frame))
            rows.append(np.concatenate(panels, axis=1))
            labels.append(panels[0].shape[1])
    width = max(r.shape[1] for r in rows)
    figure = Image.fromarray(np.concatenate([np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0))) for r in rows]))
    draw = ImageDraw.Draw(figure)
    names = ["warp's mouth", *(args.labels or ["mouth generator"] * len(args.after))]
    for i, step in enumerate(labels):
        for x, label in zip(range(0, step * len(names), step), names):
            draw.rectangle([x, i * 200, x + 7 * len(label) + 6, i * 200 + 14], fill=(0, 0, 0))
            draw.text((x + 3, i * 200 + 2), label, fill=(255, 255, 255))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    figure.save(args.out, optimize=True)
    print(f"{args.out}: {figure.size[0]} x {figure.size[1]}, driving frame {widest}")


if __name__ == "__main__":
    main()
