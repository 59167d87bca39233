"""`talkinghead animate`: drive an avatar with a video's (or a motion template's) landmarks.

Layouts:
- `crop`: the generated face crop (S x S)
- `side`: driver crop | driving landmarks | result (the driver column only when driving by video)
- `paste`: the generated crop blended back into the full source portrait at its crop box
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from talkinghead.face.crop import crop_image
from talkinghead.face.drawing import draw_landmarks
from talkinghead.inference.avatar import Avatar
from talkinghead.inference.motion import Motion, MotionError
from talkinghead.inference.onnx import with_runtime
from talkinghead.io import atomic_path
from talkinghead.media.video import VideoReader, VideoWriter, is_image_path

LAYOUTS = ("crop", "side", "paste")


def face_mask(size: int) -> np.ndarray:
    """`[S, S, 1] float32` soft ellipse over the face region of a crop: 1 inside, fading to 0."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    # prepare's crops centre the face slightly below the middle and make it ~55% of the side.
    distance = ((x - 0.5) / 0.40) ** 2 + ((y - 0.54) / 0.46) ** 2
    return np.clip((1.0 - distance) / 0.25, 0.0, 1.0)[..., None]


def paste_back(portrait: np.ndarray, box: np.ndarray, crop: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Blend a generated `[S, S, 3]` crop into the portrait at `box` (x0, y0, side)."""
    out = portrait.copy()
    x0, y0, side = (int(v) for v in box)
    resized = cv2.resize(crop, (side, side), interpolation=cv2.INTER_CUBIC).astype(np.float32)
    alpha = cv2.resize(mask, (side, side), interpolation=cv2.INTER_LINEAR)[..., None]
    height, width = portrait.shape[:2]
    ix0, iy0, ix1, iy1 = max(x0, 0), max(y0, 0), min(x0 + side, width), min(y0 + side, height)
    if ix0 >= ix1 or iy0 >= iy1:
        return out
    region = out[iy0:iy1, ix0:ix1].astype(np.float32)
    patch = resized[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0]
    a = alpha[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0]
    out[iy0:iy1, ix0:ix1] = (region * (1 - a) + patch * a + 0.5).astype(np.uint8)
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
    """Output frames `[H, W, 3] uint8`, one per driving frame."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    size = avatar.size
    mode = choose_mode(avatar, motion) if mode == "auto" else mode
    landmarks = motion.smoothed(smooth).retarget(avatar.shot_landmarks[0], size, mode=mode, reference=reference)
    frames = with_runtime(avatar, runtime).generate(landmarks, batch_size=batch_size)
    if layout == "crop":
        yield from frames
    elif layout == "paste":
        mask = face_mask(size)
        for frame in frames:
            yield paste_back(avatar.portrait, avatar.portrait_box, frame, mask)
    else:
        drivers = (
            _driver_crops(driving_video, motion, size) if driving_video is not None and len(motion.boxes) else None
        )
        for i, frame in enumerate(frames):
            columns = [draw_landmarks(landmarks[i], size), frame]
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
