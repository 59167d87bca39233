"""Driving motion: a landmark track from a video, cleaned, retargeted onto a source face, saved.

A `Motion` holds the driver's landmarks in its own face-crop frame, normalised to [0, 1] (so a
track is independent of the driving video's resolution), one row per driving frame, at the
driving frame rate. Frames where the face was lost are filled by linear interpolation between the
nearest tracked frames (held at the ends) and counted.

Retargeting onto a source whose landmarks are `S` (crop pixels of size `size`):

- absolute (the paper): the driver's landmarks as they are, `D_t * size`. The source takes the
  driver's face shape too (identity leakage).
- relative: the driver's motion applied to the source's own landmarks,
  `S + (D_t - D_ref) * iod(S) / iod(D_ref)`, where D_ref is the driver's first or most neutral
  frame and iod the inter-ocular distance. The source keeps its face shape; expression and head
  motion transfer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from talkinghead.errors import TalkingheadError
from talkinghead.face.crop import CropConfig, clip_boxes, crop_image
from talkinghead.face.points import from_unit, to_unit
from talkinghead.io import atomic_path

MOTION_FORMAT = "talkinghead-motion"


class MotionError(TalkingheadError):
    """A driving video or motion file that cannot be used; one line."""


def inter_ocular(landmarks: np.ndarray) -> np.ndarray:
    """Outer-eye-corner distance of `[..., 68, 2]` landmarks."""
    return np.linalg.norm(landmarks[..., 36, :] - landmarks[..., 45, :], axis=-1)


def mouth_opening(landmarks: np.ndarray) -> np.ndarray:
    """Inner-lip gap of `[..., 68, 2]` landmarks (mean of points 61-63 to 67-65) over the
    outer-eye-corner distance: about 0 closed, 0.1 and more clearly open."""
    gap = np.linalg.norm(landmarks[..., [61, 62, 63], :] - landmarks[..., [67, 66, 65], :], axis=-1).mean(-1)
    return gap / inter_ocular(landmarks)


@dataclass
class Motion:
    landmarks: np.ndarray  # [N, 68, 2] float32, driver face-crop unit coordinates in [0, 1] (points.py)
    fps: float
    tracked: np.ndarray  # [N] bool: face found (False: interpolated)
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), np.float32))  # [N, 3] driver crop boxes
    source: str = ""
    # The driver's face in its first tracked frame, a 128 px crop, to tell whether source and
    # driver are one person (mode "auto"). Only for motions tracked from video: never saved.
    face_sample: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.landmarks)

    @property
    def duration(self) -> float:
        return len(self) / self.fps

    # -- files ------------------------------------------------------------------------------

    def save(self, path: str | Path) -> Path:
        """Write an `.npz` motion template (arrays only; loads with allow_pickle=False)."""
        path = Path(path)
        meta = {"format": MOTION_FORMAT, "version": 1, "fps": self.fps, "source": Path(self.source).name}
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez_compressed(
                    f,
                    landmarks=self.landmarks.astype(np.float32),
                    tracked=self.tracked,
                    meta=np.frombuffer(json.dumps(meta).encode(), np.uint8),
                )
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Motion":
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(bytes(data["meta"]).decode())
                landmarks, tracked = data["landmarks"], data["tracked"]
        except (OSError, ValueError, KeyError, EOFError, json.JSONDecodeError, UnicodeDecodeError):
            raise MotionError(f"{path}: not a motion template (.npz from `talkinghead motion`)") from None
        if (
            not isinstance(meta, dict)
            or meta.get("format") != MOTION_FORMAT
            or landmarks.ndim != 3
            or landmarks.shape[1:] != (68, 2)
            or len(tracked) != len(landmarks)
            or not len(landmarks)
            or not np.isfinite(landmarks).all()
        ):
            raise MotionError(f"{path}: not a motion template (.npz from `talkinghead motion`)")
        return cls(
            landmarks.astype(np.float32), float(meta["fps"]), tracked.astype(bool), source=meta.get("source", "")
        )

    # -- from a video -------------------------------------------------------------------------

    @classmethod
    def from_video(cls, path: str | Path, *, tracker=None, crop_scale: float = 1.8, progress: bool = False) -> "Motion":
        """Track the driver's face through a video (the same tracker as `prepare`)."""
        from tqdm import tqdm

        from talkinghead.face.landmarks import make_landmarker
        from talkinghead.face.tracking import FaceTracker
        from talkinghead.media.video import MediaError, VideoReader

        tracker = tracker or FaceTracker(make_landmarker())
        tracker.reset()
        points, times, sample = [], [], None
        try:
            reader = VideoReader(path)
        except MediaError as error:
            raise MotionError(f"{path}: {error}") from None
        with reader:
            fps = reader.info.fps
            total = reader.info.frame_count or None
            for _, seconds, rgb in tqdm(
                reader, total=total, unit="frame", desc="driving landmarks", disable=not progress
            ):
                points.append(tracker(rgb))
                times.append(seconds)
                if sample is None and points[-1] is not None:
                    box, _ = clip_boxes(
                        points[-1][None], np.zeros(1, np.float32), CropConfig(size=128, scale=crop_scale)
                    )
                    sample = crop_image(rgb, box[0], 128)
        tracked = np.array([p is not None for p in points])
        if not tracked.any():
            raise MotionError(f"{path}: no face found in the driving video")
        landmarks = fill_gaps(points, tracked)
        boxes, _ = clip_boxes(landmarks, np.array(times, np.float32), CropConfig(size=1, scale=crop_scale))
        # [N, 68, 2] unit coordinates in each frame's box
        normalised = to_unit(landmarks - boxes[:, None, :2], boxes[:, None, 2:3]).astype(np.float32)
        return cls(normalised, fps, tracked, boxes=boxes, source=str(path), face_sample=sample)

    def trimmed(self, start: float = 0.0, duration: float | None = None) -> "Motion":
        first = int(round(start * self.fps))
        last = len(self) if duration is None else min(len(self), first + int(round(duration * self.fps)))
        boxes = self.boxes[first:last] if len(self.boxes) else self.boxes
        return Motion(
            self.landmarks[first:last], self.fps, self.tracked[first:last], boxes, self.source, self.face_sample
        )

    # -- cleaning and retargeting ----------------------------------------------------------------

    def smoothed(self, sigma_frames: float) -> "Motion":
        """Gaussian smoothing over time (centred: no lag), against landmark jitter."""
        if sigma_frames <= 0 or len(self) < 3:
            return self
        radius = int(np.ceil(3 * sigma_frames))
        kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma_frames) ** 2)
        kernel /= kernel.sum()
        flat = self.landmarks.reshape(len(self), -1)
        padded = np.pad(flat, ((radius, radius), (0, 0)), mode="edge")
        smooth = np.stack([np.convolve(padded[:, j], kernel, mode="valid") for j in range(flat.shape[1])], axis=1)
        landmarks = smooth.reshape(self.landmarks.shape).astype(np.float32)
        return Motion(landmarks, self.fps, self.tracked, self.boxes, self.source, self.face_sample)

    def neutral_index(self) -> int:
        """The driver's most neutral frame: mouth closed, eyes open, facing the camera."""
        lm = self.landmarks
        iod = inter_ocular(lm)
        mouth = mouth_opening(lm)
        eyes = (np.linalg.norm(lm[:, [37, 38, 43, 44]] - lm[:, [41, 40, 47, 46]], axis=-1).mean(1)) / iod
        left, right = np.linalg.norm(lm[:, 30] - lm[:, 0], axis=-1), np.linalg.norm(lm[:, 30] - lm[:, 16], axis=-1)
        yaw = np.abs(left - right) / (left + right)
        cost = mouth + np.maximum(0.0, 0.2 - eyes) * 2 + yaw + (~self.tracked) * 10.0
        return int(np.argmin(cost))

    def retarget(
        self, source_landmarks: np.ndarray, size: int, *, mode: str = "relative", reference: str = "neutral"
    ) -> np.ndarray:
        """Driving landmarks for a source, `[N, 68, 2]` in crop pixels of a `size` crop."""
        driving = from_unit(self.landmarks, size)
        if mode == "absolute":
            return driving.astype(np.float32)
        if mode != "relative":
            raise ValueError(f"retargeting mode must be 'relative' or 'absolute', got {mode!r}")
        if reference not in ("first", "neutral"):
            raise ValueError(f"reference frame must be 'first' or 'neutral', got {reference!r}")
        ref = 0 if reference == "first" else self.neutral_index()
        return relative(source_landmarks, driving, driving[ref])


def relative(source: np.ndarray, driving: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Relative retargeting: the driver's motion since `reference` (`[68, 2]`), scaled by the ratio
    of the eye distances, added to the source's landmarks. `driving` `[..., 68, 2]`, any pixels;
    the result is in the source's pixels, float32."""
    scale = inter_ocular(source) / max(float(inter_ocular(reference)), 1e-6)
    return (source + (driving - reference) * scale).astype(np.float32)


def fill_gaps(points: list[np.ndarray | None], tracked: np.ndarray) -> np.ndarray:
    """`[N, 68, 2]`: lost frames linearly interpolated between tracked ones, held at the ends."""
    known = np.flatnonzero(tracked)
    stack = np.stack([points[i] for i in known]).reshape(len(known), -1)
    frames = np.arange(len(points))
    filled = np.stack([np.interp(frames, known, stack[:, j]) for j in range(stack.shape[1])], axis=1)
    return filled.reshape(len(points), 68, 2).astype(np.float32)
