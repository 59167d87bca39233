"""Make docs/images/animation.gif: scikit-image's astronaut driven by the bundled motion.

    python scripts/make_readme_figure.py

Each frame: the driving landmarks retargeted onto her face (relative mode) | the generated face,
from the bundled model. Kept under 1 MB.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from talkinghead.inference.animate import default_motion_path, render
from talkinghead.inference.fitting import FitOptions, fit_avatar
from talkinghead.inference.motion import Motion

OUT = Path(__file__).resolve().parents[1] / "docs" / "images" / "animation.gif"
STEPS = 0  # feed-forward, as in the README's first command


def main() -> None:
    from skimage import data

    avatar = fit_avatar([data.astronaut()], options=FitOptions(steps=STEPS))
    motion = Motion.load(default_motion_path())
    step = 3  # 10 frames/s is plenty for a GIF and keeps it under 1 MB
    frames = list(render(avatar, motion, layout="side"))[::step]
    scale = max(1, 128 // avatar.size)
    images = [Image.fromarray(np.kron(f, np.ones((scale, scale, 1), np.uint8))) for f in frames]
    images[0].save(
        OUT, save_all=True, append_images=images[1:], duration=int(1000 * step / motion.fps), loop=0, optimize=True
    )
    print(OUT, f"{OUT.stat().st_size / 1024:.0f} kB")


if __name__ == "__main__":
    main()
