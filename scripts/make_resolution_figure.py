"""README figure: the photo's face, the 128 px path's output and the output at the portrait's own
resolution, cropped side by side at full size (no scaling), from the README's own command.

    python scripts/make_resolution_figure.py [--out docs/images/resolution.png] [--frame 100]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw


def main() -> None:
    from skimage import data

    from talkinghead.media.video import VideoReader
    from talkinghead.stages import animate

    root = Path(__file__).resolve().parents[1]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=root / "docs" / "images" / "resolution.png")
    parser.add_argument("--frame", type=int, default=100, help="frame of the bundled motion (default: 100)")
    args = parser.parse_args()
    rows, columns = slice(20, 236), slice(110, 326)  # her head and shoulders in the 512 px photo
    photo = np.ascontiguousarray(data.astronaut())
    panels, labels = [photo[rows, columns]], ["the photo"]
    with tempfile.TemporaryDirectory() as folder:
        Image.fromarray(photo).save(Path(folder) / "astronaut.png")
        for size, label in ((128, "before: the 128 px crop, enlarged"), (512, "now: her own pixels, moved")):
            video = Path(folder) / f"{size}.mp4"
            animate(source=[Path(folder) / "astronaut.png"], out=video, layout="paste", size=size, progress=False)
            with VideoReader(video) as reader:
                frame = next(rgb for n, _, rgb in reader if n == args.frame)
            panels.append(frame[rows, columns])
            labels.append(label)
    figure = Image.fromarray(np.concatenate(panels, axis=1))
    draw = ImageDraw.Draw(figure)
    width = panels[0].shape[1]
    for i, label in enumerate(labels):
        draw.rectangle([i * width, 0, i * width + 7 * len(label) + 6, 14], fill=(0, 0, 0))
        draw.text((i * width + 3, 2), label, fill=(255, 255, 255))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    figure.save(args.out, optimize=True)
    print(f"{args.out}: {figure.size[0]} x {figure.size[1]}")


if __name__ == "__main__":
    main()
