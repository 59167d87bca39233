"""`talkinghead animate`: drive an avatar with a video's (or a motion template's) landmarks.

Layouts:
- `crop`: the generated face crop (S x S)
- `side`: driver crop | driving landmarks | result (the driver column only when driving by video)
- `paste`: the generated crop blended back into the full source portrait at its crop box, at the
  portrait's resolution, through a mask that follows the face, hair line and neck (`paste_mask`)
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from talkinghead.face.crop import crop_image
from talkinghead.face.drawing import draw_landmarks
from talkinghead.face.points import rescale_points
from talkinghead.inference.avatar import Avatar
from talkinghead.inference.motion import Motion, MotionError
from talkinghead.inference.onnx import with_runtime
from talkinghead.io import atomic_path
from talkinghead.media.video import VideoReader, VideoWriter, is_image_path

LAYOUTS = ("crop", "side", "paste")


MASK_SIZE = 128  # the paste mask is drawn at this size and enlarged: it is smooth


def paste_mask(source: np.ndarray, driving: np.ndarray, size: int) -> np.ndarray:
    """`[MASK_SIZE, MASK_SIZE, 1] float32` in [0, 1]: where a generated crop replaces the portrait
    (`paste_back` enlarges it to the crop box: it is smooth).

    The face of the source and of the driving landmarks (`[68, 2]` crop pixels of `size`) -- the
    jaw line, a forehead and hair line above the brows, the neck below the chin -- joined, grown
    and feathered, and faded out before the crop's edge so that no box edge shows."""
    scale = MASK_SIZE / size
    mask = np.zeros((MASK_SIZE, MASK_SIZE), np.float32)
    for points in (source, driving):
        cv2.fillConvexPoly(mask, cv2.convexHull(np.round(_head_outline(points * scale)).astype(np.int32)), 1.0)
    grow = max(3, round(0.12 * MASK_SIZE)) | 1  # then feathered: 1 at the landmarks, 0 a little beyond
    mask = cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (grow, grow)))
    mask = cv2.GaussianBlur(mask, (0, 0), 0.03 * MASK_SIZE)
    edge = np.minimum(np.arange(MASK_SIZE), np.arange(MASK_SIZE)[::-1]).astype(np.float32)
    ramp = np.clip((edge - 0.02 * MASK_SIZE) / (0.08 * MASK_SIZE), 0, 1)
    mask *= np.minimum(ramp[:, None], ramp[None, :])
    return mask[..., None]


def _head_outline(points: np.ndarray) -> np.ndarray:
    """Points around the head: the jaw line, the brows raised to a hair line, the lower jaw
    lowered to the neck (along the face's own up direction, so a tilted head keeps its shape)."""
    brows, chin = points[17:27], points[8]
    up = brows.mean(0) - chin
    forehead = brows + 0.6 * up
    neck = points[4:13] - 0.35 * up
    return np.concatenate([points[0:17], forehead, neck])


def paste_back(portrait: np.ndarray, box: np.ndarray, crop: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Blend a generated `[D, D, 3]` crop into the portrait at `box` (x0, y0, side) through a
    `[M, M, 1]` mask (any M: it is smooth), at the portrait's own resolution; what falls outside
    the portrait is dropped. The crop is resized bicubically when enlarged, bilinearly when the
    box is within a quarter of D (the 512 px detail shots' common case: nothing to average away),
    by area below."""
    out = portrait.copy()
    x0, y0, side = (int(v) for v in box)
    height, width = portrait.shape[:2]
    ix0, iy0, ix1, iy1 = max(x0, 0), max(y0, 0), min(x0 + side, width), min(y0 + side, height)
    if ix0 >= ix1 or iy0 >= iy1:
        return out
    ratio = side / crop.shape[0]
    interpolation = cv2.INTER_CUBIC if ratio > 1 else cv2.INTER_LINEAR if ratio >= 0.75 else cv2.INTER_AREA
    resized = cv2.resize(crop, (side, side), interpolation=interpolation)
    alpha = cv2.resize(mask, (side, side), interpolation=cv2.INTER_LINEAR)
    if alpha.ndim == 3:
        alpha = alpha[..., 0]
    inside = (slice(iy0 - y0, iy1 - y0), slice(ix0 - x0, ix1 - x0))
    weight = np.ascontiguousarray(alpha[inside], dtype=np.float32)
    out[iy0:iy1, ix0:ix1] = cv2.blendLinear(
        np.ascontiguousarray(resized[inside]), out[iy0:iy1, ix0:ix1].copy(), weight, 1 - weight
    )
    return out


def _driver_crops(path: Path, motion: Motion, size: int) -> Iterator[np.ndarray]:
    with VideoReader(path) as reader:
        for number, _, rgb in reader:
            if number >= len(motion.boxes):
                return
            yield crop_image(rgb, motion.boxes[number], size)


def choose_mode(avatar: Avatar, motion: Motion) -> str:
    """`auto`: absolute when the driver is the source's own person (self-reenactment, as in the
    paper), relative otherwise and for landmark-only templates (nothing to compare)."""
    from talkinghead.features.identity import same_person

    if motion.face_sample is None:
        return "relative"
    # From the original portrait, not the shot: the shot is only as sharp as the model's resolution.
    source = crop_image(avatar.portrait, avatar.portrait_box, 128)
    return "absolute" if same_person(source, motion.face_sample) else "relative"


def render(
    avatar: Avatar,
    motion: Motion,
    *,
    layout: str = "crop",
    mode: str = "relative",
    reference: str = "neutral",
    smooth: float = 1.0,
    driving_video: Path | None = None,
    batch_size: int = 8,
    runtime: str = "torch",
) -> Iterator[np.ndarray]:
    """Output frames `[H, W, 3] uint8`, one per driving frame, at the avatar's output size (its
    detail shots' D; `paste`: the portrait's own size)."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    size, out = avatar.size, avatar.output_size
    mode = choose_mode(avatar, motion) if mode == "auto" else mode
    landmarks = motion.smoothed(smooth).retarget(avatar.shot_landmarks[0], size, mode=mode, reference=reference)
    frames = with_runtime(avatar, runtime).generate(landmarks, batch_size=batch_size)
    if layout == "crop":
        yield from frames
    elif layout == "paste":
        for frame, driving in zip(frames, landmarks):
            mask = paste_mask(avatar.shot_landmarks[0], driving, size)
            yield paste_back(avatar.portrait, avatar.portrait_box, frame, mask)
    else:
        drivers = _driver_crops(driving_video, motion, out) if driving_video is not None and len(motion.boxes) else None
        for i, frame in enumerate(frames):
            columns = [draw_landmarks(rescale_points(landmarks[i], size, out), out), frame]
            if drivers is not None:
                columns.insert(0, next(drivers, np.zeros_like(frame)))
            yield np.concatenate(columns, axis=1)


def load_driving(path: str | Path, *, progress: bool = False) -> Motion:
    """A motion template (.npz) or a video, tracked with prepare's tracker."""
    path = Path(path)
    if is_image_path(path):
        raise MotionError(f"{path}: an image; the driver must be a video or a motion template (.npz)")
    if path.suffix == ".npz":
        return Motion.load(path)
    return Motion.from_video(path, progress=progress)


def animate_file(
    avatar: Avatar,
    driving: str | Path,
    out: str | Path,
    *,
    layout: str = "crop",
    mode: str = "auto",
    reference: str = "neutral",
    smooth: float = 1.0,
    progress: bool = True,
    motion: Motion | None = None,
    runtime: str = "torch",
) -> dict:
    """Render to an mp4 at the driving frame rate, with the driving video's audio if it has any.
    `motion`: the driving landmarks when already loaded from `driving`."""
    from tqdm import tqdm

    driving, out = Path(driving), Path(out)
    motion = motion if motion is not None else load_driving(driving, progress=progress)
    video = driving if driving.suffix != ".npz" else None
    mode = choose_mode(avatar, motion) if mode == "auto" else mode
    start = time.perf_counter()
    frames = render(
        avatar, motion, layout=layout, mode=mode, reference=reference, smooth=smooth, driving_video=video,
        runtime=runtime,
    )  # fmt: skip
    first = next(frames)
    with atomic_path(out) as tmp:
        with VideoWriter(tmp, motion.fps, first.shape[1], first.shape[0], audio_from=video) as writer:
            writer.write(first)
            for frame in tqdm(
                frames, total=len(motion) - 1, initial=1, unit="frame", disable=not progress, dynamic_ncols=True
            ):
                writer.write(frame)
            has_audio = writer.has_audio
    seconds = time.perf_counter() - start
    return {
        "frames": len(motion),
        "fps": motion.fps,
        "interpolated_frames": int((~motion.tracked).sum()),
        "audio": has_audio,
        "mode": mode,
        "seconds": seconds,
    }


def default_motion_path() -> Path:
    """The bundled motion template: a few seconds of talking, blinking and head turning."""
    return Path(__file__).resolve().parents[1] / "assets" / "default_motion.npz"
