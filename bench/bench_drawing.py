"""Benchmark landmark rasterization on one core. Prints one JSON object.

    python bench/bench_drawing.py

Draws real-shaped landmarks (dlib's landmarks of scikit-image's astronaut, jittered per image) at
several resolutions, single-threaded.
"""

from __future__ import annotations

import json
import os
import platform
import time

import cv2
import numpy as np

from talkinghead.face.drawing import draw_landmarks


def main() -> None:
    from skimage import data

    from talkinghead.face.landmarks import DlibLandmarker
    from talkinghead.face.tracking import FaceTracker

    cv2.setNumThreads(1)
    face = FaceTracker(DlibLandmarker())(data.astronaut())
    low, high = face.min(0), face.max(0)
    side = (high - low).max() * 1.8
    crop = (face - ((low + high) / 2 - side / 2)) * (256 / side)  # in a 256 px crop
    rng = np.random.default_rng(0)
    batch = crop[None] + rng.normal(0, 2, (256, 68, 2)).astype(np.float32)
    result = {"benchmark": "drawing", "machine": f"{platform.machine()}, {os.cpu_count()} cores", "threads": 1}
    for size in (64, 128, 256, 512):
        out = np.zeros((size, size, 3), np.uint8)
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < 2.0:
            for landmarks in batch:
                draw_landmarks(landmarks, size, source_size=256, out=out)
            count += len(batch)
        result[f"images_per_second_{size}px"] = round(count / (time.perf_counter() - start))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
