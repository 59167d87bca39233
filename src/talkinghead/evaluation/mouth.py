"""Mouth metrics: where moving the shots' pixels falls short, and pixels must be invented.

All on `[H, W, 3] uint8` frames and `[68, 2]` landmarks in the same pixels (iBUG 68-point scheme:
48-59 the outer lips, 60-67 the inner lips).

- `mouth_boxes`, `mouth_crops`: the box of landmarks 48-67 padded by 30 % of its longer side, cut
  and resized to 64 px (`scripts/mouth_region.py` measured the first gap with the same box).
- `lip_gap`: the inner-lip gap (mean of 61-67, 62-66, 63-65) over the mouth's width (48-54).
- `teeth_share`: the share of the inner-lip polygon's pixels that look like teeth: bright, and
  greyer than the lips and skin around them -- HSV value >= `TEETH_VALUE` and saturation <=
  `TEETH_SATURATION` (of 255), and saturation <= the median saturation of the rest of the mouth
  box - `TEETH_CONTRAST` (so a flat smear of the mouth's colours is no teeth). A mouth *shows teeth* when that
  share is at least `TEETH_SHARE` and the polygon's area is at least `MIN_MOUTH_PIXELS` (a
  closed mouth has no inside to judge). docs/evaluation.md gives the rule.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from talkinghead.face.mouth import INNER_LIPS, OPEN, lip_gap, mouth_boxes

__all__ = ["INNER_LIPS", "OPEN", "lip_gap", "mouth_boxes", "mouth_crops", "mouth_metrics", "shows_teeth", "teeth_share"]

TEETH_VALUE = 130  # HSV value, 0..255: teeth are among the brightest pixels of a mouth
TEETH_SATURATION = 90  # HSV saturation, 0..255: and nearly grey (lips and tongue are red)
TEETH_CONTRAST = 20  # HSV saturation below the rest of the mouth box's median
TEETH_SHARE = 0.1  # of the inner mouth's pixels
MIN_MOUTH_PIXELS = 12


def mouth_crops(frames: np.ndarray, boxes: np.ndarray, side: int = 64) -> torch.Tensor:
    """`[N, 3, side, side]` in [-1, 1]: each frame's box, resized (area-averaged)."""
    from talkinghead.media.images import to_tensor

    out = []
    for frame, (x0, y0, x1, y1) in zip(frames, boxes):
        piece = to_tensor(np.ascontiguousarray(frame[y0:y1, x0:x1])[None])
        out.append(F.interpolate(piece, size=(side, side), mode="bilinear", align_corners=False, antialias=True))
    return torch.cat(out)


def teeth_share(frame: np.ndarray, landmarks: np.ndarray) -> float | None:
    """The share of the inner mouth that looks like teeth; None when the inner lips enclose fewer
    than `MIN_MOUTH_PIXELS` pixels (nothing to judge)."""
    polygon = np.round(landmarks[INNER_LIPS]).astype(np.int32)
    if cv2.contourArea(polygon.astype(np.float32)) < MIN_MOUTH_PIXELS:
        return None
    inside = np.zeros(frame.shape[:2], np.uint8)
    cv2.fillPoly(inside, [polygon], 1)
    x0, y0, x1, y1 = mouth_boxes(landmarks[None], max(frame.shape[:2]))[0]
    hsv = cv2.cvtColor(frame, cv2.COLOR_RGB2HSV)
    around = hsv[y0:y1, x0:x1][inside[y0:y1, x0:x1] == 0]
    lips = float(np.median(around[:, 1])) if len(around) else 255.0
    value, saturation = hsv[inside.astype(bool)][:, 2], hsv[inside.astype(bool)][:, 1]
    teeth = (value >= TEETH_VALUE) & (saturation <= min(TEETH_SATURATION, lips - TEETH_CONTRAST))
    return float(teeth.mean())


def shows_teeth(frame: np.ndarray, landmarks: np.ndarray) -> bool:
    share = teeth_share(frame, landmarks)
    return share is not None and share >= TEETH_SHARE


def mouth_metrics(
    frames: np.ndarray, real_frames: np.ndarray, landmarks: np.ndarray, found: list, lpips
) -> dict[str, np.ndarray]:
    """Per generated frame, against the real one (`landmarks`: the real target's, `[N, 68, 2]`;
    `found`: the landmarks dlib finds on each generated frame, None where none; `lpips`: an
    `LPIPS`). NaN where a measure does not apply:

    - `mouth_lpips`, and the same split by the real mouth, `mouth_lpips_open` / `_closed`
    - `mouth_opening_error`: |generated lip gap - real lip gap| (the generated one from `found`)
    - `teeth`: on targets whose real mouth shows teeth, 1 where the generated one does too, else 0
    - `mouth_sharpness_open`: on open targets, the variance of the Laplacian in the mouth box, the
      generated frame's over the real one's (1: as much fine detail; an invented mouth is soft)
    """
    from talkinghead.evaluation.metrics import box_detail

    size = frames.shape[1]
    boxes = mouth_boxes(landmarks, size)
    distance = lpips(mouth_crops(real_frames, boxes), mouth_crops(frames, boxes)).numpy().astype(np.float64)
    real_gap = lip_gap(landmarks)
    opened = real_gap > OPEN
    made_gap = np.array([np.nan if p is None else float(lip_gap(p)) for p in found])
    teeth = np.array(
        [
            float(shows_teeth(f, points)) if shows_teeth(r, points) else np.nan
            for f, r, points in zip(frames, real_frames, landmarks)
        ]
    )
    return {
        "mouth_lpips": distance,
        "mouth_lpips_open": np.where(opened, distance, np.nan),
        "mouth_lpips_closed": np.where(opened, np.nan, distance),
        "mouth_opening_error": np.abs(made_gap - real_gap),
        "teeth": teeth,
        "mouth_sharpness_open": np.array(
            [
                box_detail(f, box) / max(box_detail(r, box), 1e-6) if is_open else np.nan
                for f, r, box, is_open in zip(frames, real_frames, boxes, opened)
            ]
        ),
    }
