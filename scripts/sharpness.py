"""How much of a portrait's detail a talking video keeps: the variance of the Laplacian inside the
face box of each output frame, over the portrait's own (paste layout, so both are at the
portrait's resolution). Prints one JSON object per portrait and size.

    python scripts/sharpness.py PORTRAIT... [--driving VIDEO] [--sizes 128 512] [--frames 60] [--out DIR]

`--size 128` is the old path (the model's crop scaled up and pasted back). The driver's first
`--frames` frames are used; with `--out`, the videos are kept there (to look at them).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import cv2
import numpy as np


def laplacian_variance(rgb: np.ndarray) -> float:
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float64)
    return float(cv2.Laplacian(gray, cv2.CV_64F).var())


def face_box(avatar) -> tuple[slice, slice]:
    """The portrait's face (its landmarks' box) in portrait pixels."""
    from talkinghead.face.crop import to_frame

    points = to_frame(avatar.shot_landmarks[0], avatar.portrait_box, avatar.size)
    (x0, y0), (x1, y1) = np.floor(points.min(0)).astype(int), np.ceil(points.max(0)).astype(int)
    height, width = avatar.portrait.shape[:2]
    return slice(max(y0, 0), min(y1, height)), slice(max(x0, 0), min(x1, width))


def measure(portrait: Path, driving: Path | None, size: int, frames: int, out: Path) -> dict:
    from talkinghead.inference.motion import Motion
    from talkinghead.media.video import VideoReader
    from talkinghead.stages import animate

    driver = out / f"{portrait.stem}-motion.npz"
    if driving is not None and not driver.exists():
        Motion.from_video(driving).trimmed(0, frames / 25).save(driver)
    video = out / f"{portrait.stem}-{size}.mp4"
    report = animate(source=[portrait], driving=driver if driving else None, out=video, layout="paste",
                     size=size, progress=False)  # fmt: skip
    rows, columns = face_box(report.avatar)
    reference = laplacian_variance(report.avatar.portrait[rows, columns])
    with VideoReader(video) as reader:
        kept = [laplacian_variance(rgb[rows, columns]) / reference for n, _, rgb in reader if n < frames]
    return {
        "portrait": portrait.name,
        "portrait_size": list(report.avatar.portrait.shape[:2]),
        "size": size,
        "output_size": report.avatar.output_size,
        "face_box_px": [int(rows.stop - rows.start), int(columns.stop - columns.start)],
        "kept_detail": round(float(np.mean(kept)), 3),
        "frames": len(kept),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("portraits", nargs="+", type=Path)
    parser.add_argument("--driving", type=Path, help="default: the bundled motion")
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 512])
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        out = args.out or Path(scratch)
        out.mkdir(parents=True, exist_ok=True)
        for portrait in args.portraits:
            for size in args.sizes:
                print(json.dumps(measure(portrait, args.driving, size, args.frames, out)), flush=True)


if __name__ == "__main__":
    main()
