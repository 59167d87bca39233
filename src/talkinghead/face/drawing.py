"""Landmark images: 68 points drawn as coloured polylines on black, as in the paper (Fig. 2).

Each facial part gets its own colour so the generator can tell them apart. Drawing happens where
the image is consumed (data loading, animation), from raw coordinates, so resolution and line
width stay choices rather than being baked into the data set.
"""

from __future__ import annotations

import cv2
import numpy as np

from talkinghead.face.points import rescale_points

# (name, point indices in the iBUG 68-point markup, closed, RGB colour)
PARTS: tuple[tuple[str, tuple[int, ...], bool, tuple[int, int, int]], ...] = (
    ("jaw", tuple(range(0, 17)), False, (255, 255, 255)),
    ("right_brow", tuple(range(17, 22)), False, (255, 128, 0)),
    ("left_brow", tuple(range(22, 27)), False, (255, 200, 0)),
    ("nose_bridge", tuple(range(27, 31)), False, (0, 128, 255)),
    ("nostrils", (30, 31, 32, 33, 34, 35, 30), False, (0, 220, 255)),
    ("right_eye", tuple(range(36, 42)), True, (0, 255, 0)),
    ("left_eye", tuple(range(42, 48)), True, (160, 255, 0)),
    ("outer_lip", tuple(range(48, 60)), True, (255, 0, 64)),
    ("inner_lip", tuple(range(60, 68)), True, (255, 0, 255)),
)

_SHIFT = 4  # sub-pixel bits for cv2's fixed-point coordinates: 1/16 pixel precision


def draw_landmarks(
    landmarks: np.ndarray,
    size: int | tuple[int, int],
    *,
    source_size: float | None = None,
    thickness: int | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Rasterize one face's landmarks.

    Args:
        landmarks: `[68, 2]` x, y in pixels of an image `source_size` wide (default: `size`).
        size: output side (square) or (height, width).
        source_size: side of the image the coordinates refer to; they are scaled by
            `size / source_size`, so crop coordinates can be drawn at any resolution.
        thickness: line width in output pixels (default: 1 px per 128 px of output, at least 1).
        out: optional `[H, W, 3] uint8` array to draw into (it is cleared first).

    Returns:
        `[H, W, 3] uint8` RGB image: anti-aliased coloured lines on black.
    """
    height, width = (size, size) if isinstance(size, int) else size
    if out is None:
        out = np.zeros((height, width, 3), np.uint8)
    else:
        out[...] = 0
    if thickness is None:
        thickness = max(1, round(max(height, width) / 128))
    points = np.asarray(landmarks, np.float64)
    if source_size is not None:
        points = rescale_points(points, source_size, max(height, width))
    fixed = np.round(points * (1 << _SHIFT)).astype(np.int32)
    for _, index, closed, colour in PARTS:
        cv2.polylines(out, [fixed[list(index)]], closed, colour, thickness, cv2.LINE_AA, _SHIFT)
    return out


def draw_batch(
    landmarks: np.ndarray, size: int, *, source_size: float | None = None, thickness: int | None = None
) -> np.ndarray:
    """`[N, 68, 2]` landmarks -> `[N, size, size, 3] uint8` landmark images (see `draw_landmarks`)."""
    out = np.zeros((len(landmarks), size, size, 3), np.uint8)
    for points, image in zip(landmarks, out):
        draw_landmarks(points, size, source_size=source_size, thickness=thickness, out=image)
    return out
