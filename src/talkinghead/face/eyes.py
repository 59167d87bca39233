"""Eye geometry on 68-point landmarks (36-41 the right eye, 42-47 the left, each from the outer
corner clockwise): how open the eyes are, for the blink measure of `scripts/mouth_opening.py
--part eyes` (issue 32's question of what the mouth's machinery would take for the eyes)."""

from __future__ import annotations

import numpy as np

EYES = (list(range(36, 42)), list(range(42, 48)))


def eye_opening(landmarks: np.ndarray) -> np.ndarray:
    """`[...]`: the eyes' aspect ratio (Soukupova and Cech's EAR), the mean over both eyes of the
    two lid-to-lid distances (p2-p6, p3-p5) over twice the corner-to-corner one (p1-p4): about 0.3
    open, under 0.15 closed in a blink."""
    ratios = []
    for eye in EYES:
        p = landmarks[..., eye, :]
        lids = np.linalg.norm(p[..., 1, :] - p[..., 5, :], axis=-1) + np.linalg.norm(
            p[..., 2, :] - p[..., 4, :], axis=-1
        )
        width = np.linalg.norm(p[..., 0, :] - p[..., 3, :], axis=-1)
        ratios.append(lids / np.maximum(2 * width, 1.0))
    return (ratios[0] + ratios[1]) / 2
