"""Make docs/images/prepare-example.png: scikit-image's astronaut through `prepare`.

python scripts/make_prepare_figure.py
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from talkinghead.data import FaceDataset
from talkinghead.data.prepare import PrepareOptions, prepare
from talkinghead.face.drawing import draw_landmarks

OUT = Path(__file__).resolve().parents[1] / "docs" / "images" / "prepare-example.png"


def main() -> None:
    from skimage import data

    with tempfile.TemporaryDirectory() as tmp:
        Image.fromarray(data.astronaut()).save(Path(tmp) / "astronaut.png")
        prepare([Path(tmp) / "astronaut.png"], Path(tmp) / "ds", PrepareOptions(crop_size=256), progress=False)
        dataset = FaceDataset(Path(tmp) / "ds")
        crop, landmarks = dataset.frame(0, 0), dataset.landmarks(0)[0]
    drawn = draw_landmarks(landmarks, 256)
    overlay = np.where(drawn.max(axis=2, keepdims=True) > 0, drawn, crop // 2)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate([crop, drawn, overlay], axis=1)).save(OUT, optimize=True)
    print(OUT)


if __name__ == "__main__":
    main()
