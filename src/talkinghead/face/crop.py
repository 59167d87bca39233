"""Square face crops with a margin, and the transform back to the original frame.

A crop is described by `box = (x0, y0, side)` in original-frame pixels: the crop of `size`
pixels shows pixels `x0 .. x0 + side - 1` (and the same in y), so with pixel centres at integers
(points.py)

    crop_xy = rescale_points(frame_xy - (x0, y0), side, size)
    frame_xy = rescale_points(crop_xy, size, side) + (x0, y0)

A clip whose face stays put gets one box for all its frames (like the VoxCeleb crops the paper
trained on); a moving head gets a box per frame, smoothed over time so the crop does not shake.
Parts of a box outside the frame are filled with black.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from talkinghead.face.points import rescale_points


@dataclass(frozen=True)
class CropConfig:
    size: int = 256  # output side in pixels
    # Crop side as a multiple of the landmarks' extent. The 68 points span brows to chin; 1.8
    # adds the forehead, hair and some background, about as loose as the VoxCeleb2 crops.
    scale: float = 1.8
    # Shift the centre up by this fraction of the extent, since the landmarks miss the forehead.
    lift: float = 0.1
    # A clip keeps one fixed box when its face centre moves less than this fraction of the face
    # size and its size changes by less than `max_zoom`; otherwise boxes follow the face.
    max_shift: float = 0.15
    max_zoom: float = 1.25
    # Standard deviation (seconds) of the Gaussian that smooths moving boxes over time.
    smooth_seconds: float = 0.3


def face_boxes(landmarks: np.ndarray, config: CropConfig) -> np.ndarray:
    """Per-frame unsmoothed crop boxes `[N, 3]` (cx, cy, side) from `[N, 68, 2]` landmarks."""
    low, high = landmarks.min(axis=1), landmarks.max(axis=1)
    extent = (high - low).max(axis=1)
    centre = (low + high) / 2
    centre[:, 1] -= config.lift * extent
    return np.column_stack([centre, extent * config.scale]).astype(np.float64)


def clip_boxes(landmarks: np.ndarray, times: np.ndarray, config: CropConfig) -> tuple[np.ndarray, bool]:
    """Crop boxes `[N, 3]` (x0, y0, side), integer-valued, for one clip's frames.

    Returns the boxes and whether they are one fixed box for the whole clip.
    """
    boxes = face_boxes(landmarks, config)
    sides = boxes[:, 2]
    size = float(np.median(sides))
    extent = size / config.scale  # the face's own size, without the margin
    spread = float(np.ptp(boxes[:, :2], axis=0).max())
    fixed = spread <= config.max_shift * extent and sides.max() / sides.min() <= config.max_zoom
    if fixed:
        centre = (boxes[:, :2].min(axis=0) + boxes[:, :2].max(axis=0)) / 2
        boxes = np.tile([centre[0], centre[1], size], (len(boxes), 1))
    else:
        boxes = _smooth(boxes, times, config.smooth_seconds)
    side = np.maximum(np.round(boxes[:, 2]), 2.0)
    x0 = np.round(boxes[:, 0] - side / 2)
    y0 = np.round(boxes[:, 1] - side / 2)
    return np.column_stack([x0, y0, side]).astype(np.float32), bool(fixed)


def _smooth(values: np.ndarray, times: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing over time of `[N, C]` values sampled at `times` (seconds, increasing)."""
    if len(values) < 2 or sigma <= 0:
        return values
    dt = times[:, None] - times[None, :]
    weights = np.exp(-0.5 * (dt / sigma) ** 2)
    # Sum of weights over a window is O(N^2) but N is one clip's frames (a few thousand at most);
    # beyond that, smooth in blocks to bound the memory.
    if len(values) <= 4096:
        return (weights @ values) / weights.sum(axis=1, keepdims=True)
    out = np.empty_like(values)
    for start in range(0, len(values), 1024):
        w = np.exp(-0.5 * ((times[start : start + 1024, None] - times[None, :]) / sigma) ** 2)
        out[start : start + 1024] = (w @ values) / w.sum(axis=1, keepdims=True)
    return out


def crop_image(rgb: np.ndarray, box: np.ndarray, size: int, *, border: str = "replicate") -> np.ndarray:
    """Cut the square `box` (x0, y0, side; integers) out of `rgb` and resize it to `size`.

    Where the box leaves the frame: `replicate` repeats the frame's edge pixels (a black band
    there would be pulled across the face by the warp when the head turns); `reflect` mirrors the
    frame there, which shows no streaks when the crop itself is shown."""
    x0, y0, side = (int(v) for v in box)
    height, width = rgb.shape[:2]
    ix0, iy0 = max(x0, 0), max(y0, 0)
    ix1, iy1 = min(x0 + side, width), min(y0 + side, height)
    if ix0 >= ix1 or iy0 >= iy1:
        return np.zeros((size, size, 3), np.uint8)
    region = rgb[iy0:iy1, ix0:ix1]
    if (ix0, iy0, ix1, iy1) != (x0, y0, x0 + side, y0 + side):
        pads = (iy0 - y0, y0 + side - iy1, ix0 - x0, x0 + side - ix1)  # top, bottom, left, right
        mode = {"replicate": cv2.BORDER_REPLICATE, "reflect": cv2.BORDER_REFLECT_101}[border]
        if mode == cv2.BORDER_REFLECT_101 and max(pads) >= min(region.shape[:2]):
            mode = cv2.BORDER_REPLICATE  # too little frame to mirror (a box mostly outside it)
        region = cv2.copyMakeBorder(np.ascontiguousarray(region), *pads, mode)
    interpolation = cv2.INTER_AREA if side > size else cv2.INTER_CUBIC
    return cv2.resize(region, (size, size), interpolation=interpolation)


def to_crop(points: np.ndarray, box: np.ndarray, size: int) -> np.ndarray:
    """Frame pixel coordinates -> crop pixel coordinates. `box` is `[3]` or `[N, 3]` for `[N, P, 2]`."""
    box = np.asarray(box, np.float32)
    origin, side = box[..., None, :2], box[..., None, 2:3]
    return rescale_points(points - origin, side, size).astype(np.float32)


def to_frame(points: np.ndarray, box: np.ndarray, size: int) -> np.ndarray:
    """Crop pixel coordinates -> frame pixel coordinates (inverse of `to_crop`)."""
    box = np.asarray(box, np.float32)
    origin, side = box[..., None, :2], box[..., None, 2:3]
    return (rescale_points(points, size, side) + origin).astype(np.float32)
