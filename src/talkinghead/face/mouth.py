"""Mouth geometry on 68-point landmarks (48-59 the outer lips, 60-67 the inner lips): how open a
mouth is, its box, and a crop aligned on it (rotation and scale normalised), for the metrics and
the mouth data."""

from __future__ import annotations

import cv2
import numpy as np

OUTER_LIPS = list(range(48, 60))
INNER_LIPS = list(range(60, 68))
OPEN = 0.1  # lip gap over mouth width above which a mouth counts as open
# In a mouth-aligned crop of side s: the mouth corners (48, 54) on a horizontal line through the
# centre, `MOUTH_WIDTH * s` apart, so a wide-open mouth and some chin and nose fit.
MOUTH_WIDTH = 0.45
# Where the mouth generator's pixels go: the inner-lip polygon grown by DILATE and feathered over
# FEATHER, in mouth widths (the renderer's paste, and the region the trainer weighs most).
DILATE, FEATHER = 0.08, 0.06


def hidden_share(target_gap, shot_gap):
    """How much of the warp inside the mouth the mouth generator must not see (`[...]` in [0, 1],
    of lip gaps as `lip_gap`): none while the target opens no wider than the shot it is warped from
    (there the warp shows the person's own teeth and lips), all from `OPEN` wider (there it shows
    closed lips stretched over the opening, which a generator that sees them copies)."""
    return np.clip((np.asarray(target_gap, np.float64) - shot_gap) / OPEN, 0.0, 1.0)


def lip_gap(landmarks: np.ndarray) -> np.ndarray:
    """`[...]`: the inner-lip gap (mean of 61-67, 62-66, 63-65) over the mouth's width (48-54):
    0 closed, 0.1 and more clearly open."""
    gap = np.linalg.norm(landmarks[..., [61, 62, 63], :] - landmarks[..., [67, 66, 65], :], axis=-1).mean(-1)
    width = np.linalg.norm(landmarks[..., 48, :] - landmarks[..., 54, :], axis=-1)
    return gap / np.maximum(width, 1.0)


def mouth_boxes(landmarks: np.ndarray, size: int, pad: float = 0.3) -> np.ndarray:
    """`[N, 4]` (x0, y0, x1, y1) integer boxes around `[N, 68, 2]` landmarks' mouths (48-67),
    padded by `pad` of the longer side, in `size` px frames."""
    mouth = landmarks[:, 48:68]
    low, high = mouth.min(1), mouth.max(1)
    margin = (high - low).max(1, keepdims=True) * pad
    low, high = np.floor(low - margin).clip(0, size - 1), np.ceil(high + margin).clip(1, size)
    return np.concatenate([low, high], 1).astype(int)


def mouth_transform(landmarks: np.ndarray, side: int) -> np.ndarray:
    """`[2, 3]` similarity (rotation, scale, shift) from frame pixels to a `side` px mouth-aligned
    crop: the corners' midpoint to the centre, the corners on a horizontal line `MOUTH_WIDTH *
    side` apart."""
    left, right = landmarks[48].astype(np.float64), landmarks[54].astype(np.float64)
    along = right - left
    scale = MOUTH_WIDTH * side / max(np.linalg.norm(along), 1e-6)
    cos, sin = along / max(np.linalg.norm(along), 1e-6)
    rotation = scale * np.array([[cos, sin], [-sin, cos]])
    centre = (side - 1) / 2
    shift = np.array([centre, centre]) - rotation @ ((left + right) / 2)
    return np.concatenate([rotation, shift[:, None]], 1)


def align_mouth(frame: np.ndarray, landmarks: np.ndarray, side: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(crop `[side, side, 3] uint8`, landmarks `[68, 2]` in crop pixels, the `[2, 3]` transform)
    of a frame's mouth, aligned by `mouth_transform` (bicubic; mirrored past the frame's edge)."""
    matrix = mouth_transform(landmarks, side)
    crop = cv2.warpAffine(frame, matrix, (side, side), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT_101)
    points = landmarks @ matrix[:, :2].T + matrix[:, 2]
    return crop, points.astype(np.float32), matrix


def draw_lips(points: np.ndarray, side: int) -> np.ndarray:
    """`[side, side, 3] uint8`: the outer lip contour in red and the inner in green, closed, and the
    inside of the inner lips filled in blue, on black (what the mouth generator reads of the driving
    mouth: the filled opening says where a mouth must be invented without the network having to
    find the inside of a 1 px contour)."""
    canvas = np.zeros((side, side, 3), np.uint8)
    thickness = max(1, round(side / 64))
    inner = np.zeros((side, side), np.uint8)
    cv2.fillPoly(inner, [np.round(points[INNER_LIPS] * 16).astype(np.int32)], 255, cv2.LINE_AA, shift=4)
    canvas[..., 2] = inner
    for part, colour in ((OUTER_LIPS, (255, 0, 0)), (INNER_LIPS, (0, 255, 0))):
        contour = np.round(points[part]).astype(np.int32)
        cv2.polylines(canvas, [contour], True, colour, thickness, lineType=cv2.LINE_AA)
    return canvas


def region_and_hidden(
    points: np.ndarray, side: int, dilate: float = DILATE, hidden_dilate: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(`[B, side, side]` region, the part of it whose warp the "region" blend may hide): the inner
    lips of `[B, 68, 2]` crop-pixel landmarks grown by `dilate` and by `hidden_dilate` (None: the
    same region) mouth widths, feathered; what the trainer, fine-tuning and the paste all use."""
    region = inner_mouth_mask(points, side, dilate)
    if hidden_dilate is None or hidden_dilate == dilate:
        return region, region
    return region, inner_mouth_mask(points, side, hidden_dilate)


def inner_mouth_mask(points: np.ndarray, side: int, dilate: float = DILATE, feather: float = FEATHER) -> np.ndarray:
    """`[B, side, side]` float32 in [0, 1]: the inner-lip polygon of `[B, 68, 2]` crop-pixel
    landmarks of mouth-aligned crops, grown by `dilate` mouth widths (at least a pixel; 0: not at
    all) and feathered (Gaussian) over `feather`: where the mouth generator's pixels go (the
    renderer's paste) and count most (the trainer's region loss)."""
    width = MOUTH_WIDTH * side
    grow, sigma = max(1, round(dilate * width)) if dilate > 0 else 0, max(0.5, feather * width / 2)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1))
    masks = []
    for p in points:
        canvas = np.zeros((side, side), np.uint8)
        cv2.fillPoly(canvas, [np.round(p[INNER_LIPS] * 16).astype(np.int32)], 255, cv2.LINE_AA, shift=4)
        canvas = cv2.dilate(canvas, kernel)
        masks.append(cv2.GaussianBlur(canvas.astype(np.float32) / 255, (0, 0), sigma))
    return np.stack(masks)
