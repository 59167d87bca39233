"""The lips parted as a mouth opens: a shot's mouth moved to the driving lips by two thin-plate
splines, one for the upper lip and the face above it, one for the lower lip and the jaw, split
along the driving mouth's midline (issue 32).

One spline over all the landmarks, as the renderer's warp is, stretches a shot's closed lips over
the driving opening (a thick lip where the mouth should be open) and a shot's teeth over the whole
gap. Here each lip keeps its own thickness and takes its teeth with it (the upper teeth stay under
the upper lip, the lower ones go down with the jaw), and what lies between the driving inner lips
and comes from no part of the shot — the shot's lips met there, or opened less — is marked
unseen: the mouth generator paints it (`MouthSettings.parting`), or a dark fill stands in.

The geometry in NumPy (`parted_map`, `lips_mask`), in pixels of whatever image the points are
given in (`[68, 2]` dlib landmarks); `part_lips` applies it to frames as tensors, for the renderer
and for the mouth trainer's crops alike.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from talkinghead.face.mouth import lip_gap

# The two splines' control points: the upper one, the face above the mouth's midline with the
# upper lips (48-54 outer, 60-64 inner); the lower one, the jaw (3-13) with the lower lips.
UPPER = [*range(0, 4), *range(13, 48), *range(48, 55), *range(60, 65)]
LOWER = [*range(3, 14), 48, *range(54, 60), 60, *range(64, 68)]
REGULARIZATION = 1e-3  # the splines' smoothing, in units of 2.5 mouth widths (dlib's jitter stays out)
STEP = 1 / 24  # the splines are computed every this many mouth widths and interpolated between
GROW, FEATHER = 0.03, 0.05  # where the parted lips are pasted: the outer lips grown, feathered (mouth widths)
FILL = (60, 30, 30)  # RGB of the unseen part when nothing paints it: the dark inside of a mouth
# How much the parted lips replace the renderer's mouth: as far as no shot has the driving lips'
# opening (a shot within `NEAR` of its lip gap: none, the fused warp shows that mouth better; `FAR`
# or more away: all).
NEAR, FAR = 0.02, 0.05


def parting_share(driving_gap, shot_gaps: np.ndarray) -> np.ndarray:
    """`[...]` in [0, 1] for driving lip gaps (face/mouth.py `lip_gap`) and the `[T]` shots' gaps."""
    nearest = np.abs(np.asarray(driving_gap, np.float64)[..., None] - np.asarray(shot_gaps, np.float64)).min(-1)
    return np.clip((nearest - NEAR) / (FAR - NEAR), 0.0, 1.0)


def midline(points: np.ndarray) -> np.ndarray:
    """`[7, 2]` the mouth's midline, left to right: the outer corners, the inner corners and the
    midpoints of the three inner-lip pairs (61-67, 62-66, 63-65)."""
    pairs = (points[[61, 62, 63]] + points[[67, 66, 65]]) / 2
    line = np.concatenate([points[[48, 60]], pairs, points[[64, 54]]]).astype(np.float64)
    return line[np.argsort(line[:, 0], kind="stable")]


def _below(line: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """How far `[..., 2]` positions lie below a midline (y down; flat beyond its ends)."""
    return positions[..., 1] - np.interp(positions[..., 0], line[:, 0], line[:, 1])


def _spline(driving: np.ndarray, source: np.ndarray, scale: float):
    """A thin-plate spline `[M, 2]` driving px -> source px through the `[N, 2]` pairs, fitted in
    units of `scale` px."""
    d = driving / scale

    def kernel(a, b):
        r2 = np.maximum((a * a).sum(1)[:, None] + (b * b).sum(1)[None] - 2 * a @ b.T, 0.0)
        return r2 * np.log(np.maximum(r2, 1e-12))  # r^2 log r^2 (0 at r = 0)

    n = len(d)
    P = np.concatenate([np.ones((n, 1)), d], 1)
    system = np.zeros((n + 3, n + 3))
    system[:n, :n] = kernel(d, d) + REGULARIZATION * np.eye(n)
    system[:n, n:], system[n:, :n] = P, P.T
    rhs = np.concatenate([source / scale, np.zeros((3, 2))])
    params = np.linalg.solve(system, rhs)

    def apply(points: np.ndarray) -> np.ndarray:
        q = points / scale
        return (kernel(q, d) @ params[:n] + np.concatenate([np.ones((len(q), 1)), q], 1) @ params[n:]) * scale

    return apply


def parted_map(
    source: np.ndarray, driving: np.ndarray, xs: np.ndarray, ys: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """For the pixels (xs x ys) of a frame with `driving` landmarks: (`[len(ys), len(xs), 2]` where
    to sample a shot with `source` landmarks, in its pixels; `[len(ys), len(xs)]` float32 in
    [0, 1], 1 where that comes from the shot's own side of its lips, 0 where it would cross them:
    the unseen inside of the mouth). Above the driving midline the upper spline, below it the lower."""
    source, driving = np.asarray(source, np.float64), np.asarray(driving, np.float64)
    width = max(float(np.linalg.norm(driving[54] - driving[48])), 1.0)
    xs, ys = np.asarray(xs, np.float64), np.asarray(ys, np.float64)
    grid = np.stack(np.meshgrid(xs, ys), -1)
    flat = grid.reshape(-1, 2)
    above = (_below(midline(driving), flat) < 0)[:, None]
    # Each spline on a grid of about `STEP` mouth widths, then bilinearly between (smooth: the
    # split along the midline is made per pixel afterwards).
    step = max(1.0, STEP * width)
    upper, lower = (
        _dense(_spline(driving[part], source[part], 2.5 * width), xs, ys, step).reshape(-1, 2)
        for part in (UPPER, LOWER)
    )
    positions = np.where(above, upper, lower)
    side = _below(midline(source), positions)
    valid = np.where(above[:, 0], side <= 0.5, side >= -0.5).astype(np.float32).reshape(grid.shape[:2])
    return positions.reshape(grid.shape), cv2.GaussianBlur(valid, (0, 0), 1.0)


def _dense(spline, xs: np.ndarray, ys: np.ndarray, step: float) -> np.ndarray:
    """`[len(ys), len(xs), 2]`: `spline` on the pixels (xs x ys), computed every `step` px and
    interpolated bilinearly."""
    cx = xs[0] + np.arange(int(np.ceil((xs[-1] - xs[0]) / step)) + 2) * step
    cy = ys[0] + np.arange(int(np.ceil((ys[-1] - ys[0]) / step)) + 2) * step
    coarse = spline(np.stack(np.meshgrid(cx, cy), -1).reshape(-1, 2)).reshape(len(cy), len(cx), 2)
    mx = np.broadcast_to(((xs - xs[0]) / step).astype(np.float32)[None], (len(ys), len(xs)))
    my = np.broadcast_to(((ys - ys[0]) / step).astype(np.float32)[:, None], (len(ys), len(xs)))
    return cv2.remap(coarse.astype(np.float32), np.ascontiguousarray(mx), np.ascontiguousarray(my), cv2.INTER_LINEAR)


def lips_mask(driving: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """`[len(ys), len(xs)]` float32 in [0, 1]: where the parted lips go, the driving outer-lip
    polygon grown by `GROW` and feathered over `FEATHER` mouth widths."""
    driving = np.asarray(driving, np.float64)
    width = max(float(np.linalg.norm(driving[54] - driving[48])), 1.0)
    x0, y0 = float(xs[0]), float(ys[0])
    canvas = np.zeros((len(ys), len(xs)), np.uint8)
    polygon = np.round((driving[48:60] - [x0, y0]) * 16).astype(np.int32)
    cv2.fillPoly(canvas, [polygon], 255, cv2.LINE_AA, shift=4)
    grow = max(1, round(GROW * width))
    canvas = cv2.dilate(canvas, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1)))
    return cv2.GaussianBlur(canvas.astype(np.float32) / 255, (0, 0), max(0.5, FEATHER * width))


def lips_box(driving: np.ndarray, size: tuple[int, int]) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1): the pixels `lips_mask` can reach in a frame of `size` (width, height),
    clipped; None when empty."""
    driving = np.asarray(driving, np.float64)
    width = max(float(np.linalg.norm(driving[54] - driving[48])), 1.0)
    margin = (GROW + 3 * FEATHER) * width + 2
    low, high = driving[48:60].min(0) - margin, driving[48:60].max(0) + margin
    x0, y0 = (int(max(0, np.floor(v))) for v in low)
    x1, y1 = int(min(size[0], np.ceil(high[0]))), int(min(size[1], np.ceil(high[1])))
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


def part_lips(
    frames: torch.Tensor, landmarks: np.ndarray, shots: torch.Tensor, shot_landmarks: np.ndarray
) -> tuple[torch.Tensor, torch.Tensor]:
    """The lips parted: in each of `[B, 3, H, W]` frames (in [-1, 1], changed in
    place), inside the driving outer lips grown and feathered and as far as `parting_share` says
    (no shot has the driving lip gap), the shot whose lip gap is nearest the driving one moved to
    the driving lips by the two splines, and `FILL` where it has nothing (the inside of a mouth its
    lips hid). `landmarks` `[B, 68, 2]` in the frames' pixels; `shots`
    `[T, 3, h, w]` and `shot_landmarks` `[T, 68, 2]` in theirs. Returns the frames and `[B, 1, H, W]`
    in [0, 1], the unseen part: what the mouth generator paints without seeing it."""
    H, W = frames.shape[-2:]
    unseen = torch.zeros(len(frames), 1, H, W, dtype=frames.dtype, device=frames.device)
    fill = torch.tensor(FILL, dtype=frames.dtype, device=frames.device).view(1, 3, 1, 1) / 127.5 - 1
    gaps, driving_gaps = (lip_gap(np.asarray(p, np.float64)) for p in (shot_landmarks, landmarks))
    shares = parting_share(driving_gaps, gaps)
    for b, driving in enumerate(np.asarray(landmarks, np.float64)):
        box = lips_box(driving, (W, H))
        if box is None or shares[b] == 0:
            continue
        x0, y0, x1, y1 = box
        t = int(np.abs(gaps - driving_gaps[b]).argmin())
        xs, ys = np.arange(x0, x1), np.arange(y0, y1)
        positions, valid = parted_map(shot_landmarks[t], driving, xs, ys)
        h, w = shots.shape[-2:]
        grid = (positions + 0.5) / np.array([w, h]) * 2 - 1
        grid = torch.from_numpy(grid.astype(np.float32))[None].to(frames.device, frames.dtype)
        moved = F.grid_sample(shots[t : t + 1], grid, mode="bilinear", padding_mode="border", align_corners=False)
        seen = torch.from_numpy(valid)[None, None].to(frames.device, frames.dtype)
        where = torch.from_numpy(lips_mask(driving, xs, ys) * np.float32(shares[b]))[None, None]
        where = where.to(frames.device, frames.dtype)
        parted = torch.lerp(fill, moved, seen)
        frames[b : b + 1, :, y0:y1, x0:x1] = torch.lerp(frames[b : b + 1, :, y0:y1, x0:x1], parted, where)
        unseen[b : b + 1, :, y0:y1, x0:x1] = where * (1 - seen)
    return frames, unseen
